"""The deployment engine on real parts: the ledger, a real PostgreSQL, real processes.

Every fault kind fires at each of before/during/after; every strategy ends in the state it
promises, checked from the database and each instance's /version (not from the harness's
bookkeeping); a fault during recovery is recorded; no fault is left active after a run.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from harness._loader import load_target
from harness._wait import wait_for
from harness.backends.base import Stack
from harness.backends.local import LocalBackend
from harness.deploy.points import parse_point
from harness.deploy.runner import RunSpec, run_chaos
from harness.deploy.strategies import StrategyName
from harness.errors import SpecError
from harness.faults.base import Fault, FaultContext
from harness.faults.database import (
    DbCrash,
    LockConflict,
    StatementTimeout,
    TerminateBackends,
)
from harness.faults.network import NetworkToxic, Partition, Stream, ToxicSpec
from harness.faults.process import KillApp, KillMigration, PauseApp
from harness.faults.release import BadRelease, MigrationFailsAt
from harness.report.outcome import EventKind, RunOutcome

ROOT = Path(__file__).resolve().parents[2]
TARGET = load_target(str(ROOT / "examples/ledger/target.py"))
V1 = ("0001", "0002")
V2_EXPAND = ("0001", "0002", "0003", "0004")
ALL = ("0001", "0002", "0003", "0004", "0005")
#: The backfill's statement seen running in pg_stat_activity: a ``during`` fault lands
#: mid-backfill whatever the machine's load (a fixed delay may land before or after it).
BACKFILL = r"UPDATE (accounts|transfers)"


@dataclass(frozen=True)
class Observed:
    """What the system itself says after the run (not the harness's bookkeeping)."""

    migrations: tuple[str, ...]
    releases: tuple[str, ...]
    paused: tuple[bool, ...]
    toxics: int


def _observe(stack: Stack) -> Observed:
    migrations = tuple(
        r[0] for r in stack.database.sql("SELECT id FROM schema_migrations ORDER BY id")
    )
    releases = []
    for app in stack.apps:
        with urllib.request.urlopen(app.base_url + "/version", timeout=5) as response:
            releases.append(json.loads(response.read())["release"])
    route = getattr(stack, "db_proxy", None)
    toxics = len(route.client.list_toxics(route.name)) if route is not None else 0
    paused = (stack.database.paused, *(a.paused for a in stack.apps))
    return Observed(migrations, tuple(releases), paused, toxics)


def _run(
    backend: LocalBackend,
    fault: Fault,
    point: str,
    strategy: str,
    *,
    fix: str | None = None,
    recover_after: str | None = None,
    statement: str | None = None,
    delay: float | None = None,
) -> tuple[RunOutcome, Observed]:
    seen: list[Observed] = []
    spec = RunSpec(
        TARGET,
        "v1",
        "v2",
        fault,
        parse_point(point, statement=statement, delay=delay),
        StrategyName(strategy),
        fix=fix,
        recover_after=recover_after,
        seed=7,
    )
    outcome = run_chaos(
        backend, spec, progress=print, after_run=lambda stack, _o: seen.append(_observe(stack))
    )
    for event in outcome.events:
        print(f"  {event.t:7.2f} {event.kind.value:<22} {event.subject} {event.detail[:120]!r}")
    observed = seen[0]
    injected = outcome.events and [e for e in outcome.events if e.kind is EventKind.FAULT_INJECT]
    assert injected, "the fault never fired"
    healed = [e for e in outcome.events if e.kind is EventKind.FAULT_HEAL]
    assert len(healed) == len(injected), "every injection is healed"
    assert not any(observed.paused), "no process may be left paused"
    assert observed.toxics == 0, "no toxic may be left on the proxy"
    assert [e for e in outcome.errors if e.phase in ("inject", "heal", "teardown")] == []
    return outcome, observed


# -- database faults ------------------------------------------------------------------------


def test_db_crash_during_backfill_then_rollback(local_backend: LocalBackend) -> None:
    outcome, seen = _run(
        local_backend, DbCrash(), "during:migrate:0004", "rollback", statement=BACKFILL
    )
    assert outcome.detected is not None
    assert "migrate:0004" in outcome.detected
    assert outcome.recovered is True
    assert seen.migrations == V1
    assert seen.releases == ("v1", "v1")


def test_lock_conflict_before_expand_then_restore(local_backend: LocalBackend) -> None:
    outcome, seen = _run(local_backend, LockConflict("accounts"), "before:migrate:0003", "restore")
    assert outcome.detected is not None
    assert "lock timeout" in outcome.detected
    assert outcome.recovered is True
    assert seen.migrations == V1
    assert seen.releases == ("v1", "v1")


def test_statement_timeout_applies_to_new_sessions_and_heals(
    local_backend: LocalBackend,
) -> None:
    target = TARGET
    with local_backend.start_stack(target, target.release("v1"), instances=1) as stack:
        plan = RunSpec(
            target, "v1", "v2", StatementTimeout(1), parse_point("before:verify"), StrategyName.HALT
        ).plan()
        ctx = FaultContext(stack, plan)
        fault = StatementTimeout(25)
        handle = fault.inject(ctx)
        try:
            with psycopg.connect(stack.database.url) as conn:
                assert conn.execute("SHOW statement_timeout").fetchone() == ("25ms",)
                with pytest.raises(psycopg.errors.QueryCanceled):
                    conn.execute("SELECT pg_sleep(1)")
        finally:
            fault.heal(ctx, handle)
        with psycopg.connect(stack.database.url) as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)


