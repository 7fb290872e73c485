"""A weighted canary's analysis, and the exposure a run's new release had.

**The analysis** (like an Argo Rollouts AnalysisRun between ``setWeight`` steps): after a
``weight:<percent>`` step the run watches live traffic until the new release (the canary)
has answered ``samples`` operations sent since the weight was set, for at most ``window``
seconds, then compares error rates:

The canary is every instance that runs another release than the stable one (the source):
the planned release, or the variant a ``bad_release`` fault rolled out instead.

- the canary's error rate exceeds the stable release's by more than ``max_excess``, with at
  least ``min_errors`` canary errors: **failed**, a detection (``analysis``) that stops the
  plan and starts the run's recovery;
- fewer than ``samples`` canary operations in the window: **inconclusive**, also a detection
  (as Argo pauses a rollout it cannot judge): a canary that got no traffic is not promoted
  on no evidence;
- else **passed**, and the plan goes on.

An error is what counts against availability (``history.is_error``: unknown, or failed for
another reason than a business rule). Operations a phase sent to a named instance count too;
the window itself sends none.

**Exposure** (every run, canary or not): how many client operations the new release (any
release but the source and the fix: the planned one, or a bad variant) served before detection
and until recovery ended, how many of them failed, how many acknowledged writes the
verdicts found damaged (the largest ``damaged`` count an invalid verdict reports: writes
lost, duplicated effects, entities reading back wrong, and one per group whose sum broke,
since a sum says that a write went wrong but not which: a lower bound), the time from the
start of the first rollout (behind a flag: of its first flag step) to detection (time to
detect) and from detection to the end of recovery (time to recover).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harness.errors import SpecError
from harness.workload.history import Operation

__all__ = [
    "Analysis",
    "AnalysisSettings",
    "Canary",
    "analyse",
    "analyse_sides",
    "exposure",
    "exposure_text",
]

#: What a scenario's ``canary:`` mapping may set, besides ``weights``.
CANARY_SETTINGS = ("weights", "samples", "window", "max_excess", "min_errors")


@dataclass(frozen=True, slots=True)
class Canary:
    """A weighted canary: the weights (percent of traffic to the new release, rising) and
    its analysis (see the module doc)."""

    weights: tuple[int, ...]
    samples: int = 10
    window: float = 10.0
    max_excess: float = 0.05
    min_errors: int = 2

    def __post_init__(self) -> None:
        check_analysis_settings("canary", self)


def check_analysis_settings(what: str, settings: Any) -> None:
    """Refuse an analysis's bad ``samples``, ``window``, ``max_excess``, ``min_errors``."""
    for name in ("samples", "min_errors"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"{what}.{name} {value!r}", expected="an integer >= 1")
    if not 0 < settings.window <= 600:
        raise SpecError(f"{what}.window {settings.window!r}", expected="0 < seconds <= 600")
    if not 0 <= settings.max_excess < 1:
        raise SpecError(f"{what}.max_excess {settings.max_excess!r}", expected="0% <= x < 100%")


@dataclass(frozen=True, slots=True)
class Analysis:
    """One analysis after a weight step."""

    step: str
    weight: int
    verdict: str  # passed, failed, inconclusive
    canary_ops: int
    canary_errors: int
    stable_ops: int
    stable_errors: int
    seconds: float
    detail: str

    @property
    def detected(self) -> bool:
        return self.verdict != "passed"

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "weight": self.weight,
            "verdict": self.verdict,
            "canary": {"operations": self.canary_ops, "errors": self.canary_errors},
            "stable": {"operations": self.stable_ops, "errors": self.stable_errors},
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


def _rate(errors: int, ops: int) -> float:
    return errors / ops if ops else 0.0


class AnalysisSettings(Protocol):
    """What an analysis needs: a :class:`Canary`, or a flag rollout."""

    @property
    def samples(self) -> int: ...

    @property
    def max_excess(self) -> float: ...

    @property
    def min_errors(self) -> int: ...


def analyse(
    step: str,
    weight: int,
    ops: Iterable[Operation],
    stable: str,
    settings: AnalysisSettings,
    seconds: float,
) -> Analysis:
    """Judge the operations of one window (invoked after the weight was set); the canary
    is every release but ``stable``. Operations that reached no release are left out."""
    reached = [op for op in ops if op.release is not None]
    canary = [op for op in reached if op.release != stable]
    stables = [op for op in reached if op.release == stable]
    return analyse_sides(step, weight, canary, stables, settings, seconds)


