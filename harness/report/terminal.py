"""The terminal scorecard: runs grouped by (fault, point), strategies side by side.

::

    deploy-chaos scorecard: ledger_currency (v1 -> v2), seed 7
    fault         point                 rollback  roll_forward  halt
    db_crash      before:migrate:0003   pass      pass          pass
    db_crash      after:rollout:0       HAZARD    pass          FAIL

``pass``: every judged invariant held; ``HAZARD``: a declared, known hazard happened (xfail);
``FAIL``: an unexpected failure (an undeclared violation, or a declared hazard that did not
happen); ``ERROR``: a harness error, the cell was not tested as it says (the fault did not
fire or had nothing to act on, a heal failed...); ``-``: not run (filtered, sharded away).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.expect import Cell
from harness.report.junit import parse_properties
from harness.report.score import (
    NOT_EXERCISED,
    ScoreEntry,
    exposure_cell,
    exposure_numbers,
    recovery_ran,
)

__all__ = [
    "ScoreEntry",
    "entries_from_results",
    "entry_from_properties",
    "exposure_cell",
    "exposure_numbers",
    "render_scorecard",
]


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def render_scorecard(entries: Iterable[ScoreEntry], *, seed: int | None = None) -> list[str]:
    """The scorecard as lines (one table per scenario, then counts and the failures)."""
    items = sorted(entries, key=lambda e: (e.scenario, e.order, e.fault, e.point, e.strategy))
    if not items:
        return ["deploy-chaos scorecard: no runs"]
    lines: list[str] = []
    scenarios = list(dict.fromkeys(e.scenario for e in items))
    for name in scenarios:
        mine = [e for e in items if e.scenario == name]
        strategies = sorted({(e.order[2], e.strategy) for e in mine}, key=lambda pair: pair)
        columns = list(dict.fromkeys(s for _, s in strategies))
        rows_keys = list(dict.fromkeys((e.fault, e.point) for e in mine))
        cells = {(e.fault, e.point, e.strategy): e for e in mine}
        control = {e.strategy: e for e in mine if e.fault == CONTROL}
        marked = False
        table = [["fault", "point", *columns]]
        for fault, point in rows_keys:
            row = [fault, point]
            for strategy in columns:
                entry = cells.get((fault, point, strategy))
                if entry is None:
                    row.append("-")
                    continue
                symbol = entry.symbol
                base = control.get(strategy)
                if base is not None and entry is not base and _differs(entry, base):
                    symbol += "*"
                    marked = True
                row.append(symbol)
            table.append(row)
        header = f"scenario {name}"
        if seed is not None:
            header += f" (seed {seed})"
        lines.append(header)
        lines.extend("  " + line for line in _table(table))
        if any(e.recovery_ran is False for e in mine):
            lines.append(
                f"  {NOT_EXERCISED.strip()}: nothing was detected and no recovery ran in that"
                " run: its strategy was not exercised (the same run under every strategy)"
            )
        if marked:
            lines.append(
                f"  *: a different result from the control ({CONTROL}) of its strategy:"
                " the fault, not the upgrade itself, changed the outcome"
            )
        if any(e.exposure for e in mine):
            lines.append(
                "  exposure: operations the new release served until recovery ended / of"
                " them failed / damaged acknowledged writes"
            )
            exposure = [["fault", "point", *columns]]
            for fault, point in rows_keys:
                row = [fault, point]
                for strategy in columns:
                    entry = cells.get((fault, point, strategy))
                    row.append(entry.exposure or "-" if entry is not None else "-")
                exposure.append(row)
            lines.extend("  " + line for line in _table(exposure))
        lines.append("")
    counts = {cell: sum(1 for e in items if e.cell is cell) for cell in Cell}
    lines.append(
        f"{len(items)} runs: {counts[Cell.PASS]} pass, {counts[Cell.HAZARD]} known hazard, "
        f"{counts[Cell.UNEXPECTED]} unexpected failure"
        + (f", {counts[Cell.ERROR]} harness error (not tested)" if counts[Cell.ERROR] else "")
    )
    hazards = list(dict.fromkeys(e.reason for e in items if e.cell is Cell.HAZARD and e.reason))
    if hazards:
        lines.append("known hazards seen:")
        lines.extend(f"  - {reason}" for reason in hazards)
    failures = [e for e in items if e.cell.failed]
    if failures:
        lines.append("unexpected failures and harness errors:")
        for e in failures:
            lines.append(f"  - {e.nodeid or e.fault}: {e.summary}")
    from harness.report.recommend import recommendation_lines

    advice = recommendation_lines(items)
    if advice:
        lines.append("")
        lines.extend(advice)
    return lines


#: The fault name of the control row (every other row is read against it).
CONTROL = "no_fault"


def _differs(entry: ScoreEntry, control: ScoreEntry) -> bool:
    return (entry.cell, set(entry.violated)) != (control.cell, set(control.violated))


def _exposure_of_properties(text: str) -> str:
    fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
    if "ops_until_recovery" not in fields:
        return ""
    return exposure_cell(
        fields["ops_until_recovery"],
        fields.get("failed_until_recovery", "?"),
        fields.get("damaged_writes", "?"),
    )


def _exposure_of_outcome(outcome: object) -> str:
    data = outcome.get("exposure") if isinstance(outcome, Mapping) else None
    if not isinstance(data, Mapping) or "until_recovery" not in data:
        return ""
    until = data["until_recovery"]
    return exposure_cell(until["operations"], until["failed"], data.get("damaged_writes", 0))


def entry_from_properties(user_properties: object, nodeid: str) -> ScoreEntry | None:
    """The scorecard entry a run's report carries (its ``chaos.*`` properties), or None."""
    props = parse_properties(user_properties)
    if "cell" not in props:
        return None
    try:
        order = tuple(int(x) for x in props.get("order", "0,0,0").split(","))
        cell = Cell(props["cell"])
    except ValueError:
        return None
    seed = props.get("seed", "")
    return ScoreEntry(
        scenario=props.get("scenario", "?"),
        fault=props.get("fault", "?"),
        point=props.get("point", "?"),
        strategy=props.get("strategy", "?"),
        cell=cell,
        order=(order[0], order[1], order[2]) if len(order) == 3 else (0, 0, 0),
        nodeid=nodeid,
        summary=props.get("summary", ""),
        reason=props.get("reason", ""),
        seed=int(seed) if seed.isdigit() else None,
        violated=tuple(v for v in props.get("violated", "").split(",") if v),
        runs=int(props.get("runs", "1") or 1),
        hits=int(props.get("hits", "0") or 0),
        exposure=_exposure_of_properties(props.get("exposure", "")),
        compare=props.get("compare", "") or props.get("scenario", "?"),
        recovery_ran={"ran": True, "not_needed": False}.get(props.get("recovery", "")),
    )


