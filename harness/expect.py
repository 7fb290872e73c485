"""Judging a run: its verdicts against the scenario's ``expect:`` declarations.

- no judged verdict ``invalid`` and nothing declared: **pass**;
- every ``invalid`` verdict declared, every strict declaration happened: **known hazard**
  (an xfail, with the declarations' reasons);
- an ``invalid`` verdict nobody declared, or a strict declaration that did not happen:
  **unexpected** (the test fails with the evidence);
- a harness error: the cell was not tested as it says (the fault did not fire, fired after
  its step, found nothing to act on or had no effect; an inject or heal failed; something
  was left behind): **harness error** (the test fails, saying why), whatever the verdicts.

A run whose outcome has no ``recovery`` verdict gets one derived from ``recovered``
(``invalid`` when the strategy failed), so recovery can be judged whatever checkers ran.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import clip
from harness.report.outcome import RunOutcome
from harness.scenario import RECOVERY_VERDICT, Expectation, RunCase

__all__ = [
    "RATE_CONFIDENCE",
    "Cell",
    "Judgement",
    "VerdictStatus",
    "binomial_tail",
    "harness_errors_of",
    "judge",
    "judge_runs",
    "judge_verdicts",
    "verdicts_of",
]

#: RunError phases that mean the harness itself misbehaved, not the system under test.
_HARNESS_PHASES = frozenset(
    {"inject", "heal", "teardown", "plan", "harness", "baseline", "workload"}
)


class VerdictStatus(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN = "unknown"


class Cell(enum.Enum):
    """A scorecard cell."""

    PASS = "pass"  # noqa: S105 (a scorecard cell, not a password)
    HAZARD = "known hazard"
    UNEXPECTED = "unexpected failure"
    ERROR = "harness error"

    @property
    def failed(self) -> bool:
        """The run fails its test (an unexpected result, or not tested as it says)."""
        return self in (Cell.UNEXPECTED, Cell.ERROR)


@dataclass(frozen=True, slots=True)
class Judgement:
    cell: Cell
    violated: tuple[str, ...]
    undeclared: tuple[str, ...]
    missing: tuple[str, ...]
    unknown: tuple[str, ...]
    harness_errors: tuple[str, ...]
    reasons: tuple[str, ...]
    #: How many runs of the cell were judged, in how many each verdict was ``invalid``,
    #: in how many any judged verdict was (the hits), and the declarations shown more
    #: often than their rate allows.
    runs: int = 1
    counts: tuple[tuple[str, int], ...] = ()
    hits: int = 0
    too_often: tuple[str, ...] = ()

    @property
    def rate_text(self) -> str:
        """``3/5`` when the cell ran more than once, else empty."""
        return f"{self.hits}/{self.runs}" if self.runs > 1 else ""

    @property
    def summary(self) -> str:
        """One line: why this cell."""
        if self.cell is Cell.PASS:
            return "every judged invariant held"
        if self.cell is Cell.HAZARD:
            return f"known hazard: {', '.join(self.violated)} violated as declared" + (
                f" ({self._rates()})" if self.runs > 1 else ""
            )
        if self.cell is Cell.ERROR:
            return f"harness error, not tested: {'; '.join(self.harness_errors)}"
        parts = []
        if self.undeclared:
            parts.append(f"undeclared violation of {', '.join(self.undeclared)}")
        if self.missing:
            word = "as often as declared" if self.runs > 1 else ""
            parts.append(
                f"declared hazard did not happen{' ' + word if word else ''}: "
                f"{', '.join(self.missing)}" + (f" ({self._rates()})" if self.runs > 1 else "")
            )
        if self.too_often:
            parts.append(
                f"declared hazard happened more often than declared: "
                f"{', '.join(self.too_often)} ({self._rates()})"
            )
        if self.harness_errors:
            parts.append(f"harness error: {'; '.join(self.harness_errors)}")
        return "; ".join(parts)

    def _rates(self) -> str:
        return ", ".join(f"{n} {k}/{self.runs}" for n, k in self.counts if k)

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "hits": self.hits,
            "counts": dict(self.counts),
            "too_often": list(self.too_often),
            "cell": self.cell.value,
            "violated": list(self.violated),
            "undeclared": list(self.undeclared),
            "missing": list(self.missing),
            "unknown": list(self.unknown),
            "harness_errors": list(self.harness_errors),
            "reasons": list(self.reasons),
            "summary": self.summary,
        }


def verdicts_of(outcome: RunOutcome) -> dict[str, dict[str, Any]]:
    """The outcome's verdicts, with ``recovery`` derived from ``recovered`` when absent."""
    verdicts: dict[str, dict[str, Any]] = {}
    for name, verdict in outcome.verdicts.items():
        if isinstance(verdict, Mapping):
            verdicts[str(name)] = dict(verdict)
        else:
            verdicts[str(name)] = {"status": str(verdict), "evidence": {}}
    if RECOVERY_VERDICT not in verdicts:
        failed = [e for e in outcome.errors if e.phase == "recovery"]
        if outcome.recovered is False:
            verdicts[RECOVERY_VERDICT] = {
                "status": VerdictStatus.INVALID.value,
                "evidence": {
                    "detected": outcome.detected,
                    "failed_steps": [{"step": e.subject, "error": e.message[:500]} for e in failed],
                },
            }
        else:
            verdicts[RECOVERY_VERDICT] = {
                "status": VerdictStatus.VALID.value,
                "evidence": {
                    "detected": outcome.detected,
                    "recovered": outcome.recovered,
                },
            }
    return verdicts


