"""Judging verdicts against ``expect:``, the scorecard and results.json merging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.expect import Cell, binomial_tail, judge_runs, judge_verdicts, verdicts_of
from harness.report import json as results_json
from harness.report.outcome import RunError, RunOutcome
from harness.report.terminal import ScoreEntry, render_scorecard
from harness.scenario import Expectation, Selector, parse_rate

V = "valid"
X = "invalid"


def _expect(*names: str, strict: bool = True) -> Expectation:
    return Expectation(Selector(), names, f"because {'+'.join(names)}", strict)


def _v(**statuses: str) -> dict[str, dict[str, object]]:
    return {name: {"status": status, "evidence": {}} for name, status in statuses.items()}


@pytest.mark.parametrize(
    ("verdicts", "expectations", "cell", "undeclared", "missing"),
    [
        (_v(recovery=V, conservation=V), [], Cell.PASS, (), ()),
        (_v(recovery=V, conservation=X), [], Cell.UNEXPECTED, ("conservation",), ()),
        (_v(recovery=V, conservation=X), [_expect("conservation")], Cell.HAZARD, (), ()),
        (_v(recovery=V), [_expect("conservation")], Cell.UNEXPECTED, (), ("conservation",)),
        (_v(recovery=V), [_expect("conservation", strict=False)], Cell.PASS, (), ()),
        (
            _v(recovery=X, conservation=X),
            [_expect("recovery")],
            Cell.UNEXPECTED,
            ("conservation",),
            (),
        ),
        (_v(recovery=V, availability="unknown"), [], Cell.PASS, (), ()),
        (
            _v(recovery=X, conservation=X),
            [_expect("recovery"), _expect("conservation", strict=False)],
            Cell.HAZARD,
            (),
            (),
        ),
    ],
)
def test_judgement(
    verdicts: dict[str, dict[str, object]],
    expectations: list[Expectation],
    cell: Cell,
    undeclared: tuple[str, ...],
    missing: tuple[str, ...],
) -> None:
    judgement = judge_verdicts(verdicts, expectations)
    assert judgement.cell is cell, judgement.summary
    assert judgement.undeclared == undeclared
    assert judgement.missing == missing


def test_only_judged_invariants_count_and_harness_errors_fail() -> None:
    verdicts = _v(recovery=V, conservation=X)
    judged = judge_verdicts(verdicts, [], judged=lambda name: name == "recovery")
    assert judged.cell is Cell.PASS
    broken = judge_verdicts(_v(recovery=V), [], harness_errors=["inject db_crash: OSError"])
    assert broken.cell is Cell.ERROR
    assert broken.cell.failed
    assert "harness error, not tested" in broken.summary
    # A harness error wins over verdicts: the cell was not tested as it says.
    declared = [_expect("conservation")]
    both = judge_verdicts(
        _v(recovery=V, conservation=X), declared, harness_errors=["plan: NotFired: ..."]
    )
    assert both.cell is Cell.ERROR


def _outcome(**kwargs: object) -> RunOutcome:
    base: dict[str, object] = {
        "scenario": "s",
        "target": "t",
        "source": "v1",
        "dest": "v2",
        "fault": "db_crash",
        "point": "before:migrate:0003",
        "strategy": "rollback",
        "seed": 1,
        "backend": "local",
        "run_id": "r",
        "plan": (),
    }
    base.update(kwargs)
    return RunOutcome(**base)  # type: ignore[arg-type]


def test_recovery_is_derived_when_the_engine_gave_none() -> None:
    failed = _outcome(
        recovered=False,
        errors=(RunError("recovery", "roll_forward:migrate:0004", "RecoveryStepFailed", "boom"),),
    )
    assert verdicts_of(failed)["recovery"]["status"] == X
    assert verdicts_of(_outcome(recovered=True))["recovery"]["status"] == V
    given = _outcome(recovered=False, verdicts={"recovery": {"status": V, "evidence": {}}})
    assert verdicts_of(given)["recovery"]["status"] == V, "the engine's verdict wins"


def test_scorecard_layout() -> None:
    entries = [
        ScoreEntry("s", "db_crash", "before:migrate:0003", "rollback", Cell.PASS, (0, 0, 0)),
        ScoreEntry(
            "s", "db_crash", "before:migrate:0003", "halt", Cell.HAZARD, (0, 0, 1), reason="r"
        ),
        ScoreEntry(
            "s", "db_crash", "after:verify", "halt", Cell.UNEXPECTED, (0, 1, 1), "n::x", "bad"
        ),
    ]
    lines = render_scorecard(reversed(entries))
    assert lines[1].split() == ["fault", "point", "rollback", "halt"]
    assert lines[2].split() == ["db_crash", "before:migrate:0003", "pass", "HAZARD"]
    assert lines[3].split() == ["db_crash", "after:verify", "-", "FAIL"]
    assert "3 runs: 1 pass, 1 known hazard, 1 unexpected failure" in lines
    assert "  - n::x: bad" in lines


def test_partials_merge_into_results_and_shards_merge(tmp_path: Path) -> None:
    results_json.append_partial(tmp_path / "a", "gw0", {"key": "s[2]", "n": 1})
    results_json.append_partial(tmp_path / "a", "gw1", {"key": "s[1]", "n": 2})
    path = results_json.merge_partials(tmp_path / "a", meta={"seed": 4})
    assert path is not None
    document = json.loads(path.read_text())
    assert [r["key"] for r in document["runs"]] == ["s[1]", "s[2]"]
    assert document["seed"] == 4
    assert not list((tmp_path / "a").glob("partial-*"))
    results_json.write_results(tmp_path / "b", [{"key": "s[3]"}], meta={"seed": 4})
    merged = results_json.merge_results(
        [tmp_path / "a" / "results.json", tmp_path / "b" / "results.json"], tmp_path / "m"
    )
    assert [r["key"] for r in results_json.load_results(merged)["runs"]] == ["s[1]", "s[2]", "s[3]"]
    with pytest.raises(SpecError, match="more than one file"):
        results_json.merge_results([merged, merged], tmp_path / "n")


def _rated(name: str, rate: tuple[float, float]) -> Expectation:
    return Expectation(Selector(), (name,), f"because {name}", rate=rate)


@pytest.mark.parametrize(
    ("rate", "hits", "runs", "cell"),
    [
        ((1.0, 1.0), 5, 5, Cell.HAZARD),  # strict, every run
        ((1.0, 1.0), 4, 5, Cell.UNEXPECTED),  # strict: one miss is enough
        ((0.8, 1.0), 0, 1, Cell.PASS),  # one run cannot contradict 80 %
        ((0.8, 1.0), 0, 5, Cell.UNEXPECTED),  # none in five does
        ((0.8, 1.0), 3, 5, Cell.HAZARD),  # 3/5 is plausible under 80 %
        ((0.0, 0.3), 3, 5, Cell.HAZARD),  # and under 30 %
        ((0.0, 0.3), 5, 5, Cell.UNEXPECTED),  # five in five is not
        ((0.0, 1.0), 0, 5, Cell.PASS),  # "may": never contradicted
    ],
)
def test_a_cell_is_judged_by_whether_its_counts_contradict_the_declared_rate(
    rate: tuple[float, float], hits: int, runs: int, cell: Cell
) -> None:
    verdicts = [_v(recovery=V, conservation=X if i < hits else V) for i in range(runs)]
    judgement = judge_runs(verdicts, [_rated("conservation", rate)])
    assert judgement.cell is cell, judgement.summary
    assert (judgement.runs, judgement.hits) == (runs, hits)
    assert dict(judgement.counts).get("conservation", 0) == hits


def test_binomial_tails() -> None:
    assert binomial_tail(0, 5, 0.8, upper=False) == pytest.approx(0.2**5)
    assert binomial_tail(5, 5, 0.3, upper=True) == pytest.approx(0.3**5)
    assert binomial_tail(3, 5, 0.5, upper=False) + binomial_tail(4, 5, 0.5, upper=True) == (
        pytest.approx(1.0)
    )


@pytest.mark.parametrize(
    ("text", "bounds"),
    [(">= 80%", (0.8, 1.0)), ("<= 0.3", (0.0, 0.3)), ("20%..60%", (0.2, 0.6)), ("100%", (1, 1))],
)
def test_rates_parse(text: str, bounds: tuple[float, float]) -> None:
    assert parse_rate(text) == pytest.approx(bounds)


@pytest.mark.parametrize("text", ["often", "120%", "60%..20%", ">= -1"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)
