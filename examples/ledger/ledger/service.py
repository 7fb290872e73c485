"""The ledger's operations over the database, one transaction each.

The HTTP layer (``ledger.app``) turns requests into calls here and exceptions into answers.
Every database error is mapped to an :class:`~ledger.errors.ApiError`: connection trouble to
``Unavailable`` (503) with the write's outcome (``unknown`` only when the connection was lost
while committing), anything else the database rejects to ``ServerError`` (500).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from ledger.db import POOL_WAIT, REQUEST_DEADLINE, deadline
from ledger.errors import (
    ApiError,
    Conflict,
    NotFound,
    Outcome,
    ServerError,
    Unavailable,
    Unprocessable,
)
from ledger.flags import Flags
from ledger.models import Account, Transfer
from ledger.releases import DEFAULT_CURRENCY, Bug, ReleaseName
from ledger.validation import NewAccount, NewDeposit, NewTransfer

__all__ = ["HEALTH_DEADLINE", "Ledger"]

#: Seconds /healthz waits for a pooled connection, then for ``SELECT 1``.
HEALTH_DEADLINE = 1.0

_T = TypeVar("_T")
_Conn = psycopg.Connection[Any]

_log = logging.getLogger("ledger.service")


class _KeyRace(Exception):
    """Another request inserted the same idempotency key first: look it up again."""


class Ledger:
    """Accounts and transfers for one release, over a connection pool."""

    def __init__(
        self,
        pool: ConnectionPool,
        release: ReleaseName,
        bug: Bug | None,
        flagged_bug: Bug | None = None,
        flags: Flags | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self._pool = pool
        self.release = release
        #: The release name the version document reports (a release of its own that runs
        #: this code, e.g. v1.0.1); the code release by default.
        self.name = name or release.value
        self.bug = bug
        #: A deliberate bug behind the flag ``new-transfers`` (on per transfer, see flags).
        self.flagged_bug = flagged_bug
        self.flags = flags or Flags(None)
        #: Deliberate bug ``no_reconnect``: set once a database connection was lost.
        self._lost_database = False
        currency = f", COALESCE(currency, '{DEFAULT_CURRENCY}')"
        extra = currency if release.multi_currency else ""
        self._account_columns = "id, owner, balance_cents" + extra
        self._transfer_columns = (
            "id, idempotency_key, from_account, to_account, amount_cents" + extra
        )

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _connection(self, wait: float, limit: float) -> Iterator[_Conn]:
        if self._lost_database:
            raise Unavailable("deliberate bug: lost its database connection, never reconnects")
        try:
            with self._pool.connection(timeout=wait) as conn, deadline(conn, limit):
                yield conn
        except (psycopg.OperationalError, PoolTimeout):
            if self.bug is Bug.NO_RECONNECT:
                self._lost_database = True
            raise

    def _read(self, work: Callable[[_Conn], _T]) -> _T:
        try:
            with self._connection(POOL_WAIT, REQUEST_DEADLINE) as conn:
                return work(conn)
        except ApiError:
            raise
        except psycopg.Error as exc:
            raise _map_error(exc, Outcome.NOT_APPLIED) from exc

    def _write(self, work: Callable[[_Conn], _T], *, money: bool) -> _T:
        """Run ``work`` in one transaction; ``money``: a deposit or transfer."""
        committing = False
        try:
            with self._connection(POOL_WAIT, REQUEST_DEADLINE) as conn:
                with conn.transaction() as tx:
                    result = work(conn)
                    if money and self.bug is Bug.ACK_BEFORE_COMMIT:
                        # Deliberate bug: the client is told 201, nothing is kept.
                        raise psycopg.Rollback(tx)
                    committing = True
                return result
        except ApiError:
            raise
        except pg_errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "transfers_idempotency_key_key":
                raise _KeyRace from exc
            raise _map_error(exc, Outcome.NOT_APPLIED) from exc
        except psycopg.Error as exc:
            # Lost while committing: the server may have committed before the link broke.
            lost_in_commit = committing and isinstance(exc, psycopg.OperationalError)
            outcome = Outcome.UNKNOWN if lost_in_commit else Outcome.NOT_APPLIED
            raise _map_error(exc, outcome) from exc

    # -- health and version -----------------------------------------------------------------

    def check_health(self) -> None:
        """Return when ``SELECT 1`` succeeds within about a second; Unavailable otherwise."""
        if self.bug is Bug.UNHEALTHY:
            raise Unavailable("deliberate bug: this release always fails its health check")
        try:
            with self._connection(HEALTH_DEADLINE, HEALTH_DEADLINE) as conn:
                conn.execute("SELECT 1")
        except PoolTimeout:
            raise Unavailable(f"no database connection within {HEALTH_DEADLINE}s") from None
        except psycopg.Error as exc:
            raise Unavailable(f"database check failed: {_describe(exc)}") from exc

    def applied_migrations(self) -> list[str] | None:
        """The migration ids applied in the database; None when it cannot be read."""
        try:
            with self._connection(HEALTH_DEADLINE, HEALTH_DEADLINE) as conn:
                rows = conn.execute("SELECT id FROM schema_migrations ORDER BY id").fetchall()
        except pg_errors.UndefinedTable:
            return []
        except psycopg.Error as exc:
            _log.warning("cannot read the migration state: %s", _describe(exc))
            return None
        return [str(row[0]) for row in rows]

    # -- accounts ---------------------------------------------------------------------------

    def create_account(self, request: NewAccount) -> Account:
        """Open an account with a zero balance."""

        def work(conn: _Conn) -> Account:
            if self.release.multi_currency:
                row = conn.execute(
                    "INSERT INTO accounts (owner, currency) VALUES (%s, %s)"
                    f" RETURNING {self._account_columns}",
                    (request.owner, request.currency),
                ).fetchone()
            else:
                row = conn.execute(
                    f"INSERT INTO accounts (owner) VALUES (%s) RETURNING {self._account_columns}",
                    (request.owner,),
                ).fetchone()
            assert row is not None
            return Account(*row)

        return self._write(work, money=False)

    def get_account(self, account_id: int) -> Account:
        """The account, or NotFound."""

        def work(conn: _Conn) -> Account:
            row = conn.execute(
                f"SELECT {self._account_columns} FROM accounts WHERE id = %s", (account_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"account {account_id} does not exist")
            return Account(*row)

        return self._read(work)

    # -- transfers --------------------------------------------------------------------------

    def get_transfer(self, transfer_id: int) -> Transfer:
        """The transfer, or NotFound."""

        def work(conn: _Conn) -> Transfer:
            row = conn.execute(
                f"SELECT {self._transfer_columns} FROM transfers WHERE id = %s", (transfer_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"transfer {transfer_id} does not exist")
            return Transfer(*row)

        return self._read(work)

    def find_transfer(self, idempotency_key: str) -> Transfer:
        """The transfer recorded under an idempotency key, or NotFound."""

        def work(conn: _Conn) -> Transfer:
            transfer = self._by_key(conn, idempotency_key)
            if transfer is None:
                raise NotFound(f"no transfer has idempotency key {idempotency_key!r}")
            return transfer

        return self._read(work)

    def deposit(self, request: NewDeposit) -> tuple[Transfer, bool]:
        """Money in from outside; returns the transfer and whether it was created now."""
        return self._move(
            None,
            request.account_id,
            request.amount_cents,
            request.idempotency_key,
            request.currency,
        )

    def transfer(self, request: NewTransfer) -> tuple[Transfer, bool]:
        """Money between two accounts; returns the transfer and whether it was created now."""
        if self.bug is Bug.FAIL_TRANSFERS:
            raise ServerError("deliberate bug: transfers fail in this release")
        if self.flagged_bug is Bug.FAIL_TRANSFERS and self.flags.on(request.idempotency_key):
            raise ServerError("deliberate bug behind the flag new-transfers: this transfer fails")
        return self._move(
            request.from_account,
            request.to_account,
            request.amount_cents,
            request.idempotency_key,
            None,
        )

    def _move(
        self,
        source: int | None,
        destination: int,
        amount: int,
        key: str,
        currency: str | None,
    ) -> tuple[Transfer, bool]:
        def work(conn: _Conn) -> tuple[Transfer, bool]:
            return self._apply(conn, source, destination, amount, key, currency)

        try:
            return self._write(work, money=True)
        except _KeyRace:
            # The key was inserted concurrently by another request: this one is a replay.
            return self._write(work, money=True)

    def _apply(
        self,
        conn: _Conn,
        source: int | None,
        destination: int,
        amount: int,
        key: str,
        currency: str | None,
    ) -> tuple[Transfer, bool]:
        existing = self._by_key(conn, key)
        if existing is not None:
            return self._replay(conn, existing, source, destination, amount)
        accounts = self._lock(conn, [i for i in (source, destination) if i is not None])
        # A request with the same key may have committed while this one waited for the locks.
        existing = self._by_key(conn, key)
        if existing is not None:
            return self._replay(conn, existing, source, destination, amount)
        for account_id in (source, destination):
            if account_id is not None and account_id not in accounts:
                raise NotFound(f"account {account_id} does not exist")
        to = accounts[destination]
        if self.release.multi_currency:
            if source is not None and accounts[source].currency != to.currency:
                raise Unprocessable(
                    f"currency mismatch: account {source} holds {accounts[source].currency},"
                    f" account {destination} holds {to.currency}"
                )
            if currency is not None and currency != to.currency:
                raise Unprocessable(
                    f"currency mismatch: deposit in {currency},"
                    f" account {destination} holds {to.currency}"
                )
        self._shift(conn, accounts, source, destination, amount, lose_cent=self._loses_cent(source))
        columns = "idempotency_key, from_account, to_account, amount_cents"
        values: tuple[object, ...] = (key, source, destination, amount)
        if self.release.multi_currency:
            columns += ", currency"
            values = (*values, to.currency)
        placeholders = ", ".join(["%s"] * len(values))
        row = conn.execute(
            f"INSERT INTO transfers ({columns}) VALUES ({placeholders})"
            f" RETURNING {self._transfer_columns}",
            values,
        ).fetchone()
        assert row is not None
        return Transfer(*row), True

    def _replay(
        self, conn: _Conn, existing: Transfer, source: int | None, destination: int, amount: int
    ) -> tuple[Transfer, bool]:
        if (existing.from_account, existing.to_account, existing.amount_cents) != (
            source,
            destination,
            amount,
        ):
            raise Unprocessable(
                f"idempotency key {existing.idempotency_key!r} was already used for transfer"
                f" {existing.id} with different parameters"
            )
        if self.bug is Bug.DOUBLE_APPLY:
            # Deliberate bug: the replay moves the money a second time.
            accounts = self._lock(conn, [i for i in (source, destination) if i is not None])
            self._shift(conn, accounts, source, destination, amount)
            return existing, True
        return existing, False

    def _loses_cent(self, source: int | None) -> bool:
        # Deliberate bug: a transfer between accounts credits one cent less than it debits.
        return self.bug is Bug.LOSE_CENT and source is not None

    def _by_key(self, conn: _Conn, key: str) -> Transfer | None:
        row = conn.execute(
            f"SELECT {self._transfer_columns} FROM transfers WHERE idempotency_key = %s", (key,)
        ).fetchone()
        return Transfer(*row) if row is not None else None

    def _lock(self, conn: _Conn, ids: Sequence[int]) -> dict[int, Account]:
        """Lock the accounts in id order (so two transfers never deadlock) and read them."""
        rows = conn.execute(
            f"SELECT {self._account_columns} FROM accounts WHERE id = ANY(%s)"
            " ORDER BY id FOR UPDATE",
            (sorted(set(ids)),),
        ).fetchall()
        return {row[0]: Account(*row) for row in rows}

    @staticmethod
    def _shift(
        conn: _Conn,
        accounts: dict[int, Account],
        source: int | None,
        destination: int,
        amount: int,
        *,
        lose_cent: bool = False,
    ) -> None:
        if source is not None:
            balance = accounts[source].balance_cents
            if balance < amount:
                raise Conflict(
                    f"insufficient funds: account {source} has {balance} cents,"
                    f" the transfer needs {amount}"
                )
            conn.execute(
                "UPDATE accounts SET balance_cents = balance_cents - %s WHERE id = %s",
                (amount, source),
            )
        conn.execute(
            "UPDATE accounts SET balance_cents = balance_cents + %s WHERE id = %s",
            (amount - 1 if lose_cent else amount, destination),
        )


def _describe(exc: BaseException) -> str:
    """A one-line description of a database error."""
    primary = getattr(getattr(exc, "diag", None), "message_primary", None)
    if not primary:
        lines = str(exc).strip().splitlines()
        primary = lines[0] if lines else "no message"
    return f"{type(exc).__name__}: {primary}"


def _map_error(exc: psycopg.Error, outcome: Outcome) -> ApiError:
    if isinstance(exc, PoolTimeout):
        return Unavailable(f"no database connection within {POOL_WAIT}s", outcome=outcome)
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return Unavailable(f"database unavailable: {_describe(exc)}", outcome=outcome)
    if isinstance(exc, pg_errors.NumericValueOutOfRange):
        return Unprocessable(f"amount out of range: {_describe(exc)}", outcome=outcome)
    _log.error("the database rejected a statement: %s", _describe(exc))
    return ServerError(f"database error: {_describe(exc)}", outcome=outcome)
