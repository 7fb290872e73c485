"""The local backend: a stack as processes on this machine (the embedded default).

Each stack gets a PostgreSQL server copied from a per-session template, on a free 127.0.0.1
port, and N app instances, each a release's command in its own process group. Every process
is recorded in the session's run directory, so ``deploy-chaos reap`` (and the next session's
start) can remove what a killed session left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

from harness._runstate import RunDir, reap
from harness._wait import wait_for
from harness.backends._listeners import group_listens, listening_inodes
from harness.backends.base import (
    CommandResult,
    MigratingStack,
    ProxyRoute,
    Stack,
    harness_env,
    launch_stack,
    migrate_and_seed,
)
from harness.backends.postgres import PgBinaries, PgCluster, PgTemplate, find_pg_binaries, free_port
from harness.errors import (
    AppNotHealthy,
    BackendError,
    ProxyError,
    ServiceError,
)
from harness.flags import FlagFile
from harness.proxy.client import ToxiproxyClient
from harness.proxy.process import ProxyServerProcess, start_proxy_server
from harness.spec import Release, Target, fill_placeholders

__all__ = ["LocalApp", "LocalBackend", "LocalCommand", "LocalDatabase", "LocalStack"]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _http_status(url: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class LocalDatabase(PgCluster):
    """The stack's database: a :class:`PgCluster` (the Database contract).

    ``on_port_change`` is called when a restart had to move the server to another port (the
    old one was taken meanwhile), so the proxy in front of it can follow.
    """

    on_port_change: Callable[[int], None] | None = None

    def start(self, *, timeout: float = 30.0) -> None:
        before = self.port
        super().start(timeout=timeout)
        if before and self.port != before and self.on_port_change is not None:
            self.on_port_change(self.port)


class LocalCommand:
    """A command started in a release's environment; its output goes to a log file."""

    def __init__(
        self,
        stack: LocalStack,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        cwd: Path | None,
    ) -> None:
        self.stack = stack
        self.name = name
        self.argv = tuple(argv)
        self.log_path = stack.directory / f"{name}.log"
        self._started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        stack.backend.run.record(f"{stack.name}.{name}", self._proc.pid, self.argv)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def poll(self) -> int | None:
        return self._proc.poll()

    def wait(self, timeout: float | None = None) -> CommandResult:
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self._proc.wait()
        finally:
            self._cleanup()
        return CommandResult(
            self.argv,
            code,
            self.log_path.read_text(errors="replace"),
            time.monotonic() - self._started,
        )

    def kill(self) -> None:
        """SIGKILL the command and anything it started."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)

    def _cleanup(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self.stack.backend.run.forget(f"{self.stack.name}.{self.name}")


class LocalApp:
    """One app instance: a release's command in its own process group."""

    def __init__(self, stack: LocalStack, index: int, release: Release) -> None:
        self.stack = stack
        self.index = index
        self.name = f"app{index}"
        self._release = release
        self.port = free_port()
        self.log_path = stack.directory / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._launches = 0

    @property
    def release(self) -> Release:
        return self._release

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def launch(self) -> None:
        """Start the process without waiting for health (see :meth:`wait_healthy`)."""
        self._launches += 1
        release = self._release
        values = self.stack.placeholder_values(release, instance=self.index, port=self.port)
        argv = fill_placeholders(release.command, values)
        env = self.stack.release_env(release, values)
        with open(self.log_path, "ab") as log:
            log.write(
                f"--- {time.strftime('%H:%M:%S')} starting {release.name}: "
                f"{' '.join(argv)}\n".encode()
            )
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=release.cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServiceError(self.name, f"start {release.name}", str(exc)) from exc
        self._paused = False
        self.stack.backend.run.record(f"{self.stack.name}.{self.name}", self._proc.pid, tuple(argv))

    def healthy(self, timeout: float = 1.0) -> bool:
        """True when the health URL answers 200 right now."""
        try:
            return _http_status(self.base_url + self._release.health_path, timeout) == 200
        except (OSError, urllib.error.URLError):
            return False

    def wait_healthy(self, timeout: float | None = None) -> None:
        def check() -> bool:
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None and self._moved_off_a_taken_port():
                    return False
                code = None if self._proc is None else self._proc.returncode
                raise ServiceError(
                    self.name,
                    f"start {self._release.name}",
                    f"process exited with status {code}",
                    self.log_tail(),
                )
            if _http_status(self.base_url + self._release.health_path, 1.0) != 200:
                return False
            # 200, but from whom? Another program may hold the port (see _listeners).
            return group_listens(self._proc.pid, self.port) is not False

        wait_for(
            check,
            what=f"{self.stack.name}/{self.name} ({self._release.name}) to answer "
            f"{self._release.health_path} with 200 on port {self.port} (from a socket of its "
            "own process group)",
            timeout=timeout or self._release.startup_timeout,
            # A refused connection costs next to nothing: poll often, so a start that takes
            # 0.3 s is seen within 30 ms, not 0.2 s later (six app starts a run add up).
            max_interval=0.03,
            transient=(OSError, urllib.error.URLError),
            log_tail=self.log_tail,
            error=AppNotHealthy,
        )

    def _moved_off_a_taken_port(self) -> bool:
        """After a first launch exited while another program listens on its port (taken
        between :func:`free_port` and the bind): launch again on a new port. A later
        launch keeps its port, so the instance's URL stays what the workload uses."""
        if self._launches != 1 or not listening_inodes(self.port):
            return False
        taken, self.port = self.port, free_port()
        with open(self.log_path, "ab") as log:
            log.write(
                f"--- port {taken} is taken by another program: moving to {self.port}\n".encode()
            )
        self.launch()
        return True

    def start(self) -> None:
        self.launch()
        self.wait_healthy()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the group, SIGKILL it if it does not exit in time."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            if self._paused:
                self.resume()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.stack.backend.run.forget(f"{self.stack.name}.{self.name}")
        self._proc = None
        self._paused = False

    def kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self._paused = False

    def pause(self) -> None:
        self._signal("pause", signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        self._signal("resume", signal.SIGCONT)
        self._paused = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def deploy(self, release: Release) -> None:
        """Stop the current release and start ``release`` on the same port."""
        self.stop()
        self._release = release
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)

    def _signal(self, action: str, sig: signal.Signals) -> None:
        if not self.running or self._proc is None:
            raise ServiceError(self.name, action, "the process is not running", self.log_tail())
        os.killpg(self._proc.pid, sig)


