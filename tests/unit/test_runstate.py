from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness._runstate import STATE_DIR_ENV, RunDir, claim_port, process_start_time, reap
from harness._wait import wait_for
from harness.backends import postgres
from harness.errors import WaitTimeout


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )


def test_reap_kills_processes_of_dead_runs_only(tmp_path: Path) -> None:
    live = RunDir.create(tmp_path)
    live_proc = _sleeper()
    live.record("keep", live_proc.pid, ("sleep",))

    dead = RunDir.create(tmp_path)
    dead_proc = _sleeper()
    dead.record("victim", dead_proc.pid, ("sleep",))
    # Make the owner a process that no longer exists.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (dead.path / "owner.json").write_text(f'{{"pid": {gone.pid}, "start_time": 1}}')
    try:
        report = reap(tmp_path)
        assert report.runs_removed == (dead.run_id,)
        assert report.runs_alive == (live.run_id,)
        assert dead_proc.wait(timeout=5) == -9
        assert live_proc.poll() is None
        assert not dead.path.exists()
    finally:
        live.close()
        live_proc.wait(timeout=5)
        dead_proc.kill()


def test_reap_never_kills_a_reused_pid(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path)
    proc = _sleeper()
    (run.path / "procs" / "x.json").write_text(
        f'{{"name": "x", "pid": {proc.pid}, "start_time": 1, "argv": []}}'
    )
    (run.path / "owner.json").write_text('{"pid": 999999999, "start_time": 1}')
    try:
        reap(tmp_path)
        assert proc.poll() is None, "a process whose start time differs must not be killed"
    finally:
        proc.kill()
        proc.wait()


def test_process_start_time() -> None:
    assert process_start_time(os.getpid()) is not None
    assert process_start_time(999999999) is None


def test_wait_for_returns_value_and_times_out_with_last_error() -> None:
    calls = iter([None, None, 7])
    assert wait_for(lambda: next(calls), what="x", timeout=2) == 7

    def boom() -> int:
        raise ConnectionRefusedError("nope")

    with pytest.raises(WaitTimeout) as info:
        wait_for(
            boom,
            what="the thing",
            timeout=0.2,
            transient=(ConnectionRefusedError,),
            log_tail=lambda: "tail line",
        )
    assert "the thing" in str(info.value)
    assert "ConnectionRefusedError" in str(info.value)
    assert "tail line" in str(info.value)


def test_wait_for_propagates_other_errors_at_once() -> None:
    def bad() -> int:
        raise ValueError("fatal")

    with pytest.raises(ValueError, match="fatal"):
        wait_for(bad, what="x", timeout=5, transient=(OSError,))


def test_kept_records_and_paths_outlive_close_until_reaped_explicitly(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path)
    kept_proc, other_proc = _sleeper(), _sleeper()
    run.record("stack.db", kept_proc.pid, ("sleep",))
    run.record("other", other_proc.pid, ("sleep",))
    stack_dir = run.subdir("stacks", "stack")
    (stack_dir / "postgres.log").write_text("log")
    run.subdir("stacks", "gone")
    run.subdir("templates", "ledger")
    run.keep(["stack.db"], [stack_dir], {"stack": "stack"})
    try:
        run.close()
        assert other_proc.wait(timeout=5) == -9
        assert kept_proc.poll() is None
        assert (stack_dir / "postgres.log").read_text() == "log"
        assert sorted(p.name for p in run.path.iterdir()) == [
            "kept.json",
            "owner.json",
            "procs",
            "stacks",
        ]
        assert [p.name for p in (run.path / "stacks").iterdir()] == ["stack"]
        # The owner (this process) is alive; pretend the session ended.
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        (run.path / "owner.json").write_text(f'{{"pid": {gone.pid}, "start_time": 1}}')

        spared = reap(tmp_path)
        assert (spared.runs_removed, spared.runs_kept) == ((), (run.run_id,))
        assert kept_proc.poll() is None

        removed = reap(tmp_path, include_kept=True)
        assert removed.runs_removed == (run.run_id,)
        assert kept_proc.wait(timeout=5) == -9
        assert not run.path.exists()
    finally:
        for proc in (kept_proc, other_proc):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# -- port claims -------------------------------------------------------------------------------


def _claimer(root: Path, port: int) -> subprocess.Popen[str]:
    """Another process that claims ``port`` under ``root``, says so, and waits for stdin."""
    code = (
        "import sys; from pathlib import Path; from harness._runstate import claim_port;"
        f" print(claim_port({port}, Path({str(root)!r})), flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "True"
    return proc


def test_a_port_claimed_by_a_live_process_is_not_handed_out_again(tmp_path: Path) -> None:
    other = _claimer(tmp_path, 40001)
    try:
        assert claim_port(40001, tmp_path) is False
        assert claim_port(40002, tmp_path) is True
        assert claim_port(40002, tmp_path) is False, "not twice to the same process either"
        reap(tmp_path)
        assert (tmp_path / "port-40001").exists(), "the claimant is alive: reap keeps it"
    finally:
        other.communicate("", timeout=10)  # ends normally: its claims go with it
    assert not (tmp_path / "port-40001").exists()
    assert claim_port(40001, tmp_path) is True


def test_claims_of_a_killed_process_are_reaped(tmp_path: Path) -> None:
    other = _claimer(tmp_path, 40003)
    other.kill()
    other.wait(timeout=5)
    assert claim_port(40003, tmp_path) is False, "a stale claim holds until reaped"
    reap(tmp_path)
    assert claim_port(40003, tmp_path) is True


def test_free_port_skips_ports_other_processes_claimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel offers 40005 (claimed by another worker), 40005 again, then 40006.
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    offers = iter([40005, 40005, 40006])
    other = _claimer(tmp_path, 40005)
    try:
        monkeypatch.setattr(postgres, "_kernel_free_port", lambda: next(offers))
        assert postgres.free_port() == 40006
    finally:
        other.communicate("", timeout=10)
