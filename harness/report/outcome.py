"""RunOutcome: what one run did and where it ended, JSON-serialisable with a schema version.

A run's :class:`Timeline` records every step start and end, fault inject and heal, detection
and recovery step, each with a monotonic time (seconds since the run started) and a wall-clock
timestamp. The end state is read from the system itself (the database's migration table, each
instance's version endpoint and health), never from the harness's own bookkeeping.
"""

from __future__ import annotations

import enum
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "SCHEMA_VERSION",
    "EndState",
    "Event",
    "EventKind",
    "InstanceState",
    "RunError",
    "RunOutcome",
    "Timeline",
]

SCHEMA_VERSION = 2
#: Older versions this one reads (fields added since default to empty).
_READABLE = frozenset({1, 2})


class EventKind(enum.Enum):
    RUN_START = "run_start"
    STEP_START = "step_start"
    STEP_END = "step_end"
    STEP_FAILED = "step_failed"
    FAULT_INJECT = "fault_inject"
    FAULT_HEAL = "fault_heal"
    FAULT_HEAL_FAILED = "fault_heal_failed"
    DETECTION = "detection"
    RECOVERY_START = "recovery_start"
    RECOVERY_STEP_START = "recovery_step_start"
    RECOVERY_STEP_END = "recovery_step_end"
    RECOVERY_STEP_FAILED = "recovery_step_failed"
    RECOVERY_END = "recovery_end"
    RUN_END = "run_end"
    NOTE = "note"
    #: A phase of traffic starts or ends (warm-up, a bake after a step, the soak).
    PHASE_START = "phase_start"
    PHASE_END = "phase_end"
    #: The balancer drained, admitted, ejected or readmitted an instance.
    BALANCER = "balancer"
    #: A weighted canary's analysis judged a weight step (passed, failed, inconclusive).
    ANALYSIS = "analysis"


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened, at ``t`` seconds since the run started (monotonic)."""

    t: float
    wall: float
    kind: EventKind
    subject: str
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 4),
            "wall": round(self.wall, 4),
            "kind": self.kind.value,
            "subject": self.subject,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(
            float(data["t"]),
            float(data["wall"]),
            EventKind(data["kind"]),
            str(data["subject"]),
            str(data.get("detail", "")),
        )


class Timeline:
    """An append-only, thread-safe list of events (faults heal from timer threads)."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._events: list[Event] = []
        self._lock = threading.Lock()

    @property
    def start(self) -> float:
        return self._start

    def add(self, kind: EventKind, subject: str, detail: str = "") -> Event:
        event = Event(time.monotonic() - self._start, time.time(), kind, subject, detail)
        with self._lock:
            self._events.append(event)
        return event

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    @property
    def events(self) -> tuple[Event, ...]:
        with self._lock:
            return tuple(self._events)

    def of(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind is kind]


@dataclass(frozen=True, slots=True)
class InstanceState:
    """One instance at the end: what it says it runs, whether it answers its health check,
    and (when a balancer carried the traffic) whether it was in rotation and its last
    health answers, newest first."""

    index: int
    release: str | None
    healthy: bool
    running: bool
    paused: bool
    in_rotation: bool | None = None
    health: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EndState:
    """Where the stack ended, as read from the database and the instances."""

    migrations: tuple[str, ...] | None
    instances: tuple[InstanceState, ...]

    @property
    def releases(self) -> tuple[str | None, ...]:
        return tuple(i.release for i in self.instances)


@dataclass(frozen=True, slots=True)
class RunError:
    """An error the run met, with where it happened."""

    phase: str
    subject: str
    kind: str
    message: str


@dataclass(slots=True)
class RunOutcome:
    """One (scenario, fault, point, strategy, seed) execution."""

    scenario: str
    target: str
    source: str
    dest: str
    fault: str
    point: str
    strategy: str
    seed: int
    backend: str
    run_id: str
    plan: tuple[str, ...]
    events: tuple[Event, ...] = ()
    detected: str | None = None
    recovered: bool | None = None
    end_state: EndState | None = None
    errors: tuple[RunError, ...] = ()
    verdicts: dict[str, Any] = field(default_factory=dict)
    history_stats: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    fault_seconds: float = 0.0
    #: The run's phases (warm-up, bakes, soak): when, how long, how much was covered.
    phases: list[dict[str, Any]] = field(default_factory=list)
    #: Every injection: where, when it was injected and healed, how long it lasted against
    #: its declared duration, what it acted on, and why it had no effect (when it had none).
    faults: list[dict[str, Any]] = field(default_factory=list)
    #: A weighted canary's analyses, one per weight step reached (harness.deploy.canary).
    analysis: list[dict[str, Any]] = field(default_factory=list)
    #: What the new release served before detection and until recovery, and what it cost.
    exposure: dict[str, Any] = field(default_factory=dict)

    @property
    def run_key(self) -> str:
        return f"{self.scenario}[{self.fault}-{self.point}-{self.strategy}]"

    def to_json(self) -> dict[str, Any]:
        data = {
            "schema_version": SCHEMA_VERSION,
            "scenario": self.scenario,
            "target": self.target,
            "source": self.source,
            "dest": self.dest,
            "fault": self.fault,
            "point": self.point,
            "strategy": self.strategy,
            "seed": self.seed,
            "backend": self.backend,
            "run_id": self.run_id,
            "plan": list(self.plan),
            "events": [e.to_json() for e in self.events],
            "detected": self.detected,
            "recovered": self.recovered,
            "end_state": None
            if self.end_state is None
            else {
                "migrations": None
                if self.end_state.migrations is None
                else list(self.end_state.migrations),
                "instances": [asdict(i) for i in self.end_state.instances],
            },
            "errors": [asdict(e) for e in self.errors],
            "verdicts": self.verdicts,
            "history_stats": self.history_stats,
            "duration_s": round(self.duration_s, 4),
            "fault_seconds": round(self.fault_seconds, 4),
            "phases": list(self.phases),
            "faults": list(self.faults),
            "analysis": list(self.analysis),
            "exposure": dict(self.exposure),
        }
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunOutcome:
        version = data.get("schema_version")
        if version not in _READABLE:
            raise ValueError(
                f"RunOutcome schema_version {version!r}, expected one of {sorted(_READABLE)}"
            )
        end = data.get("end_state")
        end_state = None
        if end is not None:
            migrations = end.get("migrations")
            end_state = EndState(
                None if migrations is None else tuple(migrations),
                tuple(
                    InstanceState(**{**i, "health": tuple(i.get("health", ()))})
                    for i in end["instances"]
                ),
            )
        return cls(
            scenario=data["scenario"],
            target=data["target"],
            source=data["source"],
            dest=data["dest"],
            fault=data["fault"],
            point=data["point"],
            strategy=data["strategy"],
            seed=int(data["seed"]),
            backend=data["backend"],
            run_id=data["run_id"],
            plan=tuple(data["plan"]),
            events=tuple(Event.from_json(e) for e in data["events"]),
            detected=data.get("detected"),
            recovered=data.get("recovered"),
            end_state=end_state,
            errors=tuple(RunError(**e) for e in data.get("errors", ())),
            verdicts=dict(data.get("verdicts", {})),
            history_stats=dict(data.get("history_stats", {})),
            duration_s=float(data.get("duration_s", 0.0)),
            fault_seconds=float(data.get("fault_seconds", 0.0)),
            phases=list(data.get("phases", ())),
            faults=list(data.get("faults", ())),
            analysis=list(data.get("analysis", ())),
            exposure=dict(data.get("exposure", {})),
        )
