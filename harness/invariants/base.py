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
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import psycopg
from psycopg import sql

from harness.errors import ChaosError
from harness.workload.history import (
    ErrorKind,
    History,
    HistoryStats,
    JsonValue,
    Op,
    Operation,
    OpType,
    Scalar,
    UnavailableWindow,
    Value,
    iter_pairs,
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
    "FaultWindow",
    "FieldsByOp",
    "HistoryFields",
    "Invariant",
    "RunFacts",
    "Status",
    "Verdict",
    "capture_baselines",
    "check_all",
    "field_column",
    "load_history",
    "open_check_context",
    "table_stats",
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


FieldsByOp = Mapping[str, Collection[str]]


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """When a fault was acting (history time; ``end`` None: until the run ended), and on
    which instances (None: the whole stack, e.g. the database or the network)."""

    fault: str
    start: float
    end: float | None
    instances: tuple[int, ...] | None = None

    def covers(self, t: float, instance: int | None) -> bool:
        """Whether an operation sent at ``t`` to ``instance`` ran under this fault."""
        if t < self.start or (self.end is not None and t > self.end):
            return False
        return self.instances is None or instance is None or instance in self.instances


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What the run did, for the verdicts on what clients got: the phases in order (their
    names as the history's operations carry them), the fault windows, the step each phase
    followed (``soak``: ``recovery``), and the strategy."""

    phases: tuple[str, ...] = ()
    faults: tuple[FaultWindow, ...] = ()
    strategy: str | None = None
    detected_at: str | None = None
    #: When the workload stopped (``time.monotonic()``): a settle window counts from here.
    traffic_ended: float | None = None

    def settle_left(self, window: float) -> float:
        """What is left of a ``window`` (seconds) that started when the traffic stopped."""
        if self.traffic_ended is None:
            return window
        return max(0.0, window - (time.monotonic() - self.traffic_ended))


class _Session:
    """The mutable part of a check: one database connection, the history loaded lazily."""

    def __init__(self, database_url: str, history: History) -> None:
        self.database_url = database_url
        self.history = history
        self._conn: Connection | None = None
        self._wanted: dict[str, set[str]] = {}
        self._loaded: dict[str, set[str]] | None = None
        self._operations: list[Operation] | None = None
        self._stats: HistoryStats | None = None
        self._summaries: dict[tuple[tuple[str, ...], str], str] = {}
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
            self._conn.execute("SET jit = off")  # compiling costs more than it saves here
            # Temporary tables are analysed by the checks; a small sample is plenty.
            self._conn.execute("SET default_statistics_target = 10")
        return self._conn

    def want(self, fields: FieldsByOp) -> None:
        for f, names in fields.items():
            self._wanted.setdefault(f, set()).update(names)

    def operations(self) -> list[Operation]:
        if self._operations is None:
            self._operations = self.history.operations()
        return self._operations

    def history_table(self, fields: FieldsByOp | None) -> str:
        if fields:
            self.want(fields)
        loaded = self._loaded
        if loaded is None or any(
            not names <= loaded.get(f, set()) for f, names in self._wanted.items()
        ):
            started = time.perf_counter()
            load_history(self.connection(), self.history.ops, self._wanted)
            self.load_seconds += time.perf_counter() - started
            self._loaded = {f: set(names) for f, names in self._wanted.items()}
            self._stats = None
            self._summaries.clear()
        return HISTORY_TABLE

    def key_summary(self, ops: Sequence[str], field: str) -> str:
        key = (tuple(sorted(set(ops))), field)
        name = self._summaries.get(key)
        if name is None:
            history = self.history_table({op: {field} for op in ops})
            name = f"chaos_keys_{len(self._summaries)}"
            column = sql.Identifier(field_column(field))
            conn = self.connection()
            conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE {name} AS SELECT {column} AS key,"
                    " bool_or(type = 'ok') AS ok, bool_or(type = 'info') AS info,"
                    " min(idx) AS first, count(*) AS n FROM {history}"
                    " WHERE f = ANY({ops}) AND {column} IS NOT NULL GROUP BY 1"
                ).format(
                    name=sql.Identifier(name),
                    column=column,
                    history=sql.Identifier(history),
                    ops=sql.Literal(list(key[0])),
                )
            )
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))
            self._summaries[key] = name
        return name

    def stats(self) -> HistoryStats:
        if self._stats is None:
            self.history_table(None)
            self._stats = table_stats(self.connection())
        return self._stats

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
    run: RunFacts | None = None

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

    def history_table(self, fields: FieldsByOp | None = None) -> str:
        """The history as a temporary table (see :func:`load_history`), loaded on first use
        with the value ``fields`` of each operation that the checks asked for."""
        return self.session.history_table(fields)

    def key_summary(self, ops: Sequence[str], field: str) -> sql.Identifier:
        """A temporary table with one row per distinct key (value field ``field``) of the
        operations ``ops``: ``key``, ``ok`` (any of them acknowledged), ``info`` (any
        unknown), ``first`` (the first invoke's index), ``n`` (how many); built once."""
        return sql.Identifier(self.session.key_summary(ops, field))

    @staticmethod
    def field(name: str) -> sql.Identifier:
        """The history table's column holding value field ``name`` (text)."""
        return sql.Identifier(field_column(name))

    def operations(self) -> list[Operation]:
        """The paired history in Python (for checks that cannot be set-based)."""
        return self.session.operations()

    def stats(self) -> HistoryStats:
        """Counts, error rate and longest unavailable window, computed in the database."""
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
    run: RunFacts | None = None,
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
            run,
        )
    finally:
        session.close()


def field_column(name: str) -> str:
    """The name of the history table's column for value field ``name``."""
    return f"v:{name}"


_TYPES = {OpType.OK: "ok", OpType.FAIL: "fail", OpType.INFO: "info"}
_KINDS: dict[ErrorKind | None, str] = {None: "\\N", **{k: k.value for k in ErrorKind}}


def _copy_text(text: str) -> str:
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


def _scalar_text(value: Scalar) -> str:
    if type(value) is str:
        return _copy_text(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    return repr(value) if isinstance(value, float) else str(value)


def load_history(conn: Connection, ops: Iterable[Op], fields: FieldsByOp) -> None:
    """(Re)create the temporary history table and fill it with one ``COPY`` stream.

    One row per operation (an invoke paired with its completion, in one pass, as
    :func:`~harness.workload.history.pair_operations` pairs them): ``idx`` (the invoke's
    index), ``process``, ``f``, ``type`` (ok/fail/info), ``error_kind``, ``invoke_t``,
    ``complete_t``, then one text column per value field named in ``fields`` (operation
    name -> the fields its checks need; the completion's value wins over the invoke's),
    named by :func:`field_column`. Booleans are ``true``/``false``.
    """
    names = sorted({name for wanted in fields.values() for name in wanted})
    table = sql.Identifier(HISTORY_TABLE)
    columns = sql.SQL("").join(
        sql.SQL(", {} text").format(sql.Identifier(field_column(n))) for n in names
    )
    conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(table))
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} (idx bigint, process bigint, f text, type text,"
            " error_kind text, invoke_t float8, complete_t float8{})"
        ).format(table, columns)
    )
    # Per operation name: its escaped name, then per column the field to read (or None).
    layouts: dict[str, tuple[str, tuple[str | None, ...]]] = {}
    for f in fields:
        wanted = set(fields[f])
        layouts[f] = (_copy_text(f), tuple(n if n in wanted else None for n in names))
    blank: tuple[str | None, ...] = (None,) * len(names)
    lines: list[str] = []
    info_kind = ErrorKind.INDETERMINATE.value

    def line(invoke: Op, type_: str, kind: str, end: float, done: Value) -> str:
        layout = layouts.get(invoke.f)
        if layout is None:
            layout = layouts[invoke.f] = (_copy_text(invoke.f), blank)
        name, columns = layout
        cells = [
            f"{invoke.index}\t{invoke.process}\t{name}\t{type_}\t{kind}\t{invoke.time!r}\t{end!r}"
        ]
        asked = invoke.value
        for column in columns:
            if column is None:
                cells.append("\\N")
                continue
            item = done.get(column)
            if item is None:
                item = asked.get(column)
            if item is None:
                cells.append("\\N")
            elif type(item) is str:
                cells.append(_copy_text(item))
            else:
                cells.append(_scalar_text(item))
        return "\t".join(cells)

    with (
        conn.cursor() as cursor,
        cursor.copy(sql.SQL("COPY {} FROM STDIN").format(table)) as copy,
    ):
        for invoke, done in iter_pairs(ops):
            if done is None:  # never completed: unknown
                lines.append(line(invoke, "info", info_kind, invoke.time, {}))
            else:
                kind = _KINDS[done.error_kind]
                lines.append(line(invoke, _TYPES[done.type], kind, done.time, done.value))
            if len(lines) >= 20_000:
                lines.append("")
                copy.write("\n".join(lines))
                lines.clear()
        if lines:
            lines.append("")
            copy.write("\n".join(lines))
    conn.execute(sql.SQL("ANALYZE {}").format(table))


