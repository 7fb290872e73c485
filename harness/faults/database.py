"""Database faults: crash, pause, terminated connections, a held lock, a statement timeout."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from harness.deploy.plan import Plan
from harness.errors import NothingToActOn, SpecError
from harness.faults.base import FaultContext, FaultKind, Injected
from harness.workload.history import JsonValue

__all__ = ["DbCrash", "DbPause", "LockConflict", "StatementTimeout", "TerminateBackends"]


def _server(ctx: FaultContext, fault: str) -> dict[str, JsonValue]:
    """What a server fault acts on; NothingToActOn when the server is not running."""
    db = ctx.stack.database
    if not db.running:
        raise NothingToActOn(fault, f"the database server {db.name} is not running")
    acted: dict[str, JsonValue] = {"service": db.name}
    pid = getattr(db, "pid", None)
    if isinstance(pid, int):
        acted["postmaster_pid"] = pid
    return acted


def _check_duration(name: str, duration: float | None) -> None:
    if duration is not None and duration < 0:
        raise SpecError(f"fault {name}: duration {duration}", expected=">= 0 seconds, or none")


@dataclass(frozen=True, slots=True)
class DbCrash:
    """SIGKILL the database server (all its processes); heal restarts it: crash recovery."""

    duration: float | None = 1.0
    kind = FaultKind.DATABASE

    def __post_init__(self) -> None:
        _check_duration("db_crash", self.duration)

    @property
    def name(self) -> str:
        return "db_crash"

    def validate(self, plan: Plan, point_step: str | None) -> None:
        return None

    def inject(self, ctx: FaultContext) -> Injected:
        acted = _server(ctx, self.name)
        ctx.stack.database.kill()
        return Injected(acted)

    def heal(self, ctx: FaultContext, handle: Any) -> None:
        if not ctx.stack.database.running:
            ctx.stack.database.restart()


@dataclass(frozen=True, slots=True)
class DbPause:
    """SIGSTOP the database server's processes; heal sends SIGCONT."""

    duration: float | None = 2.0
    kind = FaultKind.DATABASE

    def __post_init__(self) -> None:
        _check_duration("db_pause", self.duration)

    @property
    def name(self) -> str:
        return "db_pause"

    def validate(self, plan: Plan, point_step: str | None) -> None:
        return None

    def inject(self, ctx: FaultContext) -> Injected:
        acted = _server(ctx, self.name)
        ctx.stack.database.pause()
        return Injected(acted)

    def heal(self, ctx: FaultContext, handle: Any) -> None:
        if ctx.stack.database.paused:
            ctx.stack.database.resume()


@dataclass(frozen=True, slots=True)
class TerminateBackends:
    """``pg_terminate_backend`` every client connection (whose application_name matches)."""

    application_name: str | None = None
    duration: float | None = 0.0
    kind = FaultKind.DATABASE

    def __post_init__(self) -> None:
        if self.application_name is not None:
            try:
                re.compile(self.application_name)
            except re.error as exc:
                raise SpecError(
                    f"fault terminate_backends: application_name {self.application_name!r} "
                    f"is not a regular expression ({exc})"
                ) from None

    @property
    def name(self) -> str:
        if self.application_name:
            return f"terminate_backends({self.application_name})"
        return "terminate_backends"

    def validate(self, plan: Plan, point_step: str | None) -> None:
        return None

    def inject(self, ctx: FaultContext) -> Injected:
        rows = ctx.stack.database.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend' AND application_name ~ %s",
            (self.application_name or "",),
        )
        terminated = int(rows[0][0])
        if terminated == 0:
            raise NothingToActOn(
                self.name,
                "no client connection to the database"
                + (
                    f" whose application_name matches {self.application_name!r}"
                    if self.application_name
                    else ""
                ),
            )
        return Injected({"connections_terminated": terminated})

    def heal(self, ctx: FaultContext, handle: Any) -> None:
        return None


class _LockHolder:
    """A connection holding a table lock in an open transaction until released."""

    def __init__(self, url: str, table: str, mode: str) -> None:
        self._conn = psycopg.connect(
            url, autocommit=False, connect_timeout=5, application_name="deploy-chaos-lock"
        )
        self._lock = threading.Lock()
        try:
            self._conn.execute(
                sql.SQL("LOCK TABLE {} IN {} MODE").format(sql.Identifier(table), sql.SQL(mode))
            )
        except BaseException:
            self._conn.close()
            raise

    def release(self) -> None:
        """Let go of the lock; a connection the server already dropped (a crash, a
        restore) holds nothing any more."""
        with self._lock:
            if not self._conn.closed:
                try:
                    self._conn.rollback()
                except psycopg.OperationalError:
                    pass
                finally:
                    self._conn.close()


_LOCK_MODES = (
    "ACCESS EXCLUSIVE",
    "EXCLUSIVE",
    "SHARE ROW EXCLUSIVE",
    "SHARE",
    "SHARE UPDATE EXCLUSIVE",
    "ROW EXCLUSIVE",
    "ROW SHARE",
    "ACCESS SHARE",
)


@dataclass(frozen=True, slots=True)
class LockConflict:
    """Hold a lock on ``table`` so a migration waits for it and hits its lock timeout."""

    table: str
    mode: str = "ACCESS SHARE"
    duration: float | None = None
    kind = FaultKind.DATABASE

    def __post_init__(self) -> None:
        _check_duration("lock", self.duration)
        if self.mode.upper() not in _LOCK_MODES:
            raise SpecError(f"fault lock({self.table}): mode {self.mode!r}", choices=_LOCK_MODES)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.table):
            raise SpecError(f"fault lock: table {self.table!r}", expected="a table name")

    @property
    def name(self) -> str:
        return f"lock({self.table})"

    def validate(self, plan: Plan, point_step: str | None) -> None:
        return None

    def inject(self, ctx: FaultContext) -> Injected:
        holder = _LockHolder(ctx.stack.database.url, self.table, self.mode.upper())
        return Injected({"table": self.table, "mode": self.mode.upper()}, holder)

    def heal(self, ctx: FaultContext, handle: Any) -> None:
        if isinstance(handle, _LockHolder):
            handle.release()


@dataclass(frozen=True, slots=True)
class StatementTimeout:
    """Set ``statement_timeout`` for new sessions of the database (a misconfiguration)."""

    timeout_ms: int = 50
    duration: float | None = None
    kind = FaultKind.DATABASE

    def __post_init__(self) -> None:
        _check_duration("statement_timeout", self.duration)
        if self.timeout_ms <= 0:
            raise SpecError(f"fault statement_timeout: {self.timeout_ms} ms", expected="> 0")

    @property
    def name(self) -> str:
        return f"statement_timeout({self.timeout_ms}ms)"

    def validate(self, plan: Plan, point_step: str | None) -> None:
        return None

    def _alter(self, ctx: FaultContext, value: str | None) -> None:
        db = sql.Identifier(ctx.stack.target.database)
        if value is None:
            stmt = sql.SQL("ALTER DATABASE {} RESET statement_timeout").format(db)
        else:
            stmt = sql.SQL("ALTER DATABASE {} SET statement_timeout = {}").format(
                db, sql.Literal(value)
            )
        ctx.stack.database.sql(stmt.as_string())

    def inject(self, ctx: FaultContext) -> Injected:
        self._alter(ctx, f"{self.timeout_ms}ms")
        return Injected(
            {"database": ctx.stack.target.database, "statement_timeout_ms": self.timeout_ms}
        )

    def heal(self, ctx: FaultContext, handle: Any) -> None:
        if ctx.stack.database.running:
            self._alter(ctx, None)
