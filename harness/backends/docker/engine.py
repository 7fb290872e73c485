"""The docker backend's engine side: configuration (images, settings), the connection to
the engine, image checks, the labels every container and network carries, the reaper, and
``doctor``'s lines. What the backend does as a whole: the package's docstring."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness._runstate import kept_runs, process_start_time
from harness.errors import (
    BackendError,
    ConfigError,
)
from harness.faults.registry import parse_bool

__all__ = [
    "DEFAULT_POSTGRES_IMAGE",
    "DEFAULT_PROXY_IMAGE",
    "LABEL_RUN",
    "LABEL_STACK",
    "POSTGRES_IMAGE_ENV",
    "PROXY_IMAGE_ENV",
    "DockerConfig",
    "DockerReapReport",
    "DockerUnavailable",
    "ImageMissing",
    "connect",
    "doctor_lines",
    "engine_version",
    "image_status",
    "reap_docker",
]

POSTGRES_IMAGE_ENV = "DEPLOY_CHAOS_POSTGRES_IMAGE"
PROXY_IMAGE_ENV = "DEPLOY_CHAOS_PROXY_IMAGE"
DEFAULT_POSTGRES_IMAGE = "postgres:15"
DEFAULT_PROXY_IMAGE = "ghcr.io/shopify/toxiproxy:2.12.0"
RYUK_ENV = "TESTCONTAINERS_RYUK_DISABLED"
#: What the embedded proxy image reads to allow upstreams on the stack's network.
PROXY_ALLOW_UPSTREAM_ENV = "DEPLOY_CHAOS_PROXY_ALLOW_UPSTREAM"

LABEL_RUN = "deploy-chaos.run-id"
LABEL_STACK = "deploy-chaos.stack"
LABEL_ROLE = "deploy-chaos.role"
LABEL_OWNER_PID = "deploy-chaos.owner-pid"
LABEL_OWNER_START = "deploy-chaos.owner-start"
LABEL_OWNER_HOST = "deploy-chaos.owner-host"

#: Where published ports are reached: always loopback (never testcontainers' gateway guess).
HOST = "127.0.0.1"
PG_PORT = 5432
PROXY_API_PORT = 8474
#: The port the stack's database route listens on inside the proxy container.
PROXY_DB_PORT = 15432
APP_PORT = 8000
#: What ``{python}`` means inside a container (the official python images and Debian's).
CONTAINER_PYTHON = "python3"
#: Where an app container finds the stack's flag file (harness.flags), mounted read-only.
FLAGS_DIR = "/deploy-chaos/flags"


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class DockerUnavailable(BackendError):
    """No Docker engine answers (or the docker package is missing); ``detail`` says why."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(
            f"no Docker engine answers: {detail}\n"
            "Fix: start one (see docs/docker.md: `dockerd >/var/log/dockerd.log 2>&1 &`), point "
            "DOCKER_HOST at one, or use the local backend (--chaos-backend local)."
        )


class ImageMissing(BackendError):
    """An image the docker backend needs is not on the engine and could not be pulled."""

    def __init__(self, image: str, setting: str, detail: str) -> None:
        self.image = image
        self.setting = setting
        self.detail = detail
        super().__init__(
            f"image {image} ({setting}) is not on the engine and cannot be pulled: {detail}\n"
            "Fix: bash docker/build-images.sh, then: set -a; . docker/local-images.env; set +a"
        )


# -- configuration --------------------------------------------------------------------------


#: "off" makes every docker stack migrate and seed itself (see DockerConfig.reuse_prepared).
REUSE_PREPARED_ENV = "DEPLOY_CHAOS_DOCKER_REUSE_PREPARED"