def analyse_sides(
    step: str,
    weight: int,
    canary: Sequence[Operation],
    stable: Sequence[Operation],
    settings: AnalysisSettings,
    seconds: float,
) -> Analysis:
    """Judge ``canary``'s operations against ``stable``'s (a flag step: the operations
    after the flip against those just before it)."""
    c_ops, c_err = len(canary), sum(1 for op in canary if op.is_error)
    s_ops, s_err = len(stable), sum(1 for op in stable if op.is_error)
    c_rate, s_rate = _rate(c_err, c_ops), _rate(s_err, s_ops)
    rates = f"canary {c_err}/{c_ops} errors ({c_rate:.0%}), stable {s_err}/{s_ops} ({s_rate:.0%})"
    if c_ops < settings.samples:
        verdict = "inconclusive"
        detail = f"{c_ops} canary operation(s) in {seconds:.1f}s, {settings.samples} needed; "
    elif c_err >= settings.min_errors and c_rate - s_rate > settings.max_excess:
        verdict = "failed"
        detail = f"error rate {c_rate - s_rate:+.0%} over stable (> {settings.max_excess:.0%}); "
    else:
        verdict = "passed"
        detail = ""
    return Analysis(step, weight, verdict, c_ops, c_err, s_ops, s_err, seconds, detail + rates)


def _damaged(verdicts: Mapping[str, Mapping[str, Any]]) -> tuple[int, dict[str, int]]:
    """The largest ``damaged`` count an invalid verdict reports, and each one's."""
    each: dict[str, int] = {}
    for name, verdict in verdicts.items():
        if verdict.get("status") != "invalid":
            continue
        evidence = verdict.get("evidence")
        value = evidence.get("damaged") if isinstance(evidence, Mapping) else None
        if isinstance(value, int) and not isinstance(value, bool):
            each[name] = value
    return max(each.values(), default=0), each


def exposure(
    ops: Sequence[Operation],
    source: str,
    fix: str | None = None,
    *,
    in_service: float | None,
    detected: float | None,
    recovered: float | None,
    verdicts: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The exposure of one run to every release but ``source`` and ``fix`` (what recovery
    deploys is not the change under test; see the module doc); times are seconds on the
    run's timeline (the history's clock)."""
    served = [
        op
        for op in ops
        if op.release not in (source, fix, None)
        and (in_service is None or op.invoke_time >= in_service)
    ]
    before = [op for op in served if detected is None or op.invoke_time < detected]
    until = [op for op in served if recovered is None or op.invoke_time < recovered]
    damaged, by_verdict = _damaged(verdicts)
    return {
        "releases": sorted({str(op.release) for op in served}),
        "operations": len(served),
        "before_detection": {"operations": len(before), "failed": sum(o.is_error for o in before)},
        "until_recovery": {"operations": len(until), "failed": sum(o.is_error for o in until)},
        "damaged_writes": damaged,
        "damaged_by_verdict": by_verdict,
        "detected": detected is not None,
        "time_to_detect_s": None
        if detected is None or in_service is None
        else round(max(0.0, detected - in_service), 3),
        "time_to_recover_s": None
        if detected is None or recovered is None
        else round(max(0.0, recovered - detected), 3),
    }


def exposure_text(data: Mapping[str, Any]) -> str:
    """One line: ``31 ops on v2-fail-transfers (13 failed) before detection in 3.3s, ...``."""
    if not data:
        return "no workload: nothing measured"
    releases = ", ".join(data.get("releases") or ()) or "the new release"
    before = data["before_detection"]
    until = data["until_recovery"]
    parts = [f"{before['operations']} ops on {releases} ({before['failed']} failed)"]
    ttd = data.get("time_to_detect_s")
    detected = data.get("detected", ttd is not None)
    if not detected:
        parts[0] += ", nothing detected"
    else:
        parts[0] += " before detection" + (
            f" ({ttd:g}s after it went in service)" if ttd is not None else " (before it served)"
        )
        ttr = data.get("time_to_recover_s")
        parts.append(
            f"{until['operations']} ({until['failed']} failed) until recovery"
            + (f" {ttr:g}s later" if ttr is not None else " (recovery did not end)")
        )
    parts.append(f"{data.get('damaged_writes', 0)} damaged acknowledged write(s)")
    return "; ".join(parts)
