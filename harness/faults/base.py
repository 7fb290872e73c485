"""The fault contract (Jepsen's nemesis): ``inject`` returns a handle, ``heal`` undoes it.

Every fault is a frozen dataclass with its parameters and a readable ``name`` used in test
ids and reports (``db_crash``, ``latency(800ms,downstream)``). ``duration`` is how long the
fault lasts before it is healed, even when the plan finishes first; ``None`` means until
recovery starts (or the run ends); recovery starting ends any fault. The runner always heals
in ``finally`` and records both in the timeline.

A fault says what it did: ``inject`` returns :class:`Injected` (what it acted on, recorded in
the run's fault record, and the handle ``heal`` gets; any other return value is the handle,
and the record says the fault did not report); it raises
:class:`~harness.errors.NothingToActOn` when there was nothing to act on. A fault that is
armed rather than immediate (a trigger on the n-th statement) may define
``missed(ctx, handle) -> str | None``, asked before ``heal``: why it never took effect. Either
makes the run a harness error: its cell was not tested. A fault whose rules depend on the
moment of its point too may define ``validate_point(plan, point)`` (called after
``validate`` when the run is built) and a class attribute ``moments`` (the moments it can
fire at, e.g. ``("during",)``).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from harness.backends.base import RunningCommand, Stack
from harness.deploy.plan import Plan, Step
from harness.spec import Release
from harness.workload.history import JsonValue

__all__ = ["Fault", "FaultContext", "FaultKind", "Injected", "NoFault"]


class FaultKind(enum.Enum):
    NETWORK = "network"
    PROCESS = "process"
    DATABASE = "database"
    RELEASE = "release"
    #: The control: nothing is injected (``no_fault``).
    CONTROL = "control"


@dataclass(frozen=True, slots=True)
class Injected:
    """What an inject acted on (plain JSON for the run's fault record: pids, instances,
    a proxy, a table, how many connections), and the handle its heal gets."""

    acted_on: Mapping[str, JsonValue]
    handle: Any = None


@dataclass(slots=True)
class FaultContext:
    """What a fault can act on when it fires.

    ``command`` is the running command of the current step (a migration), when there is one.
    ``release_override`` lets a release fault replace what the rollout deploys from then on;
    ``overridden`` lists the instances a rollout deployed it on.
    """

    stack: Stack
    plan: Plan
    step: Step | None = None
    command: RunningCommand | None = None
    release_override: Release | None = None
    overridden: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@runtime_checkable
class Fault(Protocol):
    """A failure injected at a fault point."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> FaultKind: ...

    @property
    def duration(self) -> float | None: ...

    def validate(self, plan: Plan, point_step: str | None) -> None:
        """Raise a SpecError when the fault cannot fire at that step of that plan."""

    def inject(self, ctx: FaultContext) -> Any:
        """Inject the fault; return what :meth:`heal` needs."""

    def heal(self, ctx: FaultContext, handle: Any) -> None:
        """Undo the fault (idempotent; tolerates a half-injected state)."""


class Named:
    """A fault under another name: two entries of one fault with different parameters in
    one scenario (``db_crash(duration=0.5s)`` and ``db_crash(duration=none)``) are named by
    their text, so their run ids differ. Everything else is the fault's own."""

    def __init__(self, fault: Fault, name: str) -> None:
        self._fault = fault
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def fault(self) -> Fault:
        return self._fault

    def __getattr__(self, attr: str) -> Any:
        if attr == "_fault":  # not set yet (a copy, an unpickle): no recursion
            raise AttributeError(attr)
        return getattr(self._fault, attr)

    def __repr__(self) -> str:
        return f"Named({self._fault!r}, {self._name!r})"


@dataclass(frozen=True, slots=True)
class NoFault:
    """``no_fault``: the control. Nothing is injected; the same upgrade, traffic and recovery
    run, so every other cell can be read against it (a scenario's matrix runs it once per
    strategy, at the point ``none``)."""

    duration: float | None = None
    kind = FaultKind.CONTROL

    @property
    def name(self) -> str:
        return "no_fault"

    def validate(self, plan: Plan, point_step: str | None) -> None:
        return None

    def inject(self, ctx: FaultContext) -> Injected:
        return Injected({})

    def heal(self, ctx: FaultContext, handle: Any) -> None:
        return None
