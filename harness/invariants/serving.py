"""Verdicts on what the app serves: the end state after the soak, and per-release regression.

Both read the paired history in Python (each operation says the instance it was sent to, the
release that instance ran then, and the run's phase) beside the run's facts
(:class:`~harness.invariants.base.RunFacts`) and the end state; neither needs the database,
and neither knows anything of an app: an operation is judged by its outcome only.

- :class:`EndStateServes` (``end_state_serves``): every instance the strategy left running
  is healthy, in rotation and served its soak without an error.
- :class:`NoRegression` (``no_regression``): an operation that worked on a release in an
  earlier phase window and is broken on it in a later one (or broken after recovery on the
  release the recovery left, while it worked on the source release in the warm-up).

How an operation counts: ``ok`` is served; a business rejection (``fail`` of kind
``rejected``) is a served answer, neither ok nor an error; ``is_error`` (unknown outcome,
or failed for another reason) is an error; an operation cut off by the harness at the stop
(``stopped``) is nothing.

Both judge a phase by its schedule's entries, not by single requests: a phase sends an entry
whose answer was an error once more (as a client retries), so an entry counts as served
when any attempt was, and as an error only when its retry erred too (a transient error, a
stale pooled connection after a fault, is told from one that stays). When the history
carries schedule entries, the free traffic recorded under a phase's label does not count;
a history without entries (written by hand) counts every operation as its own entry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from harness.invariants.base import EXAMPLES, CheckContext, FaultWindow, Verdict
from harness.workload.history import ErrorKind, JsonValue, Operation, OpType

__all__ = ["EndStateServes", "NoRegression"]

#: The phase that shows what the recovered app serves, and the warm-up before the plan.
SOAK = "soak"
WARMUP = "warmup"
_BAKE = "bake:"
#: How many unjudged (release, operation) pairs the evidence lists at most.
_LISTED = 4 * EXAMPLES


def _entries(operations: Sequence[Operation]) -> list[tuple[Operation, int]]:
    """Each phase entry as its deciding operation, with how many of its attempts erred
    before it: an ``ok`` attempt if any, else its last attempt. Free traffic (no entry) is
    left out when the history has entries at all."""
    scheduled = any(op.entry is not None for op in operations)
    groups: dict[tuple[str | None, int], list[Operation]] = defaultdict(list)
    for op in operations:
        if op.entry is None:
            if scheduled:
                continue
            groups[(None, op.index)].append(op)
        else:
            groups[(op.phase, op.entry)].append(op)
    decided: list[tuple[Operation, int]] = []
    for attempts in groups.values():
        attempts.sort(key=lambda o: o.index)
        ok = [o for o in attempts if o.type is OpType.OK]
        final = ok[0] if ok else attempts[-1]
        errors = sum(1 for o in attempts if o.is_error and o is not final)
        decided.append((final, errors))
    decided.sort(key=lambda pair: pair[0].index)
    return decided


def _error_text(op: Operation) -> str:
    kind = op.error_kind.value if op.error_kind is not None else op.type.value
    return f"{kind}: {op.error}"[:300] if op.error else kind


def _error_examples(ops: Iterable[Operation]) -> list[JsonValue]:
    examples: list[JsonValue] = []
    for op in ops:
        if len(examples) >= EXAMPLES:
            break
        examples.append(
            {"index": op.index, "op": op.f, "instance": op.instance, "error": _error_text(op)}
        )
    return examples


# -- end_state_serves ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndStateServes:
    """Every instance the strategy left running is healthy and serves after the soak.

    An instance ``running`` at the end is judged from the end state and its soak operations
    (phase ``soak``, sent to it; those cut off at the stop left out):

    - it **does not serve** (``invalid``) when it is paused, not healthy, out of the
      balancer's rotation, or when any of its soak operations ended in an error (an error
      answer, no answer, or a refused connection: after recovery, with every fault healed,
      a client must get an answer; a business rejection is one);
    - it is **not tested** (``unknown``) when none of that is wrong but it got no soak
      operation: there was a workload but no soak reached it, or there is no history at
      all and its health alone cannot tell that it serves;
    - otherwise it **serves**.

    Instances not running are listed as such (the strategy did not leave them running) and
    not judged; when none is left running the app does not serve at all: ``invalid``. No
    end state: ``unknown``. The verdict is ``invalid`` if any instance does not serve, else
    ``unknown`` if any was not tested, else ``valid``.
    """

    name: str = "end_state_serves"

    def check(self, ctx: CheckContext) -> Verdict:
        end = ctx.end_state
        if end is None:
            return Verdict.unknown(
                reason="no end state was read: which instances run, and how, is not known"
            )
        operations = ctx.operations()
        soak_ran = any(op.phase == SOAK for op in operations) or (
            ctx.run is not None and SOAK in ctx.run.phases
        )
        workload = bool(operations) or (ctx.target is not None and ctx.target.workload is not None)
        soak: dict[int, list[Operation]] = defaultdict(list)
        retried: dict[int, int] = defaultdict(int)
        for op, erred in _entries([o for o in operations if o.phase == SOAK]):
            if op.instance is not None and op.error_kind is not ErrorKind.STOPPED:
                soak[op.instance].append(op)
                if erred and not op.is_error:
                    retried[op.instance] += 1
        instances: list[JsonValue] = []
        serving: list[JsonValue] = []
        failing: list[JsonValue] = []
        untested: list[JsonValue] = []
        stopped: list[JsonValue] = []
        for state in end.instances:
            entry: dict[str, JsonValue] = {
                "index": state.index,
                "release": state.release,
                "running": state.running,
            }
            instances.append(entry)
            if not state.running:
                entry.update(status="not running", why="the strategy did not leave it running")
                stopped.append(state.index)
                continue
            ops = soak[state.index]
            errors = [op for op in ops if op.is_error]
            by_op: dict[str, dict[str, int]] = {}
            for op in ops:
                counts = by_op.setdefault(op.f, {"ok": 0, "rejected": 0, "errors": 0})
                if op.type is OpType.OK:
                    counts["ok"] += 1
                elif op.is_error:
                    counts["errors"] += 1
                else:
                    counts["rejected"] += 1
            problems: list[JsonValue] = []
            if state.paused:
                problems.append("paused")
            if not state.healthy:
                problems.append("not healthy")
            if state.in_rotation is False:
                problems.append("not in the balancer's rotation")
            if errors:
                problems.append(
                    f"{len(errors)} of its {len(ops)} soak operations ended in an error"
                )
            entry.update(
                healthy=state.healthy,
                in_rotation=state.in_rotation,
                paused=state.paused,
                health=list(state.health[:EXAMPLES]),
                soak={
                    "operations": len(ops),
                    "ok": sum(op.type is OpType.OK for op in ops),
                    "errors": len(errors),
                    "served_on_retry": retried[state.index],
                    "by_op": {f: dict(c) for f, c in sorted(by_op.items())},
                },
                error_examples=_error_examples(errors),
            )
            if problems:
                entry.update(status="does not serve", problems=problems)
                failing.append(state.index)
            elif not ops:
                if not workload:
                    why = "there is no history, and health alone cannot tell that it serves"
                elif not soak_ran:
                    why = "no soak phase ran: it got no soak operation"
                else:
                    why = "it got no soak operation"
                entry.update(status="not tested", why=why)
                untested.append(state.index)
            else:
                entry["status"] = "serves"
                serving.append(state.index)
        evidence: dict[str, JsonValue] = {
            "serving": serving,
            "not_serving": failing,
            "not_tested": untested,
            "not_running": stopped,
            "instances": instances,
        }
        if not serving and not failing and not untested:
            return Verdict.invalid(
                reason="no instance is left running: the app does not serve at all", **evidence
            )
        if failing:
            return Verdict.invalid(**evidence)
        if untested:
            return Verdict.unknown(**evidence)
        return Verdict.valid(**evidence)


# -- no_regression -------------------------------------------------------------------------


def _is_window(phase: str) -> bool:
    return phase in (WARMUP, SOAK) or phase.startswith(_BAKE)


def _step_of(window: str) -> str:
    """The step a window followed: ``bake:<step>`` -> ``<step>``, ``soak`` -> ``recovery``."""
    if window == SOAK:
        return "recovery"
    return window.removeprefix(_BAKE)


@dataclass(slots=True)
class _Tally:
    """One operation on one release in one window: its operations that reached it."""

    ops: int = 0
    ok: int = 0
    rejected: int = 0
    errors: list[Operation] = field(default_factory=list)

    def add(self, op: Operation) -> None:
        self.ops += 1
        if op.type is OpType.OK:
            self.ok += 1
        elif op.is_error:
            self.errors.append(op)
        else:
            self.rejected += 1

    @property
    def worked(self) -> bool:
        return self.ok >= 1 and not self.errors

    @property
    def broken(self) -> bool:
        return len(self.errors) >= 2

    def counts(self) -> dict[str, JsonValue]:
        return {
            "ops": self.ops,
            "ok": self.ok,
            "rejected": self.rejected,
            "errors": len(self.errors),
        }


def _covered(op: Operation, faults: Sequence[FaultWindow]) -> bool:
    return any(w.covers(op.invoke_time, op.instance) for w in faults)


@dataclass(frozen=True, slots=True)
class NoRegression:
    """No operation that worked on a release stops working on it later in the run.

    Phase windows: the phases ``warmup``, ``bake:<step>`` and ``soak``, in the run's order.
    Per window, release R and operation f, over the operations of f sent to an instance
    running R that reached it (those that never reached an instance say nothing about its
    release) and did not run under a fault window (a fault's own effect is not a
    regression):

    - f **worked** on R: at least one ``ok`` and no error;
    - f is **broken** on R: at least 2 of its entries erred (on their retry too), whatever
      else it answered: an operation that works for some requests and fails for others (new
      writes fail, replays of old ones are answered) is broken; rejections are answers, all
      rejected is not broken (the business rules said no);
    - anything else (too few, mixed): not judged in that window.

    A violation (``invalid``):

    - f worked on R in an earlier window and is broken on R in window W: a regression at
      W's step (``bake:<step>`` -> ``<step>``, ``soak`` -> ``recovery``), one per break (the
      later windows in which it stays broken, until it works again, are listed with it);
    - on the recovered release after recovery: f is broken in the soak on a release R' on
      which it never worked in an earlier window, while f worked on a source release (one
      the warm-up ran) in the warm-up: a regression at ``recovery`` naming both releases.

    ``unknown``: no run facts, no history, no phase window, or no pair judged in two windows
    (and no soak pair to hold against the warm-up). ``valid`` otherwise, with how many pairs
    were compared across how many windows, and the pairs that could not be judged.
    """

    name: str = "no_regression"

    def check(self, ctx: CheckContext) -> Verdict:
        run = ctx.run
        if run is None:
            return Verdict.unknown(reason="no run facts: the run's phases are not known")
        operations = ctx.operations()
        if not operations:
            return Verdict.unknown(reason="no history: nothing was served to compare")
        windows = [p for p in dict.fromkeys(run.phases) if _is_window(p)]
        if not windows:
            return Verdict.unknown(
                reason="no warm-up, bake or soak phase ran: no window to compare",
                phases=list(run.phases),
            )
        position = {w: i for i, w in enumerate(windows)}
        tallies: dict[tuple[str, str], dict[str, _Tally]] = defaultdict(dict)
        under_fault = unattributed = 0
        in_windows = [o for o in operations if o.phase in position]
        for op, _erred in _entries(in_windows):
            if not op.reached:
                continue
            if op.release is None:
                unattributed += 1
                continue
            if _covered(op, run.faults):
                under_fault += 1
                continue
            tallies[(op.release, op.f)].setdefault(str(op.phase), _Tally()).add(op)

        def judged(pair: tuple[str, str]) -> list[tuple[str, _Tally]]:
            by_window = tallies.get(pair, {})
            return [
                (w, by_window[w])
                for w in windows
                if w in by_window and (by_window[w].worked or by_window[w].broken)
            ]

        violations: list[dict[str, JsonValue]] = []
        compared: set[tuple[str, str]] = set()
        windows_used: set[str] = set()
        for pair in sorted(tallies):
            seen = judged(pair)
            if len(seen) >= 2:
                compared.add(pair)
                windows_used.update(w for w, _ in seen)
            violations.extend(self._breaks(pair, seen))
        if SOAK in position and WARMUP in position:
            violations.extend(self._recovered(tallies, compared, windows_used, position))
        violations.sort(key=lambda v: (position[str(v["window"])], str(v["release"]), str(v["op"])))
        not_judged: list[JsonValue] = []
        for (release, f), by_window in sorted(tallies.items()):
            if (release, f) in compared:
                continue
            seen_in = [w for w in windows if w in by_window]
            judged_in = [w for w, _ in judged((release, f))]
            if len(not_judged) < _LISTED:
                not_judged.append(
                    {
                        "release": release,
                        "op": f,
                        "ran_in": list(seen_in),
                        "judged_in": list(judged_in),
                        "why": "judged in one window only"
                        if judged_in
                        else "never judged (too few operations, mixed answers or all rejected)",
                    }
                )
        evidence: dict[str, JsonValue] = {
            "windows": list(windows),
            "pairs": len(tallies),
            "pairs_compared": len(compared),
            "windows_compared": len(windows_used),
            "not_judged": len(tallies) - len(compared),
            "not_judged_pairs": not_judged,
            "under_fault": under_fault,
            "without_release": unattributed,
            "violations": list[JsonValue](violations),
        }
        if violations:
            return Verdict.invalid(**evidence)
        if not compared:
            return Verdict.unknown(
                reason="no (release, operation) pair was judged in two windows: nothing to compare",
                **evidence,
            )
        return Verdict.valid(**evidence)

    @staticmethod
    def _breaks(
        pair: tuple[str, str], seen: Sequence[tuple[str, _Tally]]
    ) -> list[dict[str, JsonValue]]:
        """The same-release regressions of one pair, one per break after it worked."""
        release, f = pair
        found: list[dict[str, JsonValue]] = []
        worked: tuple[str, _Tally] | None = None
        still: list[JsonValue] | None = None
        for window, tally in seen:
            if tally.worked:
                worked, still = (window, tally), None
                continue
            if worked is None:
                continue  # broken, but it never worked on this release before
            if still is not None:
                still.append(window)
                continue
            still = []
            found.append(
                {
                    "kind": "same_release",
                    "step": _step_of(window),
                    "window": window,
                    "op": f,
                    "release": release,
                    "worked_in": worked[0],
                    "worked": worked[1].counts(),
                    **tally.counts(),
                    "examples": _error_examples(tally.errors),
                    "still_broken_in": still,
                }
            )
        return found

    @staticmethod
    def _recovered(
        tallies: Mapping[tuple[str, str], Mapping[str, _Tally]],
        compared: set[tuple[str, str]],
        windows_used: set[str],
        position: Mapping[str, int],
    ) -> list[dict[str, JsonValue]]:
        """Broken in the soak on a release where f never worked before, while f worked on a
        source release in the warm-up."""
        sources: dict[str, list[tuple[str, _Tally]]] = defaultdict(list)
        for (release, f), by_window in sorted(tallies.items()):
            warm = by_window.get(WARMUP)
            if warm is not None and warm.worked:
                sources[f].append((release, warm))
        found: list[dict[str, JsonValue]] = []
        soak_at = position[SOAK]
        for (release, f), by_window in sorted(tallies.items()):
            tally = by_window.get(SOAK)
            if tally is None or not (tally.worked or tally.broken):
                continue
            before = [t for w, t in by_window.items() if position[w] < soak_at and t.worked]
            others = [(s, t) for s, t in sources.get(f, []) if s != release]
            if before or not others:
                continue
            compared.add((release, f))
            windows_used.update((WARMUP, SOAK))
            if not tally.broken:
                continue
            source, warm = others[0]
            found.append(
                {
                    "kind": "recovered_release",
                    "step": "recovery",
                    "window": SOAK,
                    "op": f,
                    "release": release,
                    "source_release": source,
                    "worked_in": WARMUP,
                    "worked": warm.counts(),
                    **tally.counts(),
                    "examples": _error_examples(tally.errors),
                }
            )
        return found
