"""Run directories: every process the harness starts is recorded under its run id.

Layout, under the state root (``$DEPLOY_CHAOS_STATE_DIR``, else ``/dev/shm/deploy-chaos-<uid>``
when ``/dev/shm`` is a tmpfs with room to spare, else ``/tmp/deploy-chaos-<uid>``)::

    <run_id>/owner.json          the session that owns the run: pid and process start time
    <run_id>/procs/<name>.json   one record per process group we started
    <run_id>/...                 data directories, logs and sockets of the run's stacks
    port-<n>                     a TCP port a live session handed out (see claim_port)

A run whose owner is no longer alive is dead: :func:`reap` kills the process groups it
recorded (checking the start time, so a reused pid is never touched) and removes the
directory. Session start reaps, and so does ``deploy-chaos reap``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "KEPT_FILE",
    "ProcRecord",
    "ReapReport",
    "RunDir",
    "claim_port",
    "kept_runs",
    "new_run_id",
    "process_start_time",
    "reap",
    "state_root",
    "state_roots",
]

STATE_DIR_ENV = "DEPLOY_CHAOS_STATE_DIR"


#: Free space /dev/shm needs before run directories go there (a container's default
#: /dev/shm is 64 MiB: far too small for a few PostgreSQL data directories).
SHM_MIN_FREE = 2 * 1024**3


def _candidate_roots() -> list[Path]:
    uid = os.getuid()
    return [Path(f"/dev/shm/deploy-chaos-{uid}"), Path(f"/tmp/deploy-chaos-{uid}")]  # noqa: S108


def _roomy_tmpfs(path: Path) -> bool:
    try:
        stats = os.statvfs(path)
    except OSError:
        return False
    return os.access(path, os.W_OK) and stats.f_bavail * stats.f_frsize >= SHM_MIN_FREE


def state_root() -> Path:
    """Where run directories live.

    Memory (``/dev/shm``) when it has room: the stacks' PostgreSQL data directories are
    copied and written there without disk writeback, which on a busy machine costs more CPU
    than the copy itself (see docs/decisions.md). ``$DEPLOY_CHAOS_STATE_DIR`` overrides.
    """
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        root = Path(configured)
    else:
        shm, tmp = _candidate_roots()
        root = shm if shm.is_dir() or _roomy_tmpfs(shm.parent) else tmp
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    return root


def state_roots() -> list[Path]:
    """Every place a session may have left run directories in (for the reaper)."""
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return [Path(configured)]
    return [root for root in _candidate_roots() if root.is_dir()]


def new_run_id() -> str:
    """A short unique id, safe in file names, process titles and Docker labels."""
    return f"dc{time.strftime('%m%d%H%M%S')}{secrets.token_hex(3)}"


def proc_stat(pid: int | str) -> list[str] | None:
    """``/proc/<pid>/stat`` from field 3 (state) on, or None when the process does not exist:
    ``[0]`` state, ``[1]`` parent pid, ``[2]`` process group, ``[19]`` start time in clock
    ticks since boot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


def children_of(parents: Collection[int]) -> list[tuple[int, int]]:
    """``(pid, start time)`` of the live children of ``parents``, from the kernel's child
    lists (``/proc/<pid>/task/<tid>/children``) or, on a kernel without them, from a scan
    of every ``/proc/<pid>/stat``. Only processes whose stat names one of ``parents`` as
    their parent are returned (never a zombie)."""
    if os.path.exists("/proc/thread-self/children"):
        candidates = {pid for parent in parents for pid in _child_list(parent)}
    else:
        candidates = {entry for entry in os.listdir("/proc") if entry.isdigit()}
    children = []
    for pid in sorted(candidates, key=int):
        fields = proc_stat(pid)
        if fields is not None and int(fields[1]) in parents and fields[0] not in "ZX":
            children.append((int(pid), int(fields[19])))
    return children


