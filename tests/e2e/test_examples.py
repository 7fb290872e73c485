"""The example apps written for the public API only (examples/bookshop: SQLAlchemy +
Alembic; examples/notes: Django), each through its own scenario, as a user runs it
(``deploy-chaos run``): every run passes, and every data invariant judged real writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DATA = ("durable_acknowledged_writes", "row_counts", "referential_integrity")


@pytest.mark.parametrize("app", ["bookshop", "notes"])
def test_the_example_scenario_passes_with_its_data_judged(app: str, tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("deploy-chaos")
    scenario = ROOT / "examples" / app / "scenario.yaml"
    done = subprocess.run(
        [str(cli), "run", str(scenario), "--backend", "local", "--report", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    tail = done.stdout[-3000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail
    assert "10 runs: 10 pass, 0 known hazard, 0 unexpected failure" in done.stdout, tail
    runs = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["runs"]
    assert len(runs) == 10
    for run in runs:
        verdicts = run["verdicts"]
        for name in DATA:
            assert verdicts[name]["status"] == "valid", (run["key"], name, verdicts[name])
        reads = verdicts["readable_by_running_release"]
        assert reads["status"] == "valid", (run["key"], reads)
        assert reads["evidence"]["entities"] > 0
        groups = verdicts["row_counts"]["evidence"]["groups"]
        assert sum(g["acknowledged"] for g in groups) > 0, (run["key"], groups)
