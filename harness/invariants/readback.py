"""``readable_by_running_release``: every acknowledged entity reads back through each
running instance with what the client was last told, typed values compared by meaning."""

from __future__ import annotations

import contextlib
import itertools
import random
import string
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from harness._wait import wait_for
from harness.errors import SpecError, WaitTimeout, WorkloadRequestFailed
from harness.invariants._common import (
    _require,
    _settle_window,
    _window,
)
from harness.invariants.base import EXAMPLES, AppEndpoint, CheckContext, Verdict
from harness.workload.history import JsonValue, Operation, OpType, Scalar

if TYPE_CHECKING:
    from harness.workload.model import Answer


__all__ = ["VALUE_TYPES", "ReadBack", "ReadableByRunningRelease", "same_value"]


# -- readable_by_running_release -----------------------------------------------------------


def _template_fields(template: str) -> list[str]:
    """The fields a path template names (``/orders/{id}`` -> ``id``)."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


#: The types a read-back compares by meaning (see :class:`ReadBack`).
VALUE_TYPES = ("timestamp", "decimal", "text")


def _as_timestamp(value: JsonValue) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _as_decimal(value: JsonValue) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        return None


def same_value(kind: str | None, told: JsonValue, read: JsonValue) -> bool:
    """Whether ``read`` means what ``told`` meant, as a ``kind`` (see :data:`VALUE_TYPES`;
    None: equal as JSON). A timestamp is the same instant (``...Z`` is ``+00:00``; one
    without a zone is UTC), a decimal the same number (``"12.50"`` is ``12.5``), text the
    same string (``7`` is ``"7"``). A value that does not parse as its type is compared as
    JSON; a boolean equals only a boolean (``True`` is not ``1``)."""
    if isinstance(told, bool) or isinstance(read, bool):
        return isinstance(told, bool) and isinstance(read, bool) and told == read
    if told == read:
        return True
    if kind == "timestamp":
        a, b = _as_timestamp(told), _as_timestamp(read)
        return a is not None and a == b
    if kind == "decimal":
        x, y = _as_decimal(told), _as_decimal(read)
        return x is not None and x == y
    if kind == "text":
        return told is not None and read is not None and str(told) == str(read)
    return False


@dataclass(frozen=True, slots=True)
class ReadBack:
    """Re-read an acknowledged ``op`` through the app: GET ``path`` (filled from its ``ok``
    value, e.g. ``/accounts/{id}``) and compare ``fields`` with what the client was told.

    ``absent_means``: the value a field has when the answer lacks it (e.g. a release that
    has no currency means the default one). A field the client was never told is skipped.

    ``updates``: operations that change the entity later (an order paid, a note published),
    their ``path`` filled from their own values. The last state a client was told wins (an
    acknowledged update's told fields over the create's); an entity with an update of
    unknown outcome (``info``), or two acknowledged updates that overlapped in time, is
    unjudged (counted, not read), never wrong.

    ``types``: field -> how to compare it (``timestamp``, ``decimal``, ``text``; see
    :func:`same_value`); ``normalise``: ``(field, value) -> value``, applied to what was told
    and what is read before they are compared (a hook for an app's own rendering).
    """

    op: str
    path: str
    fields: tuple[str, ...]
    absent_means: Mapping[str, Scalar] = field(default_factory=dict)
    updates: tuple[str, ...] = ()
    types: Mapping[str, str] = field(default_factory=dict)
    normalise: Callable[[str, JsonValue], JsonValue] | None = None

    def __post_init__(self) -> None:
        _require(self.op, "read-back op")
        if not self.path.startswith("/"):
            raise SpecError(f"read-back {self.op}: path {self.path!r}", expected="/path/{field}")
        if not self.fields:
            raise SpecError(f"read-back {self.op}: no fields to compare")
        object.__setattr__(self, "absent_means", dict(self.absent_means))
        object.__setattr__(self, "updates", tuple(self.updates))
        for op in self.updates:
            _require(op, f"read-back {self.op}: update op")
        types = dict(self.types)
        for name, kind in types.items():
            if kind not in VALUE_TYPES:
                raise SpecError(
                    f"read-back {self.op}: type of {name!r} is {kind!r}", choices=VALUE_TYPES
                )
        object.__setattr__(self, "types", types)
        if self.normalise is not None and not callable(self.normalise):
            raise SpecError(f"read-back {self.op}: normalise", expected="(field, value) -> value")

    def same(self, name: str, told: JsonValue, read: JsonValue) -> bool:
        """Whether field ``name`` read back as ``read`` means what was told."""
        if self.normalise is not None:
            told, read = self.normalise(name, told), self.normalise(name, read)
        return same_value(self.types.get(name), told, read)

    def entities(
        self, operations: Iterable[Operation]
    ) -> tuple[dict[str, Mapping[str, Scalar]], list[dict[str, JsonValue]]]:
        """The entities to read back (path -> the values the client was last told) and the
        unjudged ones (an update of unknown outcome, or acknowledged updates that
        overlapped)."""
        from harness.workload.model import fill_path

        created: dict[str, Operation] = {}
        changes: dict[str, list[Operation]] = defaultdict(list)
        unmatched: list[Operation] = []  # updates whose entity cannot be told
        updates = set(self.updates)
        for op in operations:
            if op.f == self.op and op.type is OpType.OK:
                try:
                    created[fill_path(self.path, op.value)] = op
                except SpecError:
                    continue
            elif op.f in updates and op.type in (OpType.OK, OpType.INFO):
                try:
                    changes[fill_path(self.path, op.value)].append(op)
                except SpecError:
                    unmatched.append(op)
        told: dict[str, Mapping[str, Scalar]] = {}
        unjudged: list[dict[str, JsonValue]] = []
        keys = set(_template_fields(self.path))
        for path, create in created.items():
            if unmatched:
                # An update that names no entity may have changed any of them.
                unjudged.append(
                    {
                        "op": self.op,
                        "path": path,
                        "update": unmatched[0].f,
                        "reason": f"{len(unmatched)} update(s) name no entity by {self.path}",
                    }
                )
                continue
            value: dict[str, Scalar] = dict(create.value)
            later = sorted(changes.get(path, ()), key=lambda o: o.invoke_time)
            unknown = next((o for o in later if o.type is OpType.INFO), None)
            acked = [o for o in later if o.type is OpType.OK]
            overlap = next(
                (b for a, b in itertools.pairwise(acked) if b.invoke_time < a.complete_time),
                None,
            )
            if unknown is not None or overlap is not None:
                why = unknown or overlap
                assert why is not None
                unjudged.append(
                    {
                        "op": self.op,
                        "path": path,
                        "update": why.f,
                        "reason": "an update of unknown outcome"
                        if unknown
                        else "acknowledged updates overlapped",
                    }
                )
                continue
            for change in sorted(acked, key=lambda o: o.complete_time):
                # After an update, a field it neither told nor sent may have changed: only
                # what it said (and the entity's key) is still known.
                said = {k: v for k, v in change.value.items() if k in self.fields}
                value = {k: v for k, v in value.items() if k in keys or k in said} | said
            told[path] = value
        return told, unjudged


#: Read-backs in flight at once (each is one HTTP request to an instance).
_READ_BACK_THREADS = 4
#: A 503 says "not now" (an instance whose pooled connection still points at a database
#: that crashed), not "not like this": retried a few times, then the read is counted as
#: unavailable (unjudged), never as a wrong read. Any other non-2xx answer is unreadable.
_UNAVAILABLE = 503
_UNAVAILABLE_ATTEMPTS = 3
_UNAVAILABLE_PAUSE = 0.2


@dataclass(slots=True)
class _Read:
    """One read-back of one entity through one instance, as judged by its last answer."""

    spec: ReadBack
    path: str
    app: AppEndpoint
    told: Mapping[str, Scalar]
    #: ok, mismatch, unreadable, unreachable (no answer) or unavailable (503 after retries)
    kind: str = "ok"
    #: The mismatched fields or the error answer (evidence examples).
    findings: list[dict[str, JsonValue]] = field(default_factory=list)
    read_at: float = 0.0
    #: Seconds after the first read that a re-read matched (a late read), else None.
    late_after: float | None = None

    def judge(self, answer: Answer | None) -> tuple[str, list[dict[str, JsonValue]]]:
        if answer is None:
            return "unreachable", []
        if answer.status == _UNAVAILABLE:
            return "unavailable", []  # "not now" (after retries): not a wrong read
        where: dict[str, JsonValue] = {
            "op": self.spec.op,
            "path": self.path,
            "instance": self.app.index,
            "release": self.app.release,
        }
        if not 200 <= answer.status < 300:
            return "unreadable", [{**where, "status": answer.status, "answer": answer.text[:300]}]
        findings: list[dict[str, JsonValue]] = []
        compared = [name for name in self.spec.fields if name in self.told]
        if not compared:
            return "nothing_to_compare", []  # the client was told none of the fields
        for name in compared:
            read = answer.body.get(name, self.spec.absent_means.get(name))
            if self.spec.same(name, self.told[name], read):
                continue
            findings.append(
                {
                    **where,
                    "field": name,
                    "told": self.told[name],
                    "read": read if name in answer.body else None,
                    "absent": name not in answer.body,
                }
            )
        return ("mismatch" if findings else "ok"), findings


@dataclass(frozen=True, slots=True)
class ReadableByRunningRelease:
    """Every acknowledged entity (a seeded sample of ``sample`` per read-back) reads back
    through each running instance with the values the client was told.

    Settled: a read that mismatched or was answered with an error is read again (only
    those, through the same instance) until ``settle_s`` seconds after the run's traffic
    stopped (at least once); one that matches on a
    re-read is ``late`` (evidence says how long after the first read) and does not make the
    verdict invalid; one that still mismatches or errs counts, as its last answer says (a
    re-read that got no answer, or only 503s, keeps the earlier finding). ``settle_s`` 0: no
    re-read.
    """

    reads: tuple[ReadBack, ...]
    sample: int = 100
    name: str = "readable_by_running_release"
    settle_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.reads:
            raise SpecError(f"{self.name}: declares no read-backs")
        if self.sample < 1:
            raise SpecError(f"{self.name}: sample {self.sample}", expected=">= 1")
        _settle_window(self.settle_s, self.name)

    def check(self, ctx: CheckContext) -> Verdict:
        from harness.workload.client import HttpClient

        apps = ctx.apps
        if not apps:
            return Verdict.unknown(reason="no app instance is running")
        client = HttpClient(ctx.http_timeout)
        rng = random.Random(ctx.seed)
        gave_up: set[int] = set()

        def fetch(read: _Read) -> tuple[Answer | None, float]:
            app = read.app
            answer: Answer | None = None
            for attempt in range(1, _UNAVAILABLE_ATTEMPTS + 1):
                try:
                    answer = client.get(app.base_url, read.path)
                except WorkloadRequestFailed:
                    return None, time.monotonic()
                if answer.status != _UNAVAILABLE or app.index in gave_up:
                    return answer, time.monotonic()
                if attempt < _UNAVAILABLE_ATTEMPTS:
                    time.sleep(_UNAVAILABLE_PAUSE * attempt)
            gave_up.add(app.index)  # still "not now": no more waiting on this instance
            return answer, time.monotonic()

        entities = 0
        every: list[_Read] = []
        unjudged: list[dict[str, JsonValue]] = []
        for spec in self.reads:
            latest, left = spec.entities(ctx.operations())
            unjudged.extend(left)
            paths = sorted(latest)
            chosen = rng.sample(paths, min(self.sample, len(paths)))
            entities += len(chosen)
            every.extend(_Read(spec, path, app, latest[path]) for path in chosen for app in apps)

        # Read-backs are independent: a few at a time (the evidence keeps their order).
        with ThreadPoolExecutor(max_workers=_READ_BACK_THREADS) as pool:
            for read, (answer, at) in zip(every, pool.map(fetch, every), strict=True):
                read.kind, read.findings = read.judge(answer)
                read.read_at = at
            settle = self._settle(pool, fetch, every, _window(ctx, self.settle_s))

        mismatches: Counter[str] = Counter()
        by_instance: Counter[str] = Counter()
        examples: list[JsonValue] = []
        kinds = Counter(read.kind for read in every)
        late: list[_Read] = []
        for read in every:
            if read.late_after is not None:
                late.append(read)
            if read.kind not in ("mismatch", "unreadable"):
                continue
            where = f"{read.app.index}:{read.app.release}"
            for finding in read.findings:
                if read.kind == "mismatch":
                    mismatches[str(finding["field"])] += 1
                by_instance[where] += 1
                if len(examples) < EXAMPLES:
                    examples.append(finding)
        late.sort(key=lambda r: r.late_after or 0.0)
        wrong = {read.path for read in every if read.kind in ("mismatch", "unreadable")}
        evidence: dict[str, JsonValue] = {
            "damaged": len(wrong),
            "entities": entities,
            "reads": len(every),
            "mismatches": sum(mismatches.values()),
            "by_field": dict(mismatches),
            "unreadable": kinds["unreadable"],
            "unreachable": kinds["unreachable"],
            "unavailable": kinds["unavailable"],
            "nothing_to_compare": kinds["nothing_to_compare"],
            "by_instance": dict(by_instance),
            "examples": examples,
            "late": len(late),
            "late_examples": [
                {
                    "op": r.spec.op,
                    "path": r.path,
                    "instance": r.app.index,
                    "release": r.app.release,
                    "after_s": round(r.late_after or 0.0, 3),
                }
                for r in late[:EXAMPLES]
            ],
            "settle_s": self.settle_s,
            **settle,
        }
        if unjudged:
            evidence["unjudged"] = len(unjudged)
            evidence["unjudged_examples"] = list(unjudged[:EXAMPLES])
        if mismatches or kinds["unreadable"]:
            return Verdict.invalid(**evidence)
        judged = (
            len(every) - kinds["unreachable"] - kinds["unavailable"] - kinds["nothing_to_compare"]
        )
        if entities == 0 or judged == 0:
            return Verdict.unknown(**evidence)
        return Verdict.valid(**evidence)

    def _settle(
        self,
        pool: ThreadPoolExecutor,
        fetch: Callable[[_Read], tuple[Answer | None, float]],
        every: Sequence[_Read],
        window: float,
    ) -> dict[str, JsonValue]:
        """Re-read the mismatched and error-answered reads until each matches or ``window``
        passes, at least once (a re-read without an answer keeps the earlier finding)."""
        pending = [r for r in every if r.kind in ("mismatch", "unreadable")]
        if not pending or self.settle_s <= 0:
            return {}
        started = time.monotonic()

        def again() -> bool:
            answers = list(pool.map(fetch, pending))
            for read, (answer, at) in zip(list(pending), answers, strict=True):
                kind, findings = read.judge(answer)
                if kind == "ok":
                    read.kind, read.findings = kind, []
                    read.late_after = at - read.read_at
                    pending.remove(read)
                elif kind in ("mismatch", "unreadable"):
                    read.kind, read.findings = kind, findings
            return not pending

        with contextlib.suppress(WaitTimeout):
            wait_for(
                again,
                what="mismatched read-backs to match",
                timeout=window,
                interval=0.1,
                max_interval=0.5,
            )
        return {"settle_waited_s": round(time.monotonic() - started, 3)}
