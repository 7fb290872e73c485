"""The built-in checkers on synthetic histories and a real database (property-based).

Each property builds a history and a database that agree, checks that the verdict is
``valid``, then injects known losses, phantoms, duplicates, orphans or imbalances and
asserts that the checker reports exactly those and nothing else. ``info`` operations are
present or absent at random: never counted as lost, never as proof of presence.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.invariants import (
    Availability,
    CallableInvariant,
    CheckContext,
    Conservation,
    DurableAcknowledgedWrites,
    Flow,
    IdempotentWrite,
    NoDuplicateEffects,
    ReferentialIntegrity,
    Relation,
    SqlInvariant,
    Status,
    Verdict,
    Write,
    check_all,
    open_check_context,
)
from harness.workload.history import ErrorKind, History, Op, OpType, Scalar, history_stats

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_ERRORS = {
    OpType.OK: None,
    OpType.FAIL: ErrorKind.UNAVAILABLE,
    OpType.INFO: ErrorKind.INDETERMINATE,
}


@dataclass
class Builder:
    """Appends invoke/completion pairs to a synthetic history."""

    ops: list[Op]
    clock: Iterator[int]

    @classmethod
    def new(cls) -> Builder:
        return cls([], itertools.count())

    def op(self, f: str, kind: OpType, value: dict[str, Scalar], process: int = 0) -> None:
        index = len(self.ops)
        self.ops.append(Op(index, process, OpType.INVOKE, f, value, float(next(self.clock))))
        self.ops.append(
            Op(index + 1, process, kind, f, {}, float(next(self.clock)), None, _ERRORS[kind])
        )

    def history(self) -> History:
        return History.of(self.ops)


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(pg_url, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE items (key text);"
            "CREATE TABLE parents (id bigint PRIMARY KEY);"
            "CREATE TABLE children (id bigserial PRIMARY KEY, parent_id bigint);"
            "CREATE TABLE holdings (grp text, amount bigint)"
        )
        yield connection


def _reset(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute("TRUNCATE items, parents, children, holdings")


def _check(url: str, invariant: object, history: History, **kw: object) -> Verdict:
    with open_check_context(url, history, **kw) as ctx:  # type: ignore[arg-type]
        return check_all([invariant], ctx)[invariant.name]  # type: ignore[attr-defined, list-item]


# -- durable_acknowledged_writes -------------------------------------------------------------

# Per key: the statuses of its operations (a replay is a second operation with the same key).
_key_ops = st.lists(st.sampled_from([OpType.OK, OpType.FAIL, OpType.INFO]), min_size=1, max_size=3)


@SETTINGS
@given(
    keys=st.lists(_key_ops, min_size=1, max_size=40),
    info_present=st.lists(st.booleans(), min_size=40, max_size=40),
    data=st.data(),
)
def test_durable_reports_exactly_the_injected_losses_and_phantoms(
    pg_url: str,
    conn: psycopg.Connection[tuple[object, ...]],
    keys: list[list[OpType]],
    info_present: list[bool],
    data: st.DataObject,
) -> None:
    _reset(conn)
    builder = Builder.new()
    acknowledged, failed, unknown = [], [], []
    for number, statuses in enumerate(keys):
        key = f"k{number}"
        for status in statuses:
            builder.op("put", status, {"key": key})
        if OpType.OK in statuses:
            acknowledged.append(key)
        elif OpType.INFO in statuses:
            unknown.append(key)
        else:
            failed.append(key)
    present = set(acknowledged) | {k for k, p in zip(unknown, info_present, strict=False) if p}
    lost = set(
        data.draw(st.sets(st.sampled_from(acknowledged)) if acknowledged else st.just(set()))
    )
    phantoms = set(data.draw(st.sets(st.sampled_from(failed)) if failed else st.just(set())))
    # No settle: the writes injected as lost never come (the settle has its own tests below).
    invariant = DurableAcknowledgedWrites((Write("put", "items", "key", "key"),), settle_s=0.0)

    rows = sorted(present)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO items VALUES (%s)", [(k,) for k in rows])
    clean = _check(pg_url, invariant, builder.history())
    assert clean.status is (Status.VALID if acknowledged else Status.UNKNOWN)
    assert clean.evidence["lost"] == 0
    assert clean.evidence["failed_but_present"] == 0

    with conn.cursor() as cur:
        cur.executemany("DELETE FROM items WHERE key = %s", [(k,) for k in lost])
        cur.executemany("INSERT INTO items VALUES (%s)", [(k,) for k in phantoms])
    verdict = _check(pg_url, invariant, builder.history())
    [group] = verdict.evidence["writes"]  # type: ignore[misc]
    assert verdict.evidence["lost"] == len(lost)
    assert verdict.evidence["failed_but_present"] == len(phantoms)
    assert set(group["lost_examples"]) <= lost  # type: ignore[index]
    assert len(group["lost_examples"]) == min(5, len(lost))  # type: ignore[index]
    assert set(group["failed_present_examples"]) <= phantoms  # type: ignore[index]
    assert group["acknowledged"] == len(acknowledged)  # type: ignore[index]
    assert group["unknown"] == len(unknown)  # type: ignore[index]
    if lost or phantoms:
        assert verdict.status is Status.INVALID
    else:
        assert verdict.status is clean.status


def test_durable_after_the_table_was_dropped_counts_every_acknowledged_write_lost(
    pg_url: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    builder = Builder.new()
    for number in range(3):
        builder.op("put", OpType.OK, {"key": f"k{number}"})
    builder.op("put", OpType.INFO, {"key": "maybe"})
    conn.execute("DROP TABLE items")
    verdict = _check(
        pg_url,
        DurableAcknowledgedWrites((Write("put", "items", "key", "key"),)),
        builder.history(),
    )
    assert verdict.status is Status.INVALID
    assert verdict.evidence["lost"] == 3
    [group] = verdict.evidence["writes"]  # type: ignore[misc]
    assert "UndefinedTable" in group["error"]  # type: ignore[index]


def _settled(
    url: str, invariant: DurableAcknowledgedWrites, history: History, late: str, delay: float
) -> Verdict:
    """Check with the history already loaded, ``late`` inserted ``delay`` s after the check
    starts by a session connected all along (as an app's pooled connection is)."""
    with psycopg.connect(url, autocommit=True) as app, open_check_context(url, history) as ctx:
        ctx.session.want(invariant.history_fields())
        ctx.history_table()
        for write in invariant.writes:
            ctx.key_summary([write.op], write.field)
        insert = threading.Timer(delay, app.execute, ("INSERT INTO items VALUES (%s)", (late,)))
        insert.start()
        try:
            return invariant.check(ctx)
        finally:
            insert.cancel()
            insert.join()


def test_durable_a_write_that_shows_up_late_is_late_and_one_that_never_does_is_lost(
    pg_url: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    builder = Builder.new()
    for key in ("k-there", "k-late", "k-never"):
        builder.op("put", OpType.OK, {"key": key})
    conn.execute("INSERT INTO items VALUES ('k-there')")
    invariant = DurableAcknowledgedWrites((Write("put", "items", "key", "key"),), settle_s=1.5)
    verdict = _settled(pg_url, invariant, builder.history(), "k-late", 0.3)
    evidence = verdict.evidence
    assert verdict.status is Status.INVALID, evidence
    assert (evidence["acknowledged"], evidence["lost"], evidence["late"]) == (3, 1, 1)
    [group] = evidence["writes"]  # type: ignore[misc]
    assert group["lost_examples"] == ["k-never"]  # type: ignore[index]
    [late] = evidence["late_examples"]  # type: ignore[misc]
    assert (late["table"], late["key"]) == ("items", "k-late")  # type: ignore[index]
    assert 0.25 <= late["after_s"] < 1.5  # type: ignore[index, operator]
    assert evidence["settle_s"] == 1.5
    assert evidence["settle_ended"] == "window passed"
    assert evidence["settle_waited_s"] >= 1.4  # type: ignore[operator]


def test_durable_late_writes_alone_are_valid_and_end_the_settle_when_all_appeared(
    pg_url: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    builder = Builder.new()
    builder.op("put", OpType.OK, {"key": "k-late"})
    invariant = DurableAcknowledgedWrites((Write("put", "items", "key", "key"),), settle_s=5.0)
    verdict = _settled(pg_url, invariant, builder.history(), "k-late", 0.3)
    assert verdict.status is Status.VALID, verdict.evidence
    assert (verdict.evidence["lost"], verdict.evidence["late"]) == (0, 1)
    assert verdict.evidence["settle_ended"] == "every missing write appeared"
    assert verdict.evidence["settle_waited_s"] < 3.0  # type: ignore[operator]


def test_durable_does_not_wait_when_nothing_is_missing_or_nobody_could_still_write(
    pg_url: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    builder = Builder.new()
    builder.op("put", OpType.OK, {"key": "k-there"})
    conn.execute("INSERT INTO items VALUES ('k-there')")
    invariant = DurableAcknowledgedWrites((Write("put", "items", "key", "key"),), settle_s=30.0)
    clean = _check(pg_url, invariant, builder.history())
    assert clean.status is Status.VALID
    assert "settle_waited_s" not in clean.evidence
    builder.op("put", OpType.OK, {"key": "k-never"})
    conn.close()  # the only other session: now nothing can still commit a missing write
    started = time.monotonic()
    verdict = _check(pg_url, invariant, builder.history())
    assert time.monotonic() - started < 10.0
    assert verdict.status is Status.INVALID
    assert verdict.evidence["lost"] == 1
    assert verdict.evidence["settle_ended"] == (
        "no other session is connected: nothing can still commit"
    )


# -- no_duplicate_effects --------------------------------------------------------------------


@SETTINGS
@given(
    n=st.integers(1, 30),
    data=st.data(),
)
def test_duplicates_reports_exactly_the_injected_ones(
    pg_url: str, conn: psycopg.Connection[tuple[object, ...]], n: int, data: st.DataObject
) -> None:
    _reset(conn)
    builder = Builder.new()
    keys = [f"k{i}" for i in range(n)]
    for key in keys:
        # A replay answered "not applied now" is fine; so is an earlier unknown attempt.
        builder.op("put", OpType.INFO, {"key": key})
        builder.op("put", OpType.OK, {"key": key, "created": True})
        builder.op("put", OpType.OK, {"key": key, "created": False})
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO items VALUES (%s)", [(k,) for k in keys])
    invariant = NoDuplicateEffects(
        (IdempotentWrite(("put",), "key", "items", "key", applied_field="created"),)
    )
    assert _check(pg_url, invariant, builder.history()).status is Status.VALID

    doubled_rows = data.draw(st.sets(st.sampled_from(keys)))
    applied_twice = data.draw(st.sets(st.sampled_from(keys)))
    never_kept = data.draw(st.sets(st.sampled_from(keys)))
    for key in applied_twice:
        builder.op("put", OpType.OK, {"key": key, "created": True})
    # Acknowledged as applied twice but never kept: a durability problem, not a duplicate.
    for key in never_kept:
        builder.op("put", OpType.OK, {"key": f"gone-{key}", "created": True})
        builder.op("put", OpType.OK, {"key": f"gone-{key}", "created": True})
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO items VALUES (%s)", [(k,) for k in doubled_rows])
    verdict = _check(pg_url, invariant, builder.history())
    [entry] = verdict.evidence["writes"]  # type: ignore[misc]
    assert entry["duplicated_keys"] == len(doubled_rows)  # type: ignore[index]
    assert {e["key"] for e in entry["duplicated_examples"]} <= doubled_rows  # type: ignore[index]
    assert entry["applied_more_than_once"] == len(applied_twice)  # type: ignore[index]
    assert {e["key"] for e in entry["applied_examples"]} <= applied_twice  # type: ignore[index]
    expected = Status.INVALID if doubled_rows or applied_twice else Status.VALID
    assert verdict.status is expected


# -- referential_integrity -------------------------------------------------------------------


@SETTINGS
@given(
    parents=st.integers(1, 50),
    children=st.lists(st.integers(0, 49), max_size=80),
    orphans=st.sets(st.integers(1000, 1100), max_size=10),
    nulls=st.integers(0, 3),
)
def test_orphans_are_reported_exactly(
    pg_url: str,
    conn: psycopg.Connection[tuple[object, ...]],
    parents: int,
    children: list[int],
    orphans: set[int],
    nulls: int,
) -> None:
    _reset(conn)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO parents VALUES (%s)", [(i,) for i in range(parents)])
        valid_children = [c % parents for c in children]
        cur.executemany(
            "INSERT INTO children (parent_id) VALUES (%s)",
            [(c,) for c in valid_children] + [(None,)] * nulls,
        )
    invariant = ReferentialIntegrity((Relation("children", "parent_id", "parents", "id"),))
    # Nothing referencing anything judges nothing: unknown, never a pass.
    judged = Status.VALID if children else Status.UNKNOWN
    assert _check(pg_url, invariant, History.of(())).status is judged
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO children (parent_id) VALUES (%s)", [(o,) for o in orphans])
    verdict = _check(pg_url, invariant, History.of(()))
    assert verdict.evidence["orphans"] == len(orphans)
    [relation] = verdict.evidence["relations"]  # type: ignore[misc]
    assert relation["examples"] == [str(o) for o in sorted(orphans)][:5]  # type: ignore[index]
    assert verdict.status is (
        Status.INVALID if orphans else Status.VALID if children else Status.UNKNOWN
    )


# -- conservation ----------------------------------------------------------------------------

_GROUPS = ("EUR", "GBP", "USD")


@SETTINGS
@given(
    baseline=st.fixed_dictionaries({g: st.integers(0, 10_000) for g in _GROUPS}),
    deposits=st.lists(
        st.tuples(
            st.sampled_from(_GROUPS),
            st.integers(1, 1000),
            st.sampled_from([OpType.OK, OpType.FAIL, OpType.INFO]),
            st.booleans(),  # an info deposit took effect?
            st.booleans(),  # replayed (the same key acknowledged twice)?
        ),
        max_size=40,
    ),
    imbalance=st.fixed_dictionaries({g: st.sampled_from([0, 0, -1, 1, -7]) for g in _GROUPS}),
)
def test_conservation_reports_exactly_the_imbalanced_groups(
    pg_url: str,
    conn: psycopg.Connection[tuple[object, ...]],
    baseline: dict[str, int],
    deposits: list[tuple[str, int, OpType, bool, bool]],
    imbalance: dict[str, int],
) -> None:
    _reset(conn)
    builder = Builder.new()
    held = dict(baseline)
    low = dict(baseline)  # baseline + acknowledged deposits (each key once)
    unknown = dict.fromkeys(_GROUPS, 0)
    for number, (group, amount, status, took_effect, replayed) in enumerate(deposits):
        value: dict[str, Scalar] = {"key": f"d{number}", "amount": amount, "grp": group}
        builder.op("deposit", status, value)
        if replayed and status is OpType.OK:
            builder.op("deposit", OpType.OK, value)
        if status is OpType.OK:
            low[group] += amount
        if status is OpType.OK or (status is OpType.INFO and took_effect):
            held[group] += amount
        if status is OpType.INFO:
            unknown[group] += amount
    invariant = Conservation(
        "SELECT grp, sum(amount) FROM holdings GROUP BY grp",
        (Flow("deposit", "amount", "grp", "key"),),
    )
    baselines = {invariant.name: dict(baseline)}

    def store(amounts: dict[str, int]) -> None:
        conn.execute("TRUNCATE holdings")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO holdings VALUES (%s, %s)", list(amounts.items()))

    store(held)
    clean = _check(pg_url, invariant, builder.history(), baselines=baselines)
    # No acknowledged or unknown deposit: totals that did not move judge nothing.
    flowed = any(status is not OpType.FAIL for _, _, status, _, _ in deposits)
    assert clean.status is (Status.VALID if flowed else Status.UNKNOWN), clean.evidence
    # An imbalance beyond what the unknown deposits could explain: below the acknowledged
    # total, or above it plus every unknown deposit.
    now = {
        g: low[g] + d if d < 0 else low[g] + unknown[g] + d if d > 0 else held[g]
        for g, d in imbalance.items()
    }
    store(now)
    verdict = _check(pg_url, invariant, builder.history(), baselines=baselines)
    assert sorted(verdict.evidence["violations"]) == sorted(  # type: ignore[arg-type]
        g for g in _GROUPS if imbalance[g]
    )
    for entry in verdict.evidence["groups"]:  # type: ignore[union-attr]
        group = entry["group"]  # type: ignore[index]
        assert entry["held"] == now[group]  # type: ignore[index]
        assert entry["expected_min"] == low[group]  # type: ignore[index]
        assert entry["expected_max"] == low[group] + unknown[group]  # type: ignore[index]
        assert entry["difference"] == imbalance[group]  # type: ignore[index]
    assert verdict.status is (Status.INVALID if any(imbalance.values()) else clean.status)


@pytest.mark.parametrize(
    ("taken", "status", "difference"),
    [
        (0, Status.VALID, 0),
        (40_000, Status.VALID, 0),
        (5_949, Status.VALID, 0),
        (45_949, Status.VALID, 0),
        # Inside the range, but no subset of the unknown deposits adds up to it: 6 cents
        # went missing from the two that took effect (a CI run once hid this in the range).
        (45_943, Status.INVALID, -6),
        (5_950, Status.INVALID, 1),
    ],
)
def test_conservation_is_exact_when_the_unknown_flows_are_few(
    pg_url: str,
    conn: psycopg.Connection[tuple[object, ...]],
    taken: int,
    status: Status,
    difference: int,
) -> None:
    _reset(conn)
    builder = Builder.new()
    builder.op("deposit", OpType.OK, {"key": "ok", "amount": 700, "grp": "USD"})
    builder.op("deposit", OpType.INFO, {"key": "big", "amount": 40_000, "grp": "USD"})
    builder.op("deposit", OpType.INFO, {"key": "small", "amount": 5_949, "grp": "USD"})
    conn.execute("INSERT INTO holdings VALUES ('USD', %s)", (1_000 + 700 + taken,))
    invariant = Conservation(
        "SELECT grp, sum(amount) FROM holdings GROUP BY grp",
        (Flow("deposit", "amount", "grp", "key"),),
    )
    verdict = _check(
        pg_url, invariant, builder.history(), baselines={"conservation": {"USD": 1_000}}
    )
    assert verdict.status is status, verdict.evidence
    (group,) = verdict.evidence["groups"]  # type: ignore[misc]
    assert group["exact"] is True  # type: ignore[index]
    assert sorted(group["unknown_amounts"]) == [5_949, 40_000]  # type: ignore[index]
    assert (group["expected_min"], group["expected_max"]) == (1_700, 47_649)  # type: ignore[index]
    assert group["difference"] == difference  # type: ignore[index]


@pytest.mark.parametrize(("held", "status"), [(1_000, Status.VALID), (500, Status.INVALID)])
def test_conservation_counts_an_unknown_transfer_once_with_its_net_effect(
    pg_url: str, conn: psycopg.Connection[tuple[object, ...]], held: int, status: Status
) -> None:
    # A transfer within a group moves nothing in or out of it, done or not; its two flows
    # (out of one account, into another) must not count as two independent unknowns.
    _reset(conn)
    builder = Builder.new()
    builder.op("transfer", OpType.INFO, {"key": "t", "amount": 500, "grp": "USD"})
    conn.execute("INSERT INTO holdings VALUES ('USD', %s)", (held,))
    invariant = Conservation(
        "SELECT grp, sum(amount) FROM holdings GROUP BY grp",
        (
            Flow("transfer", "amount", "grp", "key", sign=-1),
            Flow("transfer", "amount", "grp", "key"),
        ),
    )
    verdict = _check(
        pg_url, invariant, builder.history(), baselines={"conservation": {"USD": 1_000}}
    )
    assert verdict.status is status, verdict.evidence
    (group,) = verdict.evidence["groups"]  # type: ignore[misc]
    assert group["unknown_amounts"] == []  # type: ignore[index]
    assert (group["expected_min"], group["expected_max"]) == (500, 1_500)  # type: ignore[index]


def test_conservation_falls_back_to_the_range_for_fractions(
    pg_url: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    _reset(conn)
    builder = Builder.new()
    builder.op("deposit", OpType.INFO, {"key": "a", "amount": 2.5})
    builder.op("deposit", OpType.INFO, {"key": "b", "amount": 4})
    conn.execute("INSERT INTO holdings VALUES ('all', 2)")  # no subset adds to 2; in the range
    invariant = Conservation("SELECT sum(amount) FROM holdings", (Flow("deposit", "amount"),))
    verdict = _check(pg_url, invariant, builder.history(), baselines={"conservation": {"all": 0}})
    assert verdict.status is Status.VALID, verdict.evidence
    (group,) = verdict.evidence["groups"]  # type: ignore[misc]
    assert group["exact"] is False  # type: ignore[index]


def test_conservation_without_baseline_or_with_a_broken_query_is_unknown(
    pg_url: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    builder = Builder.new()
    builder.op("deposit", OpType.OK, {"key": "a", "amount": 5})
    invariant = Conservation(
        "SELECT grp, sum(nope) FROM holdings GROUP BY grp", (Flow("deposit", "amount"),)
    )
    assert _check(pg_url, invariant, builder.history()).status is Status.UNKNOWN
    verdict = _check(pg_url, invariant, builder.history(), baselines={invariant.name: {"all": 0}})
    assert verdict.status is Status.UNKNOWN
    assert "UndefinedColumn" in str(verdict.evidence["error"])


# -- custom ----------------------------------------------------------------------------------


def test_sql_and_callable_invariants(
    pg_url: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    conn.execute("INSERT INTO items VALUES ('a'), ('b'), ('b')")
    dupes = SqlInvariant(
        "no_dupes", "SELECT key, count(*) FROM items GROUP BY key HAVING count(*) > 1;"
    )
    verdict = _check(pg_url, dupes, History.of(()))
    assert verdict.status is Status.INVALID
    assert verdict.evidence["violations"] == 1
    assert verdict.evidence["examples"] == [{"key": "b", "count": 2}]
    broken = SqlInvariant("broken", "SELECT * FROM nowhere")
    assert _check(pg_url, broken, History.of(())).status is Status.UNKNOWN

    def count_items(ctx: CheckContext) -> Verdict:
        (n,) = ctx.query("SELECT count(*) FROM items")[0]
        return Verdict.valid(items=int(n))  # type: ignore[call-overload]

    verdict = _check(pg_url, CallableInvariant("count", count_items), History.of(()))
    assert verdict.to_json() == {"status": "valid", "evidence": {"items": 3}}


def test_history_is_loaded_once_and_shared(
    pg_url: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    builder = Builder.new()
    for i in range(100):
        builder.op("put", OpType.OK, {"key": f"k{i}", "note": "tab\tand\\backslash and é\n"})
    builder.op("other", OpType.OK, {"key": "not loaded for other"})
    invariants: Sequence[object] = [
        DurableAcknowledgedWrites((Write("put", "items", "key", "key"),)),
        NoDuplicateEffects((IdempotentWrite(("put",), "key", "items", "key"),)),
        CallableInvariant(
            "notes", lambda ctx: Verdict.valid(table=ctx.history_table({"put": {"note"}}))
        ),
    ]
    with open_check_context(pg_url, builder.history()) as ctx:
        verdicts = check_all(invariants, ctx)  # type: ignore[arg-type]
        rows = ctx.query(
            'SELECT f, count(*), count("v:key"), min("v:note") FROM chaos_history'
            " GROUP BY f ORDER BY f"
        )
        loads = ctx.session.load_seconds
    assert rows == [("other", 1, 0, None), ("put", 100, 100, "tab\tand\\backslash and é\n")]
    assert verdicts["durable_acknowledged_writes"].evidence["lost"] == 100
    assert verdicts["no_duplicate_effects"].status is Status.VALID
    assert loads > 0


_completion = st.sampled_from(
    [
        (OpType.OK, None),
        (OpType.FAIL, ErrorKind.REJECTED),
        (OpType.FAIL, ErrorKind.UNAVAILABLE),
        (OpType.INFO, ErrorKind.INDETERMINATE),
        (OpType.INFO, ErrorKind.STOPPED),
    ]
)


@SETTINGS
@given(
    st.lists(
        st.tuples(st.integers(0, 3), _completion, st.integers(0, 20), st.integers(0, 3)),
        max_size=50,
    )
)
def test_availability_statistics_in_sql_match_the_python_ones(
    pg_url: str,
    conn: psycopg.Connection[tuple[object, ...]],
    steps: list[tuple[int, tuple[OpType, ErrorKind | None], int, int]],
) -> None:
    """The same history: the statistics the workload reports (Python) and the ones the
    availability checker computes on the history table (SQL) agree."""
    ops: list[Op] = []
    pending: dict[int, Op] = {}
    clock = 0
    for process, (kind, err), start_gap, length in steps:
        clock += start_gap
        if process in pending:
            invoke = pending.pop(process)
            end = max(invoke.time, float(clock + length))
            ops.append(Op(len(ops), process, kind, "w", {}, end, None, err))
        else:
            op = Op(len(ops), process, OpType.INVOKE, "w", {}, float(clock))
            pending[process] = op
            ops.append(op)
    history = History.of(ops)
    python = history_stats(history.operations())
    with open_check_context(pg_url, history) as ctx:
        sql = ctx.stats()
    assert sql.counts == python.counts
    assert sql.errors == python.errors
    assert sql.duration_s == pytest.approx(python.duration_s)
    assert sql.longest_unavailable_s == pytest.approx(python.longest_unavailable_s)


def test_availability_against_its_budget(pg_url: str) -> None:
    ops = []
    for n, (kind, err, t0, t1) in enumerate(
        [
            (OpType.OK, None, 0.0, 0.1),
            (OpType.FAIL, ErrorKind.UNAVAILABLE, 1.0, 1.1),
            (OpType.INFO, ErrorKind.INDETERMINATE, 1.2, 3.0),
            (OpType.OK, None, 3.5, 3.6),
        ]
    ):
        ops.append(Op(2 * n, n, OpType.INVOKE, "w", {}, t0))
        ops.append(Op(2 * n + 1, n, kind, "w", {}, t1, None, err))
    with open_check_context(pg_url, History.of(ops)) as ctx:
        verdicts = check_all(
            [
                Availability(),
                Availability(max_unavailable_s=2.0, name="within"),
                Availability(max_unavailable_s=3.0, name="held"),
                Availability(max_error_rate=0.25, max_unavailable_s=1.0, name="budget"),
            ],
            ctx,
        )
    # no budget: measured and reported, not judged
    assert verdicts["availability"].status is Status.UNKNOWN
    assert "no budget" in str(verdicts["availability"].evidence["reason"])
    assert verdicts["availability"].evidence["longest_unavailable_s"] == 2.6
    assert verdicts["availability"].evidence["window"] == [1.0, 3.6]
    assert verdicts["within"].status is Status.INVALID
    assert verdicts["held"].status is Status.VALID
    assert verdicts["budget"].evidence["exceeded"] == ["error_rate", "longest_unavailable_s"]
    with open_check_context(pg_url, History.of(())) as ctx:
        assert Availability().check(ctx).status is Status.UNKNOWN
