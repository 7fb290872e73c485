"""Phases: stretches of a run whose traffic follows the run's seed, not the clock.

A run has free traffic (paced, random: what runs while a step or the recovery runs) and
phases with a quota:

- **warm-up**, before the plan: ``warmup`` operations of each kind on the source release;
- a **bake** after each step that changes the system (a migration, a rollout, a contract;
  ``verify`` only looks): ``bake`` operations of each kind on each release in rotation;
- the **soak**, after recovery (or after the plan when nothing was detected): ``soak``
  operations of each kind on each instance in rotation, so that every instance the
  strategy left running shows whether it serves.

A phase's operations are a schedule drawn from the run's seed and the phase's name: which
operations, in which order, to which instance, and the random draws each one makes. The
clients take the schedule in order, as fast as they go (no pacing), until every entry was
served by its release (an answer, or no answer after it was sent) or the phase's
``timeout`` passes; a phase that ends short says so, with its coverage. A model may answer a
scheduled operation with another call (a retry of an unknown write it must send first, a
replay sent as the write it replays): that call is sent and serves the entry.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harness.errors import SpecError
from harness.workload.history import JsonValue

__all__ = [
    "PHASE_SETTINGS",
    "PhaseResult",
    "Phases",
    "ScheduleItem",
    "build_schedule",
    "item_seed",
    "schedule_digest",
]

#: What a scenario's ``phases:`` may set, and the types.
PHASE_SETTINGS: dict[str, type] = {
    "warmup": int,
    "bake": int,
    "soak": int,
    "timeout": float,
    "clients": int,
}


@dataclass(frozen=True, slots=True)
class Phases:
    """How much traffic each phase carries (see the module doc); 0 turns a phase off.

    ``timeout``: seconds a phase may take before it ends short (recorded, not an error).
    ``clients``: how many of the workload's clients send a phase's entries (0: all of
    them); 1 sends them one after the other, so each entry's draw sees the answers to every
    entry before it, whatever the timing.
    """

    warmup: int = 3
    bake: int = 3
    soak: int = 3
    timeout: float = 15.0
    clients: int = 0

    def __post_init__(self) -> None:
        for name in ("warmup", "bake", "soak"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
                raise SpecError(f"phases.{name} {value!r}", expected="an integer in 0..1000")
        if isinstance(self.clients, bool) or not isinstance(self.clients, int) or self.clients < 0:
            raise SpecError(f"phases.clients {self.clients!r}", expected="an integer >= 0")
        if not 0 < self.timeout <= 600:
            raise SpecError(f"phases.timeout {self.timeout!r}", expected="0 < seconds <= 600")


@dataclass(frozen=True, slots=True)
class ScheduleItem:
    """One scheduled operation: ``f`` for ``group`` (a release, or an instance in the
    soak), sent to ``instance`` (else another instance in rotation running ``release``)."""

    number: int
    f: str
    group: str
    instance: int
    release: str | None
    seed: int


def schedule_digest(items: Sequence[ScheduleItem]) -> str:
    """A short digest of a schedule: each entry's operation, group and instance, in order."""
    text = ";".join(f"{i.f}|{i.group}|{i.instance}" for i in items)
    return f"{zlib.crc32(text.encode()):08x}-{len(items)}"


def item_seed(seed: int, phase: str, number: int) -> int:
    """The seed of one scheduled operation's random draws."""
    return (seed * 1_000_003 + zlib.crc32(f"{phase}#{number}".encode())) & 0x7FFF_FFFF


def build_schedule(
    *,
    seed: int,
    phase: str,
    operations: Sequence[str],
    groups: Mapping[str, Sequence[tuple[int, str | None]]],
    quota: int,
) -> tuple[ScheduleItem, ...]:
    """``quota`` of each operation for each group (its instances: ``(index, release)``),
    shuffled by the seed; each entry's instance drawn among its group's."""
    rng = random.Random(item_seed(seed, phase, -1))
    wanted = [
        (f, group, members)
        for group, members in sorted(groups.items())
        if members
        for f in operations
        for _ in range(quota)
    ]
    rng.shuffle(wanted)
    items = []
    for number, (f, group, members) in enumerate(wanted):
        index, release = members[rng.randrange(len(members))]
        items.append(ScheduleItem(number, f, group, index, release, item_seed(seed, phase, number)))
    return tuple(items)


@dataclass(slots=True)
class PhaseResult:
    """How a phase went: how long, and how much of its schedule was served."""

    name: str
    quota: int
    start: float
    end: float = 0.0
    scheduled: int = 0
    served: int = 0
    #: Scheduled entries that could not be served, with the reason (no instance of their
    #: release in rotation; the model could not issue the operation).
    dropped: list[str] = field(default_factory=list)
    timed_out: bool = False
    #: group -> operation -> how many were served (reached their release).
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)
    #: A digest of the schedule (each entry's operation, group and instance, in order): two
    #: runs with the same digest sent the same phase.
    schedule: str = ""

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def complete(self) -> bool:
        return self.served >= self.scheduled and not self.dropped and not self.timed_out

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "name": self.name,
            "quota": self.quota,
            "start": round(self.start, 4),
            "end": round(self.end, 4),
            "seconds": round(self.seconds, 4),
            "scheduled": self.scheduled,
            "served": self.served,
            "complete": self.complete,
            "timed_out": self.timed_out,
            "dropped": list(self.dropped[:10]),
            "coverage": {g: dict(c) for g, c in self.coverage.items()},
            "schedule": self.schedule,
        }

    def describe(self) -> str:
        text = f"{self.served}/{self.scheduled} served in {self.seconds:.2f}s"
        if self.timed_out:
            text += " (timed out)"
        if self.dropped:
            text += f"; {len(self.dropped)} dropped: {self.dropped[0]}"
        return text
