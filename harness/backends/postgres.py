"""PostgreSQL cluster helpers for the local backend.

- :func:`find_pg_binaries` finds ``initdb`` and ``postgres``.
- :class:`PgTemplate` runs ``initdb`` once per session; every stack copies it (a file copy,
  not a fresh ``initdb``).
- :class:`PgCluster` is one server on a free 127.0.0.1 port with its socket directory inside
  the stack's directory: start, stop, kill, pause, resume, restart (crash recovery), SQL.
  Kill and pause act on every process of the server at once (see :meth:`PgCluster.kill`).

PostgreSQL refuses to run as root; when the harness runs as root the server processes run as
an unprivileged user (``DEPLOY_CHAOS_PG_USER``, default ``postgres`` when that user exists,
else ``nobody``), and the data directories are owned by it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import sql as pgsql

from harness._runstate import RunDir, children_of, claim_port, proc_stat, state_root
from harness._wait import wait_for
from harness.backends.pgserver import SERVER_SETTINGS, SUPERUSER, PgServer
from harness.errors import BackendError, ConfigError, PostgresNotFound, ServiceError

__all__ = [
    "PG_BINDIR_ENV",
    "PG_USER_ENV",
    "PgBinaries",
    "PgCluster",
    "PgTemplate",
    "RunAs",
    "find_pg_binaries",
    "free_port",
    "pg_run_as",
]

PG_BINDIR_ENV = "DEPLOY_CHAOS_PG_BINDIR"
PG_USER_ENV = "DEPLOY_CHAOS_PG_USER"

#: The longest path a Unix socket may have (sun_path holds 108 bytes with its NUL).
_SOCKET_PATH_MAX = 107

#: Every local cluster's settings: the shared ones (harness.backends.pgserver), and what a
#: server on this machine needs besides.
_SERVER_SETTINGS = (
    *SERVER_SETTINGS,
    "listen_addresses=127.0.0.1",
    "unix_socket_permissions=0700",
    # Dynamic shared memory as files in the data directory, not /dev/shm/PostgreSQL.*:
    # a server that is SIGKILLed (a crash fault) or shut down immediately leaves them
    # behind, and they go with the data directory instead of piling up in /dev/shm.
    "dynamic_shared_memory_type=mmap",
)


@dataclass(frozen=True, slots=True)
class PgBinaries:
    """Where the PostgreSQL server binaries are, and their version."""

    bindir: Path
    version: str

    def tool(self, name: str) -> str:
        return str(self.bindir / name)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / t, os.X_OK) for t in ("initdb", "postgres"))


def _version(bindir: Path) -> str:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"(\d+(?:\.\d+)?)", out)
    if match is None:
        raise BackendError(f"cannot read the PostgreSQL version from {out!r}")
    return match.group(1)


def find_pg_binaries(override: str | None = None) -> PgBinaries:
    """Find the server binaries: override, ``$PATH``, ``pg_config --bindir``, newest
    ``/usr/lib/postgresql/*/bin``. Raise :class:`PostgresNotFound` listing where it looked."""
    looked: list[str] = []
    override = override or os.environ.get(PG_BINDIR_ENV)
    if override:
        bindir = Path(override)
        if _has_server(bindir):
            return PgBinaries(bindir, _version(bindir))
        raise PostgresNotFound([f"{bindir} (from --chaos-pg-bindir / {PG_BINDIR_ENV})"])
    candidates: list[tuple[str, Path]] = []
    on_path = shutil.which("postgres")
    looked.append("$PATH (postgres, initdb)")
    if on_path:
        candidates.append(("$PATH", Path(on_path).resolve().parent))
    pg_config = shutil.which("pg_config")
    looked.append("pg_config --bindir")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(("pg_config", Path(result.stdout.strip())))
    looked.append("/usr/lib/postgresql/*/bin")

    def _major(path: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", path.parent.name)) or (0,)

    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_major, reverse=True):
        candidates.append(("/usr/lib/postgresql", bindir))
    for _, bindir in candidates:
        if _has_server(bindir):
            return PgBinaries(bindir, _version(bindir))
    raise PostgresNotFound(looked)


