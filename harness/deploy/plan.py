"""Plans: the ordered steps that take a stack from release A to release B.

``migrate:<id>`` per pending expand migration, ``rollout:<i>`` per app instance (instance 0 is
the canary), ``verify``, then ``contract:<id>`` per pending contract migration. Step names
are stable strings used in fault points, test ids and reports.
"""

from __future__ import annotations

import enum
import json
import urllib.request
from dataclasses import dataclass

from harness.backends.base import Stack
from harness.errors import SpecError
from harness.spec import Release, Target

__all__ = ["Plan", "Step", "StepKind", "build_plan", "execute_step", "reported_release"]


class StepKind(enum.Enum):
    MIGRATE = "migrate"
    ROLLOUT = "rollout"
    VERIFY = "verify"
    CONTRACT = "contract"


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    arg: str | None = None

    @property
    def name(self) -> str:
        return self.kind.value if self.arg is None else f"{self.kind.value}:{self.arg}"

    def __str__(self) -> str:
        return self.name


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


def build_plan(target: Target, source: Release, dest: Release, *, instances: int) -> Plan:
    """Build the plan; the migrations of ``dest`` that ``source`` lacks are the pending ones."""
    if instances < 1:
        raise SpecError(f"instances={instances}", expected="at least 1")
    missing = [m for m in source.migrations if m not in dest.migrations]
    if missing:
        raise SpecError(
            f"release {dest.name!r} lacks migrations {missing} of {source.name!r}; "
            "a plan can only move forward"
        )
    have = set(source.migrations)
    steps = [Step(StepKind.MIGRATE, m) for m in dest.expand_migrations if m not in have]
    steps += [Step(StepKind.ROLLOUT, str(i)) for i in range(instances)]
    steps.append(Step(StepKind.VERIFY))
    steps += [Step(StepKind.CONTRACT, m) for m in dest.contract_migrations if m not in have]
    return Plan(target, source, dest, instances, tuple(steps))


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
