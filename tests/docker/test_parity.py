"""Parity: the same chaos run on the local and the docker backend ends the same way.

Same target, fault, fault point, strategy and seed; compared: where the failure was
detected, whether recovery succeeded, the end state read from the system (migrations,
each instance's release, health, running, paused) and every invariant's verdict, except
those the reference scenarios declare timing-dependent for that run (a measured ``rate:``
in scenarios/ledger_currency.yaml: whether the workload happened to move non-USD money
before the rollback), which must still be ``valid`` or ``invalid`` on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.backends.base import Backend
from harness.backends.docker import DockerBackend
from harness.backends.local import LocalBackend
from harness.deploy.points import parse_point
from harness.deploy.runner import RunSpec, run_chaos
from harness.deploy.strategies import StrategyName
from harness.faults.base import Fault
from harness.faults.network import Partition
from harness.faults.process import KillApp
from harness.report.outcome import RunOutcome
from harness.spec import Target


@pytest.fixture(scope="module")
def local_backend() -> Iterator[LocalBackend]:
    with LocalBackend() as backend:
        yield backend


def _summary(outcome: RunOutcome) -> dict[str, Any]:
    detected = outcome.detected or ""
    step = next((s for s in outcome.plan if s in detected), None)
    end = outcome.end_state
    return {
        "detected_at": step,
        "detected": outcome.detected is not None,
        "recovered": outcome.recovered,
        "migrations": None if end is None else end.migrations,
        "instances": None
        if end is None
        else [(i.release, i.healthy, i.running, i.paused) for i in end.instances],
        "verdicts": {name: v.get("status") for name, v in outcome.verdicts.items()},
        "errors": sorted({(e.phase, e.kind) for e in outcome.errors}),
    }


def _run(backend: Backend, spec: RunSpec) -> dict[str, Any]:
    outcome = run_chaos(backend, spec, progress=print)
    summary = _summary(outcome)
    print(f"{backend.name}: {summary}")
    return summary


@pytest.mark.parametrize(
    ("fault", "point", "timing"),
    [
        pytest.param(Partition(duration=None), "before:migrate:0003", (), id="partition"),
        pytest.param(
            KillApp(1, duration=None),
            "before:rollout:0",
            # Rollback after the canary (v2) served: whether an EUR account was opened
            # through it in that window is the workload's draw and the timing's (the
            # reference scenarios declare the same hazard with a measured rate).
            ("conservation", "readable_by_running_release"),
            id="kill_app",
        ),
    ],
)
def test_same_run_same_verdicts_on_both_backends(
    fault: Fault,
    point: str,
    timing: tuple[str, ...],
    ledger_target: Target,
    docker_backend: DockerBackend,
    local_backend: LocalBackend,
) -> None:
    spec = RunSpec(
        ledger_target,
        "v1",
        "v2",
        fault,
        parse_point(point),
        StrategyName.ROLLBACK,
        seed=11,
        scenario="parity",
    )
    on_local = _run(local_backend, spec)
    on_docker = _run(docker_backend, spec)
    assert on_local["detected"], "the fault must be detected (else the comparison is empty)"
    for name in timing:
        for summary in (on_local, on_docker):
            assert summary["verdicts"].pop(name, None) in ("valid", "invalid", None)
    assert on_docker == on_local
