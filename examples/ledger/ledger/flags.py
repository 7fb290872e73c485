"""Feature flags, read through the OpenFeature SDK from the harness's flagd flag file.

A release may ship a deliberate bug behind the flag ``new-transfers``
(``LEDGER_FLAGGED_BUG``): the bug is on for a request only when the flag evaluates true for
its targeting key (the transfer's idempotency key), so a flag at 10 % turns it on for about
one transfer in ten, always the same ones. The flag file's path is ``DEPLOY_CHAOS_FLAGS_FILE``
(written by the harness in flagd's format); the flagd provider in its file mode re-reads it
every 100 ms. Without a flagged bug nothing is imported: the other releases start as fast as
before.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["FLAG", "FLAGGED_BUG_ENV", "FLAGS_FILE_ENV", "Flags"]

#: The flag that guards the new code path.
FLAG = "new-transfers"
FLAGGED_BUG_ENV = "LEDGER_FLAGGED_BUG"
FLAGS_FILE_ENV = "DEPLOY_CHAOS_FLAGS_FILE"


class Flags:
    """The release's view of its flags; ``None`` client when it has none behind a flag."""

    def __init__(self, client: Any | None) -> None:
        self._client = client

    @classmethod
    def from_env(cls, flagged: bool) -> Flags:
        """Flags from ``DEPLOY_CHAOS_FLAGS_FILE`` when the release has code behind a flag."""
        path = os.environ.get(FLAGS_FILE_ENV, "").strip()
        if not flagged or not path:
            return cls(None)
        from openfeature import api
        from openfeature.contrib.provider.flagd import FlagdProvider
        from openfeature.contrib.provider.flagd.config import ResolverType

        # Waits for the first read of the file: no request is answered on defaults.
        api.set_provider_and_wait(
            FlagdProvider(
                resolver_type=ResolverType.FILE, offline_flag_source_path=path, deadline_ms=100
            )
        )
        return cls(api.get_client("ledger"))

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def on(self, key: str) -> bool:
        """Whether ``FLAG`` is on for targeting key ``key`` (off when there are no flags)."""
        if self._client is None:
            return False
        from openfeature.evaluation_context import EvaluationContext

        return bool(self._client.get_boolean_value(FLAG, False, EvaluationContext(key)))

    def report(self) -> dict[str, object]:
        """``{FLAG: percent}`` as the flag file says it now (its ``metadata.percent``), for
        the version document; empty without flags."""
        if self._client is None:
            return {}
        details = self._client.get_boolean_details(FLAG, False)
        percent = (details.flag_metadata or {}).get("percent", 0)
        return {FLAG: percent}