def test_terminate_backends_after_migration_then_forced_halt(local_backend: LocalBackend) -> None:
    outcome, seen = _run(
        local_backend,
        TerminateBackends(),
        "after:migrate:0003",
        "halt",
        recover_after="migrate:0003",
    )
    assert outcome.detected is not None
    assert outcome.detected.startswith("forced")
    assert seen.migrations == ("0001", "0002", "0003")
    assert seen.releases == ("v1", "v1"), "halt reverses nothing and rolls nothing out"


# -- process faults ---------------------------------------------------------------------


def test_kill_migration_mid_backfill_then_roll_forward_with_fix(
    local_backend: LocalBackend,
) -> None:
    outcome, seen = _run(
        local_backend,
        KillMigration(),
        "during:migrate:0004",
        "roll_forward",
        fix="v2.1",
        statement=BACKFILL,
    )
    assert outcome.detected is not None
    assert "migrate:0004" in outcome.detected
    assert outcome.recovered is True
    assert seen.migrations == ALL
    assert seen.releases == ("v2.1", "v2.1")


def test_kill_app_before_rollout_then_rollback(local_backend: LocalBackend) -> None:
    outcome, seen = _run(local_backend, KillApp(1, duration=None), "before:rollout:0", "rollback")
    assert outcome.detected is not None
    assert "app1" in outcome.detected
    assert outcome.recovered is True
    assert seen.migrations == V1
    assert seen.releases == ("v1", "v1")


def test_pause_canary_after_rollout_then_halt_keeps_mixed_versions(
    local_backend: LocalBackend,
) -> None:
    outcome, seen = _run(local_backend, PauseApp(0, duration=None), "after:rollout:0", "halt")
    assert outcome.detected is not None
    assert outcome.detected.startswith("health")
    assert seen.migrations == V2_EXPAND
    assert seen.releases == ("v2", "v1"), "halt freezes the rollout: mixed versions stay"


# -- release faults ---------------------------------------------------------------------


def test_half_applied_expand_cannot_roll_forward_with_the_same_release(
    local_backend: LocalBackend,
) -> None:
    # Statement 1 is the migrate tool's own CREATE TABLE IF NOT EXISTS; 3 is 0003's second
    # ALTER: 0003 ends half-applied, and v2's 0003 cannot be re-run.
    outcome, seen = _run(local_backend, MigrationFailsAt(3), "before:migrate:0003", "roll_forward")
    assert outcome.recovered is False
    assert any(e.phase == "recovery" for e in outcome.errors)
    assert seen.migrations == V1


def test_half_applied_expand_rolls_forward_with_the_fix_release(
    local_backend: LocalBackend,
) -> None:
    outcome, seen = _run(
        local_backend, MigrationFailsAt(3), "before:migrate:0003", "roll_forward", fix="v2.1"
    )
    assert outcome.recovered is True
    assert seen.migrations == ALL
    assert seen.releases == ("v2.1", "v2.1")


def test_failing_ddl_armed_during_backfill_breaks_the_contract(
    local_backend: LocalBackend,
) -> None:
    # Armed while 0004 runs (DML only), it fires at the next DDL after the migrate tool's own
    # CREATE TABLE IF NOT EXISTS: the contract's ALTER, steps later.
    outcome, seen = _run(local_backend, MigrationFailsAt(2), "during:migrate:0004", "rollback")
    assert outcome.detected is not None
    assert "contract:0005" in outcome.detected
    assert outcome.recovered is True
    assert seen.migrations == V1
    assert seen.releases == ("v1", "v1")


def test_bad_release_after_backfill_is_detected_and_rolled_back(
    local_backend: LocalBackend,
) -> None:
    outcome, seen = _run(
        local_backend, BadRelease("v2-unhealthy"), "after:migrate:0004", "rollback"
    )
    assert outcome.detected is not None
    assert "rollout:0" in outcome.detected
    assert outcome.recovered is True
    assert seen.releases == ("v1", "v1")
    assert seen.migrations == V1


# -- recovery under fire ------------------------------------------------------------------


