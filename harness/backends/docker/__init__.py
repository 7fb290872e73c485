"""The docker backend: a stack as containers on a Docker network of its own.

Each stack gets a Docker network created (and removed) by the run: internal when the engine
can publish ports from an internal network, else a bridge without IP masquerading, so no
container can reach anything beyond it. On it run a PostgreSQL container (``db``), a
Toxiproxy-compatible proxy container (``proxy``) in front of it, and N app containers
(``app0``...), each from its release's image. Migrations and other commands run as one-off
containers of the release's image on the same network. Ports are published on 127.0.0.1
only, on host ports the harness picks, so a restarted container keeps its address.

Containers are created with testcontainers; kill, pause, restart, exec and networks go
through the Docker SDK; every wait goes through :func:`harness._wait.wait_for` with the
container's log tail attached on timeout. Every container and network carries the run id,
the stack, and the owning session (pid, start time, host) as labels: :func:`reap_docker`
removes what sessions that are no longer alive left behind, with testcontainers' Ryuk
disabled (``TESTCONTAINERS_RYUK_DISABLED=true`` is set unless the user set it).

Images are configuration: ``DEPLOY_CHAOS_POSTGRES_IMAGE`` (default the official
``postgres:15``) and ``DEPLOY_CHAOS_PROXY_IMAGE`` (default ``ghcr.io/shopify/toxiproxy``);
a release's image is its ``Release.image``. ``docker/build-images.sh`` builds local ones and
writes ``docker/local-images.env``.
"""

from harness.backends.docker.engine import (
    DEFAULT_POSTGRES_IMAGE,
    DEFAULT_PROXY_IMAGE,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    LABEL_ROLE,
    LABEL_RUN,
    LABEL_STACK,
    POSTGRES_IMAGE_ENV,
    PROXY_IMAGE_ENV,
    REUSE_PREPARED_ENV,
    DockerConfig,
    DockerReapReport,
    DockerUnavailable,
    ImageMissing,
    connect,
    doctor_lines,
    engine_version,
    image_status,
    reap_docker,
)
from harness.backends.docker.stack import (
    DockerApp,
    DockerBackend,
    DockerCommand,
    DockerDatabase,
    DockerProxy,
    DockerStack,
)

__all__ = [
    "DEFAULT_POSTGRES_IMAGE",
    "DEFAULT_PROXY_IMAGE",
    "LABEL_OWNER_HOST",
    "LABEL_OWNER_PID",
    "LABEL_OWNER_START",
    "LABEL_ROLE",
    "LABEL_RUN",
    "LABEL_STACK",
    "POSTGRES_IMAGE_ENV",
    "PROXY_IMAGE_ENV",
    "REUSE_PREPARED_ENV",
    "DockerApp",
    "DockerBackend",
    "DockerCommand",
    "DockerConfig",
    "DockerDatabase",
    "DockerProxy",
    "DockerReapReport",
    "DockerStack",
    "DockerUnavailable",
    "ImageMissing",
    "connect",
    "doctor_lines",
    "engine_version",
    "image_status",
    "reap_docker",
]
