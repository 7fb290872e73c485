"""The releases this code base can run as, and the deliberate bug switches."""

from __future__ import annotations

from enum import StrEnum

from ledger.errors import ConfigurationError

__all__ = [
    "BUG_ENV",
    "CURRENCIES",
    "DEFAULT_CURRENCY",
    "Bug",
    "ReleaseName",
    "parse_bug",
]

#: Environment variable that switches on one deliberate bug (unset or empty: none).
BUG_ENV = "LEDGER_BUG"

#: Currencies v2 and later accept. v1 has no currency: everything is implicitly USD.
CURRENCIES = ("EUR", "GBP", "USD")
DEFAULT_CURRENCY = "USD"


class ReleaseName(StrEnum):
    """A release of the ledger: selects the app's behaviour and the migration set."""

    V1 = "v1"
    V2 = "v2"
    V2_1 = "v2.1"

    @property
    def multi_currency(self) -> bool:
        """Whether this release reads and writes the ``currency`` columns."""
        return self is not ReleaseName.V1


class Bug(StrEnum):
    """Deliberate bugs, to test that the harness's checkers catch them."""

    #: Answer 201 for a deposit or transfer, but roll its transaction back.
    ACK_BEFORE_COMMIT = "ack_before_commit"
    #: Apply an idempotency-key replay a second time (the money moves again).
    DOUBLE_APPLY = "double_apply"
    #: Credit the receiver of a transfer one cent less than the sender is debited.
    LOSE_CENT = "lose_cent"
    #: Answer /healthz with 503 whatever the database says (a release that fails its check).
    UNHEALTHY = "unhealthy"
    #: Once a database connection is lost (a crash, a restart), never connect again: every
    #: request, the health check included, answers 503 from then on.
    NO_RECONNECT = "no_reconnect"
    #: Answer 500 to every transfer between accounts, while the health check and every
    #: other request pass (a broken code path only live traffic finds: a canary's case).
    FAIL_TRANSFERS = "fail_transfers"


def parse_bug(value: str | None) -> Bug | None:
    """The bug named by ``LEDGER_BUG``; ``None`` when unset or empty."""
    if value is None or not value.strip():
        return None
    try:
        return Bug(value.strip())
    except ValueError:
        raise ConfigurationError(
            BUG_ENV, value, "one of " + ", ".join(b.value for b in Bug) + " (or unset)"
        ) from None