def table_stats(conn: Connection) -> HistoryStats:
    """:func:`~harness.workload.history.history_stats`, computed on the history table."""
    table = sql.Identifier(HISTORY_TABLE)
    counts = {
        (str(f), OpType(kind)): int(n)
        for f, kind, n in conn.execute(
            sql.SQL("SELECT f, type, count(*) FROM {} GROUP BY 1, 2").format(table)
        ).fetchall()
    }
    # One sort. k counts the served completions so far (a served one included): the failing
    # operations with k = n and the served completion numbered n + 1 form one group, the
    # window from the latest of their earliest invoke and served completion n to n + 1.
    first, last, errors = conn.execute(
        sql.SQL(
            "SELECT min(invoke_t), max(complete_t), count(*) FILTER (WHERE type = 'info'"
            " OR (type = 'fail' AND coalesce(error_kind, '') <> 'rejected')) FROM {table}"
            " WHERE coalesce(error_kind, '') <> 'stopped'"
        ).format(table=table)
    ).fetchone() or (None, None, 0)
    row = conn.execute(
        sql.SQL(
            "SELECT start, stop FROM (SELECT greatest(min(invoke_t) FILTER (WHERE err),"
            "   coalesce(max(prev) FILTER (WHERE err), %(first)s)) AS start,"
            " coalesce(min(complete_t) FILTER (WHERE NOT err), %(last)s) AS stop"
            " FROM (SELECT invoke_t, complete_t, err,"
            "   CASE WHEN err THEN k ELSE k - 1 END AS g, prev FROM"
            "   (SELECT invoke_t, complete_t, err,"
            "     count(*) FILTER (WHERE NOT err) OVER w AS k,"
            "     max(complete_t) FILTER (WHERE NOT err) OVER w AS prev,"
            "     lag(err) OVER w AS after_err"
            "     FROM (SELECT idx, invoke_t, complete_t, (type = 'info' OR (type = 'fail'"
            "       AND coalesce(error_kind, '') <> 'rejected')) AS err FROM {table}"
            "       WHERE coalesce(error_kind, '') <> 'stopped') e"
            "     WINDOW w AS (ORDER BY complete_t, idx ROWS UNBOUNDED PRECEDING)) n"
            "   WHERE err OR after_err) x"
            " GROUP BY g HAVING bool_or(err)) windows ORDER BY stop - start DESC, start LIMIT 1"
        ).format(table=table),
        {"first": first, "last": last},
    ).fetchone()
    start, stop = row if row is not None else (None, None)
    row = (first, last, errors, start, stop)
    assert row is not None
    first, last, errors, start, stop = row
    window = None if start is None else UnavailableWindow(float(start), float(stop))
    duration = 0.0 if first is None else float(last) - float(first)
    return HistoryStats(counts, int(errors or 0), duration, window)


class Invariant(Protocol):
    """A check after recovery; its name is the verdict's key in the run's outcome."""

    @property
    def name(self) -> str: ...

    def check(self, ctx: CheckContext) -> Verdict: ...


@runtime_checkable
class HistoryFields(Protocol):
    """An invariant that reads value fields from the history table."""

    def history_fields(self) -> FieldsByOp:
        """Operation name -> the value fields its checks read."""


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
    for inv in invariants:  # one load of the history for every checker
        if isinstance(inv, HistoryFields):
            ctx.session.want(inv.history_fields())
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
