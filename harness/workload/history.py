"""A Jepsen-style history of what every client did and was told.

Each operation is recorded twice: an ``invoke`` when the client is about to send it, then one
completion from the same process: ``ok`` (the app acknowledged it), ``fail`` (definitely not
applied: a clean error answer, or the request never left the client) or ``info`` (unknown:
timeout, connection reset, an answer that does not say). Operations still in flight when the
history is closed become ``info``. Every entry has an index (its position), the process that
issued it, the operation name ``f``, a flat value, and a monotonic time in seconds (relative to
the run's timeline when one is given, so the history lines up with the run's events).

Histories are written as JSON lines (one entry a line) and read back the same way.
"""

from __future__ import annotations

import enum
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

__all__ = [
    "ErrorKind",
    "History",
    "HistoryStats",
    "JsonValue",
    "Op",
    "OpType",
    "Operation",
    "Scalar",
    "UnavailableWindow",
    "Value",
    "history_stats",
    "is_error",
    "iter_pairs",
    "pair_operations",
    "read_jsonl",
]

#: A value a JSON document may hold (what evidence and statistics are made of).
JsonValue: TypeAlias = (
    "str | int | float | bool | Sequence[JsonValue] | Mapping[str, JsonValue] | None"
)
#: A field of an operation's value.
Scalar: TypeAlias = str | int | float | bool | None
#: An operation's value: flat fields (what was asked, then what the client was told).
Value: TypeAlias = Mapping[str, Scalar]


class OpType(enum.Enum):
    """The four kinds of history entries."""

    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"

    @property
    def is_completion(self) -> bool:
        return self is not OpType.INVOKE


class ErrorKind(enum.Enum):
    """Why an operation did not end ``ok``; tells app trouble from business rules."""

    #: The app served the request and said no (a business rule: insufficient funds, ...).
    REJECTED = "rejected"
    #: The app could not serve it and says it was not applied (a 503 that says so).
    UNAVAILABLE = "unavailable"
    #: The request never reached an instance (connection refused, no instance in the
    #: balancer's rotation): not applied, and the app never saw it.
    UNREACHED = "unreached"
    #: Nobody knows whether it was applied (timeout, reset, an answer that does not say).
    INDETERMINATE = "indeterminate"
    #: Still in flight when the workload stopped: as unknown as a timeout, but cut off by
    #: the harness, not refused by the app, so it says nothing about availability.
    STOPPED = "stopped"

    @property
    def is_error(self) -> bool:
        """Counts against availability (a rejection is a served request; an operation the
        harness cut off at the end is not the app's doing)."""
        return self not in (ErrorKind.REJECTED, ErrorKind.STOPPED)


@dataclass(frozen=True, slots=True)
class Op:
    """One history entry."""

    index: int
    process: int
    type: OpType
    f: str
    value: Value
    time: float
    error: str | None = None
    error_kind: ErrorKind | None = None
    #: Where an invoke was sent: the instance's index, the release it ran then, and the
    #: run's phase (``warmup``, ``step:<step>``, ``bake:<step>``, ``recovery``, ``soak``...).
    instance: int | None = None
    release: str | None = None
    phase: str | None = None
    #: The phase schedule's entry this operation serves (None: free traffic).
    entry: int | None = None

    def to_json(self) -> dict[str, JsonValue]:
        data: dict[str, JsonValue] = {
            "index": self.index,
            "process": self.process,
            "type": self.type.value,
            "f": self.f,
            "value": dict(self.value),
            "time": round(self.time, 6),
        }
        if self.error is not None:
            data["error"] = self.error
        if self.error_kind is not None:
            data["error_kind"] = self.error_kind.value
        if self.instance is not None:
            data["instance"] = self.instance
        if self.release is not None:
            data["release"] = self.release
        if self.phase is not None:
            data["phase"] = self.phase
        if self.entry is not None:
            data["entry"] = self.entry
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Op:
        raw_value = data.get("value") or {}
        if not isinstance(raw_value, dict):
            raise ValueError(f"history entry {data.get('index')}: value is not an object")
        value: dict[str, Scalar] = {}
        for key, item in raw_value.items():
            if item is not None and not isinstance(item, str | int | float | bool):
                raise ValueError(f"history entry {data.get('index')}: field {key} not scalar")
            value[str(key)] = item
        error = data.get("error")
        kind = data.get("error_kind")
        instance = data.get("instance")
        release = data.get("release")
        phase = data.get("phase")
        entry = data.get("entry")
        return cls(
            index=int(str(data["index"])),
            process=int(str(data["process"])),
            type=OpType(data["type"]),
            f=str(data["f"]),
            value=value,
            time=float(str(data["time"])),
            error=None if error is None else str(error),
            error_kind=None if kind is None else ErrorKind(kind),
            instance=None if instance is None else int(str(instance)),
            release=None if release is None else str(release),
            phase=None if phase is None else str(phase),
            entry=None if entry is None else int(str(entry)),
        )


