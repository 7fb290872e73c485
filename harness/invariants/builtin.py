"""The built-in invariants, and the declarations a Target gives them.

A Target says what its writes mean, generically (nothing here knows any app):

- :class:`Write`: operation ``op`` leaves a row in ``table`` whose ``column`` equals the
  value field ``field`` of the operation (e.g. an idempotency key, or the id it was told);
- :class:`IdempotentWrite`: operations keyed by a value field that must take effect once;
- :class:`Flow`: an operation that brings an amount into (or out of) a group;
- :class:`Relation`: child.column must reference an existing parent.parent_column;
- :class:`MigrationProbe`: a query saying which fraction of a migration's effects exist
  (for :class:`SchemaCompatible`);
- :class:`ReadBack`: how to re-read an acknowledged entity through the app's HTTP API.

Every checker that needs the history joins against the temporary history table (loaded once
with ``COPY``); ``info`` operations are never counted as lost and never as proof of presence.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from harness._wait import wait_for
from harness.errors import SpecError, WaitTimeout, WorkloadRequestFailed
from harness.invariants.base import EXAMPLES, AppEndpoint, CheckContext, Connection, Verdict
from harness.workload.history import JsonValue, Operation, OpType, Scalar

if TYPE_CHECKING:
    from harness.workload.model import Answer

__all__ = [
    "VALUE_TYPES",
    "Availability",
    "CallableInvariant",
    "Conservation",
    "DurableAcknowledgedWrites",
    "Flow",
    "IdempotentWrite",
    "MigrationProbe",
    "NoDuplicateEffects",
    "ReadBack",
    "ReadableByRunningRelease",
    "ReferentialIntegrity",
    "Relation",
    "SchemaCompatible",
    "SqlInvariant",
    "Write",
    "row_counts",
    "same_value",
]


def _identifier(name: str, what: str) -> sql.Identifier:
    """``table`` or ``schema.table`` as a quoted identifier."""
    parts = name.split(".")
    if not name or len(parts) > 2 or not all(parts):
        raise SpecError(f"{what} {name!r}", expected="a name like table or schema.table")
    return sql.Identifier(*parts)


def _require(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{what} {value!r}", expected="a non-empty string")


def _json_number(value: Any) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, int | float):
        return value
    return float(value)


def _fields(pairs: Iterable[tuple[str, tuple[str, ...]]]) -> dict[str, set[str]]:
    merged: dict[str, set[str]] = {}
    for op, names in pairs:
        merged.setdefault(op, set()).update(names)
    return merged


def _unique(ctx: CheckContext, table: str, column: str) -> bool:
    """Whether ``table.column`` alone has a unique index (no partial one)."""
    name = _identifier(table, "table").as_string(ctx.connection())
    rows = ctx.query(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a"
        " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        " WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indnkeyatts = 1"
        " AND i.indpred IS NULL AND a.attname = %s)",
        (name, column),
    )
    return bool(rows[0][0])


def _error(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return f"{type(exc).__name__}: {primary or str(exc).strip()}"[:500]


# -- durable_acknowledged_writes -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Write:
    """An acknowledged ``op`` leaves a row in ``table`` with ``column`` = value[``field``]."""

    op: str
    table: str
    column: str
    field: str

    def __post_init__(self) -> None:
        for name in ("op", "table", "column", "field"):
            _require(getattr(self, name), f"write {name}")
        _identifier(self.table, "write table")


#: Nobody but the checker is connected to the database, and no prepared transaction waits:
#: nothing can still commit a missing write, so the settle window ends at once.
_QUIET = (
    "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
    " AND backend_type = 'client backend' AND pid <> pg_backend_pid())"
    " AND NOT EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE database = current_database())"
)


def _settle_window(value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 600:
        raise SpecError(f"{what} settle_s {value!r}", expected="seconds in 0..600")


def _window(ctx: CheckContext, settle_s: float) -> float:
    """The settle window left: ``settle_s`` counts from when the run's traffic stopped (the
    checks before took part of it); a little is always left for one more look."""
    left = ctx.run.settle_left(settle_s) if ctx.run is not None else settle_s
    return max(left, 0.01)


def _count(entry: Mapping[str, JsonValue], key: str) -> int:
    value = entry.get(key)
    return int(value) if isinstance(value, int | float) else 0


@dataclass(slots=True)
class _Missing:
    """The acknowledged keys of one write group absent at the first look, while settling."""

    entry: dict[str, JsonValue]
    table: sql.Identifier
    column: sql.Identifier
    keys: list[str]
    looked_at: float
    remaining: set[str] = field(default_factory=set)
    appeared: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DurableAcknowledgedWrites:
    """Every ``ok`` write is present; a write that only ever ``fail``-ed is absent.

    Per key (replays of a key count once): ``ok`` if any of its operations was acknowledged,
    else ``info`` if any ended unknown (present or absent, both fine), else ``fail``.

    Settled: acknowledged keys absent at the first look are looked for again (only those,
    one query per write group) until ``settle_s`` seconds after the run's traffic stopped
    (the checks before this one used part of it; one more look at least). A key that appears
    meanwhile is ``late`` (acknowledged before it was durable; evidence says how long after
    the first look it appeared) and does not make the verdict invalid; one still absent is ``lost``
    (invalid). The window ends early once every missing key appeared, or when no other
    session is connected to the database (nothing can still commit one). Nothing missing at
    the first look: no second look, no wait. ``settle_s`` 0: no second look.
    """

    writes: tuple[Write, ...]
    name: str = "durable_acknowledged_writes"
    settle_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.writes:
            raise SpecError(f"{self.name}: declares no writes")
        _settle_window(self.settle_s, self.name)

    def history_fields(self) -> dict[str, set[str]]:
        return _fields((w.op, (w.field,)) for w in self.writes)

    def check(self, ctx: CheckContext) -> Verdict:
        table = ctx.history_table(self.history_fields())
        groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        for write in self.writes:
            groups[(write.table, write.column, write.field)].append(write.op)
        results: list[dict[str, JsonValue]] = []
        missing: list[_Missing] = []
        for (target_table, column, value_field), ops in groups.items():
            entry, absent = self._group(ctx, table, target_table, column, value_field, ops)
            results.append(entry)
            if absent is not None:
                missing.append(absent)
        settle = self._settle(ctx, missing) if missing and self.settle_s > 0 else {}
        lost = phantom = acknowledged = late = 0
        late_examples: list[JsonValue] = []
        unreadable = False
        for item in missing:
            still = [k for k in item.keys if k not in item.appeared]
            came = sorted(item.appeared.items(), key=lambda kv: (kv[1], kv[0]))
            item.entry.update(
                lost=len(still),
                lost_examples=still[:EXAMPLES],
                late=len(came),
                late_examples=[{"key": k, "after_s": round(s, 3)} for k, s in came[:EXAMPLES]],
            )
            for key, seconds in came[: max(0, EXAMPLES - len(late_examples))]:
                late_examples.append(
                    {"table": item.entry["table"], "key": key, "after_s": round(seconds, 3)}
                )
        for entry in results:
            lost += _count(entry, "lost")
            late += _count(entry, "late")
            phantom += _count(entry, "failed_but_present")
            acknowledged += _count(entry, "acknowledged")
            unreadable = unreadable or "error" in entry
        evidence: dict[str, JsonValue] = {
            "acknowledged": acknowledged,
            #: Acknowledged writes this verdict found damaged (lost), for the exposure.
            "damaged": lost,
            "lost": lost,
            "late": late,
            "late_examples": late_examples,
            "failed_but_present": phantom,
            "settle_s": self.settle_s,
            **settle,
            "writes": list[JsonValue](results),
        }
        if lost or phantom:
            return Verdict.invalid(**evidence)
        if unreadable or acknowledged == 0:
            return Verdict.unknown(**evidence)
        return Verdict.valid(**evidence)

    def _settle(self, ctx: CheckContext, missing: list[_Missing]) -> dict[str, JsonValue]:
        """Look for the missing keys again until they all appear, nobody else is connected,
        or ``settle_s`` after the traffic stopped passes (at least one look); record when
        each appeared."""
        started = time.monotonic()
        window = _window(ctx, self.settle_s)
        for item in missing:
            item.remaining = set(item.keys)
        ended = "window passed"

        def look() -> bool:
            nonlocal ended
            quiet = bool(ctx.query(_QUIET)[0][0])  # asked first: a commit before it is seen
            for item in missing:
                if not item.remaining:
                    continue
                rows = ctx.query(
                    sql.SQL(
                        "SELECT DISTINCT {col}::text FROM {table} WHERE {col}::text = ANY(%s)"
                    ).format(col=item.column, table=item.table),
                    (sorted(item.remaining),),
                )
                now = time.monotonic()
                for (key,) in rows:
                    if key in item.remaining:
                        item.remaining.discard(key)
                        item.appeared[key] = now - item.looked_at
            if not any(item.remaining for item in missing):
                ended = "every missing write appeared"
                return True
            if quiet:
                ended = "no other session is connected: nothing can still commit"
                return True
            return False

        try:
            wait_for(
                look,
                what="acknowledged writes missing at the first look",
                timeout=window,
                interval=0.05,
                max_interval=0.25,
            )
        except WaitTimeout:
            pass
        except psycopg.Error as exc:
            ended = f"stopped looking: {_error(exc)}"
        return {"settle_waited_s": round(time.monotonic() - started, 3), "settle_ended": ended}

    def _group(
        self,
        ctx: CheckContext,
        history: str,
        target_table: str,
        column: str,
        value_field: str,
        ops: list[str],
    ) -> tuple[dict[str, JsonValue], _Missing | None]:
        summary = ctx.key_summary(ops, value_field)
        entry: dict[str, JsonValue] = {
            "ops": list(ops),
            "table": target_table,
            "column": column,
            "field": value_field,
        }
        table = _identifier(target_table, "write table")
        col = sql.Identifier(column)
        try:
            unique = _unique(ctx, target_table, column)
        except psycopg.Error:
            unique = False
        # With a unique index the table joins directly; otherwise its distinct keys do.
        keys = (
            sql.SQL("(SELECT {col}::text AS key FROM {table})")
            if unique
            else sql.SQL("(SELECT DISTINCT {col}::text AS key FROM {table})")
        ).format(col=col, table=table)
        query = sql.SQL(
            "WITH c AS (SELECT h.*, t.key IS NOT NULL AS present"
            "   FROM {summary} h LEFT JOIN {keys} t ON t.key = h.key)"
            " SELECT count(*) FILTER (WHERE ok),"
            "  count(*) FILTER (WHERE ok AND NOT present),"
            "  count(*) FILTER (WHERE NOT ok AND NOT info),"
            "  count(*) FILTER (WHERE NOT ok AND NOT info AND present),"
            "  count(*) FILTER (WHERE NOT ok AND info),"
            "  count(*) FILTER (WHERE NOT ok AND info AND present),"
            "  array_agg(key ORDER BY first) FILTER (WHERE ok AND NOT present),"
            "  (array_agg(key ORDER BY first)"
            "     FILTER (WHERE NOT ok AND NOT info AND present))[1:%(n)s]"
            " FROM c"
        ).format(summary=summary, keys=keys)
        looked_at = time.monotonic()
        try:
            row = ctx.query(query, {"n": EXAMPLES})[0]
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
            # The table or column is gone (a down migration dropped it): every acknowledged
            # write of this group is lost, and there is no way to look for failed ones.
            counts = ctx.query(
                sql.SQL(
                    "SELECT count(*) FILTER (WHERE ok),"
                    " (array_agg(key ORDER BY first) FILTER (WHERE ok))[1:%(n)s] FROM {summary}"
                ).format(summary=summary),
                {"n": EXAMPLES},
            )[0]
            entry.update(
                error=_error(exc),
                acknowledged=int(counts[0]),
                lost=int(counts[0]),
                lost_examples=list(counts[1] or []),
            )
            return entry, None
        absent = [str(k) for k in row[6] or []]
        entry.update(
            acknowledged=int(row[0]),
            lost=int(row[1]),
            lost_examples=absent[:EXAMPLES],
            failed=int(row[2]),
            failed_but_present=int(row[3]),
            failed_present_examples=list(row[7] or []),
            unknown=int(row[4]),
            unknown_present=int(row[5]),
        )
        if not absent:
            return entry, None
        return entry, _Missing(entry, table, col, absent, looked_at)


# -- no_duplicate_effects ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdempotentWrite:
    """Operations ``ops`` carry an idempotency key in value[``field``]; it takes effect once.

    ``table``/``column``: where each effect leaves a row keyed by it (more than one row for
    a key is a duplicate effect; leave None when the schema makes that impossible).
    ``applied_field``: a boolean field of an ``ok`` value saying the app applied the
    operation now (not as a replay); more than one such answer for a key is a duplicate.
    """

    ops: tuple[str, ...]
    field: str
    table: str | None = None
    column: str | None = None
    applied_field: str | None = None

    def __post_init__(self) -> None:
        if not self.ops:
            raise SpecError("idempotent write: no ops")
        _require(self.field, "idempotent write field")
        if (self.table is None) != (self.column is None):
            raise SpecError("idempotent write: give both table and column, or neither")
        if self.table is not None:
            _identifier(self.table, "idempotent write table")
        if self.table is None and self.applied_field is None:
            raise SpecError(
                "idempotent write: nothing to check", expected="a table/column or applied_field"
            )


@dataclass(frozen=True, slots=True)
class NoDuplicateEffects:
    """An idempotency key takes effect at most once (in the database, and as answered)."""

    keys: tuple[IdempotentWrite, ...]
    name: str = "no_duplicate_effects"

    def __post_init__(self) -> None:
        if not self.keys:
            raise SpecError(f"{self.name}: declares no idempotent writes")

    def history_fields(self) -> dict[str, set[str]]:
        return _fields(
            (op, (k.field,) + ((k.applied_field,) if k.applied_field else ()))
            for k in self.keys
            for op in k.ops
        )

    def check(self, ctx: CheckContext) -> Verdict:
        history = sql.Identifier(ctx.history_table(self.history_fields()))
        checked = duplicated = applied_twice = 0
        entries: list[JsonValue] = []
        for spec in self.keys:
            entry: dict[str, JsonValue] = {"ops": list(spec.ops), "field": spec.field}
            summary = ctx.key_summary(spec.ops, spec.field)
            n_keys = int(ctx.query(sql.SQL("SELECT count(*) FROM {}").format(summary))[0][0])
            entry["keys"] = n_keys
            checked += n_keys
            if spec.table is not None and spec.column is not None:
                if _unique(ctx, spec.table, spec.column):
                    rows = []  # a unique index: the database cannot hold a key twice
                    entry["unique_index"] = True
                else:
                    rows = ctx.query(
                        sql.SQL(
                            "SELECT t.{column}::text AS key, count(*) AS n FROM {table} t"
                            " WHERE EXISTS (SELECT 1 FROM {summary} h"
                            "   WHERE h.key = t.{column}::text)"
                            " GROUP BY 1 HAVING count(*) > 1 ORDER BY 2 DESC, 1"
                        ).format(
                            column=sql.Identifier(spec.column),
                            table=_identifier(spec.table, "table"),
                            summary=summary,
                        )
                    )
                duplicated += len(rows)
                entry["table"] = spec.table
                entry["duplicated_keys"] = len(rows)
                entry["duplicated_examples"] = [
                    {"key": k, "rows": int(n)} for k, n in rows[:EXAMPLES]
                ]
            if spec.applied_field is not None:
                # Answered "applied now" more than once; when the effects leave rows, only
                # keys that did take effect count (an acknowledged write that was never
                # kept is durable_acknowledged_writes' finding, not a duplicate).
                kept: sql.Composable = sql.SQL("")
                if spec.table is not None and spec.column is not None:
                    kept = sql.SQL(" AND key IN (SELECT t.{column}::text FROM {table} t)").format(
                        column=sql.Identifier(spec.column), table=_identifier(spec.table, "table")
                    )
                rows = ctx.query(
                    sql.SQL(
                        "SELECT key, n, idx FROM (SELECT {field} AS key, count(*) AS n,"
                        " array_agg(idx ORDER BY idx) AS idx FROM {history}"
                        " WHERE f = ANY(%(ops)s) AND type = 'ok' AND {applied} = 'true'"
                        " GROUP BY 1 HAVING count(*) > 1) d WHERE true{kept} ORDER BY idx[1]"
                    ).format(
                        field=ctx.field(spec.field),
                        applied=ctx.field(spec.applied_field),
                        history=history,
                        kept=kept,
                    ),
                    {"ops": list(spec.ops)},
                )
                applied_twice += len(rows)
                entry["applied_more_than_once"] = len(rows)
                entry["applied_examples"] = [
                    {"key": k, "times": int(n), "ops": [int(i) for i in idx][:EXAMPLES]}
                    for k, n, idx in rows[:EXAMPLES]
                ]
            entries.append(entry)
        evidence: dict[str, JsonValue] = {
            "damaged": duplicated + applied_twice,
            "keys": checked,
            "duplicated_keys": duplicated,
            "applied_more_than_once": applied_twice,
            "writes": entries,
        }
        if duplicated or applied_twice:
            return Verdict.invalid(**evidence)
        if checked == 0:
            return Verdict.unknown(**evidence)
        return Verdict.valid(**evidence)


# -- conservation --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flow:
    """Operation ``op`` moves value[``amount_field``] into its group (``sign`` -1: out of it).

    ``group_field`` names the group (e.g. a currency; None: one group), or ``group`` names
    it outright (a table, for row counts); ``key_field`` an idempotency key, so that replays
    of a key count once (None: every operation counts). ``amount_field`` None: each
    operation moves one (a row created), so a Conservation over ``count(*)`` says rows only
    grow by what was acknowledged (see :func:`row_counts`).
    """

    op: str
    amount_field: str | None
    group_field: str | None = None
    key_field: str | None = None
    sign: int = 1
    group: str | None = None

    def __post_init__(self) -> None:
        _require(self.op, "flow op")
        if self.amount_field is not None:
            _require(self.amount_field, "flow amount_field")
        if self.sign not in (1, -1):
            raise SpecError(f"flow {self.op}: sign {self.sign}", expected="1 or -1")
        if self.group is not None and self.group_field is not None:
            raise SpecError(f"flow {self.op}: give group or group_field, not both")


#: The group name of flows without a group field, and of totals rows without a group.
ALL = "all"

#: At most this many unknown flows per group are fetched for the exact check, and at most
#: ``_EXACT_MAX_TOTALS`` distinct totals of their subsets are enumerated; beyond either the
#: check falls back to the range (evidence ``exact: false``).
_EXACT_UNKNOWN_LIMIT = 64
_EXACT_MAX_TOTALS = 1 << 16


def _integers(*values: int | float) -> bool:
    return all(isinstance(v, int) for v in values)


def _subset_sums(amounts: Sequence[int | float]) -> set[int | float] | None:
    """Every total a subset of ``amounts`` adds up to; None if there are too many."""
    totals: set[int | float] = {0}
    for amount in amounts:
        totals |= {total + amount for total in totals}
        if len(totals) > _EXACT_MAX_TOTALS:
            return None
    return totals


@dataclass(frozen=True, slots=True)
class Conservation:
    """What is held per group equals what it held before plus the acknowledged flows.

    ``totals_sql`` returns rows ``(group, total)``: what is held now. Its result before the
    workload starts is the baseline. The expected total of a group lies between
    baseline + acknowledged flows and that plus the unknown (``info``) flows, whichever sign
    they have: an ``info`` flow may or may not have happened. When the amounts are integers
    (cents, units) and the unknown flows few, the check is exact: what is held must be the
    expected total plus the amounts of *some subset* of the unknown flows, so a few cents
    lost among large unknown transfers are still found.
    """

    totals_sql: str
    flows: tuple[Flow, ...]
    name: str = "conservation"

    def __post_init__(self) -> None:
        _require(self.totals_sql, "conservation totals_sql")
        if not self.flows:
            raise SpecError(f"{self.name}: declares no flows")

    def _totals(self, conn: Connection) -> dict[str, int | float]:
        totals: dict[str, int | float] = {}
        with conn.cursor() as cursor:
            cursor.execute(self.totals_sql)
            for row in cursor.fetchall():
                group = ALL if len(row) < 2 or row[0] is None else str(row[0])
                amount = _json_number(row[-1]) or 0
                totals[group] = totals.get(group, 0) + amount
        return totals

    def baseline(self, conn: Connection) -> Mapping[str, JsonValue]:
        return dict(self._totals(conn))

    def history_fields(self) -> dict[str, set[str]]:
        return _fields(
            (f.op, tuple(x for x in (f.amount_field, f.group_field, f.key_field) if x))
            for f in self.flows
        )

    def check(self, ctx: CheckContext) -> Verdict:
        baseline = ctx.baselines.get(self.name)
        if baseline is None:
            return Verdict.unknown(reason="no baseline was taken before the workload started")
        history = sql.Identifier(ctx.history_table(self.history_fields()))
        parts = []
        params: dict[str, Any] = {}
        for i, flow in enumerate(self.flows):
            group: sql.Composable = (
                sql.SQL("coalesce({f}, {all})").format(
                    f=ctx.field(flow.group_field), all=sql.Literal(ALL)
                )
                if flow.group_field
                else sql.Literal(flow.group or ALL)
            )
            amount: sql.Composable = (
                ctx.field(flow.amount_field) if flow.amount_field else sql.SQL("1")
            )
            key = (
                sql.SQL("coalesce({k}, 'op-' || idx)").format(k=ctx.field(flow.key_field))
                if flow.key_field
                else sql.SQL("'op-' || idx")
            )
            parts.append(
                sql.SQL(
                    "SELECT {group} AS grp, {i}::text || ':' || {key} AS key, {key} AS op,"
                    " {sign} * {amount}::numeric AS amount, type"
                    " FROM {history} WHERE f = %(op{i})s AND {amount} IS NOT NULL"
                ).format(
                    group=group,
                    key=key,
                    i=sql.Literal(i),
                    sign=sql.Literal(flow.sign),
                    amount=amount,
                    history=history,
                )
            )
            params[f"op{i}"] = flow.op
        # k: one row per flow of an operation (replays of a key once); u: the net amount
        # each unknown operation would add to a group (a transfer within a group: 0).
        query = sql.SQL(
            "WITH ops AS ({union}),"
            " k AS (SELECT grp, key, op, bool_or(type = 'ok') AS ok,"
            "   bool_or(type = 'info') AS info,"
            "   max(amount) FILTER (WHERE type = 'ok') AS ok_amount,"
            "   max(amount) FILTER (WHERE type = 'info') AS info_amount"
            "   FROM ops GROUP BY grp, key, op),"
            " t AS (SELECT grp, coalesce(sum(ok_amount) FILTER (WHERE ok), 0) AS ok_sum,"
            "  coalesce(sum(least(info_amount, 0)) FILTER (WHERE NOT ok AND info), 0) AS low,"
            "  coalesce(sum(greatest(info_amount, 0)) FILTER (WHERE NOT ok AND info), 0) AS high,"
            "  count(*) FILTER (WHERE ok) AS n_ok,"
            "  count(*) FILTER (WHERE NOT ok AND info) AS n_info FROM k GROUP BY grp),"
            " u AS (SELECT grp, op, sum(info_amount) AS amount FROM k"
            "   WHERE NOT ok AND info GROUP BY grp, op),"
            " n AS (SELECT grp, count(*) AS n_net,"
            "   (array_agg(amount ORDER BY op))[1:{limit}] AS amounts"
            "   FROM u WHERE amount <> 0 GROUP BY grp)"
            " SELECT t.grp, ok_sum, low, high, n_ok, n_info, coalesce(n_net, 0), amounts"
            " FROM t LEFT JOIN n USING (grp) ORDER BY t.grp"
        ).format(union=sql.SQL(" UNION ALL ").join(parts), limit=sql.Literal(_EXACT_UNKNOWN_LIMIT))
        flows: dict[str, tuple[int | float, int | float, int | float, int, int]] = {}
        unknown_amounts: dict[str, list[int | float] | None] = {}
        for grp, ok_sum, low, high, n_ok, n_info, n_net, amounts in ctx.query(query, params):
            flows[str(grp)] = (
                _json_number(ok_sum) or 0,
                _json_number(low) or 0,
                _json_number(high) or 0,
                int(n_ok),
                int(n_info),
            )
            net = [_json_number(a) or 0 for a in amounts or ()]
            unknown_amounts[str(grp)] = net if len(net) == int(n_net) else None
        try:
            now = self._totals(ctx.connection())
        except psycopg.Error as exc:
            return Verdict.unknown(
                error=_error(exc),
                reason="the totals query fails on the database as it ended",
                baseline=dict(baseline),
            )
        groups: list[JsonValue] = []
        violations: list[str] = []
        for grp in sorted(set(baseline) | set(flows) | set(now)):
            base_raw = baseline.get(grp, 0)
            base = base_raw if isinstance(base_raw, int | float) else 0
            ok_sum, low, high, n_ok, n_info = flows.get(grp, (0, 0, 0, 0, 0))
            held = now.get(grp, 0)
            expected_min = base + ok_sum + low
            expected_max = base + ok_sum + high
            holds = expected_min <= held <= expected_max
            off = held - expected_max if held > expected_max else held - expected_min
            amounts = unknown_amounts.get(grp, [])
            reachable = (
                _subset_sums(amounts)
                if amounts is not None and _integers(base, ok_sum, held, *amounts)
                else None
            )
            if reachable is not None:
                # Exact: held - expected must be what some subset of the unknown flows adds.
                rest = held - base - ok_sum
                closest = min(reachable, key=lambda total: (abs(rest - total), total))
                holds = rest == closest
                off = rest - closest
            if not holds:
                violations.append(grp)
            groups.append(
                {
                    "group": grp,
                    "held": held,
                    "baseline": base,
                    "acknowledged": ok_sum,
                    "acknowledged_ops": n_ok,
                    "unknown_ops": n_info,
                    "unknown_amounts": list(amounts[:10]) if amounts is not None else None,
                    "expected_min": expected_min,
                    "expected_max": expected_max,
                    "exact": reachable is not None,
                    "difference": 0 if holds else off,
                }
            )
        evidence: dict[str, JsonValue] = {
            "violations": list(violations),
            "groups": groups,
            # A broken sum says at least one write went wrong, not which: one per group.
            "damaged": len(violations),
        }
        if violations:
            return Verdict.invalid(**evidence)
        return Verdict.valid(**evidence)


_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def row_counts(
    creates: Mapping[str, Sequence[str]],
    deletes: Mapping[str, Sequence[str]] | None = None,
    *,
    key_fields: Mapping[str, str] | None = None,
    name: str = "row_counts",
) -> Conservation:
    """Rows only grow by what was acknowledged: a :class:`Conservation` of ``count(*)`` per
    table, where each acknowledged operation of ``creates[table]`` adds one row and each of
    ``deletes[table]`` removes one (an unknown one may have or not). ``key_fields``: op ->
    its idempotency key field, so that replays of a key count once."""
    if not creates:
        raise SpecError(f"{name}: no tables")
    keys = dict(key_fields or {})
    selects: list[str] = []
    flows: list[Flow] = []
    for table in sorted(set(creates) | set(deletes or {})):
        if not _TABLE.match(table):
            raise SpecError(f"{name}: table {table!r}", expected="a table name (schema.table)")
        quoted = ".".join(f'"{part}"' for part in table.split("."))
        selects.append(f"SELECT '{table}', count(*) FROM {quoted}")
        for sign, ops in ((1, creates.get(table, ())), (-1, (deletes or {}).get(table, ()))):
            flows.extend(
                Flow(op, None, key_field=keys.get(op), sign=sign, group=table) for op in ops
            )
    return Conservation(" UNION ALL ".join(selects), tuple(flows), name=name)


# -- referential_integrity -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Relation:
    """Every non-null ``child.column`` must match a ``parent.parent_column`` (FK or not)."""

    child: str
    column: str
    parent: str
    parent_column: str = "id"

    def __post_init__(self) -> None:
        for name in ("child", "column", "parent", "parent_column"):
            _require(getattr(self, name), f"relation {name}")
        _identifier(self.child, "relation child")
        _identifier(self.parent, "relation parent")

    @property
    def label(self) -> str:
        return f"{self.child}.{self.column} -> {self.parent}.{self.parent_column}"


@dataclass(frozen=True, slots=True)
class ReferentialIntegrity:
    """Declared relations have no orphans (one anti-join per relation)."""

    relations: tuple[Relation, ...]
    name: str = "referential_integrity"

    def __post_init__(self) -> None:
        if not self.relations:
            raise SpecError(f"{self.name}: declares no relations")

    def check(self, ctx: CheckContext) -> Verdict:
        entries: list[JsonValue] = []
        orphans = 0
        errors = 0
        for rel in self.relations:
            query = sql.SQL(
                "SELECT count(*), (array_agg(c.{col}::text ORDER BY c.{col}))[1:%(n)s]"
                " FROM {child} c WHERE c.{col} IS NOT NULL AND NOT EXISTS"
                " (SELECT 1 FROM {parent} p WHERE p.{pcol} = c.{col})"
            ).format(
                col=sql.Identifier(rel.column),
                child=_identifier(rel.child, "child"),
                parent=_identifier(rel.parent, "parent"),
                pcol=sql.Identifier(rel.parent_column),
            )
            try:
                count, examples = ctx.query(query, {"n": EXAMPLES})[0]
            except psycopg.Error as exc:
                errors += 1
                entries.append({"relation": rel.label, "error": _error(exc)})
                continue
            orphans += int(count)
            entries.append(
                {"relation": rel.label, "orphans": int(count), "examples": list(examples or [])}
            )
        evidence: dict[str, JsonValue] = {"orphans": orphans, "relations": entries}
        if orphans:
            return Verdict.invalid(**evidence)
        if errors:
            return Verdict.unknown(**evidence)
        return Verdict.valid(**evidence)


# -- schema_matches_release ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MigrationProbe:
    """``sql`` returns one number in [0, 1]: the fraction of ``migration``'s effects present
    in the schema (0: none, 1: all). Recorded but not 1, or unrecorded but above 0, is a
    half-applied migration."""

    migration: str
    sql: str

    def __post_init__(self) -> None:
        _require(self.migration, "probe migration")
        _require(self.sql, "probe sql")


@dataclass(frozen=True, slots=True)
class SchemaCompatible:
    """Nothing is half-applied, and every running release is on a schema it works on.

    A release works on its own migrations (or its expand migrations while its contract
    waits), on the states it ``accepts``, and on either followed by later migrations that
    their own release declares ``compatible_migrations`` (expand steps: a nullable column,
    an index). So a halted expand is compatible, not harmful; whether an old release
    actually breaks on a state is ``no_regression``'s judgement. ``invalid``: a half-applied
    migration (a probe), or a running release on a schema it does not accept. ``unknown``,
    naming the part: an instance that runs but cannot say its release, a release the target
    does not declare, a probe that could not run, no instance running.
    """

    probes: tuple[MigrationProbe, ...] = ()
    name: str = "schema_compatible"

    def check(self, ctx: CheckContext) -> Verdict:
        target = ctx.target
        if target is None:
            return Verdict.unknown(reason="no target to compare with")
        try:
            applied = [str(r[0]) for r in ctx.query(target.applied_migrations_sql)]
        except psycopg.errors.UndefinedTable:
            applied = []
        except psycopg.Error as exc:
            return Verdict.unknown(error=_error(exc), reason="cannot read the migration state")
        instances: list[JsonValue] = []
        incompatible = 0
        unjudged: list[JsonValue] = []
        running = [
            i for i in (ctx.end_state.instances if ctx.end_state is not None else ()) if i.running
        ]
        for state in running:
            if state.release is None:
                unjudged.append(f"instance {state.index}: it runs, but did not say its release")
                instances.append({"index": state.index, "release": None, "judged": False})
                continue
            try:
                release = target.release(state.release)
            except SpecError:
                unjudged.append(
                    f"instance {state.index}: release {state.release!r} is not the target's"
                )
                instances.append({"index": state.index, "release": state.release, "known": False})
                continue
            ok = target.accepts(release, applied)
            incompatible += not ok
            instances.append(
                {
                    "index": state.index,
                    "release": release.name,
                    "own_migrations": list(release.migrations),
                    "compatible": ok,
                }
            )
        probes: list[JsonValue] = []
        half = 0
        for probe in self.probes:
            recorded = probe.migration in applied
            try:
                rows = ctx.query(probe.sql)
                present = float(rows[0][0]) if rows and rows[0][0] is not None else 0.0
            except psycopg.Error as exc:
                probes.append({"migration": probe.migration, "error": _error(exc)})
                unjudged.append(f"probe of {probe.migration}: {_error(exc)}")
                continue
            broken = (recorded and present < 1.0) or (not recorded and present > 0.0)
            half += broken
            probes.append(
                {
                    "migration": probe.migration,
                    "recorded": recorded,
                    "present": round(present, 4),
                    "half_applied": broken,
                }
            )
        evidence: dict[str, JsonValue] = {
            "applied": list(applied),
            "later_compatible": sorted(
                {m for r in target.releases for m in r.compatible_migrations}
            ),
            "instances": instances,
            "probes": probes,
            "incompatible_instances": incompatible,
            "half_applied": half,
            "unjudged": unjudged,
        }
        if incompatible or half:
            return Verdict.invalid(**evidence)
        if not running:
            return Verdict.unknown(reason="no instance is running", **evidence)
        if unjudged:
            return Verdict.unknown(**evidence)
        return Verdict.valid(**evidence)


# -- readable_by_running_release -----------------------------------------------------------


#: The types a read-back compares by meaning (see :class:`ReadBack`).
VALUE_TYPES = ("timestamp", "decimal", "text")


def _as_timestamp(value: JsonValue) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _as_decimal(value: JsonValue) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        return None


def same_value(kind: str | None, told: JsonValue, read: JsonValue) -> bool:
    """Whether ``read`` means what ``told`` meant, as a ``kind`` (see :data:`VALUE_TYPES`;
    None: equal as JSON). A timestamp is the same instant (``...Z`` is ``+00:00``; one
    without a zone is UTC), a decimal the same number (``"12.50"`` is ``12.5``), text the
    same string (``7`` is ``"7"``). A value that does not parse as its type is compared as
    JSON."""
    if told == read:
        return True
    if kind == "timestamp":
        a, b = _as_timestamp(told), _as_timestamp(read)
        return a is not None and a == b
    if kind == "decimal":
        x, y = _as_decimal(told), _as_decimal(read)
        return x is not None and x == y
    if kind == "text":
        return told is not None and read is not None and str(told) == str(read)
    return False


@dataclass(frozen=True, slots=True)
class ReadBack:
    """Re-read an acknowledged ``op`` through the app: GET ``path`` (filled from its ``ok``
    value, e.g. ``/accounts/{id}``) and compare ``fields`` with what the client was told.

    ``absent_means``: the value a field has when the answer lacks it (e.g. a release that
    has no currency means the default one). A field the client was never told is skipped.

    ``updates``: operations that change the entity later (an order paid, a note published),
    their ``path`` filled from their own values. The last state a client was told wins (an
    acknowledged update's told fields over the create's); an entity with an update of
    unknown outcome (``info``), or two acknowledged updates that overlapped in time, is
    unjudged (counted, not read), never wrong.

    ``types``: field -> how to compare it (``timestamp``, ``decimal``, ``text``; see
    :func:`same_value`); ``normalise``: ``(field, value) -> value``, applied to what was told
    and what is read before they are compared (a hook for an app's own rendering).
    """

    op: str
    path: str
    fields: tuple[str, ...]
    absent_means: Mapping[str, Scalar] = field(default_factory=dict)
    updates: tuple[str, ...] = ()
    types: Mapping[str, str] = field(default_factory=dict)
    normalise: Callable[[str, JsonValue], JsonValue] | None = None

    def __post_init__(self) -> None:
        _require(self.op, "read-back op")
        if not self.path.startswith("/"):
            raise SpecError(f"read-back {self.op}: path {self.path!r}", expected="/path/{field}")
        if not self.fields:
            raise SpecError(f"read-back {self.op}: no fields to compare")
        object.__setattr__(self, "absent_means", dict(self.absent_means))
        object.__setattr__(self, "updates", tuple(self.updates))
        for op in self.updates:
            _require(op, f"read-back {self.op}: update op")
        types = dict(self.types)
        for name, kind in types.items():
            if kind not in VALUE_TYPES:
                raise SpecError(
                    f"read-back {self.op}: type of {name!r} is {kind!r}", choices=VALUE_TYPES
                )
        object.__setattr__(self, "types", types)
        if self.normalise is not None and not callable(self.normalise):
            raise SpecError(f"read-back {self.op}: normalise", expected="(field, value) -> value")

    def same(self, name: str, told: JsonValue, read: JsonValue) -> bool:
        """Whether field ``name`` read back as ``read`` means what was told."""
        if self.normalise is not None:
            told, read = self.normalise(name, told), self.normalise(name, read)
        return same_value(self.types.get(name), told, read)

    def entities(
        self, operations: Iterable[Operation]
    ) -> tuple[dict[str, Mapping[str, Scalar]], list[dict[str, JsonValue]]]:
        """The entities to read back (path -> the values the client was last told) and the
        unjudged ones (an update of unknown outcome, or acknowledged updates that
        overlapped)."""
        from harness.workload.model import fill_path

        created: dict[str, Operation] = {}
        changes: dict[str, list[Operation]] = defaultdict(list)
        updates = set(self.updates)
        for op in operations:
            if op.f == self.op and op.type is OpType.OK:
                try:
                    created[fill_path(self.path, op.value)] = op
                except SpecError:
                    continue
            elif op.f in updates and op.type in (OpType.OK, OpType.INFO):
                try:
                    changes[fill_path(self.path, op.value)].append(op)
                except SpecError:
                    continue
        told: dict[str, Mapping[str, Scalar]] = {}
        unjudged: list[dict[str, JsonValue]] = []
        for path, create in created.items():
            value: dict[str, Scalar] = dict(create.value)
            later = sorted(changes.get(path, ()), key=lambda o: o.invoke_time)
            unknown = next((o for o in later if o.type is OpType.INFO), None)
            acked = [o for o in later if o.type is OpType.OK]
            overlap = next(
                (
                    b
                    for a, b in itertools.pairwise(acked)
                    if b.invoke_time < a.complete_time
                ),
                None,
            )
            if unknown is not None or overlap is not None:
                why = unknown or overlap
                assert why is not None
                unjudged.append(
                    {
                        "op": self.op,
                        "path": path,
                        "update": why.f,
                        "reason": "an update of unknown outcome"
                        if unknown
                        else "acknowledged updates overlapped",
                    }
                )
                continue
            for change in sorted(acked, key=lambda o: o.complete_time):
                value.update({k: v for k, v in change.value.items() if k in self.fields})
            told[path] = value
        return told, unjudged


#: Read-backs in flight at once (each is one HTTP request to an instance).
_READ_BACK_THREADS = 4
#: A 503 says "not now" (an instance whose pooled connection still points at a database
#: that crashed), not "not like this": retried a few times, then the read is counted as
#: unavailable (unjudged), never as a wrong read. Any other non-2xx answer is unreadable.
_UNAVAILABLE = 503
_UNAVAILABLE_ATTEMPTS = 3
_UNAVAILABLE_PAUSE = 0.2


@dataclass(slots=True)
class _Read:
    """One read-back of one entity through one instance, as judged by its last answer."""

    spec: ReadBack
    path: str
    app: AppEndpoint
    told: Mapping[str, Scalar]
    #: ok, mismatch, unreadable, unreachable (no answer) or unavailable (503 after retries)
    kind: str = "ok"
    #: The mismatched fields or the error answer (evidence examples).
    findings: list[dict[str, JsonValue]] = field(default_factory=list)
    read_at: float = 0.0
    #: Seconds after the first read that a re-read matched (a late read), else None.
    late_after: float | None = None

    def judge(self, answer: Answer | None) -> tuple[str, list[dict[str, JsonValue]]]:
        if answer is None:
            return "unreachable", []
        if answer.status == _UNAVAILABLE:
            return "unavailable", []  # "not now" (after retries): not a wrong read
        where: dict[str, JsonValue] = {
            "op": self.spec.op,
            "path": self.path,
            "instance": self.app.index,
            "release": self.app.release,
        }
        if not 200 <= answer.status < 300:
            return "unreadable", [{**where, "status": answer.status, "answer": answer.text[:300]}]
        findings: list[dict[str, JsonValue]] = []
        for name in self.spec.fields:
            if name not in self.told:
                continue
            read = answer.body.get(name, self.spec.absent_means.get(name))
            if self.spec.same(name, self.told[name], read):
                continue
            findings.append(
                {
                    **where,
                    "field": name,
                    "told": self.told[name],
                    "read": read if name in answer.body else None,
                    "absent": name not in answer.body,
                }
            )
        return ("mismatch" if findings else "ok"), findings


@dataclass(frozen=True, slots=True)
class ReadableByRunningRelease:
    """Every acknowledged entity (a seeded sample of ``sample`` per read-back) reads back
    through each running instance with the values the client was told.

    Settled: a read that mismatched or was answered with an error is read again (only
    those, through the same instance) until ``settle_s`` seconds after the run's traffic
    stopped (at least once); one that matches on a
    re-read is ``late`` (evidence says how long after the first read) and does not make the
    verdict invalid; one that still mismatches or errs counts, as its last answer says (a
    re-read that got no answer, or only 503s, keeps the earlier finding). ``settle_s`` 0: no
    re-read.
    """

    reads: tuple[ReadBack, ...]
    sample: int = 100
    name: str = "readable_by_running_release"
    settle_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.reads:
            raise SpecError(f"{self.name}: declares no read-backs")
        if self.sample < 1:
            raise SpecError(f"{self.name}: sample {self.sample}", expected=">= 1")
        _settle_window(self.settle_s, self.name)

    def check(self, ctx: CheckContext) -> Verdict:
        from harness.workload.client import HttpClient

        apps = ctx.apps
        if not apps:
            return Verdict.unknown(reason="no app instance is running")
        client = HttpClient(ctx.http_timeout)
        rng = random.Random(ctx.seed)
        gave_up: set[int] = set()

        def fetch(read: _Read) -> tuple[Answer | None, float]:
            app = read.app
            answer: Answer | None = None
            for attempt in range(1, _UNAVAILABLE_ATTEMPTS + 1):
                try:
                    answer = client.get(app.base_url, read.path)
                except WorkloadRequestFailed:
                    return None, time.monotonic()
                if answer.status != _UNAVAILABLE or app.index in gave_up:
                    return answer, time.monotonic()
                if attempt < _UNAVAILABLE_ATTEMPTS:
                    time.sleep(_UNAVAILABLE_PAUSE * attempt)
            gave_up.add(app.index)  # still "not now": no more waiting on this instance
            return answer, time.monotonic()

        entities = 0
        every: list[_Read] = []
        unjudged: list[dict[str, JsonValue]] = []
        for spec in self.reads:
            latest, left = spec.entities(ctx.operations())
            unjudged.extend(left)
            paths = sorted(latest)
            chosen = rng.sample(paths, min(self.sample, len(paths)))
            entities += len(chosen)
            every.extend(_Read(spec, path, app, latest[path]) for path in chosen for app in apps)

        # Read-backs are independent: a few at a time (the evidence keeps their order).
        with ThreadPoolExecutor(max_workers=_READ_BACK_THREADS) as pool:
            for read, (answer, at) in zip(every, pool.map(fetch, every), strict=True):
                read.kind, read.findings = read.judge(answer)
                read.read_at = at
            settle = self._settle(pool, fetch, every, _window(ctx, self.settle_s))

        mismatches: Counter[str] = Counter()
        by_instance: Counter[str] = Counter()
        examples: list[JsonValue] = []
        kinds = Counter(read.kind for read in every)
        late: list[_Read] = []
        for read in every:
            if read.late_after is not None:
                late.append(read)
            if read.kind not in ("mismatch", "unreadable"):
                continue
            where = f"{read.app.index}:{read.app.release}"
            for finding in read.findings:
                if read.kind == "mismatch":
                    mismatches[str(finding["field"])] += 1
                by_instance[where] += 1
                if len(examples) < EXAMPLES:
                    examples.append(finding)
        late.sort(key=lambda r: r.late_after or 0.0)
        wrong = {read.path for read in every if read.kind in ("mismatch", "unreadable")}
        evidence: dict[str, JsonValue] = {
            "damaged": len(wrong),
            "entities": entities,
            "reads": len(every),
            "mismatches": sum(mismatches.values()),
            "by_field": dict(mismatches),
            "unreadable": kinds["unreadable"],
            "unreachable": kinds["unreachable"],
            "unavailable": kinds["unavailable"],
            "by_instance": dict(by_instance),
            "examples": examples,
            "late": len(late),
            "late_examples": [
                {
                    "op": r.spec.op,
                    "path": r.path,
                    "instance": r.app.index,
                    "release": r.app.release,
                    "after_s": round(r.late_after or 0.0, 3),
                }
                for r in late[:EXAMPLES]
            ],
            "settle_s": self.settle_s,
            **settle,
        }
        if unjudged:
            evidence["unjudged"] = len(unjudged)
            evidence["unjudged_examples"] = list(unjudged[:EXAMPLES])
        if mismatches or kinds["unreadable"]:
            return Verdict.invalid(**evidence)
        if entities == 0 or len(every) == kinds["unreachable"] + kinds["unavailable"]:
            return Verdict.unknown(**evidence)
        return Verdict.valid(**evidence)

    def _settle(
        self,
        pool: ThreadPoolExecutor,
        fetch: Callable[[_Read], tuple[Answer | None, float]],
        every: Sequence[_Read],
        window: float,
    ) -> dict[str, JsonValue]:
        """Re-read the mismatched and error-answered reads until each matches or ``window``
        passes, at least once (a re-read without an answer keeps the earlier finding)."""
        pending = [r for r in every if r.kind in ("mismatch", "unreadable")]
        if not pending or self.settle_s <= 0:
            return {}
        started = time.monotonic()

        def again() -> bool:
            answers = list(pool.map(fetch, pending))
            for read, (answer, at) in zip(list(pending), answers, strict=True):
                kind, findings = read.judge(answer)
                if kind == "ok":
                    read.kind, read.findings = kind, []
                    read.late_after = at - read.read_at
                    pending.remove(read)
                elif kind in ("mismatch", "unreadable"):
                    read.kind, read.findings = kind, findings
            return not pending

        with contextlib.suppress(WaitTimeout):
            wait_for(
                again,
                what="mismatched read-backs to match",
                timeout=window,
                interval=0.1,
                max_interval=0.5,
            )
        return {"settle_waited_s": round(time.monotonic() - started, 3)}


# -- availability --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Availability:
    """Error rate and longest unavailable window of the history, against optional budgets."""

    max_error_rate: float | None = None
    max_unavailable_s: float | None = None
    name: str = "availability"

    def check(self, ctx: CheckContext) -> Verdict:
        stats = ctx.stats()
        window = stats.longest_unavailable
        evidence: dict[str, JsonValue] = {
            "operations": stats.operations,
            "errors": stats.errors,
            "error_rate": round(stats.error_rate, 6),
            "longest_unavailable_s": round(stats.longest_unavailable_s, 4),
            "window": None if window is None else [round(window.start, 4), round(window.end, 4)],
            "budget": {
                "max_error_rate": self.max_error_rate,
                "max_unavailable_s": self.max_unavailable_s,
            },
        }
        if stats.operations == 0:
            return Verdict.unknown(reason="no operations in the history", **evidence)
        exceeded = []
        if self.max_error_rate is not None and stats.error_rate > self.max_error_rate:
            exceeded.append("error_rate")
        if (
            self.max_unavailable_s is not None
            and stats.longest_unavailable_s > self.max_unavailable_s
        ):
            exceeded.append("longest_unavailable_s")
        if exceeded:
            return Verdict.invalid(exceeded=list(exceeded), **evidence)
        return Verdict.valid(**evidence)


# -- custom --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SqlInvariant:
    """A custom invariant: ``sql`` returns one row per violation (none: valid)."""

    name: str
    sql: str
    description: str = ""

    def __post_init__(self) -> None:
        _require(self.name, "invariant name")
        _require(self.sql, f"invariant {self.name!r} sql")

    def check(self, ctx: CheckContext) -> Verdict:
        inner = sql.SQL(self.sql.strip().rstrip(";"))
        try:
            count = int(
                ctx.query(sql.SQL("SELECT count(*) FROM ({q}) AS violations").format(q=inner))[0][0]
            )
            rows = ctx.query(
                sql.SQL("SELECT row_to_json(v) FROM ({q}) AS v LIMIT %(n)s").format(q=inner),
                {"n": EXAMPLES},
            )
        except psycopg.Error as exc:
            return Verdict.unknown(error=_error(exc), description=self.description)
        evidence: dict[str, JsonValue] = {
            "violations": count,
            "examples": [r[0] for r in rows],
            "description": self.description,
        }
        return Verdict.invalid(**evidence) if count else Verdict.valid(**evidence)


@dataclass(frozen=True, slots=True)
class CallableInvariant:
    """A custom invariant in Python: ``fn(context) -> Verdict``."""

    name: str
    fn: Callable[[CheckContext], Verdict]

    def __post_init__(self) -> None:
        _require(self.name, "invariant name")
        if not callable(self.fn):
            raise SpecError(f"invariant {self.name!r}: fn", expected="a callable")

    def check(self, ctx: CheckContext) -> Verdict:
        return self.fn(ctx)
