"""Feature flags on real parts: the harness writes flagd's format, the ledger reads it through
the OpenFeature SDK and the flagd provider (file mode), a plan's flag step changes what the
app does, the analysis after the flip stops a bad flagged change, and kill_switch recovers
it with every invariant valid and no redeploy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness._loader import load_target
from harness.backends.local import LocalBackend
from harness.deploy.points import parse_point
from harness.deploy.runner import RunSpec, run_chaos
from harness.deploy.strategies import StrategyName
from harness.errors import SpecError
from harness.faults.registry import default_registry
from harness.flags import FlagFile, FlagRollout
from harness.report.outcome import EventKind, RunOutcome
from harness.scenario import load_scenario
from harness.workload.history import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
LEDGER = ROOT / "examples/ledger"
TARGET = load_target(str(LEDGER / "target.py"))


def test_the_flagd_reader_sees_the_harness_file_and_its_changes(tmp_path: Path) -> None:
    """The real OpenFeature SDK and flagd provider, reading the harness's file: 10 % of the
    targeting keys on, then everyone, as the file changes under it."""
    flags = FlagFile(tmp_path / "flags.json")
    flags.set("new-transfers", 10)
    script = textwrap.dedent(
        """
        import json, sys, time
        from ledger.flags import Flags
        flags = Flags.from_env(True)
        share = sum(flags.on(f"key-{i}") for i in range(2000))
        print(json.dumps({"share": share, "report": flags.report()}), flush=True)
        sys.stdin.readline()  # the test rewrites the file, then says go
        deadline = time.monotonic() + 5
        while flags.report().get("new-transfers") != 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        share = sum(flags.on(f"key-{i}") for i in range(2000))
        print(json.dumps({"share": share, "report": flags.report()}), flush=True)
        """
    )
    env = {**os.environ, "DEPLOY_CHAOS_FLAGS_FILE": str(flags.path), "PYTHONPATH": str(LEDGER)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=LEDGER,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        first = json.loads(proc.stdout.readline())
        print("at 10 %:", first)
        assert first["report"] == {"new-transfers": 10}
        assert 150 <= first["share"] <= 250, "about 10 % of 2000 keys"
        flags.set("new-transfers", 100)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        second = json.loads(proc.stdout.readline())
        print("at 100 %:", second)
        assert second == {"share": 2000, "report": {"new-transfers": 100}}
    finally:
        proc.kill()
        proc.wait(10)


def _run(
    backend: LocalBackend,
    strategy: str,
    history: Path,
    *,
    seed: int = 3,
    fault: str = "no_fault",
    point: str = "none",
    steps: tuple[int, ...] = (10, 100),
) -> RunOutcome:
    print(f"run seed {seed}: v1 -> v1-flagged, flag {steps}, {fault} at {point}, {strategy}")
    spec = RunSpec(
        TARGET,
        "v1",
        "v1-flagged",
        default_registry().parse(fault),
        parse_point(point),
        StrategyName(strategy),
        fix="v1.0.1",
        seed=seed,
        health_grace=1.0,
        # 40 samples: with every transfer failing (about a third of the operations), fewer
        # than 2 errors in 40 has a chance of about 1 in 100,000.
        flag=FlagRollout("new-transfers", steps, samples=40),
    )
    return run_chaos(backend, spec, history_path=history)


def test_a_flag_step_changes_behaviour_and_kill_switch_recovers_it(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    history = tmp_path / "h.jsonl"
    # One step to 100 %: at 10 % whether the analysis catches it is the draw's (see the
    # delivery comparison); here the flip must change what the app does, every time.
    outcome = _run(local_backend, "kill_switch", history, steps=(100,))
    assert outcome.errors == (), outcome.errors
    steps = [s for s in outcome.plan if s.startswith("flag:")]
    assert steps == ["flag:new-transfers:100"]
    notes = [e.detail for e in outcome.events if e.kind is EventKind.NOTE and "flag:" in e.subject]
    assert any(n.startswith("confirmed: 2 instance(s) report new-transfers at 100%") for n in notes)
    assert outcome.detected is not None
    assert outcome.detected.startswith("analysis at flag:new-transfers:")
    last = outcome.analysis[-1]
    assert last["verdict"] == "failed", outcome.analysis

    ops = read_jsonl(history).operations()
    transfers = [o for o in ops if o.f == "transfer"]
    starts = {e.subject: e.t for e in outcome.events if e.kind is EventKind.STEP_START}
    first_flag, flip = starts["flag:new-transfers:100"], starts[last["step"]]
    dark = [o for o in transfers if o.invoke_time < first_flag]
    after = [o for o in transfers if o.phase == f"analysis:{last['step']}"]
    soak = [o for o in transfers if o.phase == "soak"]
    print(f"transfers: {len(dark)} dark, {len(after)} after the flip, {len(soak)} in the soak")
    assert dark, "transfers were sent while the flag was off"
    assert not any(o.is_error for o in dark), "the flag off: the bad code path is dark"
    assert after, "transfers were sent after the flip"
    assert all(o.is_error for o in after if o.invoke_time >= flip + 0.5), "the flag turned it on"
    assert soak, "the soak sent transfers"
    assert not any(o.is_error for o in soak), "kill_switch turned it off: transfers work again"

    # Recovered without a redeploy or a down migration: the same release, the flag off.
    assert outcome.recovered is True
    assert outcome.end_state is not None
    assert set(outcome.end_state.releases) == {"v1-flagged"}
    steps_done = [e.subject for e in outcome.events if e.kind is EventKind.RECOVERY_STEP_END]
    assert steps_done == ["kill_switch:flag:new-transfers"]
    for name, verdict in outcome.verdicts.items():
        # availability has no budget here: measured and reported, not judged
        assert verdict["status"] == ("unknown" if name == "availability" else "valid"), (
            name,
            verdict,
        )
    # The exposure is the history's, from the first flag step.
    detected = next(e.t for e in outcome.events if e.kind is EventKind.DETECTION)
    recovered = next(e.t for e in outcome.events if e.kind is EventKind.RECOVERY_END)
    exposed = [o for o in ops if o.release == "v1-flagged" and first_flag <= o.invoke_time]
    before = [o for o in exposed if o.invoke_time < detected]
    assert outcome.exposure["before_detection"] == {
        "operations": len(before),
        "failed": sum(o.is_error for o in before),
    }
    assert recovered >= detected


def test_a_fault_fires_at_a_flag_step(local_backend: LocalBackend, tmp_path: Path) -> None:
    outcome = _run(
        local_backend,
        "kill_switch",
        tmp_path / "h.jsonl",
        fault="kill_app(1, duration=none)",
        point="after:flag:new-transfers:10",
    )
    assert outcome.errors == (), outcome.errors
    (injection,) = outcome.faults
    assert injection["where"] == "after:flag:new-transfers:10"
    injected = next(e.t for e in outcome.events if e.kind is EventKind.FAULT_INJECT)
    flag_end = next(
        e.t
        for e in outcome.events
        if e.kind is EventKind.STEP_END and e.subject == "flag:new-transfers:10"
    )
    assert injected >= flag_end, "after the flag step, not before"
    assert outcome.detected is not None


def test_kill_switch_needs_a_flag(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            scenario: t
            target: {LEDGER / "target.py"}
            upgrade: {{from: v1, to: v1-flagged}}
            faults: [no_fault]
            points: [after:rollout:0]
            strategies: [halt, kill_switch]
            """
        )
    )
    with pytest.raises(SpecError, match="kill_switch without a flag rollout") as info:
        load_scenario(path)
    assert "line 6" in str(info.value) or ":6" in str(info.value)
