"""The fault contract (Jepsen's nemesis): ``inject`` returns a handle, ``heal`` undoes it.

Every fault is a frozen dataclass with its parameters and a readable ``name`` used in test
ids and reports (``db_crash``, ``latency(800ms,downstream)``). ``duration`` is how long the
fault lasts before it is healed; ``None`` means until recovery starts. The runner always heals
in ``finally`` and records both in the timeline.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from harness.backends.base import RunningCommand, Stack
from harness.deploy.plan import Plan, Step
from harness.spec import Release

__all__ = ["Fault", "FaultContext", "FaultKind"]


class FaultKind(enum.Enum):
    NETWORK = "network"
    PROCESS = "process"
    DATABASE = "database"
    RELEASE = "release"


@dataclass(slots=True)
class FaultContext:
    """What a fault can act on when it fires.

    ``command`` is the running command of the current step (a migration), when there is one.
    ``release_override`` lets a release fault replace what the rollout deploys from then on.
    """

    stack: Stack
    plan: Plan
    step: Step | None = None
    command: RunningCommand | None = None
    release_override: Release | None = None
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
