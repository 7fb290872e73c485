"""Run directories: every process the harness starts is recorded under its run id.

Layout, under the state root (``$DEPLOY_CHAOS_STATE_DIR`` or ``/tmp/deploy-chaos-<uid>``)::

    <run_id>/owner.json          the session that owns the run: pid and process start time
    <run_id>/procs/<name>.json   one record per process group we started
    <run_id>/...                 data directories, logs and sockets of the run's stacks

A run whose owner is no longer alive is dead: :func:`reap` kills the process groups it
recorded (checking the start time, so a reused pid is never touched) and removes the
directory. Session start reaps, and so does ``deploy-chaos reap``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ProcRecord",
    "ReapReport",
    "RunDir",
    "new_run_id",
    "process_start_time",
    "reap",
    "state_root",
]

STATE_DIR_ENV = "DEPLOY_CHAOS_STATE_DIR"


def state_root() -> Path:
    """Where run directories live."""
    configured = os.environ.get(STATE_DIR_ENV)
    root = Path(configured) if configured else Path(f"/tmp/deploy-chaos-{os.getuid()}")  # noqa: S108
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    return root


def new_run_id() -> str:
    """A short unique id, safe in file names, process titles and Docker labels."""
    return f"dc{time.strftime('%m%d%H%M%S')}{secrets.token_hex(3)}"


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def _alive(pid: int, start_time: int | None) -> bool:
    current = process_start_time(pid)
    return current is not None and (start_time is None or current == start_time)


@dataclass(frozen=True, slots=True)
class ProcRecord:
    """A process group the harness started: its leader's pid and start time."""

    name: str
    pid: int
    start_time: int | None
    argv: tuple[str, ...]

    def alive(self) -> bool:
        return _alive(self.pid, self.start_time)

    def kill_group(self) -> None:
        """SIGKILL the whole process group, if its leader is still the process we started."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


@dataclass(slots=True)
class RunDir:
    """The directory of one run (one test session, or one CLI invocation)."""

    run_id: str
    path: Path
    _records: dict[str, ProcRecord] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path | None = None, run_id: str | None = None) -> RunDir:
        run_id = run_id or new_run_id()
        path = (root or state_root()) / run_id
        (path / "procs").mkdir(mode=0o755, parents=True)
        # PostgreSQL runs as another user when we are root: it must traverse this directory.
        os.chmod(path, 0o755)  # noqa: S103
        owner = {"pid": os.getpid(), "start_time": process_start_time(os.getpid())}
        (path / "owner.json").write_text(json.dumps(owner))
        return cls(run_id=run_id, path=path)

    def subdir(self, *parts: str) -> Path:
        sub = self.path.joinpath(*parts)
        sub.mkdir(mode=0o755, parents=True, exist_ok=True)
        return sub

    def record(self, name: str, pid: int, argv: tuple[str, ...]) -> ProcRecord:
        rec = ProcRecord(name=name, pid=pid, start_time=process_start_time(pid), argv=argv)
        data = {"name": name, "pid": pid, "start_time": rec.start_time, "argv": list(argv)}
        tmp = self.path / "procs" / f".{name}.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path / "procs" / f"{name}.json")
        self._records[name] = rec
        return rec

    def forget(self, name: str) -> None:
        self._records.pop(name, None)
        (self.path / "procs" / f"{name}.json").unlink(missing_ok=True)

    def records(self) -> list[ProcRecord]:
        return list(_read_records(self.path))

    def close(self) -> None:
        """Kill whatever is still recorded and remove the directory."""
        for rec in _read_records(self.path):
            rec.kill_group()
        shutil.rmtree(self.path, ignore_errors=True)


def _read_records(run_path: Path) -> Iterator[ProcRecord]:
    for file in sorted((run_path / "procs").glob("*.json")):
        try:
            data = json.loads(file.read_text())
            yield ProcRecord(
                name=str(data["name"]),
                pid=int(data["pid"]),
                start_time=data.get("start_time"),
                argv=tuple(data.get("argv", ())),
            )
        except (OSError, ValueError, KeyError):
            continue


@dataclass(frozen=True, slots=True)
class ReapReport:
    """What :func:`reap` found and removed."""

    runs_removed: tuple[str, ...]
    processes_killed: tuple[str, ...]
    runs_alive: tuple[str, ...]


def _owner_alive(run_path: Path) -> bool:
    try:
        owner = json.loads((run_path / "owner.json").read_text())
    except (OSError, ValueError):
        # A run directory being created right now has no owner file for a moment.
        return time.time() - run_path.stat().st_mtime < 10
    return _alive(int(owner["pid"]), owner.get("start_time"))


def reap(root: Path | None = None, *, include_alive: bool = False) -> ReapReport:
    """Kill the processes of dead runs and remove their directories."""
    root = root or state_root()
    removed: list[str] = []
    killed: list[str] = []
    alive: list[str] = []
    for run_path in sorted(p for p in root.iterdir() if p.is_dir()):
        if not include_alive and _owner_alive(run_path):
            alive.append(run_path.name)
            continue
        for rec in _read_records(run_path):
            if rec.alive():
                rec.kill_group()
                killed.append(f"{run_path.name}/{rec.name} (pid {rec.pid})")
        shutil.rmtree(run_path, ignore_errors=True)
        removed.append(run_path.name)
    return ReapReport(tuple(removed), tuple(killed), tuple(alive))
