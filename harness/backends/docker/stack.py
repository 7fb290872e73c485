"""The docker backend's stacks: the database, proxy and app containers of one stack, the
commands run beside them, the stack, and the backend that makes them (see the package doc).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from harness._runstate import RunDir, reap
from harness._wait import wait_for
from harness.backends.base import (
    CommandResult,
    MigratingStack,
    ProxyRoute,
    Stack,
    harness_env,
    launch_stack,
    migrate_and_seed,
)
from harness.backends.docker.engine import (
    _HTTP_TRANSIENT,
    _SAFE_NAME,
    APP_PORT,
    CONTAINER_PYTHON,
    FLAGS_DIR,
    HOST,
    LABEL_ROLE,
    LABEL_RUN,
    LABEL_STACK,
    PG_PORT,
    POSTGRES_IMAGE_ENV,
    PROXY_ALLOW_UPSTREAM_ENV,
    PROXY_API_PORT,
    PROXY_DB_PORT,
    PROXY_IMAGE_ENV,
    RYUK_ENV,
    DockerConfig,
    ImageMissing,
    _disconnect_all,
    _docker_module,
    _http_status,
    _owner_labels,
    connect,
    reap_docker,
)
from harness.backends.pgserver import SERVER_SETTINGS, SUPERUSER, PgServer
from harness.backends.postgres import free_port
from harness.errors import (
    AppNotHealthy,
    BackendError,
    ProxyApiError,
    ServiceError,
    SpecError,
)
from harness.flags import FlagFile
from harness.proxy.client import ToxiproxyClient
from harness.spec import Release, Target, fill_placeholders

__all__ = [
    "DockerApp",
    "DockerBackend",
    "DockerCommand",
    "DockerDatabase",
    "DockerProxy",
    "DockerStack",
]


# -- services -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _NetworkRef:
    """What testcontainers needs of a network: its name."""

    name: str


class _PortTaken(ServiceError):
    """Docker could not publish a host port: something else bound it first."""


#: How often a container is started on fresh host ports when its port was taken.
_PORT_ATTEMPTS = 3


@dataclass(slots=True)
class _ContainerSpec:
    image: str
    name: str
    role: str
    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[int, int] = field(default_factory=dict)  # container port -> host port
    aliases: tuple[str, ...] = ()
    #: Host directory -> container directory, mounted read-only.
    mounts: dict[str, str] = field(default_factory=dict)


class _ContainerService:
    """A service backed by one container: kill, pause/resume, state, log tail."""

    name: str
    stack: DockerStack

    def __init__(self) -> None:
        self.container: Any | None = None
        self._paused = False

    # -- state ---------------------------------------------------------------------------

    def _status(self) -> str:
        if self.container is None:
            return "absent"
        docker = _docker_module()
        try:
            self.container.reload()
        except docker.errors.NotFound:
            return "absent"
        return str(self.container.status)

    @property
    def running(self) -> bool:
        return self._status() in ("running", "paused", "restarting")

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def container_id(self) -> str | None:
        return None if self.container is None else str(self.container.id)

    def log_tail(self, lines: int = 30) -> str:
        if self.container is None:
            return ""
        docker = _docker_module()
        try:
            raw = self.container.logs(stdout=True, stderr=True, tail=lines)
        except docker.errors.DockerException as exc:
            return f"(logs of {self.name} unavailable: {exc})"
        return bytes(raw).decode(errors="replace").rstrip("\n")

    # -- operations ----------------------------------------------------------------------

    def _require(self, action: str) -> Any:
        if self.container is None or not self.running:
            raise ServiceError(self.name, action, "the container is not running", self.log_tail())
        return self.container

    def kill(self) -> None:
        """``docker kill``: SIGKILL every process of the container."""
        if self.container is None:
            return
        docker = _docker_module()
        with contextlib.suppress(docker.errors.APIError):  # already stopped
            self.container.kill()
        wait_for(
            lambda: self._status() in ("exited", "dead", "absent", "created"),
            what=f"{self.name} to stop after docker kill",
            timeout=15,
            log_tail=self.log_tail,
        )
        self._paused = False

    def pause(self) -> None:
        """``docker pause``: freeze every process (cgroup freezer)."""
        self._require("pause").pause()
        self._paused = True

    def resume(self) -> None:
        """``docker unpause``."""
        self._require("resume").unpause()
        self._paused = False

    def _stop_container(self, timeout: float) -> None:
        if self.container is None:
            return
        docker = _docker_module()
        if self._status() == "paused":
            with contextlib.suppress(docker.errors.APIError):
                self.container.unpause()
        self._paused = False
        with contextlib.suppress(docker.errors.NotFound):
            self.container.stop(timeout=max(1, int(timeout)))

    def _start_container(self) -> None:
        """Start the (stopped or killed) container again, keeping its ports and logs."""
        assert self.container is not None
        docker = _docker_module()
        try:
            self.container.start()
        except docker.errors.APIError as exc:
            raise ServiceError(self.name, "start", str(exc), self.log_tail()) from exc
        self._paused = False

    def remove(self) -> None:
        """Remove the container (and its anonymous volumes); tolerate it being gone."""
        container, self.container = self.container, None
        if container is None:
            return
        docker = _docker_module()
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)
        self._paused = False

    def _exited_error(self, action: str) -> ServiceError | None:
        status = self._status()
        if status in ("exited", "dead", "absent"):
            code = self.container.attrs["State"].get("ExitCode") if self.container else None
            return ServiceError(
                self.name, action, f"container {status} (exit code {code})", self.log_tail()
            )
        return None


class DockerDatabase(_ContainerService, PgServer):
    """The stack's PostgreSQL server in a container (alias ``db`` on the stack's network)."""

    def __init__(self, stack: DockerStack, image: str) -> None:
        super().__init__()
        self.stack = stack
        self.name = f"{stack.name}.db"
        self.image = image
        self.database = stack.target.database
        self.password = secrets.token_urlsafe(18)
        self.port = free_port()

    # -- what is a container's own (the rest: harness.backends.pgserver) --------------

    @property
    def host(self) -> str:
        return HOST  # its port, published on 127.0.0.1

    def _died(self, action: str) -> ServiceError | None:
        return self._exited_error(action)

    # -- lifecycle ---------------------------------------------------------------------

    def spec(self) -> _ContainerSpec:
        command = ["postgres"]
        for setting in SERVER_SETTINGS:
            command += ["-c", setting]
        return _ContainerSpec(
            image=self.image,
            name=self.stack.container_name("db"),
            role="db",
            command=command,
            env={
                "POSTGRES_USER": self.user,
                "POSTGRES_PASSWORD": self.password,
                "POSTGRES_DB": self.database,
            },
            ports={PG_PORT: self.port},
            aliases=("db",),
        )

    def create(self) -> None:
        self.container = self.stack.backend.run_container(
            self.stack, self.spec(), respec=self._move
        )

    def _move(self) -> _ContainerSpec:
        """The spec on another free port (the one picked was taken before Docker bound it)."""
        self.port = free_port()
        return self.spec()

    def wait_ready(self, *, timeout: float | None = None) -> None:
        PgServer.wait_ready(self, timeout=timeout or self.stack.backend.config.ready_timeout)

    def start(self, *, timeout: float | None = None) -> None:
        if self.container is None:
            self.create()
        elif not self.running:
            self._start_container()
        self.wait_ready(timeout=timeout)

    def stop(self) -> None:
        """Fast shutdown (the image's stop signal, SIGINT), killed if it takes over 10 s."""
        self._stop_container(10)

    def restart(self) -> None:
        """Stop if running (or after a kill), start again: crash recovery runs by itself."""
        if self.running:
            self.stop()
        self._start_container()
        self.wait_ready()

    def close(self) -> None:
        self.remove()

    # -- backup and restore (pg_dump / pg_restore inside the container) -------------------

    def _exec(self, argv: list[str], what: str) -> bytes:
        container = self._require(what)
        code, (out, err) = container.exec_run(argv, demux=True)
        if code != 0:
            detail = (err or b"").decode(errors="replace") + (out or b"").decode(errors="replace")
            raise ServiceError(self.name, what, f"exit status {code}", detail[-3000:])
        return bytes(out or b"")

    def backup(self, path: Path) -> None:
        """``pg_dump -Fc`` the target's database (run in the container) to ``path``."""
        dump = self._exec(["pg_dump", "-Fc", "-U", SUPERUSER, "-d", self.database], "pg_dump")
        path.write_bytes(dump)

    def _pg_restore(self, path: Path) -> None:
        """Copy the dump into the container and ``pg_restore`` it there."""
        data = path.read_bytes()
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo("deploy-chaos-restore.dump")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
        container = self._require("restore")
        if not container.put_archive("/tmp", archive.getvalue()):  # noqa: S108 (in the container)
            raise ServiceError(self.name, "restore", "could not copy the dump into the container")
        try:
            self._exec(
                [
                    "pg_restore",
                    "--exit-on-error",
                    "-U",
                    self.user,
                    "-d",
                    self.database,
                    "/tmp/deploy-chaos-restore.dump",  # noqa: S108
                ],
                "pg_restore",
            )
        finally:
            with contextlib.suppress(ServiceError):
                self._exec(["rm", "-f", "/tmp/deploy-chaos-restore.dump"], "remove the dump")  # noqa: S108


class DockerProxy(_ContainerService):
    """The Toxiproxy-compatible proxy container (alias ``proxy``) with the database route."""

    def __init__(self, stack: DockerStack, image: str) -> None:
        super().__init__()
        self.stack = stack
        self.name = f"{stack.name}.proxy"
        self.image = image
        self.api_port = free_port()
        self.db_port = free_port()
        self.client = ToxiproxyClient(f"http://{HOST}:{self.api_port}")
        self.route: ProxyRoute | None = None

    def spec(self) -> _ContainerSpec:
        subnet = self.stack.subnet
        return _ContainerSpec(
            image=self.image,
            name=self.stack.container_name("proxy"),
            role="proxy",
            env={PROXY_ALLOW_UPSTREAM_ENV: subnet} if subnet else {},
            ports={PROXY_API_PORT: self.api_port, PROXY_DB_PORT: self.db_port},
            aliases=("proxy",),
        )

    def create(self) -> None:
        self.container = self.stack.backend.run_container(
            self.stack, self.spec(), respec=self._move
        )

    def _move(self) -> _ContainerSpec:
        """The spec on other free ports (one picked was taken before Docker bound it)."""
        self.api_port = free_port()
        self.db_port = free_port()
        self.client = ToxiproxyClient(f"http://{HOST}:{self.api_port}")
        return self.spec()

    def wait_ready(self, timeout: float | None = None) -> str:
        def answer() -> str:
            if (error := self._exited_error("start")) is not None:
                raise error
            return self.client.version()

        return wait_for(
            answer,
            what=f"{self.name} to answer {self.client.api_url}/version",
            timeout=timeout or self.stack.backend.config.ready_timeout,
            transient=(ProxyApiError,),
            log_tail=self.log_tail,
        )

    def create_route(self) -> ProxyRoute:
        """The database route: proxy ``<stack>-db`` on :data:`PROXY_DB_PORT` to ``db``."""
        name = f"{self.stack.name}-db"
        self.client.create_proxy(name, f"db:{PG_PORT}", listen=f"0.0.0.0:{PROXY_DB_PORT}")
        self.route = ProxyRoute(self.client, name, HOST, self.db_port)
        return self.route

    def restart(self) -> None:
        """Restart the container; its proxies live in memory, so the route is made again."""
        if self.running:
            self._stop_container(5)
        self._start_container()
        self.wait_ready()
        if self.route is not None:
            self.create_route()


class DockerApp(_ContainerService):
    """One app instance: a container of its release's image (alias ``app<i>``)."""

    def __init__(self, stack: DockerStack, index: int, release: Release) -> None:
        super().__init__()
        self.stack = stack
        self.index = index
        self.name = f"app{index}"
        self._release = release
        self.port = free_port()
        self._generation = 0

    @property
    def release(self) -> Release:
        return self._release

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def launch(self) -> None:
        """Create and start the container without waiting for health."""
        self._generation += 1
        # Only a first launch may move to another port: later ones keep the instance's URL.
        respec = self._move if self._generation == 1 else None
        self.container = self.stack.backend.run_container(self.stack, self._spec(), respec=respec)
        self._paused = False

    def _spec(self) -> _ContainerSpec:
        release = self._release
        values = self.stack.placeholder_values(release, instance=self.index, port=APP_PORT)
        return _ContainerSpec(
            image=self.stack.image_of(release),
            name=self.stack.container_name(f"app{self.index}-{self._generation}"),
            role="app",
            command=fill_placeholders(release.image_command, values) or None,
            env=self.stack.release_env(release, values),
            ports={APP_PORT: self.port},
            aliases=(self.name,),
            mounts={str(self.stack.flags.path.parent): FLAGS_DIR},
        )

    def _move(self) -> _ContainerSpec:
        self.port = free_port()
        return self._spec()

    def healthy(self, timeout: float = 1.0) -> bool:
        try:
            return _http_status(self.base_url + self._release.health_path, timeout) == 200
        except _HTTP_TRANSIENT:
            return False

    def wait_healthy(self, timeout: float | None = None) -> None:
        release = self._release

        def check() -> bool:
            if (error := self._exited_error(f"start {release.name}")) is not None:
                raise error
            return _http_status(self.base_url + release.health_path, 1.0) == 200

        wait_for(
            check,
            what=f"{self.stack.name}/{self.name} ({release.name}) to answer "
            f"{release.health_path} with 200 on port {self.port}",
            timeout=timeout or release.startup_timeout,
            transient=_HTTP_TRANSIENT,
            log_tail=self.log_tail,
            error=AppNotHealthy,
        )

    def start(self) -> None:
        self.launch()
        self.wait_healthy()

    def stop(self, timeout: float = 5.0) -> None:
        """``docker stop`` (SIGTERM, SIGKILL after ``timeout``) and remove the container."""
        self._stop_container(timeout)
        self.remove()

    def restart(self) -> None:
        """Stop if running (or after a kill), start the same container, await health."""
        if self.container is None:
            self.start()
            return
        if self.running:
            self._stop_container(5)
        self._start_container()
        self.wait_healthy()

    def deploy(self, release: Release) -> None:
        """Replace the container with one of ``release``'s image on the same host port."""
        self.stop()
        self._release = release
        self.start()


class DockerCommand:
    """A command run as a one-off container of a release's image (e.g. a migration)."""

    def __init__(
        self,
        stack: DockerStack,
        name: str,
        release: Release,
        argv: Sequence[str],
        env: dict[str, str],
    ) -> None:
        self.stack = stack
        self.name = name
        self.argv = tuple(argv)
        self._started = time.monotonic()
        self._result: CommandResult | None = None
        spec = _ContainerSpec(
            image=stack.image_of(release),
            name=stack.container_name(name),
            role="command",
            command=list(argv),
            env=env,
        )
        self._container: Any = stack.backend.run_container(stack, spec)

    @property
    def pid(self) -> int:
        """The host pid of the container's main process (0 once it has exited)."""
        docker = _docker_module()
        with contextlib.suppress(docker.errors.NotFound):
            self._container.reload()
        return int(self._container.attrs["State"].get("Pid") or 0)

    def poll(self) -> int | None:
        if self._result is not None:
            return self._result.returncode
        docker = _docker_module()
        try:
            self._container.reload()
        except docker.errors.NotFound:
            return -9
        state = self._container.attrs["State"]
        if state.get("Status") in ("exited", "dead"):
            return int(state.get("ExitCode", -1))
        return None

    def wait(self, timeout: float | None = None) -> CommandResult:
        if self._result is not None:
            return self._result
        docker = _docker_module()
        try:
            try:
                code = int(self._container.wait(timeout=timeout)["StatusCode"])
            except OSError:  # requests' ReadTimeout/ConnectionError: the timeout passed
                self.kill()
                code = int(self._container.wait(timeout=30)["StatusCode"])
            try:
                raw = self._container.logs(stdout=True, stderr=True)
                output = bytes(raw).decode(errors="replace")
            except docker.errors.DockerException as exc:
                output = f"(output unavailable: {exc})"
        finally:
            with contextlib.suppress(docker.errors.DockerException):
                self._container.remove(force=True, v=True)
        self._result = CommandResult(self.argv, code, output, time.monotonic() - self._started)
        return self._result

    def kill(self) -> None:
        """``docker kill`` the command's container."""
        docker = _docker_module()
        with contextlib.suppress(docker.errors.APIError):
            self._container.kill()


# -- the stack ------------------------------------------------------------------------------


class DockerStack(MigratingStack["DockerDatabase"]):
    """A database, a fault proxy and N app instances, as containers on their own network."""

    def __init__(self, backend: DockerBackend, target: Target, name: str) -> None:
        self.backend = backend
        self.target = target
        self.name = name
        self.run_id = backend.run_id
        self.labels = {**backend.labels, LABEL_STACK: name}
        #: Left running after the session (see :meth:`DockerBackend.keep`).
        self.kept = False
        self.network: Any | None = None
        self.subnet = ""
        self.internal = False
        self.database = DockerDatabase(self, backend.config.postgres_image)
        self.proxy = DockerProxy(self, backend.config.proxy_image)
        self.apps: list[DockerApp] = []
        self.db_proxy: ProxyRoute | None = None
        #: The stack's feature flags (harness.flags): a host directory bind-mounted
        #: read-only into every app container at FLAGS_DIR (a directory, so that the
        #: file's atomic replacement is seen inside).
        flags_dir = backend.run.subdir("stacks", name, "flags")
        flags_dir.chmod(0o755)  # the container's user reads it; it holds no secret
        self.flags = FlagFile(flags_dir / "flags.json")
        self.flags.path.chmod(0o644)
        self._commands = 0
        self._lock = threading.Lock()
        self._closed = False

    # -- naming and environment --------------------------------------------------------

    def container_name(self, role: str) -> str:
        return _SAFE_NAME.sub("-", f"{self.run_id}-{self.name}-{role}")

    @property
    def network_name(self) -> str:
        return self.container_name("net")

    def image_of(self, release: Release) -> str:
        if not release.image:
            raise SpecError(
                f"release {release.name!r} of target {self.target.name!r} has no image",
                expected="Release.image for the docker backend",
            )
        return release.image

    @property
    def app_database_url(self) -> str:
        """The URL app containers and migrations use: through the proxy, on the network."""
        db = self.database
        return f"postgresql://{db.user}:{db.password}@proxy:{PROXY_DB_PORT}/{db.database}"

    def placeholder_values(
        self, release: Release, *, instance: int | None = None, port: int | None = None
    ) -> dict[str, str]:
        return {
            "python": CONTAINER_PYTHON,
            "host": "0.0.0.0",  # noqa: S104 (inside the container; published on 127.0.0.1)
            "release": release.name,
            "database_url": self.app_database_url,
            "instance": "" if instance is None else str(instance),
            "port": "" if port is None else str(port),
            "target": "",
            "seed": "0",
            "flags_file": f"{FLAGS_DIR}/{self.flags.path.name}",
        }

    def release_env(self, release: Release, values: dict[str, str]) -> dict[str, str]:
        env = dict(release.env)
        env.update(harness_env(release, values, self.run_id))
        return env

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, release: Release, instances: int, seed: int | None = None) -> None:
        images = [self.image_of(release)]
        self.backend.ensure_images(
            [
                (self.backend.config.postgres_image, POSTGRES_IMAGE_ENV),
                (self.backend.config.proxy_image, PROXY_IMAGE_ENV),
                *((image, f"release {release.name}: image") for image in images),
            ]
        )
        self.network, self.subnet, self.internal = self.backend.create_network(self)
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(self.database.create), pool.submit(self.proxy.create)]
            for future in futures:
                future.result()
        self.proxy.wait_ready()
        self.database.wait_ready()
        self.db_proxy = self.proxy.create_route()
        self.backend.prepare_database(self, release, seed)
        self.apps = [DockerApp(self, i, release) for i in range(instances)]
        with ThreadPoolExecutor(max_workers=max(1, instances)) as pool:
            for future in [pool.submit(app.launch) for app in self.apps]:
                future.result()
        for app in self.apps:
            app.wait_healthy()

    def start_command(
        self, release: Release, argv: Sequence[str], values: dict[str, str] | None = None
    ) -> DockerCommand:
        merged = self.placeholder_values(release)
        merged.update(values or {})
        filled = fill_placeholders(argv, merged)
        with self._lock:
            self._commands += 1
            name = f"cmd{self._commands}"
        return DockerCommand(self, name, release, filled, self.release_env(release, merged))

    def app(self, index: int) -> DockerApp:
        return self.apps[index]

    def services(self) -> Iterator[_ContainerService]:
        yield self.database
        yield self.proxy
        yield from self.apps

    def close(self) -> None:
        """Remove every container of the stack (in parallel), then its network."""
        if self._closed or self.kept:
            return
        self._closed = True
        errors: list[BaseException] = []
        try:
            self.backend.remove_labelled({LABEL_RUN: self.run_id, LABEL_STACK: self.name})
        except BackendError as exc:
            errors.append(exc)
        for service in self.services():
            service.container = None
        if self.network is not None:
            try:
                self.backend.remove_network(self.network)
            except BackendError as exc:
                errors.append(exc)
            self.network = None
        self.backend.forget_stack(self)
        if errors:
            raise BackendError(f"stack {self.name}: teardown had errors: {errors}")

    def __enter__(self) -> DockerStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- the backend ----------------------------------------------------------------------------


