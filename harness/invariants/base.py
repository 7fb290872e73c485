"""Invariants: checks after recovery over the database, the history and the running app.

An invariant is anything with a ``name`` and ``check(context) -> Verdict``; a verdict is
``valid``, ``invalid`` or ``unknown`` with evidence (counts, ids, a few example rows), plain
JSON. Checkers are set-based: the history is bulk-loaded (``COPY``) once into a temporary
table of the stack's database (:meth:`CheckContext.history_table`) and every checker joins
against it, never a query per operation.

An invariant that needs the state before the run (e.g. the money held before the workload
started) also has ``baseline(connection)``; the runner calls it before the workload starts
and hands the result back in :attr:`CheckContext.baselines`.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import psycopg
from psycopg import sql

from harness.errors import ChaosError
from harness.workload.history import (
    History,
    HistoryStats,
    JsonValue,
    Operation,
    history_stats,
)

if TYPE_CHECKING:
    from harness.report.outcome import EndState
    from harness.spec import Target

__all__ = [
    "HISTORY_TABLE",
    "AppEndpoint",
    "Baselined",
    "CheckContext",
    "Connection",
    "Invariant",
    "Status",
    "Verdict",
    "capture_baselines",
    "check_all",
    "load_history",
    "open_check_context",
]

#: The temporary table the history is loaded into (one row per completed operation).
HISTORY_TABLE = "chaos_history"

#: A connection to the stack's database (autocommit; the harness's own view, not the proxy).
Connection = psycopg.Connection[tuple[Any, ...]]

#: How many example rows evidence carries at most.
EXAMPLES = 5


class Status(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an invariant found, with the evidence for it."""

    status: Status
    evidence: Mapping[str, JsonValue] = field(default_factory=dict)

    @classmethod
    def valid(cls, **evidence: JsonValue) -> Verdict:
        return cls(Status.VALID, evidence)

    @classmethod
    def invalid(cls, **evidence: JsonValue) -> Verdict:
        return cls(Status.INVALID, evidence)

    @classmethod
    def unknown(cls, **evidence: JsonValue) -> Verdict:
        return cls(Status.UNKNOWN, evidence)

    def to_json(self) -> dict[str, JsonValue]:
        """``{"status": "valid"|"invalid"|"unknown", "evidence": {...}}``."""
        return {"status": self.status.value, "evidence": dict(self.evidence)}


@dataclass(frozen=True, slots=True)
class AppEndpoint:
    """A running app instance the checks may read through."""

    index: int
    release: str | None
    base_url: str


