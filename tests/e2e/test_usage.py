"""The usage of record in this repository: ``pytest -m deploy_chaos`` in its root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pytest_dash_m_deploy_chaos_in_this_repo_runs_the_reference_suite() -> None:
    """The usage of record, in the project's own root: every run of scenarios/*.yaml is
    collected and nothing else (collection only: nothing runs)."""
    from harness.scenario import load_scenario

    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "deploy_chaos"]
    cmd += ["--collect-only", "-q"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    collected = {line for line in done.stdout.splitlines() if "::" in line}
    expected = {
        f"scenarios/{path.name}::{case.key}"
        for path in sorted((ROOT / "scenarios").glob("*.yaml"))
        for case in load_scenario(path).runs()
    }
    print(f"{len(collected)} runs collected")
    assert expected
    assert collected == expected
