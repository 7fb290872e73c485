"""``conservation`` and ``row_counts``: what is held per group equals what it held before
plus the acknowledged flows (amounts moved, or rows created)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from harness.errors import SpecError
from harness.invariants._common import (
    _error,
    _fields,
    _json_number,
    _require,
)
from harness.invariants.base import CheckContext, Connection, Verdict
from harness.workload.history import JsonValue

if TYPE_CHECKING:
    pass


__all__ = ["ALL", "Conservation", "Flow", "row_counts"]


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
        if not any(n_ok or n_info for _, _, _, n_ok, n_info in flows.values()):
            # Totals that did not move with no flow to move them judge nothing.
            return Verdict.unknown(reason="no flow operation in the history to judge", **evidence)
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
