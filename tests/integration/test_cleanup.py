"""Cleanup on every path: Ctrl-C in the middle of a run, and a session killed outright."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness._runstate import proc_stat, process_start_time
from harness._wait import wait_for

ROOT = Path(__file__).resolve().parents[2]

# Starts a stack (database + 2 app instances), writes every pid, then waits to be interrupted.
_SESSION = textwrap.dedent(
    """
    import json, os, sys, threading
    sys.path.insert(0, {root!r})
    from harness.backends.local import LocalBackend
    from tests.integration.apps import tiny_target

    def test_hold_a_stack():
        target = tiny_target()
        with LocalBackend() as backend:
            stack = backend.start_stack(target, target.release("r1"), instances=2)
            pids = [stack.database.pid] + [a.pid for a in stack.apps]
            backends = [int(r[0]) for r in stack.database.sql(
                "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()")]
            if {pause!r}:
                stack.database.pause()  # every server process stopped: none exits by itself
            with open({pids_file!r} + ".tmp", "w") as f:
                json.dump({{"pids": pids + backends, "run": str(backend.run.path)}}, f)
            os.replace({pids_file!r} + ".tmp", {pids_file!r})
            threading.Event().wait(120)

    if __name__ == "__main__":
        test_hold_a_stack()
    """
)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: that is mode 0700, and PostgreSQL runs as another user.
    path = Path(tempfile.mkdtemp(prefix="deploy-chaos-test-state-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _start(script: Path, argv: list[str], state_dir: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DEPLOY_CHAOS_STATE_DIR=str(state_dir))
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _await_pids(pids_file: Path, proc: subprocess.Popen[bytes]) -> dict[str, object]:
    def ready() -> dict[str, object] | None:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"session exited early ({proc.returncode}):\n{out}")
        return json.loads(pids_file.read_text()) if pids_file.exists() else None

    return wait_for(ready, what="the session to bring its stack up", timeout=60)


def _none_alive(pids: list[int]) -> bool:
    """None of ``pids`` runs (an exited process not yet reaped by its parent counts)."""
    return all((fields := proc_stat(pid)) is None or fields[0] in "ZX" for pid in pids)


def test_ctrl_c_in_pytest_leaves_no_process(tmp_path: Path, state_dir: Path) -> None:
    pids_file = tmp_path / "pids.json"
    test_file = tmp_path / "test_hold.py"
    test_file.write_text(_SESSION.format(root=str(ROOT), pids_file=str(pids_file), pause=False))
    proc = _start(
        test_file,
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        state_dir,
    )
    try:
        info = _await_pids(pids_file, proc)
        pids = list(info["pids"])  # type: ignore[call-overload]
        assert len(pids) >= 3
        assert not _none_alive(pids)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert b"KeyboardInterrupt" in out, out.decode()
        assert _none_alive(pids), f"left running: {[p for p in pids if process_start_time(p)]}"
        assert not Path(str(info["run"])).exists(), "the run directory must be removed"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("paused", [False, True], ids=["running", "database-paused"])
def test_killed_session_is_reaped(tmp_path: Path, state_dir: Path, paused: bool) -> None:
    """Reaping kills the server's backends too: each has a session of its own, and a
    paused backend never notices that its postmaster is gone."""
    pids_file = tmp_path / "pids.json"
    script = tmp_path / "hold.py"
    script.write_text(_SESSION.format(root=str(ROOT), pids_file=str(pids_file), pause=paused))
    proc = _start(script, [sys.executable, str(script)], state_dir)
    info = _await_pids(pids_file, proc)
    pids = list(info["pids"])  # type: ignore[call-overload]
    proc.send_signal(signal.SIGKILL)  # only the session: its children stay behind
    proc.wait()
    assert not _none_alive(pids), "the stack outlives a killed session until reaped"
    env = dict(os.environ, DEPLOY_CHAOS_STATE_DIR=str(state_dir))
    reaped = subprocess.run(
        [sys.executable, "-m", "harness.cli", "reap"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reaped.returncode == 0, reaped.stderr
    assert "reaped 1 dead run(s)" in reaped.stdout, reaped.stdout
    wait_for(lambda: _none_alive(pids), what="reaped processes to exit", timeout=10)
    assert not Path(str(info["run"])).exists()