@dataclass(frozen=True, slots=True)
class DockerConfig:
    """The images the backend runs and how long it waits; every image is configuration."""

    postgres_image: str = DEFAULT_POSTGRES_IMAGE
    proxy_image: str = DEFAULT_PROXY_IMAGE
    ready_timeout: float = 60.0
    #: Restore later stacks' databases from the first stack's dump (see
    #: :meth:`DockerBackend.prepare_database`); off: every stack migrates and seeds.
    reuse_prepared: bool = True

    @classmethod
    def from_env(
        cls, *, postgres_image: str | None = None, proxy_image: str | None = None
    ) -> DockerConfig:
        """Explicit values first, then the environment, then the defaults."""
        reuse = os.environ.get(REUSE_PREPARED_ENV, "on")
        try:
            reuse_prepared = parse_bool(reuse)
        except ValueError:
            raise ConfigError(REUSE_PREPARED_ENV, reuse, "on or off (or true/false, 1/0)") from None
        return cls(
            postgres_image=postgres_image
            or os.environ.get(POSTGRES_IMAGE_ENV, "").strip()
            or DEFAULT_POSTGRES_IMAGE,
            proxy_image=proxy_image
            or os.environ.get(PROXY_IMAGE_ENV, "").strip()
            or DEFAULT_PROXY_IMAGE,
            reuse_prepared=reuse_prepared,
        )

    def settings(self) -> dict[str, str]:
        """The image settings by environment variable name (what ``doctor`` lists)."""
        return {POSTGRES_IMAGE_ENV: self.postgres_image, PROXY_IMAGE_ENV: self.proxy_image}


def _docker_module() -> Any:
    try:
        import docker
    except ImportError as exc:  # a dependency of the package; say so clearly anyway
        raise DockerUnavailable(f"the docker Python package is missing ({exc})") from exc
    return docker


def connect(timeout: float = 60.0) -> Any:
    """A Docker SDK client to the engine of the environment, checked with a ping."""
    docker = _docker_module()
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        raise DockerUnavailable(str(exc).splitlines()[0][:300]) from exc
    return client