class LocalStack(MigratingStack["LocalDatabase"]):
    """A database and N app instances, as local processes."""

    def __init__(self, backend: LocalBackend, target: Target, name: str) -> None:
        self.backend = backend
        self.target = target
        self.name = name
        self.run_id = backend.run_id
        self.directory = backend.run.subdir("stacks", name)
        self.database = LocalDatabase(
            name=f"{name}.db",
            binaries=backend.binaries,
            run=backend.run,
            directory=self.directory / "pg",
            database=target.database,
        )
        self.apps: list[LocalApp] = []
        self.db_proxy: ProxyRoute | None = None
        #: The stack's feature flags, in flagd's format (see harness.flags).
        self.flags = FlagFile(self.directory / "flags" / "flags.json")
        #: Left running after the session (see :meth:`LocalBackend.keep`).
        self.kept = False
        self._commands = 0
        self._lock = threading.Lock()
        self._closed = False

    # -- environment -------------------------------------------------------------------

    @property
    def app_database_url(self) -> str:
        route = self.db_proxy
        if route is None:
            return self.database.url
        return self.database.url_via(route.listen_host, route.listen_port)

    def placeholder_values(
        self, release: Release, *, instance: int | None = None, port: int | None = None
    ) -> dict[str, str]:
        values = {
            "python": sys.executable,
            "host": "127.0.0.1",
            "release": release.name,
            "database_url": self.app_database_url,
            "instance": "" if instance is None else str(instance),
            "port": "" if port is None else str(port),
            "target": "",
            "seed": "0",
            "flags_file": str(self.flags.path),
        }
        return values

    def release_env(self, release: Release, values: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(release.env)
        env.update(harness_env(release, values, self.run_id))
        return env

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, release: Release, instances: int, seed: int | None = None) -> None:
        """Database from the prepared template (``release``'s migrations and the seed data
        for ``seed`` already in it), the proxy route, then ``instances`` healthy apps."""
        template = self.backend.prepared_template(self.target, release, seed)
        self.database.create_from(template)
        self.database.start()
        self.db_proxy = self.backend.route_to(f"{self.name}-db", self.database.port)
        self.database.on_port_change = self._follow_database
        self.apps = [LocalApp(self, i, release) for i in range(instances)]
        for app in self.apps:
            app.launch()
        for app in self.apps:
            app.wait_healthy()

    def _follow_database(self, port: int) -> None:
        if self.db_proxy is not None:
            self.db_proxy.client.update_proxy(self.db_proxy.name, upstream=f"127.0.0.1:{port}")

    def start_command(
        self, release: Release, argv: Sequence[str], values: dict[str, str] | None = None
    ) -> LocalCommand:
        merged = self.placeholder_values(release)
        merged.update(values or {})
        filled = fill_placeholders(argv, merged)
        with self._lock:
            self._commands += 1
            name = f"cmd{self._commands}"
        return LocalCommand(self, name, filled, self.release_env(release, merged), release.cwd)

    def app(self, index: int) -> LocalApp:
        return self.apps[index]

    def close(self) -> None:
        if self._closed or self.kept:
            return
        self._closed = True
        errors: list[BaseException] = []

        def stop(app: LocalApp) -> None:
            try:
                app.stop(timeout=3)
            except Exception as exc:
                errors.append(exc)

        if self.apps:
            with ThreadPoolExecutor(max_workers=len(self.apps)) as pool:
                list(pool.map(stop, self.apps))
        try:
            self.database.close()
        except Exception as exc:
            errors.append(exc)
        else:
            # The data directory is the bulk of a stack (and may live in memory); the logs
            # stay with the run until the session ends.
            shutil.rmtree(self.database.datadir, ignore_errors=True)
        if self.db_proxy is not None:
            try:
                self.db_proxy.client.delete_proxy(self.db_proxy.name)
            except ProxyError as exc:
                errors.append(exc)
        self.backend.forget_stack(self)
        if errors:
            raise BackendError(f"stack {self.name}: teardown had errors: {errors}")

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LocalBackend:
    """Runs stacks as local processes. One per session; a context manager."""

    name = "local"

    def __init__(self, *, pg_bindir: str | None = None, run: RunDir | None = None) -> None:
        self.binaries: PgBinaries = find_pg_binaries(pg_bindir)
        reap()
        self.run = run or RunDir.create()
        self.run_id = self.run.run_id
        self._templates: dict[str, PgTemplate] = {}
        self._stacks: list[LocalStack] = []
        self._names = 0
        self._lock = threading.RLock()
        self._proxy_server: ProxyServerProcess | None = None
        self._proxy_client: ToxiproxyClient | None = None

    @property
    def proxy_client(self) -> ToxiproxyClient:
        """The client of the session's embedded proxy server (started on first use)."""
        with self._lock:
            if self._proxy_client is None:
                self._proxy_server = start_proxy_server(log_path=self.run.path / "proxy.log")
                self._proxy_client = ToxiproxyClient(self._proxy_server.api_url)
            return self._proxy_client

    def route_to(self, name: str, port: int) -> ProxyRoute:
        """Create proxy ``name`` in front of 127.0.0.1:``port``; the route to reach it."""
        info = self.proxy_client.create_proxy(name, f"127.0.0.1:{port}")
        return ProxyRoute(self.proxy_client, name, info.listen_host, info.listen_port)

    def template(self, database: str) -> PgTemplate:
        """The session's initdb'd data directory with an empty ``database``."""
        with self._lock:
            template = self._templates.get(database)
            if template is None:
                template = PgTemplate(self.binaries, self.run, database)
                self._templates[database] = template
            template.ensure()
            return template

    def prepared_template(self, target: Target, release: Release, seed: int | None) -> PgTemplate:
        """The data directory a stack of ``target`` on ``release`` starts from.

        Built once per (release, seed) and session: a server on a copy of the base
        template, ``release``'s migrations applied with its own migrate command, the
        target's seed command run with ``seed``, then a clean shutdown. Every stack copies
        it, so none pays for migrating and seeding again (see docs/decisions.md).
        """
        seeded = seed is not None and bool(target.seed_command)
        name = f"{target.database}-{target.name}-{release.name}"
        name += f"-seed{seed}" if seeded else ""
        with self._lock:
            template = self._templates.get(name)
            if template is None:
                template = PgTemplate(
                    self.binaries,
                    self.run,
                    target.database,
                    name=name,
                    build=partial(self._prepare, target, release, seed if seeded else None),
                )
                self._templates[name] = template
            template.ensure()
            return template

    def _prepare(self, target: Target, release: Release, seed: int | None, dest: Path) -> None:
        with self._lock:
            name = f"{target.name}-template{len(self._templates)}"
        stack = LocalStack(self, target, name)
        self._stacks.append(stack)
        try:
            stack.database.create_from(self.template(target.database))
            stack.database.start()
            migrate_and_seed(stack, release, seed)
            stack.database.stop()
            stack.database.datadir.rename(dest)
        finally:
            stack.close()

    def start_stack(
        self,
        target: Target,
        release: Release,
        *,
        instances: int = 2,
        name: str | None = None,
        seed: int | None = None,
    ) -> LocalStack:
        with self._lock:
            self._names += 1
            stack_name = name or f"{target.name}-{self._names}"
        stack = LocalStack(self, target, stack_name)
        return launch_stack(self._stacks, stack, release, instances, seed)

    def keep(self, stack: Stack) -> list[str]:
        """Leave ``stack`` running after the session (``--chaos-keep``).

        Its instances reach the database through the session's proxy, which ends with the
        session: the stack's route moves to a proxy server of its own (same listen port, so
        the instances' database URL stays right; their open connections are cut and the
        pools reconnect). The database, the instances and that proxy are recorded as kept:
        the backend's close, the stack's close and session-start reaping leave them;
        ``deploy-chaos reap`` removes them.
        """
        if not isinstance(stack, LocalStack) or stack.backend is not self:
            raise BackendError(f"stack {stack.name} is not a stack of this backend")
        if stack.kept:
            return self._kept_notes(stack, None)
        records = [stack.database.name, *(f"{stack.name}.{app.name}" for app in stack.apps)]
        proxy_api: str | None = None
        route = stack.db_proxy
        if route is not None:
            server = start_proxy_server(log_path=stack.directory / "proxy.log", detached=True)
            self.run.record(f"{stack.name}.proxy", server.pid, ("deploy-chaos proxy",))
            records.append(f"{stack.name}.proxy")
            route.client.delete_proxy(route.name)
            client = ToxiproxyClient(server.api_url)
            client.create_proxy(
                route.name,
                f"127.0.0.1:{stack.database.port}",
                listen=f"{route.listen_host}:{route.listen_port}",
            )
            stack.db_proxy = ProxyRoute(client, route.name, route.listen_host, route.listen_port)
            proxy_api = server.api_url
        stack.kept = True
        self.forget_stack(stack)
        notes = self._kept_notes(stack, proxy_api)
        self.run.keep(records, [stack.directory], {"stack": stack.name, "notes": notes})
        return notes

    def _kept_notes(self, stack: LocalStack, proxy_api: str | None) -> list[str]:
        db = stack.database
        notes = [
            f"stack {stack.name} kept running (run {self.run_id}); remove it with: "
            "deploy-chaos reap",
            f"database: {db.url}",
            f"  psql '{db.url}'",
        ]
        notes += [f"{app.name}: {app.base_url} ({app.release.name})" for app in stack.apps]
        if proxy_api is not None:
            notes.append(
                f"proxy between the instances and the database (Toxiproxy API): {proxy_api}"
            )
        notes.append(f"logs: {stack.directory}")
        return notes

    def forget_stack(self, stack: LocalStack) -> None:
        with contextlib.suppress(ValueError):
            self._stacks.remove(stack)

    def close(self) -> None:
        """Close every open stack (in parallel), then kill what is left and remove the run."""
        errors: list[BaseException] = []
        try:
            with ThreadPoolExecutor(max_workers=4) as pool:
                for future in [pool.submit(s.close) for s in list(self._stacks)]:
                    if (error := future.exception()) is not None:
                        errors.append(error)
        finally:
            try:
                for template in self._templates.values():
                    template.close()
                if self._proxy_server is not None:
                    self._proxy_server.stop()
            finally:
                self.run.close()
        if errors:
            raise BackendError(f"run {self.run_id}: closing stacks failed: {errors}")

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "run_id": self.run_id, "postgres": str(self.binaries.bindir)}