def test_fault_during_rollback_is_recorded(local_backend: LocalBackend) -> None:
    outcome, _seen = _run(
        local_backend,
        DbCrash(duration=1.0),
        "during:recovery",
        "rollback",
        recover_after="migrate:0004",
        # As the rollback starts: 0.3 s in (the default) may land after a rollback this
        # short, and a fault that misses its step does not fire.
        delay=0.05,
    )
    inject = [e for e in outcome.events if e.kind is EventKind.FAULT_INJECT]
    start = next(e for e in outcome.events if e.kind is EventKind.RECOVERY_START)
    assert inject[0].t >= start.t
    assert "during recovery" in inject[0].detail


# -- bad values -----------------------------------------------------------------------------


def test_unknown_step_lists_the_plan() -> None:
    spec = RunSpec(
        TARGET, "v1", "v2", DbCrash(), parse_point("during:migrate:0009"), StrategyName.ROLLBACK
    )
    with pytest.raises(SpecError) as info:
        spec.plan()
    assert "migrate:0003" in info.value.choices


def test_bad_values_have_one_clear_error_each() -> None:
    with pytest.raises(SpecError, match="unknown strategy 'rewind'"):
        StrategyName.parse("rewind")
    with pytest.raises(SpecError, match="duration -1"):
        DbCrash(duration=-1)
    with pytest.raises(SpecError, match="unknown moment 'amid'"):
        parse_point("amid:migrate:0003")
    # kill_migration acts on the migration running during a step: at a before:/after:
    # point it would find nothing to kill, so the run cannot even be built.
    for point in ("before:migrate:0003", "after:migrate:0003"):
        with pytest.raises(SpecError, match="can only fire at a during: point"):
            RunSpec(
                TARGET, "v1", "v2", KillMigration(), parse_point(point), StrategyName.ROLLBACK
            ).plan()
    with pytest.raises(SpecError, match="needs a running migration"):
        RunSpec(
            TARGET,
            "v1",
            "v2",
            KillMigration(),
            parse_point("during:rollout:0"),
            StrategyName.ROLLBACK,
        ).plan()
    # After the last rollout nothing would ever deploy the bad release.
    with pytest.raises(SpecError, match="no rollout follows"):
        RunSpec(
            TARGET,
            "v1",
            "v2",
            BadRelease("v2-lose-cent"),
            parse_point("after:rollout:1"),
            StrategyName.ROLLBACK,
        ).plan()


# -- network faults (through the embedded proxy) ------------------------------------------


def test_app_and_migrations_reach_the_database_through_the_proxy(
    local_backend: LocalBackend,
) -> None:
    with local_backend.start_stack(TARGET, TARGET.release("v1"), instances=1) as stack:
        route = stack.db_proxy
        assert route is not None
        assert f":{route.listen_port}/" in stack.app_database_url
        assert str(stack.database.port) not in stack.app_database_url
        app = stack.apps[0]
        assert app.healthy()
        route.client.disable(route.name)
        try:
            wait_for(lambda: not app.healthy(), what="the app to lose the database", timeout=10)
            assert stack.database.sql("SELECT 1") == [(1,)], "the harness's own path is direct"
        finally:
            route.client.enable(route.name)
        wait_for(app.healthy, what="the app to reconnect", timeout=15)


def test_partition_before_expand_then_rollback(local_backend: LocalBackend) -> None:
    outcome, seen = _run(local_backend, Partition(duration=None), "before:migrate:0003", "rollback")
    assert outcome.detected is not None
    assert "migrate:0003" in outcome.detected
    assert outcome.recovered is True
    assert seen.migrations == V1
    assert seen.releases == ("v1", "v1")


def test_timeout_toxic_during_backfill_then_roll_forward(local_backend: LocalBackend) -> None:
    # A timeout toxic stalls the backfill's open connection and closes it after 500 ms.
    fault = NetworkToxic(ToxicSpec.timeout(500, stream=Stream.UPSTREAM), duration=None)
    outcome, seen = _run(
        local_backend,
        fault,
        "during:migrate:0004",
        "roll_forward",
        fix="v2.1",
        statement=BACKFILL,
    )
    assert outcome.detected is not None
    assert "migrate:0004" in outcome.detected
    assert outcome.recovered is True
    assert seen.migrations == ALL
    assert seen.releases == ("v2.1", "v2.1")


def test_latency_after_canary_is_absorbed_then_forced_halt(local_backend: LocalBackend) -> None:
    fault = NetworkToxic(ToxicSpec.latency(50), duration=None)
    outcome, seen = _run(local_backend, fault, "after:rollout:0", "halt", recover_after="rollout:0")
    assert outcome.detected is not None
    assert outcome.detected.startswith("forced"), "50 ms of latency is absorbed, not detected"
    assert seen.releases == ("v2", "v1")
    assert seen.migrations == V2_EXPAND