def _child_list(pid: int) -> list[str]:
    """The kernel's list of the children of every thread of ``pid`` (empty when gone)."""
    pids: list[str] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                pids += Path(f"/proc/{pid}/task/{task}/children").read_text().split()
    return pids


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when it does not exist."""
    fields = proc_stat(pid)
    return None if fields is None else int(fields[19])


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
        """SIGKILL the whole process group, if its leader is still the process we started,
        and every descendant of the leader that moved to a session of its own (PostgreSQL's
        backends do): the leader is stopped first, so none can be forked or reaped meanwhile,
        and only the leader's own descendants are found."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signal.SIGSTOP)
        found: list[tuple[int, int]] = []
        parents = {self.pid}
        while parents:
            level = [c for c in children_of(parents) if c not in found]
            for pid, _ in level:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGSTOP)
            found += level
            parents = {pid for pid, _ in level}
        for pid, start in reversed(found):
            if _alive(pid, start):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
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

    def keep(self, records: Iterable[str], paths: Iterable[Path], about: dict[str, Any]) -> None:
        """Let ``records`` (process names) and ``paths`` outlive the session: :meth:`close`
        leaves them, session-start reaping skips the run, ``deploy-chaos reap`` removes it.
        ``about`` (JSON) says what was kept and how to reach it."""
        entries = _kept_entries(self.path)
        entries.append(
            {"records": sorted(records), "paths": [str(p) for p in paths], "about": about}
        )
        tmp = self.path / f".{KEPT_FILE}.tmp"
        tmp.write_text(json.dumps(entries, indent=2))
        tmp.replace(self.path / KEPT_FILE)

    def close(self) -> None:
        """Kill whatever is still recorded and remove the directory (except what was kept)."""
        entries = _kept_entries(self.path)
        if not entries:
            for rec in _read_records(self.path):
                rec.kill_group()
            shutil.rmtree(self.path, ignore_errors=True)
            return
        kept_names = {name for entry in entries for name in entry["records"]}
        for rec in _read_records(self.path):
            if rec.name not in kept_names:
                rec.kill_group()
                (self.path / "procs" / f"{rec.name}.json").unlink(missing_ok=True)
        keep = {self.path / "owner.json", self.path / KEPT_FILE, self.path / "procs"}
        keep |= {Path(p) for entry in entries for p in entry["paths"]}
        _prune(self.path, keep)


#: The file in a run directory listing what outlives its session (see :meth:`RunDir.keep`).
KEPT_FILE = "kept.json"


def _kept_entries(run_path: Path) -> list[dict[str, Any]]:
    try:
        entries = json.loads((run_path / KEPT_FILE).read_text())
    except (OSError, ValueError):
        return []
    return entries if isinstance(entries, list) else []


def kept_runs() -> list[tuple[Path, list[dict[str, Any]]]]:
    """Run directories holding kept stacks, with what each kept."""
    found = []
    for root in state_roots():
        if not root.is_dir():
            continue
        for run_path in sorted(p for p in root.iterdir() if p.is_dir()):
            entries = _kept_entries(run_path)
            if entries:
                found.append((run_path, entries))
    return found


def _prune(directory: Path, keep: set[Path]) -> None:
    """Remove everything under ``directory`` but the paths in ``keep`` (and their parents)."""
    for child in directory.iterdir():
        if child in keep:
            continue
        if any(child in k.parents for k in keep):
            _prune(child, keep)
        elif child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


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


# -- port claims -----------------------------------------------------------------------------

#: A port claim is a file ``port-<n>`` in the state root: "pid start_time" of its claimant.
PORT_CLAIM_PREFIX = "port-"
_claimed: set[Path] = set()


def claim_port(port: int, root: Path | None = None) -> bool:
    """Claim ``port`` for this process among every harness process of this user.

    A port found free by the kernel is handed out only if no live harness process claimed
    it first: two xdist workers (or two sessions) that both got the same free port from
    the kernel, before either bound it, would otherwise both use it. False: claimed by a
    live process, pick another. Claims last as long as the process (they are removed at
    exit); those of dead processes are removed by :func:`reap`.
    """
    directory = root or state_root()
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = directory / f"{PORT_CLAIM_PREFIX}{port}"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as claim:
        claim.write(f"{os.getpid()} {process_start_time(os.getpid())}")
    if not _claimed:
        atexit.register(_release_claims)
    _claimed.add(path)
    return True