@dataclass(frozen=True, slots=True)
class Operation:
    """An invoke paired with its completion: what the checkers work on.

    ``value`` is the invoke's value updated with the completion's fields (what was asked,
    then what the client was told); ``index`` is the invoke's index; ``instance``,
    ``release`` and ``phase`` say where and when the invoke was sent.
    """

    index: int
    process: int
    f: str
    type: OpType
    value: Value
    invoke_time: float
    complete_time: float
    error: str | None = None
    error_kind: ErrorKind | None = None
    instance: int | None = None
    release: str | None = None
    phase: str | None = None
    entry: int | None = None

    @property
    def reached(self) -> bool:
        """Whether the request reached an instance (it may have been served)."""
        return self.error_kind is not ErrorKind.UNREACHED and self.error_kind is not (
            ErrorKind.STOPPED
        )

    @property
    def is_error(self) -> bool:
        """Counts against availability: unknown, or failed for another reason than a
        business rule (see :attr:`ErrorKind.is_error`)."""
        return _is_error(self)


class History:
    """A thread-safe recorder of a history.

    ``origin`` is the monotonic time that counts as 0 (the run timeline's start); ``clock``
    is :func:`time.monotonic` unless a test gives its own.
    """

    def __init__(
        self, *, origin: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._origin = clock() if origin is None else origin
        self._ops: list[Op] = []
        self._pending: dict[int, Op] = {}
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def of(cls, ops: Iterable[Op]) -> History:
        """A closed history made of recorded entries (read from a file, or synthetic)."""
        history = cls(origin=0.0)
        history._ops = list(ops)
        history._closed = True
        return history

    def now(self) -> float:
        return self._clock() - self._origin

    def invoke(
        self,
        process: int,
        f: str,
        value: Value,
        *,
        instance: int | None = None,
        release: str | None = None,
        phase: str | None = None,
        entry: int | None = None,
    ) -> Op:
        """Record that ``process`` is about to issue ``f`` (to ``instance``, running
        ``release``, in ``phase``, for its schedule's ``entry``); one pending op per
        process."""
        with self._lock:
            if self._closed:
                raise ValueError("the history is closed")
            if process in self._pending:
                raise ValueError(f"process {process} already has an operation in flight")
            op = Op(
                len(self._ops),
                process,
                OpType.INVOKE,
                f,
                dict(value),
                self.now(),
                instance=instance,
                release=release,
                phase=phase,
                entry=entry,
            )
            self._ops.append(op)
            self._pending[process] = op
            return op

    def complete(
        self,
        invoke: Op,
        type: OpType,
        value: Value | None = None,
        *,
        error: str | None = None,
        error_kind: ErrorKind | None = None,
    ) -> Op | None:
        """Record the completion of ``invoke``; None when the history already closed it."""
        if not type.is_completion:
            raise ValueError("a completion is ok, fail or info")
        with self._lock:
            if self._pending.get(invoke.process) is not invoke:
                return None
            del self._pending[invoke.process]
            op = Op(
                len(self._ops),
                invoke.process,
                type,
                invoke.f,
                dict(invoke.value if value is None else value),
                self.now(),
                error,
                error_kind,
            )
            self._ops.append(op)
            return op

    def close(self, reason: str = "still in flight when the workload stopped") -> int:
        """Complete every pending operation as ``info``; return how many there were."""
        with self._lock:
            self._closed = True
            pending = sorted(self._pending.values(), key=lambda op: op.index)
            self._pending.clear()
            now = self.now()
            for invoke in pending:
                self._ops.append(
                    Op(
                        len(self._ops),
                        invoke.process,
                        OpType.INFO,
                        invoke.f,
                        invoke.value,
                        now,
                        reason,
                        ErrorKind.STOPPED,
                    )
                )
            return len(pending)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def ops(self) -> tuple[Op, ...]:
        with self._lock:
            return tuple(self._ops)

    def __len__(self) -> int:
        return len(self._ops)

    def recent(self, since: float) -> list[Op]:
        """Completions at or after ``since`` (history time), newest last."""
        with self._lock:
            found: list[Op] = []
            for op in reversed(self._ops):
                if op.time < since:
                    break
                if op.type.is_completion:
                    found.append(op)
        found.reverse()
        return found

    def operations(self, *, completed: bool = False) -> list[Operation]:
        """Invokes paired with their completions (see :func:`pair_operations`)."""
        return pair_operations(self.ops, completed=completed)

    def write_jsonl(self, path: Path) -> None:
        """Write every entry as one JSON line."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for op in self.ops:
                out.write(json.dumps(op.to_json(), separators=(",", ":")))
                out.write("\n")


def read_jsonl(path: Path) -> History:
    """A history written by :meth:`History.write_jsonl`."""
    ops = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                ops.append(Op.from_json(json.loads(line)))
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{path}:{number}: not a history entry: {exc}") from exc
    return History.of(ops)


def iter_pairs(ops: Iterable[Op]) -> Iterator[tuple[Op, Op | None]]:
    """Each invoke with the next completion of its process (Jepsen's pairing), in completion
    order; then the invokes never completed, with None. A completion without an invoke, or
    a second invoke before the first completed, is an error in the history."""
    pending: dict[int, Op] = {}
    for op in ops:
        if op.type is OpType.INVOKE:
            if op.process in pending:
                raise ValueError(f"op {op.index}: process {op.process} invoked twice")
            pending[op.process] = op
            continue
        invoke = pending.pop(op.process, None)
        if invoke is None:
            raise ValueError(f"op {op.index}: {op.type.value} without an invoke")
        yield invoke, op
    for invoke in pending.values():
        yield invoke, None


def pair_operations(ops: Iterable[Op], *, completed: bool = False) -> list[Operation]:
    """Invokes paired with their completions (see :func:`iter_pairs`), in invoke order; an
    invoke never completed (a history not closed) pairs as ``info``, or is left out with
    ``completed`` (what a live judgement needs: an operation still in flight is no error)."""
    paired: list[Operation] = []
    for invoke, done in iter_pairs(ops):
        if done is None and completed:
            continue
        if done is None:
            paired.append(
                Operation(
                    invoke.index,
                    invoke.process,
                    invoke.f,
                    OpType.INFO,
                    invoke.value,
                    invoke.time,
                    invoke.time,
                    "never completed",
                    ErrorKind.INDETERMINATE,
                    invoke.instance,
                    invoke.release,
                    invoke.phase,
                    invoke.entry,
                )
            )
            continue
        value = invoke.value if not done.value else {**invoke.value, **done.value}
        paired.append(
            Operation(
                invoke.index,
                done.process,
                invoke.f,
                done.type,
                value,
                invoke.time,
                done.time,
                done.error,
                done.error_kind,
                invoke.instance,
                invoke.release,
                invoke.phase,
                invoke.entry,
            )
        )
    paired.sort(key=lambda o: o.index)
    return paired


@dataclass(frozen=True, slots=True)
class UnavailableWindow:
    """A span in which operations were attempted and none was served."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class HistoryStats:
    """What a history says about the run, as numbers.

    ``counts`` maps (f, type) to a count. The error rate counts operations that could not be
    served (``info`` and ``fail`` of kind unavailable); a rejection by a business rule is a
    served request. An unavailable window runs from the earliest invoke (not before the last
    served completion) of the failing operations completed between two served completions, to
    the next served completion (or the history's end).
    """

    counts: Mapping[tuple[str, OpType], int]
    errors: int
    duration_s: float
    longest_unavailable: UnavailableWindow | None

    @property
    def operations(self) -> int:
        return sum(self.counts.values())

    @property
    def error_rate(self) -> float:
        total = self.operations
        return self.errors / total if total else 0.0

    @property
    def longest_unavailable_s(self) -> float:
        window = self.longest_unavailable
        return 0.0 if window is None else window.seconds

    def by_type(self) -> dict[OpType, int]:
        totals: Counter[OpType] = Counter()
        for (_f, kind), count in self.counts.items():
            totals[kind] += count
        return dict(totals)

    def to_json(self) -> dict[str, JsonValue]:
        by_f: dict[str, dict[str, JsonValue]] = {}
        for (f, kind), count in sorted(self.counts.items(), key=lambda i: (i[0][0], i[0][1].value)):
            by_f.setdefault(f, {})[kind.value] = count
        totals = self.by_type()
        window = self.longest_unavailable
        return {
            "operations": self.operations,
            "by_type": {k.value: totals.get(k, 0) for k in OpType if k.is_completion},
            "by_f": by_f,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "longest_unavailable_s": round(self.longest_unavailable_s, 4),
            "longest_unavailable_window": None
            if window is None
            else [round(window.start, 4), round(window.end, 4)],
            "duration_s": round(self.duration_s, 4),
        }


def is_error(type: OpType, error_kind: ErrorKind | None) -> bool:
    """Whether an outcome counts as an error: unknown (``info``), or failed for another
    reason than a business rule; never ``ok``, never an operation the harness cut off."""
    if type is OpType.OK or error_kind is ErrorKind.STOPPED:
        return False
    if type is OpType.INFO:
        return True
    return error_kind is not None and error_kind.is_error


def _is_error(op: Operation) -> bool:
    return is_error(op.type, op.error_kind)


def history_stats(operations: Sequence[Operation], *, end: float | None = None) -> HistoryStats:
    """Counts by operation and type, error rate and the longest unavailable window."""
    counts: Counter[tuple[str, OpType]] = Counter()
    errors = 0
    events: list[tuple[float, bool, float]] = []  # (completed at, error?, invoked at)
    first = last = 0.0
    for op in operations:
        counts[(op.f, op.type)] += 1
        if op.error_kind is ErrorKind.STOPPED:
            continue  # cut off by the harness: neither served nor refused
        error = _is_error(op)
        errors += error
        events.append((op.complete_time, error, op.invoke_time))
    if events:
        first = min(e[2] for e in events)
        last = max(e[0] for e in events)
    if end is not None:
        last = max(last, end)
    events.sort(key=lambda e: e[0])
    longest: UnavailableWindow | None = None
    open_since: float | None = None
    last_served = first
    for completed, error, invoked in events:
        if error:
            since = max(invoked, last_served)
            open_since = since if open_since is None else min(open_since, since)
            continue
        last_served = completed
        if open_since is not None:
            window = UnavailableWindow(open_since, completed)
            if longest is None or window.seconds > longest.seconds:
                longest = window
            open_since = None
    if open_since is not None:
        window = UnavailableWindow(open_since, last)
        if longest is None or window.seconds > longest.seconds:
            longest = window
    return HistoryStats(dict(counts), errors, last - first, longest)