def entries_from_results(document: Mapping[str, Any]) -> list[ScoreEntry]:
    """Scorecard entries from a results.json document: one per cell (the runs of a repeated
    cell carry the cell's judgement)."""
    entries = []
    seen: set[str] = set()
    for run in document.get("runs", ()):
        key = str(run.get("key"))
        if key in seen:
            continue
        seen.add(key)
        judgement = run.get("cell") or run.get("judgement", {})
        order = run.get("order") or [0, 0, 0]
        entries.append(
            ScoreEntry(
                scenario=str(run["scenario"]),
                fault=str(run["fault"]),
                point=str(run["point"]),
                strategy=str(run["strategy"]),
                cell=Cell(judgement.get("cell", Cell.UNEXPECTED.value)),
                order=(int(order[0]), int(order[1]), int(order[2])),
                nodeid=str(run.get("nodeid", "")),
                summary=str(judgement.get("summary", "")),
                reason=" | ".join(judgement.get("reasons", ())),
                seed=run.get("seed"),
                violated=tuple(judgement.get("violated", ())),
                runs=int(judgement.get("runs", 1)),
                hits=int(judgement.get("hits", 0)),
                exposure=_exposure_of_outcome(run.get("outcome")),
                compare=str(run.get("compare") or run["scenario"]),
                recovery_ran=recovery_ran(
                    run.get("verdicts") or (run.get("outcome") or {}).get("verdicts")
                ),
            )
        )
    return entries
