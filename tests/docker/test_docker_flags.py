"""Feature flags on the docker backend: the stack's flag file is mounted read-only into the
app containers, the ledger in its container reads it through the OpenFeature SDK, a flag
step is confirmed by every container, and kill_switch turns the bad flagged change off."""

from __future__ import annotations

from harness.backends.docker import DockerBackend
from harness.deploy.points import parse_point
from harness.deploy.runner import RunSpec, run_chaos
from harness.deploy.strategies import StrategyName
from harness.faults.registry import default_registry
from harness.flags import FlagRollout
from harness.report.outcome import EventKind
from harness.spec import Target


def test_a_flag_reaches_the_containers_and_kill_switch_recovers(
    ledger_target: Target, docker_backend: DockerBackend
) -> None:
    print("run seed 3: v1 -> v1-flagged on docker, flag new-transfers 100 %, kill_switch")
    spec = RunSpec(
        ledger_target,
        "v1",
        "v1-flagged",
        default_registry().parse("no_fault"),
        parse_point("none"),
        StrategyName.KILL_SWITCH,
        fix="v1.0.1",
        seed=3,
        health_grace=2.0,
        flag=FlagRollout("new-transfers", (100,), samples=40),  # see integration/test_flags
    )
    outcome = run_chaos(docker_backend, spec, progress=print)
    assert outcome.errors == (), outcome.errors
    notes = [e.detail for e in outcome.events if e.kind is EventKind.NOTE]
    assert "confirmed: 2 instance(s) report new-transfers at 100%" in notes
    assert outcome.detected is not None
    assert outcome.detected.startswith("analysis at flag:new-transfers:100")
    assert outcome.analysis[-1]["canary"]["errors"] >= 2
    assert outcome.recovered is True
    done = [e.subject for e in outcome.events if e.kind is EventKind.RECOVERY_STEP_END]
    assert done == ["kill_switch:flag:new-transfers"]
    for name, verdict in outcome.verdicts.items():
        # availability has no budget here: measured and reported, not judged
        assert verdict["status"] == ("unknown" if name == "availability" else "valid"), (
            name,
            verdict,
        )