def _status(verdict: Mapping[str, Any]) -> str:
    return str(verdict.get("status", VerdictStatus.UNKNOWN.value))


def harness_errors_of(outcome: RunOutcome) -> list[str]:
    """The run's errors that mean the harness, not the system under test, went wrong."""
    return [
        f"{e.phase} {e.subject}: {e.kind}: {clip(e.message, 1000)}"
        for e in outcome.errors
        if e.phase in _HARNESS_PHASES
    ]


def judge(case: RunCase, outcome: RunOutcome) -> Judgement:
    """Compare ``outcome`` with what ``case`` declares."""
    return judge_verdicts(
        verdicts_of(outcome),
        case.expectations,
        judged=case.scenario.judged,
        harness_errors=harness_errors_of(outcome),
    )


def judge_verdicts(
    verdicts: Mapping[str, Mapping[str, Any]],
    expectations: Sequence[Expectation],
    *,
    judged: Any = None,
    harness_errors: Sequence[str] = (),
) -> Judgement:
    """The pure judgement of one run: verdicts by name, the matching declarations, the
    harness errors (see :func:`judge_runs`)."""
    return judge_runs([verdicts], expectations, judged=judged, harness_errors=harness_errors)


#: A declared rate is contradicted when the cell's counts are less likely than this under
#: the rate's nearest bound (a one-sided binomial test); a strict rate (100 %) by one miss.
RATE_CONFIDENCE = 0.01


def binomial_tail(k: int, n: int, p: float, *, upper: bool) -> float:
    """P(X <= k) (or P(X >= k) with ``upper``) for X ~ Binomial(n, p)."""
    outcomes = range(k, n + 1) if upper else range(0, k + 1)
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in outcomes)


def judge_runs(
    runs: Sequence[Mapping[str, Mapping[str, Any]]],
    expectations: Sequence[Expectation],
    *,
    judged: Any = None,
    harness_errors: Sequence[str] = (),
) -> Judgement:
    """The judgement of a cell from the verdicts of each of its runs.

    - a harness error in any run: **harness error** (not tested as it says);
    - a judged verdict ``invalid`` in some run that no declaration names: **unexpected**;
    - a declaration whose count is contradicted by its rate: shown less often than its
      minimum (a strict one: missing in any run) or more often than its maximum, at
      :data:`RATE_CONFIDENCE` (with one run, a rate of 80 % is not contradicted by a miss;
      with five runs, none in five is): **unexpected**;
    - declared violations consistent with their rates: **known hazard**; none: **pass**.
    """

    def counts_for(name: str) -> bool:
        return True if judged is None else bool(judged(name))

    n = max(1, len(runs))
    invalid_counts: dict[str, int] = {}
    unknown: set[str] = set()
    hits = 0
    for verdicts in runs:
        hit = False
        for name, verdict in verdicts.items():
            if not counts_for(name):
                continue
            status = _status(verdict)
            if status == VerdictStatus.INVALID.value:
                invalid_counts[name] = invalid_counts.get(name, 0) + 1
                hit = True
            elif status == VerdictStatus.UNKNOWN.value:
                unknown.add(name)
        hits += hit
    invalid = sorted(invalid_counts)
    declared = {name for e in expectations for name in e.violates}
    bounds: dict[str, tuple[float, float]] = {}
    for e in expectations:
        low, high = e.bounds
        for name in e.violates:
            old = bounds.get(name)
            bounds[name] = (low, high) if old is None else (max(old[0], low), max(old[1], high))
    undeclared = tuple(name for name in invalid if name not in declared)
    missing = []
    too_often = []
    for name, (low, high) in sorted(bounds.items()):
        k = invalid_counts.get(name, 0)
        if low > 0 and binomial_tail(k, n, low, upper=False) < RATE_CONFIDENCE:
            missing.append(name)
        if high < 1 and binomial_tail(k, n, high, upper=True) < RATE_CONFIDENCE:
            too_often.append(name)
    shown = set(invalid) | set(missing) | set(too_often)
    reasons = tuple(dict.fromkeys(e.reason for e in expectations if set(e.violates) & shown))
    if harness_errors:
        cell = Cell.ERROR
    elif undeclared or missing or too_often:
        cell = Cell.UNEXPECTED
    elif invalid:
        cell = Cell.HAZARD
    else:
        cell = Cell.PASS
    return Judgement(
        cell,
        tuple(invalid),
        undeclared,
        tuple(missing),
        tuple(sorted(unknown)),
        tuple(dict.fromkeys(harness_errors)),
        reasons,
        runs=n,
        counts=tuple(sorted(invalid_counts.items())),
        hits=hits,
        too_often=tuple(too_often),
    )


def evidence_text(verdicts: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> str:
    """The evidence of ``names``, as indented JSON (for failure messages)."""
    lines = []
    for name in names:
        verdict = verdicts.get(name, {})
        evidence = json.dumps(verdict.get("evidence", {}), indent=2, sort_keys=True, default=str)
        lines.append(f"{name}: {_status(verdict)}\n" + _indent(evidence[:4000]))
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
