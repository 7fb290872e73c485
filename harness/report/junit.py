"""JUnit XML properties of one run (pytest's ``record_property`` / ``user_properties``).

``junitxml`` writes them as ``<property name=... value=...>`` on the test case, and
pytest-xdist carries them from the workers; the scorecard is built from them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.expect import Judgement
from harness.report.outcome import RunOutcome
from harness.scenario import RunCase

__all__ = ["PREFIX", "parse_properties", "properties", "run_properties"]

PREFIX = "chaos."


def properties(
    case: RunCase,
    seed: int,
    judgement: Judgement,
    verdicts: Mapping[str, Mapping[str, Any]],
) -> list[tuple[str, str]]:
    """The properties of a judged run, every value a string."""
    props = [
        (PREFIX + "scenario", case.scenario.name),
        (PREFIX + "compare", case.scenario.compare or case.scenario.name),
        (PREFIX + "fault", case.fault.name),
        (PREFIX + "point", case.point.name),
        (PREFIX + "strategy", case.strategy.value),
        (PREFIX + "seed", str(seed)),
        (PREFIX + "cell", judgement.cell.value),
        (
            PREFIX + "verdicts",
            ",".join(f"{n}={v.get('status', 'unknown')}" for n, v in sorted(verdicts.items())),
        ),
    ]
    if judgement.violated:
        props.append((PREFIX + "violated", ",".join(judgement.violated)))
    props.append((PREFIX + "runs", str(judgement.runs)))
    props.append((PREFIX + "hits", str(judgement.hits)))
    if judgement.runs > 1:
        props.append(
            (
                PREFIX + "rates",
                ",".join(f"{n}={k}/{judgement.runs}" for n, k in judgement.counts),
            )
        )
    if judgement.reasons:
        props.append((PREFIX + "reason", " | ".join(judgement.reasons)))
    return props


def run_properties(outcome: RunOutcome) -> list[tuple[str, str]]:
    """The exposure, whether recovery ran and the canary analyses of one run (the cell's
    shown run)."""
    from harness.report.score import recovery_ran

    props: list[tuple[str, str]] = []
    ran = recovery_ran(dict(outcome.verdicts))
    if ran is not None:
        props.append((PREFIX + "recovery", "ran" if ran else "not_needed"))
    exposure = outcome.exposure
    if exposure:
        before, until = exposure["before_detection"], exposure["until_recovery"]
        fields = {
            "ops_before_detection": before["operations"],
            "failed_before_detection": before["failed"],
            "ops_until_recovery": until["operations"],
            "failed_until_recovery": until["failed"],
            "damaged_writes": exposure.get("damaged_writes", 0),
            "time_to_detect_s": exposure.get("time_to_detect_s"),
            "time_to_recover_s": exposure.get("time_to_recover_s"),
        }
        props.append(
            (
                PREFIX + "exposure",
                ",".join(f"{k}={'-' if v is None else v}" for k, v in fields.items()),
            )
        )
    if outcome.analysis:
        props.append(
            (
                PREFIX + "analysis",
                ",".join(f"{a['step']}={a['verdict']}" for a in outcome.analysis),
            )
        )
    return props


def parse_properties(pairs: object) -> dict[str, str]:
    """The ``chaos.*`` properties of a report's user_properties, prefix stripped."""
    out: dict[str, str] = {}
    if not isinstance(pairs, (list, tuple)):
        return out
    for pair in pairs:
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            name, value = pair
            if isinstance(name, str) and name.startswith(PREFIX):
                out[name[len(PREFIX) :]] = str(value)
    return out
