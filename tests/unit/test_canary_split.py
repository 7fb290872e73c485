"""Weighted canaries without a stack: the plan's weight steps, the balancer's split, the
analysis's three verdicts, the exposure's counts, and the scenario's ``canary:`` key."""

from __future__ import annotations

import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness._loader import load_target
from harness.deploy.canary import Canary, analyse, exposure, exposure_text
from harness.deploy.plan import build_plan
from harness.errors import SpecError
from harness.scenario import load_scenario
from harness.workload.balancer import Balancer
from harness.workload.history import ErrorKind, Operation, OpType

ROOT = Path(__file__).resolve().parents[2]
TARGET = load_target(str(ROOT / "examples/ledger/target.py"))


@dataclass(frozen=True)
class _Instance:
    index: int
    base_url: str
    release: str


def _op(release: str, t: float, *, error: bool = False) -> Operation:
    kind, err = (OpType.FAIL, ErrorKind.UNAVAILABLE) if error else (OpType.OK, None)
    return Operation(0, 0, "f", kind, {}, t, t + 0.01, None, err, 0, release, "p")


def test_the_plan_puts_weight_steps_after_the_canary_and_promotes_last() -> None:
    plan = build_plan(
        TARGET, TARGET.release("v1"), TARGET.release("v2.1"), instances=3, canary=(10, 50, 100)
    )
    rollout = [s for s in plan.step_names if s.startswith(("rollout", "weight"))]
    assert rollout == [
        "rollout:0",
        "weight:10",
        "weight:50",
        "rollout:1",
        "rollout:2",
        "weight:100",
    ]


def test_the_split_sends_exactly_its_share_to_the_canary() -> None:
    members = [
        _Instance(0, "http://127.0.0.1:1", "v2"),
        _Instance(1, "http://127.0.0.1:2", "v1"),
        _Instance(2, "http://127.0.0.1:3", "v1"),
    ]
    balancer = Balancer(members, checks=False)
    balancer.set_weight(10, stable="v1")
    picks = [balancer.pick() for _ in range(200)]
    releases = Counter(p.release for p in picks if p is not None)
    assert releases == {"v2": 20, "v1": 180}
    assert {p.index for p in picks if p is not None and p.release == "v1"} == {1, 2}
    balancer.set_weight(None)
    ended = Counter(p.release for p in (balancer.pick() for _ in range(30)) if p is not None)
    assert ended == {"v2": 10, "v1": 20}, "no split: round robin over the rotation"


def test_the_analysis_fails_passes_or_cannot_judge() -> None:
    settings = Canary((10,), samples=5, max_excess=0.05, min_errors=2)
    stable = [_op("v1", i) for i in range(40)]
    bad = [_op("v2", i, error=i % 2 == 0) for i in range(6)]
    failed = analyse("weight:10", 10, stable + bad, "v1", settings, 1.0)
    assert failed.verdict == "failed"
    assert (failed.canary_ops, failed.canary_errors) == (6, 3)
    good = [_op("v2", i, error=i == 0) for i in range(6)]
    assert analyse("weight:10", 10, stable + good, "v1", settings, 1.0).verdict == "passed"
    few = analyse("weight:10", 10, [*stable, _op("v2", 1)], "v1", settings, 1.0)
    assert few.verdict == "inconclusive"
    assert "1 canary operation(s)" in few.detail


def test_exposure_counts_what_the_new_release_served_and_what_broke() -> None:
    ops = [_op("v1", 1.0), _op("v2", 2.0, error=True), _op("v2", 3.0), _op("v2", 6.0)]
    verdicts = {
        "durable": {"status": "invalid", "evidence": {"damaged": 2}},
        "readable": {"status": "invalid", "evidence": {"damaged": 5}},
        "books": {"status": "valid", "evidence": {"damaged": 9}},
    }
    got = exposure(ops, "v1", in_service=1.5, detected=4.0, recovered=7.0, verdicts=verdicts)
    assert got["before_detection"] == {"operations": 2, "failed": 1}
    assert got["until_recovery"] == {"operations": 3, "failed": 1}
    assert got["damaged_writes"] == 5, "the largest count of an invalid verdict"
    assert (got["time_to_detect_s"], got["time_to_recover_s"]) == (2.5, 3.0)
    assert "2 ops on v2 (1 failed) before detection" in exposure_text(got)
    quiet = exposure(ops, "v1", in_service=1.5, detected=None, recovered=None, verdicts={})
    assert quiet["time_to_detect_s"] is None
    assert "nothing detected" in exposure_text(quiet)


def _scenario(tmp_path: Path, canary: str) -> Path:
    path = tmp_path / "s.yaml"
    target = ROOT / "examples/ledger/target.py"
    path.write_text(
        textwrap.dedent(
            f"""\
            scenario: t
            target: {target}
            upgrade: {{from: v1, to: v2.1}}
            faults: [no_fault]
            points: [after:weight:10]
            strategies: [rollback]
            canary: {canary}
            """
        )
    )
    return path


def test_a_scenario_declares_a_canary_and_its_steps_are_fault_points(tmp_path: Path) -> None:
    scenario = load_scenario(_scenario(tmp_path, "{weights: [10, 50], samples: 8, window: 5s}"))
    assert scenario.canary == Canary((10, 50), samples=8, window=5.0)
    spec = scenario.runs()[0].run_spec(1)
    assert "weight:10" in spec.plan().step_names


@pytest.mark.parametrize(
    ("canary", "message"),
    [
        ("[50, 10]", "rise"),
        ("[0]", "canary weight 0"),
        ("[10, 150]", "percent <= 100"),
        ("{weights: [10], max_excess: 120%}", "max_excess"),
        ("{weights: [10], every: 2}", "unknown key 'every'"),
    ],
)
def test_a_bad_canary_is_refused_with_its_line(tmp_path: Path, canary: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        load_scenario(_scenario(tmp_path, canary))
    assert "s.yaml" in str(info.value)
    assert ":7" in str(info.value) or "line 7" in str(info.value)


def test_every_member_of_each_side_gets_its_turn() -> None:
    """The sides alternate at 50 %: one shared round robin would starve a stable member."""
    members = [
        _Instance(0, "http://127.0.0.1:1", "v2"),
        _Instance(1, "http://127.0.0.1:2", "v1"),
        _Instance(2, "http://127.0.0.1:3", "v1"),
    ]
    balancer = Balancer(members, checks=False)
    balancer.set_weight(50, stable="v1")
    picks = Counter(p.index for p in (balancer.pick() for _ in range(400)) if p is not None)
    assert picks == {0: 200, 1: 100, 2: 100}
