"""The recommendation under the scorecard: per fault point, which way of shipping and
recovering held every invariant at the least exposure, and which did not, with the numbers.

Runs are compared within a comparison group (a scenario's ``compare:``, by default its own
name) and per (fault, point): each candidate is one cell (a scenario's delivery style and
one strategy). A candidate **held** when its cell is ``pass`` (no judged verdict invalid);
among those, the least exposure wins, ranked by damaged acknowledged writes, then failed
client operations on the new release until recovery ended, then operations it served. A
known hazard or a failure did not hold, whatever its exposure; a cell not tested (harness
error) or without exposure figures is named as such, never ranked; nor is a cell where
nothing was detected and no recovery ran (its strategy was not exercised). The exposure compared is
the cell's shown run (its first failing run, else its first).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from harness.expect import Cell
from harness.report.score import ScoreEntry, exposure_numbers

__all__ = ["Advice", "recommend", "recommendation_lines"]


class Advice:
    """The recommendation for one (group, fault, point)."""

    def __init__(
        self,
        group: str,
        fault: str,
        point: str,
        held: Sequence[tuple[ScoreEntry, tuple[int, int, int]]],
        failed: Sequence[tuple[ScoreEntry, tuple[int, int, int] | None]],
        untested: Sequence[ScoreEntry],
        absorbed: Sequence[ScoreEntry] = (),
    ) -> None:
        self.group = group
        self.fault = fault
        self.point = point
        self.held = list(held)
        self.failed = list(failed)
        self.untested = list(untested)
        #: Held every invariant with no recovery run: nothing to say about the strategy.
        self.absorbed = list(absorbed)

    @property
    def best(self) -> tuple[ScoreEntry, tuple[int, int, int]] | None:
        return self.held[0] if self.held else None


def _name(entry: ScoreEntry, scenarios: int) -> str:
    return f"{entry.scenario} {entry.strategy}" if scenarios > 1 else entry.strategy


def _figures(numbers: tuple[int, int, int] | None) -> str:
    """``19/7/0``: served / failed / damaged (see the legend line)."""
    if numbers is None:
        return "no exposure measured"
    return "/".join(str(n) for n in numbers)


def recommend(entries: Iterable[ScoreEntry]) -> list[Advice]:
    """The advice for every (group, fault, point) with more than one candidate."""

    groups: dict[tuple[str, str, str], list[ScoreEntry]] = {}
    for entry in entries:
        groups.setdefault((entry.compare or entry.scenario, entry.fault, entry.point), []).append(
            entry
        )
    out = []
    for (group, fault, point), mine in groups.items():
        if len(mine) < 2:
            continue
        held, failed, untested, absorbed = [], [], [], []
        for entry in mine:
            numbers = exposure_numbers(entry.exposure)
            if entry.cell is Cell.PASS and entry.recovery_ran is False:
                absorbed.append(entry)  # the strategy did not run: nothing to rank it by
            elif entry.cell is Cell.ERROR or (entry.cell is Cell.PASS and numbers is None):
                untested.append(entry)
            elif entry.cell is Cell.PASS and numbers is not None:
                held.append((entry, numbers))
            else:
                failed.append((entry, numbers))
        held.sort(key=lambda pair: (pair[1][2], pair[1][1], pair[1][0], pair[0].order))
        out.append(Advice(group, fault, point, held, failed, untested, absorbed))
    return out


def recommendation_lines(entries: Sequence[ScoreEntry]) -> list[str]:
    """The recommendation as terminal lines (empty when nothing can be compared): per
    fault point, the way that held every judged invariant at the least exposure, then the
    others that held, then those that did not (with the verdicts they broke)."""
    advice = recommend(entries)
    if not advice:
        return []
    lines = [
        "recommendation: per fault point, what held every judged invariant at the least"
        " exposure (operations the new release served until recovery / of them failed /"
        " damaged acknowledged writes)"
    ]
    for item in advice:
        everyone = [
            *(h[0] for h in item.held),
            *(f[0] for f in item.failed),
            *item.untested,
            *item.absorbed,
        ]
        scenarios = len({e.scenario for e in everyone})
        where = f"{item.group}, {item.fault}" + (
            f" at {item.point}" if item.point != "none" else ""
        )
        best = item.best
        if best is not None:
            lines.append(f"  {where}: {_name(best[0], scenarios)} ({_figures(best[1])})")
        elif item.failed:
            that = " that recovered" if item.absorbed else ""
            lines.append(f"  {where}: nothing{that} held every invariant")
        elif item.absorbed and not item.untested:
            lines.append(
                f"  {where}: no recovery ran (nothing was detected): every strategy's run is"
                " the same upgrade, nothing to choose between"
            )
        else:
            lines.append(
                f"  {where}: nothing to rank: no cell that held has exposure figures (a"
                " workload measures them)"
            )
        if item.held[1:]:
            held = ", ".join(f"{_name(e, scenarios)} ({_figures(n)})" for e, n in item.held[1:])
            lines.append(f"    also held: {held}")
        if item.failed:
            broke = ", ".join(
                f"{_name(e, scenarios)} ({_figures(n)}: "
                f"{', '.join(e.violated) or e.summary or e.cell.value})"
                for e, n in item.failed
            )
            lines.append(f"    did not hold: {broke}")
        if item.absorbed and (best is not None or item.failed):
            named = ", ".join(_name(e, scenarios) for e in item.absorbed)
            lines.append(f"    held with no recovery run (not exercised): {named}")
        if item.untested:
            named = ", ".join(
                f"{_name(e, scenarios)} ({e.summary or 'untested'})" for e in item.untested
            )
            lines.append(f"    not compared: {named}")
    return lines
