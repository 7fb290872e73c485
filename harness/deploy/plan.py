"""Plans: the ordered steps that take a stack from release A to release B.

``migrate:<id>`` per pending expand migration, ``rollout:<i>`` per app instance (instance 0 is
the canary), ``verify``, then ``contract:<id>`` per pending contract migration. Step names
are stable strings used in fault points, test ids and reports.

A weighted canary (``canary=(10, 50)``) adds ``weight:<percent>`` steps the way Argo Rollouts'
``setWeight`` steps do: after ``rollout:0``, one step per weight below 100 (the new release
gets that share of the traffic, then the canary analysis judges it: see
:mod:`harness.deploy.canary`), then the other rollouts, then ``weight:100`` (promotion: the
split ends).

A flag rollout (``flag=FlagRollout("new-transfers", (10, 100))``) adds
``flag:<name>:<percent>`` steps after ``verify`` (the code is everywhere, dark; the flag
launches it), before the contract migrations: each writes the stack's flag file (see
:mod:`harness.flags`) and is judged by an analysis of the traffic after the flip.
"""

from __future__ import annotations

import enum
import itertools
import json
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from harness.backends.base import Stack
from harness.errors import SpecError
from harness.flags import FlagRollout, switch_flag
from harness.spec import Release, Target

__all__ = [
    "Plan",
    "Step",
    "StepKind",
    "build_plan",
    "canary_weights",
    "execute_step",
    "reported_release",
]


class StepKind(enum.Enum):
    MIGRATE = "migrate"
    ROLLOUT = "rollout"
    VERIFY = "verify"
    CONTRACT = "contract"
    WEIGHT = "weight"
    FLAG = "flag"


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    arg: str | None = None

    @property
    def name(self) -> str:
        return self.kind.value if self.arg is None else f"{self.kind.value}:{self.arg}"

    def __str__(self) -> str:
        return self.name

    @property
    def flag(self) -> tuple[str, int]:
        """A flag step's (flag name, percent): ``flag:new-transfers:10``."""
        if self.kind is not StepKind.FLAG or self.arg is None:
            raise SpecError(f"step {self.name} is not a flag step")
        name, _, percent = self.arg.rpartition(":")
        return name, int(percent)


@dataclass(frozen=True, slots=True)
class Plan:
    """The steps from ``source`` to ``dest`` for a stack of ``instances`` app instances."""

    target: Target
    source: Release
    dest: Release
    instances: int
    steps: tuple[Step, ...]

    @property
    def verified_migrations(self) -> list[str]:
        """What ``verify`` expects applied: the destination's expand migrations, and the
        contract migrations the source already had (a plan never undoes them)."""
        have = set(self.source.migrations)
        return [m for m in self.dest.migrations if m in self.dest.expand_migrations or m in have]

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise SpecError(f"the plan has no step {name!r}", choices=self.step_names)


def build_plan(
    target: Target,
    source: Release,
    dest: Release,
    *,
    instances: int,
    canary: Sequence[int] = (),
    flag: FlagRollout | None = None,
) -> Plan:
    """Build the plan; the migrations of ``dest`` that ``source`` lacks are the pending ones.
    ``canary``: the traffic weights (percent) of a weighted canary (see the module doc)."""
    if instances < 1:
        raise SpecError(f"instances={instances}", expected="at least 1")
    weights = canary_weights(canary, instances)
    missing = [m for m in source.migrations if m not in dest.migrations]
    if missing:
        raise SpecError(
            f"release {dest.name!r} lacks migrations {missing} of {source.name!r}; "
            "a plan can only move forward"
        )
    have = set(source.migrations)
    steps = [Step(StepKind.MIGRATE, m) for m in dest.expand_migrations if m not in have]
    rollouts = [Step(StepKind.ROLLOUT, str(i)) for i in range(instances)]
    if weights:
        steps.append(rollouts[0])
        steps += [Step(StepKind.WEIGHT, str(w)) for w in weights]
        steps += rollouts[1:]
        steps.append(Step(StepKind.WEIGHT, "100"))
    else:
        steps += rollouts
    steps.append(Step(StepKind.VERIFY))
    if flag is not None:
        steps += [Step(StepKind.FLAG, f"{flag.name}:{p}") for p in flag.steps]
    steps += [Step(StepKind.CONTRACT, m) for m in dest.contract_migrations if m not in have]
    return Plan(target, source, dest, instances, tuple(steps))


def canary_weights(canary: Sequence[int], instances: int) -> tuple[int, ...]:
    """The weights below 100 of a canary, checked: strictly rising, each in 1..99 (a final
    100 may be given; promotion is always the last weight step)."""
    weights = list(canary)
    if weights and weights[-1] == 100:
        weights.pop()
    if not canary:
        return ()
    if instances < 2:
        raise SpecError(
            f"a weighted canary with instances={instances}",
            expected="at least 2 instances (the canary beside the stable release)",
        )
    if not weights:
        raise SpecError(f"canary {list(canary)}", expected="at least one weight below 100")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, int) or not 0 < w < 100:
            raise SpecError(f"canary weight {w!r}", expected="an integer percent in 1..99")
    if any(b <= a for a, b in itertools.pairwise(weights)):
        raise SpecError(f"canary {list(canary)}", expected="weights that rise step by step")
    return tuple(weights)


def reported_release(base_url: str, release: Release, timeout: float = 2.0) -> str | None:
    """The release an instance says it runs (``"release"`` in its version document)."""
    url = base_url + release.version_path
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
        body = json.loads(response.read() or b"{}")
    value = body.get("release") if isinstance(body, dict) else None
    return None if value is None else str(value)


def execute_step(stack: Stack, plan: Plan, step: Step) -> None:
    """Run one step of ``plan`` on ``stack``; raise on failure."""
    if step.kind in (StepKind.MIGRATE, StepKind.CONTRACT):
        assert step.arg is not None
        stack.migrate(plan.dest, step.arg)
    elif step.kind is StepKind.ROLLOUT:
        assert step.arg is not None
        stack.apps[int(step.arg)].deploy(plan.dest)
    elif step.kind is StepKind.WEIGHT:
        return  # a traffic split lives in the run's balancer (see the runner)
    elif step.kind is StepKind.FLAG:
        switch_flag(stack, *step.flag, where=step.name)
    else:
        _verify(stack, plan)


def _verify(stack: Stack, plan: Plan) -> None:
    from harness.errors import ServiceError

    expected = plan.verified_migrations
    applied = stack.applied_migrations()
    if applied != expected:
        raise ServiceError(
            stack.name, "verify", f"migrations applied {applied}, expected {expected}"
        )
    for app in stack.apps:
        said = reported_release(app.base_url, app.release)
        if said != plan.dest.name:
            raise ServiceError(
                app.name, "verify", f"reports release {said!r}, expected {plan.dest.name!r}"
            )