class _Session:
    """The mutable part of a check: one database connection, the history loaded lazily."""

    def __init__(self, database_url: str, history: History) -> None:
        self.database_url = database_url
        self.history = history
        self._conn: Connection | None = None
        self._loaded = False
        self._operations: list[Operation] | None = None
        self._stats: HistoryStats | None = None
        self.load_seconds = 0.0

    def connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.database_url,
                autocommit=True,
                application_name="deploy-chaos-check",
                connect_timeout=10,
            )
            self._conn.execute("SET work_mem = '256MB'")
            self._conn.execute("SET statement_timeout = '120s'")
        return self._conn

    def operations(self) -> list[Operation]:
        if self._operations is None:
            self._operations = self.history.operations()
        return self._operations

    def stats(self) -> HistoryStats:
        if self._stats is None:
            self._stats = history_stats(self.operations())
        return self._stats

    def history_table(self) -> str:
        if not self._loaded:
            started = time.perf_counter()
            load_history(self.connection(), self.operations())
            self.load_seconds = time.perf_counter() - started
            self._loaded = True
        return HISTORY_TABLE

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What an invariant may look at.

    ``database_url`` reaches the stack's database directly (superuser, not through the
    fault proxy); ``apps`` are the instances serving now; ``end_state`` is where the run
    ended (migrations and each instance's release, as the system reports them).
    """

    session: _Session
    target: Target | None = None
    end_state: EndState | None = None
    apps: tuple[AppEndpoint, ...] = ()
    baselines: Mapping[str, Mapping[str, JsonValue]] = field(default_factory=dict)
    http_timeout: float = 2.0
    seed: int = 0

    @property
    def history(self) -> History:
        return self.session.history

    def connection(self) -> Connection:
        return self.session.connection()

    def query(self, statement: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement and return its rows."""
        with self.connection().cursor() as cursor:
            cursor.execute(statement, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description is not None else []

    def history_table(self) -> str:
        """The history as a temporary table, loaded on first use (see :func:`load_history`)."""
        return self.session.history_table()

    def operations(self) -> list[Operation]:
        return self.session.operations()

    def stats(self) -> HistoryStats:
        return self.session.stats()


@contextmanager
def open_check_context(
    database_url: str,
    history: History,
    *,
    target: Target | None = None,
    end_state: EndState | None = None,
    apps: Sequence[AppEndpoint] = (),
    baselines: Mapping[str, Mapping[str, JsonValue]] | None = None,
    http_timeout: float = 2.0,
    seed: int = 0,
) -> Iterator[CheckContext]:
    """A :class:`CheckContext` whose connection is closed on exit."""
    session = _Session(database_url, history)
    try:
        yield CheckContext(
            session,
            target,
            end_state,
            tuple(apps),
            dict(baselines or {}),
            http_timeout,
            seed,
        )
    finally:
        session.close()


def load_history(conn: Connection, operations: Sequence[Operation]) -> None:
    """(Re)create the temporary history table and fill it with ``COPY`` in one stream.

    Columns: ``idx`` (the invoke's index), ``process``, ``f``, ``type`` (ok/fail/info),
    ``error_kind``, ``invoke_t``, ``complete_t``, ``value`` (jsonb: what was asked, then
    what the client was told).
    """
    import json

    table = sql.Identifier(HISTORY_TABLE)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(table))
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} (idx bigint, process bigint, f text, type text,"
            " error_kind text, invoke_t float8, complete_t float8, value jsonb)"
        ).format(table)
    )
    dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
    with (
        conn.cursor() as cursor,
        cursor.copy(sql.SQL("COPY {} FROM STDIN").format(table)) as copy,
    ):
        lines: list[str] = []
        for op in operations:
            kind = op.error_kind.value if op.error_kind is not None else "\\N"
            # COPY text format: backslash is the escape character; JSON with ensure_ascii
            # has no raw tab or newline, so doubling backslashes is all the escaping needed.
            value = dumps(op.value).replace("\\", "\\\\")
            lines.append(
                f"{op.index}\t{op.process}\t{_copy_text(op.f)}\t{op.type.value}\t{kind}\t"
                f"{op.invoke_time!r}\t{op.complete_time!r}\t{value}\n"
            )
            if len(lines) >= 20_000:
                copy.write("".join(lines))
                lines.clear()
        if lines:
            copy.write("".join(lines))
    conn.execute(sql.SQL("ANALYZE {}").format(table))


def _copy_text(text: str) -> str:
    if any(c in text for c in "\\\t\n\r"):
        return (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


class Invariant(Protocol):
    """A check after recovery; its name is the verdict's key in the run's outcome."""

    @property
    def name(self) -> str: ...

    def check(self, ctx: CheckContext) -> Verdict: ...


@runtime_checkable
class Baselined(Protocol):
    """An invariant that needs the state before the workload starts."""

    @property
    def name(self) -> str: ...

    def baseline(self, conn: Connection) -> Mapping[str, JsonValue]: ...


def capture_baselines(
    invariants: Sequence[Invariant], database_url: str
) -> tuple[dict[str, Mapping[str, JsonValue]], dict[str, str]]:
    """Baselines of the invariants that need one, and errors by invariant name."""
    wanted = [inv for inv in invariants if isinstance(inv, Baselined)]
    baselines: dict[str, Mapping[str, JsonValue]] = {}
    errors: dict[str, str] = {}
    if not wanted:
        return baselines, errors
    with psycopg.connect(
        database_url, autocommit=True, application_name="deploy-chaos-check", connect_timeout=10
    ) as conn:
        for inv in wanted:
            try:
                baselines[inv.name] = inv.baseline(conn)
            except (psycopg.Error, ChaosError, ValueError) as exc:
                errors[inv.name] = f"{type(exc).__name__}: {exc}".strip()
    return baselines, errors


def check_all(
    invariants: Sequence[Invariant],
    ctx: CheckContext,
    *,
    on_done: Callable[[str, Verdict, float], None] | None = None,
) -> dict[str, Verdict]:
    """Run every invariant; an invariant that errors gives ``unknown`` with the error."""
    verdicts: dict[str, Verdict] = {}
    for inv in invariants:
        started = time.perf_counter()
        try:
            verdict = inv.check(ctx)
        except (psycopg.Error, ChaosError, OSError, ValueError, LookupError) as exc:
            verdict = Verdict.unknown(error=f"{type(exc).__name__}: {exc}".strip()[:2000])
        seconds = time.perf_counter() - started
        verdicts[inv.name] = verdict
        if on_done is not None:
            on_done(inv.name, verdict, seconds)
    return verdicts
