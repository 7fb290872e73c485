"""A run lives its deployment the way production does, on real parts (the ledger, a real
PostgreSQL, real processes): traffic through the balancer, drained rollouts, warm-up, bakes
and a soak on the run's seed; faults keep their word; a cell that was not tested says so.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from dataclasses import replace
from pathlib import Path

from harness._loader import load_target
from harness.backends.local import LocalBackend
from harness.deploy.points import parse_point
from harness.deploy.runner import RunSpec, run_chaos
from harness.deploy.strategies import StrategyName
from harness.expect import Cell, judge
from harness.faults.base import NoFault
from harness.faults.registry import default_registry
from harness.report.outcome import EventKind, RunOutcome
from harness.scenario import RunCase, load_scenario
from harness.workload.history import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
TARGET = load_target(str(ROOT / "examples/ledger/target.py"))


def _run(
    backend: LocalBackend,
    fault: str,
    point: str,
    *,
    dest: str = "v2.1",
    strategy: str = "halt",
    seed: int = 11,
    history: Path | None = None,
) -> RunOutcome:
    print(f"run seed {seed}: {fault} at {point}, v1 -> {dest}, {strategy}")
    spec = RunSpec(
        TARGET,
        "v1",
        dest,
        default_registry().parse(fault),
        parse_point(point),
        StrategyName(strategy),
        fix="v2.1",
        seed=seed,
        health_grace=1.0,
    )
    return run_chaos(backend, spec, history_path=history)


def _case(tmp_path: Path, body: str) -> RunCase:
    path = tmp_path / "s.yaml"
    target = ROOT / "examples/ledger/target.py"
    path.write_text(f"scenario: t\ntarget: {target}\nseed: 3\n" + textwrap.dedent(body))
    return load_scenario(path).runs()[0]


def _judged(backend: LocalBackend, case: RunCase) -> tuple[Cell, RunOutcome]:
    outcome = run_chaos(backend, case.run_spec(21))
    return judge(case, outcome).cell, outcome


def test_a_clean_rolling_deploy_has_no_client_errors(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    history_file = tmp_path / "history.jsonl"
    outcome = _run(local_backend, "no_fault", "none", history=history_file)
    assert outcome.detected is None
    assert outcome.errors == ()
    stats = outcome.history_stats
    errors = [(o.phase, o.f, o.error) for o in read_jsonl(history_file).operations() if o.is_error]
    # The rollouts cost no client a thing. A migration's DDL takes its table's lock (v2.1's
    # contract holds both tables while it backfills stragglers), so on a loaded machine a
    # request may hit its 1 s lock timeout while a migration runs (seen in 1 of 4 runs beside
    # the main job, and once in a CI run): the migration's doing, not the rollout's.
    migrating = ("step:migrate:", "step:contract:")
    assert [e for e in errors if not str(e[0]).startswith(migrating)] == [], errors
    assert all("lock timeout" in str(e[2]) for e in errors), errors
    assert stats["errors"] == len(errors)
    assert stats["operations"] > 100
    # Every phase was served in full, in plan order, with each release in rotation.
    names = [p["name"] for p in outcome.phases]
    assert names == [
        "warmup",
        "bake:migrate:0003",
        "bake:migrate:0004",
        "bake:rollout:0",
        "bake:rollout:1",
        "bake:contract:0005",
        "soak",
    ]
    assert all(p["complete"] for p in outcome.phases), outcome.phases
    mixed = next(p for p in outcome.phases if p["name"] == "bake:rollout:0")
    assert set(mixed["coverage"]) == {"v1", "v2.1"}, "the mixed-version window is exercised"
    assert set(next(p for p in outcome.phases if p["name"] == "soak")["coverage"]) == {
        "app0",
        "app1",
    }
    # Both rollouts were drained first and admitted once healthy.
    notes = [e.detail for e in outcome.events if e.kind is EventKind.BALANCER]
    assert sum(n.startswith("drained") for n in notes) == 2, notes
    assert sum(n.startswith("in rotation") for n in notes) == 2, notes
    # Every operation says where it went, on which release, in which phase.
    ops = read_jsonl(history_file).operations()
    assert all(o.instance is not None and o.release and o.phase for o in ops)
    served = Counter((o.phase, o.release) for o in ops)
    assert served[("bake:rollout:0", "v1")] > 0
    assert served[("bake:rollout:0", "v2.1")] > 0
    assert outcome.verdicts["end_state_serves"]["status"] == "valid"


def test_a_declared_duration_holds_past_the_plan(local_backend: LocalBackend) -> None:
    outcome = _run(local_backend, "latency(20, duration=2s)", "after:contract:0005")
    assert outcome.errors == (), outcome.errors
    (record,) = outcome.faults
    assert record["healed_by"] == "duration elapsed"
    assert 2.0 <= record["lasted_s"] < 3.0, record
    assert record["acted_on"]["proxy"], record
    last_step = max(e.t for e in outcome.events if e.kind is EventKind.STEP_END)
    assert record["healed_t"] - last_step > 1.0, "it outlived the plan, as declared"


def test_a_fault_with_nothing_to_act_on_is_a_harness_error(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    case = _case(
        tmp_path,
        """
        upgrade: {from: v1, to: v2.1}
        faults: ["terminate_backends(application_name=^no-such-app$)"]
        points: [after:rollout:0]
        strategies: [halt]
        """,
    )
    cell, outcome = _judged(local_backend, case)
    assert cell is Cell.ERROR
    assert [e.kind for e in outcome.errors] == ["NothingToActOn"]
    assert outcome.faults[0]["error"]


def test_a_during_fault_whose_step_ends_first_does_not_fire(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    case = _case(
        tmp_path,
        """
        upgrade: {from: v1, to: v2.1}
        faults: ["db_crash"]
        points: [{point: during:migrate:0003, delay: 30s}]
        strategies: [halt]
        """,
    )
    cell, outcome = _judged(local_backend, case)
    assert cell is Cell.ERROR
    (error,) = outcome.errors
    assert error.kind == "NotFired"
    assert "step ended before 30.00s" in error.message
    assert not any(e.kind is EventKind.FAULT_INJECT for e in outcome.events)


def test_a_fault_point_never_reached_is_a_harness_error(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    case = _case(
        tmp_path,
        """
        upgrade: {from: v1, to: v2.1}
        recover_after: migrate:0003
        faults: ["kill_app(1)"]
        points: [after:rollout:0]
        strategies: [halt]
        """,
    )
    cell, outcome = _judged(local_backend, case)
    assert cell is Cell.ERROR
    (error,) = outcome.errors
    assert error.kind == "NotFired"
    assert "stopped at migrate:0003" in error.message
    assert "after:rollout:0" in error.message


def test_an_armed_fault_that_never_fired_is_a_harness_error(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    case = _case(
        tmp_path,
        """
        upgrade: {from: v1, to: v2.1}
        faults: ["migration_fails_at(50)"]
        points: [before:contract:0005]
        strategies: [halt]
        """,
    )
    cell, outcome = _judged(local_backend, case)
    assert cell is Cell.ERROR
    (error,) = outcome.errors
    assert error.kind == "NoEffect"
    assert "statement 50 never came" in error.message
    assert outcome.faults[0]["missed"]


def test_the_control_runs_once_per_strategy_and_injects_nothing(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"scenario: c\ntarget: {ROOT / 'examples/ledger/target.py'}\n"
        "upgrade: {from: v1, to: v2.1}\n"
        "faults: [no_fault, db_crash]\n"
        "points: [after:rollout:0, before:contract:0005]\n"
        "strategies: [rollback, halt]\n"
    )
    runs = load_scenario(path).runs()
    assert [r.key for r in runs[:2]] == ["c[no_fault-none-rollback]", "c[no_fault-none-halt]"]
    assert len(runs) == 2 + 2 * 2
    cell, outcome = _judged(local_backend, runs[1])
    assert isinstance(runs[1].fault, NoFault)
    assert cell is Cell.PASS, outcome.verdicts
    assert outcome.faults == []
    assert outcome.errors == ()


def test_a_release_that_never_reconnects_after_a_crash_fails_the_end_state(
    local_backend: LocalBackend,
) -> None:
    """v2 -> v2-no-reconnect (v2 with a bug: once a database connection is lost, it never
    connects again); the database crashes for 0.5 s once both instances run it. Detection
    halts; the crash heals; only the end state after the soak tells that the app never came
    back."""
    print("run seed 5: db_crash(0.5s) after rollout:1, v2 -> v2-no-reconnect, halt")
    spec = RunSpec(
        TARGET,
        "v2",
        "v2-no-reconnect",
        default_registry().parse("db_crash(duration=0.5s)"),
        parse_point("after:rollout:1"),
        StrategyName.HALT,
        seed=5,
        health_grace=1.0,
    )
    outcome = run_chaos(local_backend, spec)
    assert outcome.errors == (), outcome.errors
    verdict = outcome.verdicts["end_state_serves"]
    assert verdict["status"] == "invalid", verdict
    evidence = verdict["evidence"]
    assert evidence["not_serving"] == [0, 1]
    for instance in evidence["instances"]:
        assert instance["status"] == "does not serve"
        assert "not healthy" in instance["problems"]
        assert any("never reconnects" in answer for answer in instance["health"]), instance
    # The same run on v2 itself (which reconnects) serves.
    healthy = run_chaos(local_backend, replace(spec, dest="v2"))
    assert healthy.errors == (), healthy.errors
    assert healthy.verdicts["end_state_serves"]["status"] == "valid", healthy.verdicts


def test_not_null_added_under_old_writers_is_a_regression(local_backend: LocalBackend) -> None:
    """v2.1 with its 0005 (NOT NULL) run before the rollout instead of as a contract: v1
    instances still serve and can no longer write."""
    eager = replace(TARGET.release("v2.1"), name="v2.1-eager", contract_migrations=())
    target = replace(TARGET, name="ledger-eager", releases=(TARGET.release("v1"), eager))
    print("run seed 9: no_fault, v1 -> v2.1-eager (0005 before the rollout), halt")
    spec = RunSpec(
        target,
        "v1",
        "v2.1-eager",
        NoFault(),
        parse_point("none"),
        StrategyName.HALT,
        seed=9,
        health_grace=1.0,
    )
    outcome = run_chaos(local_backend, spec)
    assert outcome.plan[:3] == ("migrate:0003", "migrate:0004", "migrate:0005")
    verdict = outcome.verdicts["no_regression"]
    assert verdict["status"] == "invalid", verdict
    found = {(v["step"], v["release"], v["op"]) for v in verdict["evidence"]["violations"]}
    assert ("migrate:0005", "v1", "open_account") in found, found
    assert {op for step, release, op in found if step == "migrate:0005"} >= {
        "open_account",
        "deposit",
    }
    example = verdict["evidence"]["violations"][0]["examples"][0]["error"]
    assert "null value" in example or "not-null" in example, example


def test_a_killed_instance_hits_its_clients_until_the_balancer_notices(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    """Nobody tells the balancer: the requests sent to the killed instance fail (refused:
    not applied, or cut off: unknown) until it is ejected, and none is sent to it after.
    Killed mid-backfill, under free traffic at 200 ops/s (so that the 0.2-0.4 s the
    balancer's health checks need always see requests)."""
    history_file = tmp_path / "history.jsonl"
    print("run seed 13: kill_app(1) during the backfill, v1 -> v2, halt, 200 ops/s")
    spec = RunSpec(
        TARGET,
        "v1",
        "v2",
        default_registry().parse("kill_app(1, duration=none)"),
        parse_point("during:migrate:0004", statement="UPDATE (accounts|transfers) SET"),
        StrategyName.HALT,
        seed=13,
        health_grace=1.0,
        workload_settings={"rate": 200.0},
    )
    outcome = run_chaos(local_backend, spec, history_path=history_file)
    assert [e.kind for e in outcome.errors] == [], outcome.errors
    assert outcome.faults[0]["acted_on"] == {"instance": 1, "release": "v1"}
    ops = read_jsonl(history_file).operations()
    killed_at = next(e.t for e in outcome.events if e.kind is EventKind.FAULT_INJECT)
    healed_at = next(e.t for e in outcome.events if e.kind is EventKind.FAULT_HEAL)
    ejected = [
        e.t
        for e in outcome.events
        if e.kind is EventKind.BALANCER and e.subject == "app1" and "ejected" in e.detail
    ]
    assert ejected
    assert ejected[0] > killed_at
    hit = [o for o in ops if o.instance == 1 and killed_at < o.complete_time and o.is_error]
    assert hit, "the kill hit instance 1's clients"
    assert all(not o.reached or o.type.value == "info" for o in hit), hit
    # After the ejection (a client that had already picked it may still have sent one):
    late = [o for o in ops if o.instance == 1 and ejected[0] + 0.05 < o.invoke_time < healed_at]
    assert late == [], late


def test_a_fault_whose_inject_fails_is_a_harness_error_not_a_crash(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    """The database's own error (a table that does not exist yet) is recorded: the run
    goes on to its checks and the cell says it was not tested."""
    case = _case(
        tmp_path,
        """
        upgrade: {from: v1, to: v2.1}
        faults: ["lock(no_such_table, duration=2s)"]
        points: [before:migrate:0003]
        strategies: [halt]
        """,
    )
    cell, outcome = _judged(local_backend, case)
    assert cell is Cell.ERROR
    (error,) = outcome.errors
    assert (error.phase, error.kind) == ("inject", "UndefinedTable"), error
    assert outcome.faults[0]["healed_by"] == "plan finished", "no duration held for it"
    assert outcome.verdicts["end_state_serves"]["status"] == "valid"


def test_a_renamed_fault_runs_as_its_own(local_backend: LocalBackend) -> None:
    """Two entries of one fault in a scenario are named by their text (harness.faults.base
    Named); the run injects the fault itself under that name."""
    from harness.faults.base import Named

    fault = Named(default_registry().parse("db_crash(duration=0.5s)"), "db_crash(duration=0.5s)")
    spec = RunSpec(
        TARGET,
        "v1",
        "v2.1",
        fault,
        parse_point("before:migrate:0003"),
        StrategyName("halt"),
        fix="v2.1",
        seed=11,
        health_grace=1.0,
    )
    outcome = run_chaos(local_backend, spec)
    assert outcome.errors == (), outcome.errors
    assert outcome.fault == "db_crash(duration=0.5s)"
    (injection,) = outcome.faults
    assert injection["acted_on"], injection
