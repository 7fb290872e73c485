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

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from harness._wait import wait_for
from harness.errors import SpecError, WaitTimeout
from harness.invariants._common import (
    _QUIET,
    _count,
    _error,
    _fields,
    _identifier,
    _require,
    _settle_window,
    _unique,
    _window,
)
from harness.invariants.base import EXAMPLES, CheckContext, Verdict
from harness.invariants.conservation import Conservation, Flow, row_counts
from harness.invariants.readback import VALUE_TYPES, ReadableByRunningRelease, ReadBack, same_value
from harness.workload.history import JsonValue

if TYPE_CHECKING:
    pass

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
        checked = 0
        for rel in self.relations:
            query = sql.SQL(
                "SELECT count(*) FILTER (WHERE NOT EXISTS"
                " (SELECT 1 FROM {parent} p WHERE p.{pcol} = c.{col})),"
                " (array_agg(c.{col}::text ORDER BY c.{col}) FILTER (WHERE NOT EXISTS"
                " (SELECT 1 FROM {parent} p WHERE p.{pcol} = c.{col})))[1:%(n)s],"
                " count(*) FROM {child} c WHERE c.{col} IS NOT NULL"
            ).format(
                col=sql.Identifier(rel.column),
                child=_identifier(rel.child, "child"),
                parent=_identifier(rel.parent, "parent"),
                pcol=sql.Identifier(rel.parent_column),
            )
            try:
                count, examples, references = ctx.query(query, {"n": EXAMPLES})[0]
            except psycopg.Error as exc:
                errors += 1
                entries.append({"relation": rel.label, "error": _error(exc)})
                continue
            orphans += int(count)
            checked += int(references)
            entries.append(
                {
                    "relation": rel.label,
                    "references": int(references),
                    "orphans": int(count),
                    "examples": list(examples or []),
                }
            )
        evidence: dict[str, JsonValue] = {
            "orphans": orphans,
            "references": checked,
            "relations": entries,
        }
        if orphans:
            return Verdict.invalid(**evidence)
        if errors:
            return Verdict.unknown(**evidence)
        if checked == 0:
            return Verdict.unknown(
                reason="no row references anything: nothing to judge", **evidence
            )
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


# -- availability --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Availability:
    """Error rate and longest unavailable window of the history, against optional budgets;
    with neither budget the figures are reported and the verdict is ``unknown`` (measured,
    not judged)."""

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
        if self.max_error_rate is None and self.max_unavailable_s is None:
            # Measured, not judged: without a budget no error rate is too high.
            return Verdict.unknown(
                reason="no budget to judge against (scenario key availability:"
                " max_error_rate, max_unavailable): the figures are reported only",
                **evidence,
            )
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
