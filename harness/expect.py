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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.report.outcome import RunOutcome
from harness.scenario import RECOVERY_VERDICT, Expectation, RunCase

__all__ = ["Cell", "Judgement", "VerdictStatus", "judge", "verdicts_of"]

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

    @property
    def summary(self) -> str:
        """One line: why this cell."""
        if self.cell is Cell.PASS:
            return "every judged invariant held"
        if self.cell is Cell.HAZARD:
            return f"known hazard: {', '.join(self.violated)} violated as declared"
        if self.cell is Cell.ERROR:
            return f"harness error, not tested: {'; '.join(self.harness_errors)}"
        parts = []
        if self.undeclared:
            parts.append(f"undeclared violation of {', '.join(self.undeclared)}")
        if self.missing:
            parts.append(f"declared hazard did not happen: {', '.join(self.missing)}")
        if self.harness_errors:
            parts.append(f"harness error: {'; '.join(self.harness_errors)}")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
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


def judge(case: RunCase, outcome: RunOutcome) -> Judgement:
    """Compare ``outcome`` with what ``case`` declares."""
    return judge_verdicts(
        verdicts_of(outcome),
        case.expectations,
        judged=case.scenario.judged,
        harness_errors=[
            f"{e.phase} {e.subject}: {e.kind}: {e.message[:300]}"
            for e in outcome.errors
            if e.phase in _HARNESS_PHASES
        ],
    )


def judge_verdicts(
    verdicts: Mapping[str, Mapping[str, Any]],
    expectations: Sequence[Expectation],
    *,
    judged: Any = None,
    harness_errors: Sequence[str] = (),
) -> Judgement:
    """The pure judgement: verdicts by name, the matching declarations, the harness errors."""

    def counts(name: str) -> bool:
        return True if judged is None else bool(judged(name))

    invalid = sorted(
        n for n, v in verdicts.items() if counts(n) and _status(v) == VerdictStatus.INVALID.value
    )
    unknown = sorted(
        n for n, v in verdicts.items() if counts(n) and _status(v) == VerdictStatus.UNKNOWN.value
    )
    declared = {name for e in expectations for name in e.violates}
    strict = {name for e in expectations if e.strict for name in e.violates}
    undeclared = tuple(n for n in invalid if n not in declared)
    missing = tuple(sorted(n for n in strict if n not in invalid))
    reasons = tuple(
        dict.fromkeys(e.reason for e in expectations if any(n in invalid for n in e.violates))
    )
    if harness_errors:
        cell = Cell.ERROR
    elif undeclared or missing:
        cell = Cell.UNEXPECTED
        if missing:
            reasons = tuple(
                dict.fromkeys(
                    [*reasons, *(e.reason for e in expectations if set(e.violates) & set(missing))]
                )
            )
    elif invalid:
        cell = Cell.HAZARD
    else:
        cell = Cell.PASS
    return Judgement(
        cell,
        tuple(invalid),
        undeclared,
        missing,
        tuple(unknown),
        tuple(harness_errors),
        reasons,
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