def _release_claims() -> None:
    for path in list(_claimed):
        with contextlib.suppress(OSError):
            path.unlink()
    _claimed.clear()


def _claim_alive(path: Path) -> bool:
    try:
        pid, _, start = path.read_text().partition(" ")
        return _alive(int(pid), int(start) if start.strip().isdigit() else None)
    except (OSError, ValueError):
        # Being written right now (created, not yet filled): alive for a moment.
        with contextlib.suppress(OSError):
            return time.time() - path.stat().st_mtime < 10
        return False


def _reap_port_claims(root: Path) -> None:
    for path in root.glob(f"{PORT_CLAIM_PREFIX}*"):
        if not _claim_alive(path):
            with contextlib.suppress(OSError):
                path.unlink()


@dataclass(frozen=True, slots=True)
class ReapReport:
    """What :func:`reap` found and removed."""

    runs_removed: tuple[str, ...]
    processes_killed: tuple[str, ...]
    runs_alive: tuple[str, ...]
    #: Dead runs left alone because they hold kept stacks (``deploy-chaos reap`` removes them).
    runs_kept: tuple[str, ...] = ()


def _owner_alive(run_path: Path) -> bool:
    try:
        owner = json.loads((run_path / "owner.json").read_text())
    except (OSError, ValueError):
        # A run directory being created right now has no owner file for a moment.
        return time.time() - run_path.stat().st_mtime < 10
    return _alive(int(owner["pid"]), owner.get("start_time"))


def _running(rec: ProcRecord) -> bool:
    """Still executing (not gone, not a zombie), and still the process we started."""
    fields = proc_stat(rec.pid)
    if fields is None or (rec.start_time is not None and int(fields[19]) != rec.start_time):
        return False
    return fields[0] not in ("Z", "X")


def _remove_run_dir(run_path: Path, killed: list[ProcRecord]) -> None:
    """Remove a dead run's directory once the processes just killed stopped executing:
    a dying server can still create files while the tree is being removed."""
    deadline = time.monotonic() + REAP_WAIT_S
    while any(_running(rec) for rec in killed) and time.monotonic() < deadline:
        time.sleep(0.02)
    for _ in range(5):
        shutil.rmtree(run_path, ignore_errors=True)
        if not run_path.exists():
            return
        time.sleep(0.05)


#: How long reaping waits for killed process groups to stop before removing their files.
REAP_WAIT_S = 5.0


def reap(
    root: Path | None = None, *, include_alive: bool = False, include_kept: bool = False
) -> ReapReport:
    """Kill the processes of dead runs and remove their directories (under ``root``, or
    under every state root a session may have used). Runs holding kept stacks (see
    :meth:`RunDir.keep`) are left alone unless ``include_kept``."""
    roots = [root] if root is not None else state_roots()
    removed: list[str] = []
    killed: list[str] = []
    alive: list[str] = []
    kept: list[str] = []
    run_paths = [p for r in roots if r.is_dir() for p in sorted(r.iterdir()) if p.is_dir()]
    for run_path in run_paths:
        if not include_alive and _owner_alive(run_path):
            alive.append(run_path.name)
            continue
        if not include_kept and _kept_entries(run_path):
            kept.append(run_path.name)
            continue
        victims = [rec for rec in _read_records(run_path) if rec.alive()]
        for rec in victims:
            rec.kill_group()
            killed.append(f"{run_path.name}/{rec.name} (pid {rec.pid})")
        _remove_run_dir(run_path, victims)
        removed.append(run_path.name)
    for directory in roots:
        if directory.is_dir():
            _reap_port_claims(directory)
    return ReapReport(tuple(removed), tuple(killed), tuple(alive), tuple(kept))