class DockerBackend:
    """Runs stacks as containers. One per session; a context manager."""

    name = "docker"

    def __init__(
        self,
        *,
        config: DockerConfig | None = None,
        run: RunDir | None = None,
        client: Any | None = None,
    ) -> None:
        os.environ.setdefault(RYUK_ENV, "true")  # no Ryuk here: our labels and reaper clean up
        self.config = config or DockerConfig.from_env()
        self.client = client or connect()
        reap()
        reap_docker(self.client)
        self.run = run or RunDir.create()
        self.run_id = self.run.run_id
        self.labels = _owner_labels(self.run_id)
        self._stacks: list[DockerStack] = []
        self._names = 0
        self._lock = threading.Lock()
        self._images_ok: set[str] = set()
        #: (target, release, seed) -> the dump of a database migrated and seeded for it.
        self._prepared: dict[str, Path] = {}
        self._preparing: dict[str, threading.Lock] = {}

    # -- images ------------------------------------------------------------------------

    def ensure_images(self, images: Sequence[tuple[str, str]]) -> None:
        """Every image present (pulled when the engine can); :class:`ImageMissing` if not."""
        docker = _docker_module()
        for image, setting in images:
            if image in self._images_ok:
                continue
            try:
                self.client.images.get(image)
            except docker.errors.ImageNotFound:
                try:
                    self.client.images.pull(image)
                except docker.errors.DockerException as exc:
                    raise ImageMissing(image, setting, str(exc).splitlines()[0][:200]) from exc
            self._images_ok.add(image)

    # -- containers and networks -------------------------------------------------------

    def run_container(
        self,
        stack: DockerStack,
        spec: _ContainerSpec,
        *,
        respec: Callable[[], _ContainerSpec] | None = None,
    ) -> Any:
        """Create and start a labelled container on the stack's network (testcontainers).

        A host port is picked free before Docker binds it, so another process (an xdist
        worker's container) can take it in between; Docker then fails with "port is already
        allocated". With ``respec`` (the same container on other free ports) that is retried.
        """
        attempts = 1
        while True:
            try:
                return self._run_container(stack, spec)
            except _PortTaken:
                if respec is None or attempts == _PORT_ATTEMPTS:
                    raise
                attempts += 1
                spec = respec()

    def _run_container(self, stack: DockerStack, spec: _ContainerSpec) -> Any:
        from testcontainers.core.container import DockerContainer

        docker = _docker_module()
        if stack.network is None:
            raise BackendError(f"stack {stack.name}: no network yet for {spec.name}")
        container: Any = DockerContainer(  # typed loosely: a duck-typed network, host-IP ports
            spec.image,
            labels={**stack.labels, LABEL_ROLE: spec.role},
            hostname=spec.aliases[0] if spec.aliases else None,
        )
        container.with_name(spec.name)
        container.with_network(_NetworkRef(stack.network.name))
        if spec.aliases:
            container.with_network_aliases(*spec.aliases)
        if spec.command is not None:
            container.with_command(spec.command)
        for key, value in spec.env.items():
            container.with_env(key, value)
        for host_dir, inner_dir in spec.mounts.items():
            container.with_volume_mapping(host_dir, inner_dir, "ro")
        for inner, outer in spec.ports.items():
            # 127.0.0.1 only (with_exposed_ports would publish on 0.0.0.0 and ::).
            container.ports[f"{inner}/tcp"] = (HOST, outer)
        try:
            container.start()
        except docker.errors.DockerException as exc:
            wrapped = getattr(container, "_container", None)
            if wrapped is not None:
                with contextlib.suppress(docker.errors.DockerException):
                    wrapped.remove(force=True, v=True)
            if "port is already allocated" in str(exc):
                raise _PortTaken(spec.name, f"start {spec.image}", str(exc)) from exc
            raise ServiceError(spec.name, f"start {spec.image}", str(exc)) from exc
        return container.get_wrapped_container()

    def create_network(self, stack: DockerStack) -> tuple[Any, str, bool]:
        """The stack's network: a bridge without IP masquerading, so nothing on it reaches
        beyond it. (An internal network would be stricter, but Docker publishes no port of a
        container that is only on an internal network; see docs/decisions.md.)"""
        docker = _docker_module()
        internal = False
        options = {"com.docker.network.bridge.enable_ip_masquerade": "false"}
        try:
            network = self.client.networks.create(
                stack.network_name,
                driver="bridge",
                internal=internal,
                labels=stack.labels,
                options=options,
                check_duplicate=True,
            )
            network.reload()
        except docker.errors.DockerException as exc:
            raise BackendError(f"stack {stack.name}: cannot create its network: {exc}") from exc
        configs = network.attrs.get("IPAM", {}).get("Config") or [{}]
        return network, str(configs[0].get("Subnet", "")), internal

    def remove_network(self, network: Any) -> None:
        docker = _docker_module()
        try:
            network.remove()
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            _disconnect_all(network)
            try:
                network.remove()
            except docker.errors.DockerException as exc:
                raise BackendError(f"cannot remove network {network.name}: {exc}") from exc

    def remove_labelled(self, labels: dict[str, str]) -> list[str]:
        """Remove every container carrying all of ``labels`` (in parallel)."""
        docker = _docker_module()
        selector = {"label": [f"{k}={v}" for k, v in labels.items()]}
        try:
            containers = self.client.containers.list(all=True, filters=selector)
        except docker.errors.DockerException as exc:
            raise BackendError(f"cannot list containers {labels}: {exc}") from exc

        def remove(container: Any) -> str:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
            return str(container.name)

        if not containers:
            return []
        with ThreadPoolExecutor(max_workers=min(6, len(containers))) as pool:
            return list(pool.map(remove, containers))

    # -- stacks ------------------------------------------------------------------------

    def prepare_database(self, stack: DockerStack, release: Release, seed: int | None) -> None:
        """Bring a new stack's database to ``release``'s last migration with the seed data
        for ``seed``.

        The first stack of a (target, release, seed) in the session runs the release's
        migrate command and the target's seed command (a container each), then dumps the
        database (``pg_dump -Fc`` in its container). Later stacks restore that dump: one
        ``pg_restore`` instead of two containers. Objects outside the database (roles a
        migration creates) are not in the dump: such a target sets
        ``DEPLOY_CHAOS_DOCKER_REUSE_PREPARED=off`` (see docs/decisions.md).
        """
        if not self.config.reuse_prepared:
            migrate_and_seed(stack, release, seed)
            return
        seeded = seed is not None and bool(stack.target.seed_command)
        key = _SAFE_NAME.sub("-", f"{stack.target.name}-{release.name}")
        key += f"-seed{seed}" if seeded else ""
        with self._lock:
            lock = self._preparing.setdefault(key, threading.Lock())
        with lock:  # stacks of the same key wait for the first one's dump
            dump = self._prepared.get(key)
            if dump is None:
                migrate_and_seed(stack, release, seed if seeded else None)
                dump = self.run.subdir("prepared") / f"{key}.dump"
                stack.database.backup(dump)
                self._prepared[key] = dump
                return
        stack.database.restore(dump)

    def start_stack(
        self,
        target: Target,
        release: Release,
        *,
        instances: int = 2,
        name: str | None = None,
        seed: int | None = None,
    ) -> DockerStack:
        with self._lock:
            self._names += 1
            stack_name = name or f"{target.name}-{self._names}"
        stack = DockerStack(self, target, stack_name)
        return launch_stack(self._stacks, stack, release, instances, seed)

    def forget_stack(self, stack: DockerStack) -> None:
        with contextlib.suppress(ValueError):
            self._stacks.remove(stack)

    def keep(self, stack: Stack) -> list[str]:
        """Leave ``stack``'s containers and network running after the session
        (``--chaos-keep``); ``deploy-chaos reap`` removes them."""
        if not isinstance(stack, DockerStack) or stack.backend is not self:
            raise BackendError(f"stack {stack.name} is not a stack of this backend")
        db = stack.database
        notes = [
            f"stack {stack.name} kept running (run {self.run_id}, containers labelled "
            f"{LABEL_STACK}={stack.name}); remove it with: deploy-chaos reap",
            f"database: {db.url}",
            f"  psql '{db.url}'",
        ]
        notes += [f"{app.name}: {app.base_url} ({app.release.name})" for app in stack.apps]
        notes.append(f"proxy (Toxiproxy API): {stack.proxy.client.api_url}")
        notes.append(f"containers: docker ps --filter label={LABEL_STACK}={stack.name}")
        if not stack.kept:
            stack.kept = True
            self.forget_stack(stack)
            self.run.keep([], [], {"stack": stack.name, "backend": "docker", "notes": notes})
        return notes

    def close(self) -> None:
        """Close every open stack, then remove whatever still carries the run id."""
        errors: list[BaseException] = []
        try:
            for stack in list(self._stacks):
                try:
                    stack.close()
                except BackendError as exc:
                    errors.append(exc)
        finally:
            try:
                reap_docker(self.client, run_id=self.run_id)
            except Exception as exc:
                errors.append(exc)
            finally:
                self.run.close()
                self.client.close()
        if errors:
            raise BackendError(f"run {self.run_id}: closing stacks failed: {errors}")

    def __enter__(self) -> DockerBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "run_id": self.run_id, **self.config.settings()}


# -- what ``deploy-chaos doctor`` says --------------------------------------------------------
