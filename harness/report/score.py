"""One judged run as the scorecard and the recommendation see it, and its exposure cell.

Below both :mod:`harness.report.terminal` and :mod:`harness.report.recommend`, which use it
and each other's results only one way (the terminal prints the recommendation).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.expect import Cell

__all__ = ["NOT_EXERCISED", "ScoreEntry", "exposure_cell", "exposure_numbers", "recovery_ran"]

#: After a cell's symbol: no recovery ran in its shown run, so its strategy was not tested.
NOT_EXERCISED = " (no recovery)"

_SYMBOL = {
    Cell.PASS: "pass",
    Cell.HAZARD: "HAZARD",
    Cell.UNEXPECTED: "FAIL",
    Cell.ERROR: "ERROR",
}


@dataclass(frozen=True, slots=True)
class ScoreEntry:
    """One judged run, as the scorecard needs it."""

    scenario: str
    fault: str
    point: str
    strategy: str
    cell: Cell
    order: tuple[int, int, int] = (0, 0, 0)
    nodeid: str = ""
    summary: str = ""
    reason: str = ""
    seed: int | None = None
    #: The judged verdicts that were invalid (in some run of the cell).
    violated: tuple[str, ...] = ()
    #: How many times the cell ran, and in how many runs a judged verdict was invalid.
    runs: int = 1
    hits: int = 0
    #: The shown run's exposure to the new release: operations it served until recovery
    #: ended, how many failed, damaged acknowledged writes ("" when not measured).
    exposure: str = ""
    #: The scenario's comparison group (the recommendation compares within it).
    compare: str = ""
    #: Whether the shown run's recovery ran: False when nothing was detected and no
    #: recovery was needed (the strategy was not exercised), None when not recorded.
    recovery_ran: bool | None = None

    @property
    def symbol(self) -> str:
        """``pass``, ``HAZARD``, ``FAIL``, ``ERROR``; with the count after a repeat;
        ``(no recovery)`` after it when no recovery ran (the strategy was not exercised)."""
        base = _SYMBOL[self.cell]
        text = f"{base} {self.hits}/{self.runs}" if self.runs > 1 else base
        return text + NOT_EXERCISED if self.recovery_ran is False else text


def exposure_numbers(text: str) -> tuple[int, int, int] | None:
    """(served, failed, damaged) of an exposure cell (``31/14/3``), None when unmeasured."""
    parts = text.split("/")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


def exposure_cell(ops: object, failed: object, damaged: object) -> str:
    """``31/14/3``: served until recovery / failed / damaged writes."""
    return f"{ops}/{failed}/{damaged}"


def recovery_ran(verdicts: object) -> bool | None:
    """Whether a run's recovery ran, from its verdicts (``recovery``'s ``needed``)."""
    if not isinstance(verdicts, dict):
        return None
    recovery = verdicts.get("recovery")
    evidence = recovery.get("evidence") if isinstance(recovery, dict) else None
    needed = evidence.get("needed") if isinstance(evidence, dict) else None
    return needed if isinstance(needed, bool) else None
