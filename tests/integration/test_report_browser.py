"""report.html in a real browser: headless Chromium opens the file from disk.

Checks the scorecard has one cell per run and that the page made no network request (the
page's own requests as the DevTools protocol reports them: only the file itself), and saves
a screenshot into the test's output directory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.report.html import write_report
from harness.report.json import write_results
from harness.report.outcome import Event, EventKind, RunOutcome
from tests.integration._cdp import Browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# On CI (CI=true) a missing browser is a failure, not a skip: scripts/setup.sh installs it.
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="needs Chromium: apt-get install chromium (scripts/setup.sh does)",
)


def _outcome(fault: str, point: str, strategy: str, failed: bool) -> RunOutcome:
    events = [
        Event(0.0, 0.0, EventKind.RUN_START, "run"),
        Event(1.0, 1.0, EventKind.STEP_START, "migrate:0003"),
        Event(1.4, 1.4, EventKind.STEP_END, "migrate:0003"),
        Event(1.4, 1.4, EventKind.STEP_START, "migrate:0004"),
        Event(1.6, 1.6, EventKind.FAULT_INJECT, fault, point),
        Event(1.8, 1.8, EventKind.STEP_FAILED, "migrate:0004", "boom"),
        Event(1.8, 1.8, EventKind.DETECTION, "step_error", "migrate:0004: boom"),
        Event(1.9, 1.9, EventKind.FAULT_HEAL, fault),
        Event(1.9, 1.9, EventKind.RECOVERY_START, strategy),
        Event(2.0, 2.0, EventKind.RECOVERY_STEP_START, f"{strategy}:migrate:0002"),
        Event(2.5, 2.5, EventKind.RECOVERY_STEP_END, f"{strategy}:migrate:0002"),
        Event(2.6, 2.6, EventKind.RUN_END, "run"),
    ]
    return RunOutcome(
        scenario="ledger_currency",
        target="ledger",
        source="v1",
        dest="v2",
        fault=fault,
        point=point,
        strategy=strategy,
        seed=42,
        backend="local",
        run_id="dc-test",
        plan=("migrate:0003", "migrate:0004"),
        events=tuple(events),
        detected="step_error",
        recovered=not failed,
        duration_s=2.6,
        fault_seconds=0.3,
        verdicts={
            "durable_acknowledged_writes": {
                "status": "invalid" if failed else "valid",
                "evidence": {"lost": [1, 2]},
            }
        },
        history_stats={"series": [[t, 40 - 5 * (t == 2), 2 * (t == 2), 0] for t in range(3)]},
    )


def test_report_in_headless_chromium(tmp_path: Path) -> None:
    runs = [
        ("db_crash", "during:migrate:0004", "rollback", False),
        ("db_crash", "during:migrate:0004", "roll_forward", False),
        ("db_crash", "during:migrate:0004", "halt", True),
        ("down", "before:migrate:0003", "rollback", True),
    ]
    cells = ["pass", "pass", "known hazard", "unexpected failure"]
    records = []
    for (fault, point, strategy, failed), cell in zip(runs, cells, strict=True):
        outcome = _outcome(fault, point, strategy, failed)
        records.append(
            {
                "key": outcome.run_key,
                "seed": 42,
                "replay": "deploy-chaos run ...",
                "judgement": {"cell": cell, "summary": cell, "reasons": []},
                "outcome": outcome.to_json(),
            }
        )
    results = write_results(tmp_path / "a", records[:2], meta={"seed": 42})
    shard = write_results(tmp_path / "b", records[2:], meta={"seed": 42})
    report = write_report([results, shard], tmp_path / "report.html")
    page = report.read_text()
    assert "http://" not in page
    assert "https://" not in page

    browser = Browser(str(CHROMIUM), tmp_path / "profile")
    try:
        browser.open(report.as_uri())
        cells = browser.evaluate("document.querySelectorAll('td.cell').length")
        classes = browser.evaluate(
            "Array.from(document.querySelectorAll('td.cell')).map(c => c.className).join(' ')"
        )
        folded = browser.evaluate("document.querySelectorAll('svg.timeline').length")
        first_heading = browser.evaluate("document.querySelector('h2').textContent")
        summary = browser.evaluate("document.querySelector('table.summary').textContent")
        # a scorecard cell opens its run, which renders its body then
        browser.evaluate("document.querySelector('td.cell.hazard a').click()")
        opened = browser.evaluate(
            "Array.from(document.querySelectorAll('details.run'))"
            ".filter(d => d.open).map(d => d.querySelectorAll('svg.timeline').length)"
        )
        browser.evaluate("document.getElementById('open-all').click()")
        timelines = browser.evaluate("document.querySelectorAll('svg.timeline').length")
        browser.evaluate(
            "document.getElementById('filter').value = 'hazard';"
            "document.getElementById('filter').dispatchEvent(new Event('change'))"
        )
        shown = browser.evaluate(
            "Array.from(document.querySelectorAll('details.run'))"
            ".filter(s => s.style.display !== 'none').length"
        )
        shot = browser.screenshot(tmp_path / "report.png")
        requests = browser.page_requests()
    finally:
        browser.close()
    assert cells == len(runs), "one scorecard cell per run"
    for css in ("pass", "hazard", "unexpected"):
        assert f"cell {css}" in classes
    assert folded == 0, "runs are folded and their bodies not rendered until opened"
    assert first_heading == "Recommendation", "the summary and the recommendation come first"
    assert "1 cell(s)" in summary
    assert opened == [1], "the cell's link opened its run and rendered its timeline"
    assert timelines == len(runs), "a timeline per run once all are open"
    assert shown == 1, "the filter shows only the known hazard"
    assert requests == [report.as_uri()], f"the page made network requests: {requests}"
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
