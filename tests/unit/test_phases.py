"""Phase schedules follow the run's seed: the same seed gives the same operations, order and
instances; every group gets its quota of every operation; bad settings are refused."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.errors import SpecError
from harness.workload.phases import PhaseResult, Phases, build_schedule

GROUPS = {"v1": [(1, "v1")], "v2": [(0, "v2"), (2, "v2")]}
OPS = ("open", "deposit", "read")


def _schedule(seed: int, phase: str = "bake:rollout:0") -> list[tuple[str, str, int, int]]:
    items = build_schedule(seed=seed, phase=phase, operations=OPS, groups=GROUPS, quota=3)
    return [(i.f, i.group, i.instance, i.seed) for i in items]


def test_the_schedule_is_the_seeds() -> None:
    print("schedule seeds 7 and 8")
    assert _schedule(7) == _schedule(7)
    assert _schedule(7) != _schedule(8)
    assert _schedule(7) != _schedule(7, "bake:rollout:1"), "each phase draws its own"


def test_every_group_gets_its_quota_of_every_operation_on_its_own_instances() -> None:
    items = build_schedule(seed=3, phase="soak", operations=OPS, groups=GROUPS, quota=3)
    assert Counter((i.group, i.f) for i in items) == {(g, f): 3 for g in GROUPS for f in OPS}
    for item in items:
        assert (item.instance, item.release) in GROUPS[item.group]
    assert {i.instance for i in items if i.group == "v2"} == {0, 2}, "spread over the group"
    assert [i.number for i in items] == list(range(len(items)))


def test_an_empty_group_or_a_zero_quota_schedules_nothing() -> None:
    assert build_schedule(seed=1, phase="p", operations=OPS, groups={"v1": []}, quota=3) == ()
    assert build_schedule(seed=1, phase="p", operations=OPS, groups=GROUPS, quota=0) == ()


@pytest.mark.parametrize(
    "kwargs", [{"bake": -1}, {"soak": 1.5}, {"warmup": True}, {"timeout": 0}, {"timeout": 601}]
)
def test_bad_phase_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(SpecError, match="phases"):
        Phases(**kwargs)  # type: ignore[arg-type]


def test_a_phase_result_says_whether_it_is_complete() -> None:
    done = PhaseResult("bake:x", 3, 1.0, 1.5, scheduled=6, served=6)
    assert done.complete
    assert done.to_json()["seconds"] == 0.5
    short = PhaseResult("bake:x", 3, 1.0, 16.0, scheduled=6, served=4, timed_out=True)
    assert not short.complete
    assert "4/6 served" in short.describe()
    assert "timed out" in short.describe()