def engine_version(timeout: float = 1.0) -> str | None:
    """The engine's version when one answers within ``timeout`` seconds, else None."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not os.path.exists("/var/run/docker.sock"):
        return None
    try:
        client = connect(timeout=timeout)
    except DockerUnavailable:
        return None
    try:
        return str(client.version().get("Version", "?"))
    except Exception:  # an engine that pings but cannot say its version: treat as absent
        return None
    finally:
        client.close()


def image_status(client: Any, images: Sequence[str]) -> dict[str, bool]:
    """Whether each image is present on the engine (no pull)."""
    docker = _docker_module()
    found: dict[str, bool] = {}
    for image in images:
        try:
            client.images.get(image)
            found[image] = True
        except docker.errors.ImageNotFound:
            found[image] = False
    return found


def _owner_labels(run_id: str) -> dict[str, str]:
    pid = os.getpid()
    return {
        LABEL_RUN: run_id,
        LABEL_OWNER_PID: str(pid),
        LABEL_OWNER_START: str(process_start_time(pid) or ""),
        LABEL_OWNER_HOST: socket.gethostname(),
    }


def _http_status(url: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


_HTTP_TRANSIENT = (OSError, urllib.error.URLError, http.client.HTTPException)


# -- the reaper -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DockerReapReport:
    """What :func:`reap_docker` removed, and the runs it left because their owner lives."""

    containers_removed: tuple[str, ...]
    networks_removed: tuple[str, ...]
    volumes_removed: tuple[str, ...]
    runs_alive: tuple[str, ...]


def _owner_dead(labels: dict[str, str]) -> bool:
    """Same rule as for processes: the owning session's pid is gone (or is another process).

    Resources another host's session made (a shared remote engine) are never judged here.
    """
    if labels.get(LABEL_OWNER_HOST, "") != socket.gethostname():
        return False
    try:
        pid = int(labels.get(LABEL_OWNER_PID, ""))
    except ValueError:
        return True
    start = labels.get(LABEL_OWNER_START, "")
    current = process_start_time(pid)
    return current is None or (start != "" and str(current) != start)


def _kept_stacks() -> set[tuple[str, str]]:
    """(run id, stack) of every docker stack kept with ``--chaos-keep``."""
    return {
        (run_path.name, str(entry["about"].get("stack", "")))
        for run_path, entries in kept_runs()
        for entry in entries
        if isinstance(entry.get("about"), dict) and entry["about"].get("backend") == "docker"
    }


def reap_docker(
    client: Any | None = None,
    *,
    include_alive: bool = False,
    run_id: str | None = None,
    include_kept: bool = False,
) -> DockerReapReport:
    """Remove the containers, networks and volumes of dead sessions (by label).

    ``run_id`` limits it to one run (removed whatever its owner's state); ``include_alive``
    also removes those of live sessions on this host. Stacks kept with ``--chaos-keep`` are
    spared unless ``include_kept``.
    """
    own = client is None
    client = client or connect()
    docker = _docker_module()
    containers: list[str] = []
    networks: list[str] = []
    volumes: list[str] = []
    alive: set[str] = set()
    kept = set() if include_kept else _kept_stacks()

    def doomed(labels: dict[str, str]) -> bool:
        rid = labels.get(LABEL_RUN, "")
        if (rid, labels.get(LABEL_STACK, "")) in kept:
            return False
        if run_id is not None:
            return rid == run_id
        if include_alive or _owner_dead(labels):
            return True
        alive.add(rid)
        return False

    selector = {"label": f"{LABEL_RUN}={run_id}" if run_id else LABEL_RUN}
    try:
        for container in client.containers.list(all=True, filters=selector):
            if doomed(container.labels):
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True, v=True)
                    containers.append(container.name)
        for network in client.networks.list(filters=selector):
            labels = network.attrs.get("Labels") or {}
            if doomed(labels):
                with contextlib.suppress(docker.errors.NotFound):
                    _disconnect_all(network)
                    network.remove()
                    networks.append(network.name)
        for volume in client.volumes.list(filters=selector):
            if doomed(volume.attrs.get("Labels") or {}):
                with contextlib.suppress(docker.errors.NotFound):
                    volume.remove(force=True)
                    volumes.append(volume.name)
    finally:
        if own:
            client.close()
    return DockerReapReport(tuple(containers), tuple(networks), tuple(volumes), tuple(alive))


def _disconnect_all(network: Any) -> None:
    """Force-disconnect whatever is still attached (e.g. a container being removed)."""
    docker = _docker_module()
    with contextlib.suppress(docker.errors.DockerException):
        network.reload()
        for cid in network.attrs.get("Containers") or {}:
            with contextlib.suppress(docker.errors.DockerException):
                network.disconnect(cid, force=True)


# -- doctor ---------------------------------------------------------------------------------


def doctor_lines(extra_images: Sequence[tuple[str, str]] = ()) -> tuple[list[str], bool]:
    """Lines describing the engine and the images (found or missing, with what to run), and
    whether the docker backend is ready. ``extra_images`` are (image, what) pairs, e.g. a
    target's release images."""
    config = DockerConfig.from_env()
    lines: list[str] = []
    try:
        client = connect(timeout=3)
    except DockerUnavailable as exc:
        lines.append(f"docker engine    not reachable ({exc.detail[:160]})")
        lines.append("                 the docker backend is unavailable; auto uses local")
        lines.append("                 enable: start dockerd (docs/docker.md), then")
        lines.append("                 bash docker/build-images.sh")
        return lines, False
    try:
        version = client.version()
        lines.append(
            f"docker engine    {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})"
            f", {os.environ.get('DOCKER_HOST') or 'unix:///var/run/docker.sock'}"
        )
        wanted = [
            (config.postgres_image, POSTGRES_IMAGE_ENV),
            (config.proxy_image, PROXY_IMAGE_ENV),
            *extra_images,
        ]
        found = image_status(client, [image for image, _ in wanted])
    finally:
        client.close()
    for image, what in wanted:
        state = "found" if found[image] else "MISSING"
        lines.append(f"  image          {state:<8} {image}  ({what})")
    ryuk = os.environ.get(RYUK_ENV, "")
    lines.append(f"  {RYUK_ENV}={ryuk or '(unset: the backend sets true)'}")
    missing = [image for image, _ in wanted if not found[image]]
    if missing:
        if Path("docker/local-images.env").exists():
            lines.append("  docker/local-images.env exists; load it (it names the built images):")
        else:
            lines.append("  to build them:  bash docker/build-images.sh")
        lines.append("  then:           set -a; . docker/local-images.env; set +a")
    return lines, not missing
