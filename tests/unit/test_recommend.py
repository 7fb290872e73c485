"""The recommendation: within a comparison group and per fault point, the cell that held
every judged invariant at the least exposure; hazards and failures never win; cells without
figures or not tested are named, not ranked."""

from __future__ import annotations

from harness.expect import Cell
from harness.report.recommend import recommend, recommendation_lines
from harness.report.terminal import ScoreEntry


def _entry(scenario: str, strategy: str, cell: Cell, exposure: str, **kw: object) -> ScoreEntry:
    return ScoreEntry(
        scenario=scenario,
        fault="no_fault",
        point="none",
        strategy=strategy,
        cell=cell,
        exposure=exposure,
        compare="delivery",
        **kw,  # type: ignore[arg-type]
    )


def test_the_least_exposure_among_those_that_held_wins() -> None:
    entries = [
        _entry("big_bang", "rollback", Cell.PASS, "19/8/0"),
        _entry("canary", "rollback", Cell.PASS, "10/3/0"),
        _entry("canary", "halt", Cell.HAZARD, "10/1/0", violated=("no_regression",)),
        _entry("flag", "kill_switch", Cell.PASS, "44/3/0"),
        _entry("flag", "rollback", Cell.PASS, "9/2/1"),
        _entry("flag", "roll_forward", Cell.ERROR, "", summary="the fault did not fire"),
    ]
    (advice,) = recommend(entries)
    assert advice.best is not None
    assert (advice.best[0].scenario, advice.best[0].strategy) == ("canary", "rollback")
    order = [(e.scenario, e.strategy) for e, _ in advice.held]
    assert order == [
        ("canary", "rollback"),
        ("flag", "kill_switch"),  # as few failures, more served: after
        ("big_bang", "rollback"),
        ("flag", "rollback"),  # a damaged write ranks last, whatever its failures
    ]
    assert [(e.strategy, n) for e, n in advice.failed] == [("halt", (10, 1, 0))]
    assert [e.strategy for e in advice.untested] == ["roll_forward"]
    lines = recommendation_lines(entries)
    assert lines[1] == "  delivery, no_fault: canary rollback (10/3/0)"
    assert lines[2].startswith("    also held: flag kill_switch (44/3/0), big_bang rollback")
    assert lines[3] == "    did not hold: canary halt (10/1/0: no_regression)"
    assert lines[4] == "    not compared: flag roll_forward (the fault did not fire)"


def test_nothing_to_compare_says_nothing_and_nothing_held_says_so() -> None:
    alone = [_entry("canary", "rollback", Cell.PASS, "10/3/0")]
    assert recommendation_lines(alone) == []
    bad = [
        _entry("a", "halt", Cell.HAZARD, "1/1/0", violated=("x",)),
        _entry("b", "halt", Cell.UNEXPECTED, "2/2/0", violated=("y",)),
    ]
    assert "nothing held every invariant" in recommendation_lines(bad)[1]


def test_a_run_where_no_recovery_ran_is_never_ranked_and_is_marked() -> None:
    from harness.report.terminal import render_scorecard

    absorbed = [
        _entry("s", "rollback", Cell.PASS, "78/25/0", recovery_ran=False),
        _entry("s", "roll_forward", Cell.PASS, "77/25/0", recovery_ran=False),
    ]
    (advice,) = recommend(absorbed)
    assert advice.best is None
    assert len(advice.absorbed) == 2
    lines = recommendation_lines(absorbed)
    assert any("no recovery ran" in line and "nothing to choose" in line for line in lines)
    card = render_scorecard(absorbed)
    assert any("pass (no recovery)" in line for line in card)
    assert any("its strategy was not exercised" in line for line in card)

    mixed = [
        _entry("s", "rollback", Cell.PASS, "40/5/0", recovery_ran=True),
        _entry("s", "roll_forward", Cell.PASS, "30/1/0", recovery_ran=False),
    ]
    (advice,) = recommend(mixed)
    assert advice.best is not None
    assert advice.best[0].strategy == "rollback"  # the one that recovered, though it served more
    assert any("not exercised): roll_forward" in line for line in recommendation_lines(mixed))


def test_cells_that_held_without_figures_are_not_called_failures() -> None:
    entries = [
        _entry("s", "rollback", Cell.PASS, "", summary="every judged invariant held"),
        _entry("s", "roll_forward", Cell.PASS, "", summary="every judged invariant held"),
    ]
    lines = recommendation_lines(entries)
    assert any("nothing to rank" in line for line in lines)
    assert not any("nothing held" in line for line in lines)
