"""Every error the ledger raises: one root, one class per kind, each carrying its data."""

from __future__ import annotations

from enum import StrEnum
from http import HTTPStatus

__all__ = [
    "ApiError",
    "BadRequest",
    "ConfigurationError",
    "Conflict",
    "LedgerError",
    "MigrationFailed",
    "NotFound",
    "Outcome",
    "PlanError",
    "ServerError",
    "Unavailable",
    "Unprocessable",
]


class LedgerError(Exception):
    """Root of every error raised by the ledger app and its migrate tool."""


class ConfigurationError(LedgerError):
    """A command-line argument or environment variable has a value that cannot work."""

    def __init__(self, setting: str, value: object, expected: str) -> None:
        self.setting = setting
        self.value = value
        self.expected = expected
        super().__init__(f"{setting}={value!r}: expected {expected}")


class Outcome(StrEnum):
    """What a failed write did to the database, as far as the app knows."""

    #: The write was definitely not applied (rejected, or its transaction rolled back).
    NOT_APPLIED = "not_applied"
    #: The connection was lost while committing: the write may or may not be applied.
    UNKNOWN = "unknown"


class ApiError(LedgerError):
    """An HTTP request that gets an error answer; ``status`` is the HTTP status."""

    status = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str, *, outcome: Outcome = Outcome.NOT_APPLIED) -> None:
        self.message = message
        self.outcome = outcome
        super().__init__(message)

    def to_json(self, *, with_outcome: bool) -> dict[str, object]:
        """The response body: the message and, for a write, what happened to it."""
        if with_outcome:
            return {"error": self.message, "outcome": self.outcome.value}
        return {"error": self.message}


class BadRequest(ApiError):
    """The request is malformed: bad JSON, a missing or ill-typed field."""

    status = HTTPStatus.BAD_REQUEST


class NotFound(ApiError):
    """The route, account or transfer does not exist."""

    status = HTTPStatus.NOT_FOUND


class Conflict(ApiError):
    """The request is valid but the state forbids it (insufficient funds)."""

    status = HTTPStatus.CONFLICT


class Unprocessable(ApiError):
    """The request is well formed but not meaningful (currency mismatch, key reuse)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY


class Unavailable(ApiError):
    """The database cannot be reached, or did not answer in time."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class ServerError(ApiError):
    """The database rejected what this release's code did (e.g. a schema it does not fit)."""

    status = HTTPStatus.INTERNAL_SERVER_ERROR


class PlanError(LedgerError):
    """No migration plan leads from the database's state to the requested target.

    ``applied`` is the database's migration state, ``known`` the release's migration ids.
    """

    def __init__(
        self, message: str, *, applied: tuple[str, ...], known: tuple[str, ...], target: str
    ) -> None:
        self.applied = applied
        self.known = known
        self.target = target
        super().__init__(
            f"{message} (database: {list(applied) or 'none applied'}; "
            f"release knows: {list(known)}; target: {target})"
        )


class MigrationFailed(LedgerError):
    """A migration step failed; ``statement`` is the SQL that failed, when it was SQL."""

    def __init__(
        self, migration: str, direction: str, cause: str, *, statement: str | None = None
    ) -> None:
        self.migration = migration
        self.direction = direction
        self.cause = cause
        self.statement = statement
        where = f" at statement: {statement}" if statement else ""
        super().__init__(f"migration {migration} {direction} failed{where}: {cause}")
