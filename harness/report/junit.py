"""JUnit XML properties of one run (pytest's ``record_property`` / ``user_properties``).

``junitxml`` writes them as ``<property name=... value=...>`` on the test case, and
pytest-xdist carries them from the workers; the scorecard is built from them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.expect import Judgement
from harness.scenario import RunCase

__all__ = ["PREFIX", "parse_properties", "properties"]

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
