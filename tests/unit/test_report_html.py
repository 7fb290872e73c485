"""report.html's page structure without a browser: the summary and the recommendation
first, the scorecard rows in the scenario's (plan) order, runs folded with their bodies in
inert templates, and no attribute-style escaping in evidence text."""

from __future__ import annotations

import re
from typing import Any

from harness.report.html import ReportRun, render_report


def _run(fault: str, point: str, order: tuple[int, int, int], cell: str = "pass") -> ReportRun:
    outcome: dict[str, Any] = {"events": [], "duration_s": 1.0}
    return ReportRun(
        key=f"s[{fault}-{point}-rollback]",
        scenario="s",
        fault=fault,
        point=point,
        strategy="rollback",
        seed=1234,
        replay="deploy-chaos run ...",
        cell=cell,
        summary=cell,
        reasons=(),
        outcome=outcome,
        verdicts={"x": {"status": "valid", "evidence": {"said": 'a "quoted" word'}}},
        cell_key=f"s[{fault}-{point}-rollback]",
        order=order,
        base_seed=7,
    )


def test_rows_follow_the_plan_not_the_alphabet() -> None:
    runs = [
        _run("db_crash", "before:contract:0005", (0, 2, 0)),
        _run("db_crash", "before:migrate:0003", (0, 0, 0)),
        _run("db_crash", "after:rollout:0", (0, 1, 0), cell="known hazard"),
    ]
    page = render_report(runs)
    rows = re.findall(r"<tr><td>s</td><td>db_crash</td><td>([^<]+)</td>", page)
    assert rows == ["before:migrate:0003", "after:rollout:0", "before:contract:0005"]
    runs_in_page = re.findall(r'<details class="run" id="([^"]+)"', page)
    assert runs_in_page == [
        "run-s-db-crash-before-migrate-0003-rollback-",
        "run-s-db-crash-after-rollout-0-rollback-",
        "run-s-db-crash-before-contract-0005-rollback-",
    ]


def test_the_summary_comes_first_and_bodies_wait_in_templates() -> None:
    page = render_report([_run("db_crash", "after:rollout:0", (0, 0, 0))])
    assert page.index('class="summary"') < page.index("<h2>Scorecard</h2>")
    assert "session seed 7" in page
    assert "1234" not in page.split("<h2>Runs</h2>")[0], "per-run seeds stay in their runs"
    assert page.count("<template>") == 1
    assert page.index("<template>") < page.index('svg class="timeline"')
    assert '"said": "a \\"quoted\\" word"' in page  # element text: quotes stay quotes
    eager = render_report([_run("db_crash", "after:rollout:0", (0, 0, 0))], lazy=False)
    assert "<template>" not in eager
    assert '<details class="run" id="run-s-db-crash-after-rollout-0-rollback-" open>' in eager