@dataclass(frozen=True, slots=True)
class RunAs:
    """The unprivileged user PostgreSQL runs as when the harness runs as root."""

    user: str
    uid: int
    gid: int


def pg_run_as() -> RunAs | None:
    """None when not root; else the user the server processes run as."""
    if os.geteuid() != 0:
        return None
    configured = os.environ.get(PG_USER_ENV)
    names = [configured] if configured else ["postgres", "nobody"]
    for name in names:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            break
        return RunAs(name, entry.pw_uid, entry.pw_gid)
    raise ConfigError(
        PG_USER_ENV, configured, "an existing non-root user to run PostgreSQL as (root cannot)"
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, and claimed by no other live harness process
    (see :func:`harness._runstate.claim_port`)."""
    for _ in range(_PORT_PICKS):
        port = _kernel_free_port()
        if claim_port(port):
            return port
    raise BackendError(
        f"no free TCP port on 127.0.0.1 after {_PORT_PICKS} picks: every port the kernel "
        f"offered was claimed by another deploy-chaos process (see {state_root()})"
    )


def _kernel_free_port() -> int:
    """A port the kernel finds free on 127.0.0.1 (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: How many ports the kernel is asked for before free_port gives up.
_PORT_PICKS = 200


def _chown_tree(path: Path, run_as: RunAs | None) -> None:
    if run_as is None:
        return
    os.chown(path, run_as.uid, run_as.gid)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.chown(os.path.join(root, name), run_as.uid, run_as.gid, follow_symlinks=False)


def _run(argv: Sequence[str], run_as: RunAs | None, what: str, **kw: Any) -> str:
    result = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        user=run_as.uid if run_as else None,
        group=run_as.gid if run_as else None,
        extra_groups=[] if run_as else None,
        **kw,
    )
    if result.returncode != 0:
        raise ServiceError(
            "postgres", what, f"exit status {result.returncode}", result.stdout + result.stderr
        )
    return str(result.stdout)


class PgTemplate:
    """An initialised data directory (with the target's database created), copied per stack.

    Copying ~1,200 files costs 0.1 s to over 1 s depending on the disk's mood, so the
    template keeps ``spares`` copies made in the background: a stack takes one with a
    ``rename`` (instant) and a new spare is made while the stack runs.
    """

    def __init__(
        self,
        binaries: PgBinaries,
        run: RunDir,
        database: str,
        *,
        spares: int = 2,
        name: str | None = None,
        build: Callable[[Path], None] | None = None,
    ) -> None:
        self.binaries = binaries
        self.run_as = pg_run_as()
        self.database = database
        self.name = name or database
        #: Makes the data directory at the given path (instead of initdb): a prepared
        #: template, e.g. the base one with a release's migrations and seed data applied.
        self._build = build
        self.path = run.subdir("templates", self.name) / "data"
        self._spare_dir = run.subdir("templates", self.name, "spares")
        self._spares_wanted = spares
        self._spares: list[Path] = []
        self._made = 0
        self._lock = threading.Lock()
        self._filler: threading.Thread | None = None
        self._closed = False
        self._ready = False

    def copy_to(self, dest: Path) -> None:
        """Put a fresh copy of the template at ``dest`` (a spare when one is ready)."""
        src = self.ensure()
        with self._lock:
            spare = self._spares.pop() if self._spares else None
        if spare is not None:
            spare.rename(dest)
        else:
            _copy_tree(src, dest)
        self._refill()

    def _refill(self) -> None:
        with self._lock:
            if self._closed or self._spares_wanted == 0:
                return
            if self._filler is not None and self._filler.is_alive():
                return
            self._filler = threading.Thread(
                target=self._fill, name=f"template-{self.database}-spares", daemon=True
            )
            self._filler.start()

    def _fill(self) -> None:
        while True:
            with self._lock:
                if self._closed or len(self._spares) >= self._spares_wanted:
                    return
                self._made += 1
                spare = self._spare_dir / f"spare{self._made}"
            _copy_tree(self.path, spare)
            with self._lock:
                self._spares.append(spare)

    def close(self) -> None:
        """Stop making spares (wait for a copy in progress); the run removes the files."""
        with self._lock:
            self._closed = True
            filler = self._filler
        if filler is not None:
            filler.join()

    def ensure(self) -> Path:
        """initdb (once) and create the database in single-user mode; return the directory.

        A template made with ``build`` calls it (once) instead.
        """
        if self._ready:
            return self.path
        if self._build is not None:
            self._build(self.path)
            self._ready = True
            self._refill()
            return self.path
        parent = self.path.parent
        _chown_tree(parent, self.run_as)
        pwfile = parent / "initpw"
        pwfile.write_text(secrets.token_urlsafe(18) + "\n")
        _chown_tree(pwfile, self.run_as)
        initdb_argv = [
            self.binaries.tool("initdb"),
            "-D",
            str(self.path),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        try:
            _run(initdb_argv, self.run_as, "initdb")
        finally:
            pwfile.unlink(missing_ok=True)
        _run(
            [self.binaries.tool("postgres"), "--single", "-D", str(self.path), "postgres"],
            self.run_as,
            f"create database {self.database}",
            input=f'CREATE DATABASE "{self.database}";\n',
        )
        self._ready = True
        self._refill()
        return self.path


def _copy_tree(src: Path, dest: Path) -> None:
    """``cp -a``: keeps owner and modes (PostgreSQL insists on them)."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(src), str(dest)], check=True)


class PgCluster(PgServer):
    """One PostgreSQL server of a stack."""

    def __init__(
        self,
        *,
        name: str,
        binaries: PgBinaries,
        run: RunDir,
        directory: Path,
        database: str,
    ) -> None:
        self.name = name
        self.binaries = binaries
        self.run = run
        self.directory = directory
        self.database = database
        self.datadir = directory / "data"
        # A Unix socket's path holds at most 107 bytes; a cluster's directory carries its
        # stack's name (the target's, the run's), so the socket lives in a short directory
        # of the run named after it: <run>/s/<10 hex>/.s.PGSQL.<port>.
        digest = hashlib.sha256(str(directory).encode()).hexdigest()[:10]
        self.socket_dir = run.subdir("s") / digest
        if len(str(self.socket_dir / ".s.PGSQL.65535")) > _SOCKET_PATH_MAX:
            raise ConfigError(
                "DEPLOY_CHAOS_STATE_DIR",
                str(run.path.parent),
                f"a directory short enough for {name}'s Unix socket"
                f" (a socket path holds at most {_SOCKET_PATH_MAX} bytes)",
            )
        self.log_path = directory / "postgres.log"
        self.run_as = pg_run_as()
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        #: What :meth:`pause` stopped (not None while paused).
        self._frozen: list[_ServerProcess] | None = None
        #: Start, stop, kill and restart one at a time: a fault's heal (on its timer) and a
        #: recovery step may both restart the server; two postmasters must never race.
        self._lifecycle = threading.RLock()

    # -- what is a local cluster's own (the rest: harness.backends.pgserver) -----------

    ready_interval = 0.03

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def _connect_host(self) -> str:
        return str(self.socket_dir)  # the stack's unix socket, never through the proxy

    def _died(self, action: str) -> ServiceError | None:
        if self._proc is not None and self._proc.poll() is not None:
            return ServiceError(
                self.name, action, f"server exited ({self._proc.returncode})", self.log_tail()
            )
        return None

    def backup(self, path: Path) -> None:
        """``pg_dump`` the database (custom format) to ``path``."""
        argv = [self.binaries.tool("pg_dump"), "-Fc", "-f", str(path), *self._client_args()]
        _run(argv, None, "pg_dump")

    def _pg_restore(self, path: Path) -> None:
        argv = [
            self.binaries.tool("pg_restore"),
            "--exit-on-error",
            "-d",
            self.database,
            *self._client_args(dbname=False),
            str(path),
        ]
        _run(argv, None, "pg_restore")

    def _client_args(self, dbname: bool = True) -> list[str]:
        args = ["-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER]
        return [*args, self.database] if dbname else args

    # -- lifecycle ---------------------------------------------------------------------

    def create_from(self, template: PgTemplate) -> None:
        """A copy of the template's data directory becomes this cluster's."""
        self.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        template.copy_to(self.datadir)
        self.log_path.touch()
        _chown_tree(self.socket_dir, self.run_as)
        _chown_tree(self.log_path, self.run_as)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, *, timeout: float = 30.0) -> None:
        """Start the server (crash recovery runs by itself after a kill) and await it."""
        with self._lifecycle:
            self._start_locked(timeout=timeout)

    def _start_locked(self, *, timeout: float = 30.0) -> None:
        if self.running:
            return
        for attempt in range(3):
            if self.port == 0 or attempt > 0:
                self.port = free_port()
            argv = [self.binaries.tool("postgres"), "-D", str(self.datadir), "-p", str(self.port)]
            argv += ["-k", str(self.socket_dir)]
            for setting in _SERVER_SETTINGS:
                argv += ["-c", setting]
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    user=self.run_as.uid if self.run_as else None,
                    group=self.run_as.gid if self.run_as else None,
                    extra_groups=[] if self.run_as else None,
                )
            self.run.record(self.name, self._proc.pid, tuple(argv))
            self._frozen = None
            try:
                self.wait_ready(timeout=timeout)
                break
            except ServiceError:
                if attempt < 2 and "could not bind" in self.log_tail():
                    continue  # someone took the port between free_port() and bind
                raise
        with self.connect() as conn:
            conn.execute(
                pgsql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    pgsql.Identifier(SUPERUSER), pgsql.Literal(self.password)
                )
            )

    def stop(self, *, timeout: float = 15.0, immediate: bool = False) -> None:
        """Fast shutdown (SIGINT), or with ``immediate`` PostgreSQL's immediate shutdown
        (SIGQUIT: no checkpoint; for data about to be thrown away); :meth:`kill` it if it
        does not stop in time."""
        with self._lifecycle:
            self._stop_locked(timeout=timeout, immediate=immediate)

    def _stop_locked(self, *, timeout: float = 15.0, immediate: bool = False) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                if self._frozen is not None:
                    self._thaw()
                proc.send_signal(signal.SIGQUIT if immediate else signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=timeout)
        finally:
            # The SIGKILL fallback. A postmaster that exited by itself has nothing left:
            # it exits only once it has reaped every child.
            self._kill_locked()
        self.run.forget(self.name)
        self._proc = None

    def kill(self) -> None:
        """Crash: SIGKILL the postmaster and every process under it, effectively at once
        (like ``docker kill``), and return once none of them is left.

        Each backend (and every other child of the postmaster) is in a session of its own,
        so the postmaster's process group would miss them. The server is frozen first (see
        :meth:`_freeze`), then every frozen process is killed.
        """
        with self._lifecycle:
            self._kill_locked()

    def _kill_locked(self) -> None:
        proc = self._proc
        if proc is None:
            return
        frozen: list[_ServerProcess] = []
        try:
            if proc.poll() is None:
                self._freeze(proc, frozen)
        finally:
            # Deepest first: each SIGKILL goes to a pid its stopped parent still holds.
            for child in reversed(frozen):
                child.send(signal.SIGKILL)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self._frozen = None
        # The postmaster's children are not ours to wait for: they are gone once /proc
        # has no such process (a zombie has released its memory; init reaps it).
        self._await(frozen, _exited, f"{self.name}'s server processes to exit after SIGKILL")

    def pause(self) -> None:
        """Stop every process of the server (like ``docker pause``): already open
        connections get no answer and nothing commits until :meth:`resume`."""
        with self._lifecycle:
            proc = self._require_running("pause")
            if self._frozen is not None:
                return
            frozen: list[_ServerProcess] = []
            self._frozen = frozen
            try:
                self._freeze(proc, frozen)
            except BaseException:
                self._thaw()
                raise

    def resume(self) -> None:
        with self._lifecycle:
            self._require_running("resume")
            self._thaw()

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume` (or a kill, stop or restart)."""
        return self._frozen is not None and self.running

    def restart(self, *, timeout: float = 30.0) -> None:
        """Stop (fast) if running, then start: after a kill this runs crash recovery."""
        with self._lifecycle:
            self._restart_locked(timeout=timeout)

    def _restart_locked(self, *, timeout: float = 30.0) -> None:
        self._stop_locked()
        self.start(timeout=timeout)

    def close(self) -> None:
        """Stop whatever is left (immediate shutdown: the data directory is thrown away);
        tolerate a half-started or already-dead server."""
        with self._lifecycle:
            self._stop_locked(timeout=10, immediate=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- internals ---------------------------------------------------------------------

    def _require_running(self, action: str) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise ServiceError(self.name, action, "the server is not running", self.log_tail())
        return proc

    def _freeze(self, proc: subprocess.Popen[bytes], frozen: list[_ServerProcess]) -> None:
        """SIGSTOP the postmaster, then every process under it; ``frozen`` collects the
        latter as they are stopped (children before their own children), so that a caller
        can thaw or kill what a freeze that failed half-way had stopped.

        The postmaster is stopped first and awaited (``T`` in ``/proc/<pid>/stat``): stopped,
        it forks no child, and none of its children's pids can be reused (a child that exits
        stays a zombie until the postmaster reaps it). Its children are then listed, stopped
        and awaited, and the listing is repeated for the stopped ones, until it finds no new
        process: every pid signalled was listed as the child of a process stopped at the
        time. A postmaster that exits meanwhile leaves nothing to freeze.
        """
        proc.send_signal(signal.SIGSTOP)
        postmaster = _ServerProcess.of(proc.pid)
        stopping = [] if postmaster is None else [postmaster]
        self._await(stopping, _stopped, f"{self.name}'s postmaster to stop (SIGSTOP)")
        if proc.poll() is not None:
            return
        known = {proc.pid}
        while True:
            found = [child for child in _children_of(known) if child.pid not in known]
            if not found:
                return
            for child in found:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGSTOP)
            frozen.extend(found)
            known.update(child.pid for child in found)
            self._await(found, _stopped, f"{self.name}'s server processes to stop (SIGSTOP)")

    def _thaw(self) -> None:
        """SIGCONT what :meth:`pause` stopped: children first, while the stopped postmaster
        still holds their pids, then the postmaster."""
        frozen, self._frozen = self._frozen, None
        for child in reversed(frozen or ()):
            child.send(signal.SIGCONT)
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def _await(
        self, procs: Sequence[_ServerProcess], done: Callable[[str | None], bool], what: str
    ) -> None:
        """Wait until ``done`` holds for the state of each of ``procs`` (None: gone)."""
        if not procs:
            return
        wait_for(
            lambda: all(done(p.state()) for p in procs),
            what=what,
            timeout=_SIGNAL_TIMEOUT,
            interval=0.001,
            max_interval=0.02,
            log_tail=self.log_tail,
        )


#: How long a kill or a pause waits for the server's processes to stop, or to exit.
_SIGNAL_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class _ServerProcess:
    """A process of the server, as found: its pid and start time (a reused pid differs)."""

    pid: int
    start_time: int

    @classmethod
    def of(cls, pid: int) -> _ServerProcess | None:
        fields = proc_stat(pid)
        return None if fields is None else cls(pid, int(fields[19]))

    def state(self) -> str | None:
        """The state letter in ``/proc/<pid>/stat``; None when gone (or the pid reused)."""
        fields = proc_stat(self.pid)
        if fields is None or int(fields[19]) != self.start_time:
            return None
        return fields[0]

    def send(self, sig: signal.Signals) -> None:
        """Signal the process if it is still this one (and has not exited)."""
        if not _exited(self.state()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)


def _stopped(state: str | None) -> bool:
    return state is None or state in "TtZX"


def _exited(state: str | None) -> bool:
    return state is None or state in "ZX"


def _children_of(parents: Collection[int]) -> list[_ServerProcess]:
    """The live children of ``parents`` (see :func:`harness._runstate.children_of`)."""
    return [_ServerProcess(pid, start) for pid, start in children_of(parents)]
