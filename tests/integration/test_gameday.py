"""The game day in a real terminal (tmux) and without one (CI mode)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness._wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = str(ROOT / "scenarios" / "ledger_currency.yaml")
TMUX = shutil.which("tmux")
CLI = [sys.executable, "-m", "harness.cli"]


def _cli_env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1")


def test_without_a_terminal_it_needs_flags_and_starts_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *CLI,
            "gameday",
            SCENARIO,
            "--backend",
            "local",
            "--fault",
            "db_crash*",
            "--point",
            "during:migrate:0004",
            "--report",
            str(tmp_path),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=_cli_env(),
    )
    assert done.returncode == 2
    assert "--strategy is needed without a terminal" in done.stderr
    assert "rollback" in done.stderr, "the error lists the choices"
    assert not (tmp_path / "results.json").exists()


def test_ci_mode_runs_with_flags_and_never_waits(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *CLI,
            "gameday",
            SCENARIO,
            "--backend",
            "local",
            "--fault",
            "migration_fails_at*",
            "--point",
            "before:migrate:0003",
            "--strategy",
            "rollback",
            "--seed",
            "5",
            "--report",
            str(tmp_path),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=_cli_env(),
    )
    print(done.stdout[-3000:])
    assert "=== debrief" in done.stdout, done.stderr[-3000:]
    assert "injecting migration_fails_at(3)" in done.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    [run] = results["runs"]
    outcome = run["outcome"]
    assert outcome["strategy"] == "rollback"
    assert outcome["detected"].startswith("step_error at migrate:0003")
    assert outcome["end_state"]["migrations"] == ["0001", "0002"]
    assert [i["release"] for i in outcome["end_state"]["instances"]] == ["v1", "v1"]
    unexpected = run["judgement"]["cell"] == "unexpected failure"
    assert done.returncode == (1 if unexpected else 0), "the exit code follows the judgement"
    assert (tmp_path / "report.html").exists()


@pytest.fixture
def tmux() -> Iterator[list[str]]:
    if TMUX is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tmux is required on CI (scripts/setup.sh installs it)")
        pytest.skip("needs tmux: apt-get install tmux (scripts/setup.sh does)")
    base = [TMUX, "-L", f"deploy-chaos-test-{uuid.uuid4().hex[:8]}"]
    yield base
    subprocess.run([*base, "kill-server"], capture_output=True, timeout=30)


def _pane(tmux: list[str]) -> str:
    return subprocess.run(
        [*tmux, "capture-pane", "-p", "-J", "-S", "-200", "-t", "gd"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout


def _await_text(tmux: list[str], text: str, timeout: float) -> str:
    def shown() -> str | None:
        pane = _pane(tmux)
        return pane if text in pane else None

    return wait_for(
        shown,
        what=f"{text!r} on the game-day screen",
        timeout=timeout,
        log_tail=lambda: _pane(tmux)[-2000:],
    )


def test_interactive_game_day_under_tmux(tmux: list[str], tmp_path: Path) -> None:
    argv = [
        *CLI,
        "gameday",
        SCENARIO,
        "--backend",
        "local",
        "--fault",
        "db_crash*",
        "--point",
        "during:migrate:0004",
        "--seed",
        "5",
        "--report",
        str(tmp_path),
    ]
    command = " ".join(f"'{a}'" for a in argv)
    subprocess.run(
        [
            *tmux,
            "new-session",
            "-d",
            "-s",
            "gd",
            "-x",
            "160",
            "-y",
            "50",
            "-c",
            str(ROOT),
            f"PYTHONUNBUFFERED=1 {command}",
        ],
        check=True,
        timeout=30,
    )
    subprocess.run(
        [*tmux, "set-option", "-t", "gd", "remain-on-exit", "on"], check=True, timeout=30
    )
    screen = _await_text(tmux, "Press Enter to inject", timeout=120)
    assert "deploy-chaos game day" in screen
    assert "[+] migrate:0003" in screen, "the live view shows the plan's progress"
    assert "instances" in screen, screen
    subprocess.run([*tmux, "send-keys", "-t", "gd", "Enter"], check=True, timeout=30)
    screen = _await_text(tmux, "Choose the recovery", timeout=120)
    assert "DETECTED:" in screen
    subprocess.run([*tmux, "send-keys", "-t", "gd", "2", "Enter"], check=True, timeout=30)
    screen = _await_text(tmux, "judgement:", timeout=180)
    print(screen[-4000:])
    assert "=== debrief" in screen
    assert "verdicts:" in screen
    results = json.loads((tmp_path / "results.json").read_text())
    [run] = results["runs"]
    assert run["outcome"]["strategy"] == "roll_forward", "the team's choice was applied"
    releases = [i["release"] for i in run["outcome"]["end_state"]["instances"]]
    assert releases == ["v2.1", "v2.1"], "roll forward deploys the fix release"
    (tmp_path / "gameday-screen.txt").write_text(screen)
