"""Backends: what runs a stack (``local`` processes or ``docker`` containers)."""

from __future__ import annotations

import enum
import logging

from harness.backends.base import Backend
from harness.errors import ConfigError

__all__ = ["BackendName", "choose_backend", "open_backend"]

_log = logging.getLogger(__name__)

#: How long ``auto`` waits for a Docker engine to answer before settling for local.
AUTO_ENGINE_TIMEOUT = 1.0


class BackendName(enum.Enum):
    """The backends a user can choose; ``auto`` picks docker when an engine answers."""

    AUTO = "auto"
    LOCAL = "local"
    DOCKER = "docker"

    @classmethod
    def parse(cls, value: str) -> BackendName:
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(
                "backend", value, "one of " + ", ".join(m.value for m in cls)
            ) from None


def choose_backend(name: BackendName | str = BackendName.AUTO) -> BackendName:
    """``local`` or ``docker``: ``auto`` is docker when an engine answers within a second
    and has the backend's images (PostgreSQL, proxy), else local (the reason is logged)."""
    choice = BackendName.parse(name) if isinstance(name, str) else name
    if choice is not BackendName.AUTO:
        return choice
    from harness.backends.docker import DockerConfig, engine_version, image_status

    version = engine_version(timeout=AUTO_ENGINE_TIMEOUT)
    if version is None:
        _log.info("backend auto: no Docker engine answers; using the local backend")
        return BackendName.LOCAL
    from harness.backends.docker import connect

    config = DockerConfig.from_env()
    client = connect(timeout=AUTO_ENGINE_TIMEOUT * 5)
    try:
        found = image_status(client, [config.postgres_image, config.proxy_image])
    finally:
        client.close()
    missing = [image for image, present in found.items() if not present]
    if missing:
        _log.info(
            "backend auto: Docker engine %s lacks %s (bash docker/build-images.sh); using local",
            version,
            ", ".join(missing),
        )
        return BackendName.LOCAL
    _log.info("backend auto: Docker engine %s with its images; using the docker backend", version)
    return BackendName.DOCKER


def open_backend(
    name: BackendName | str = BackendName.LOCAL,
    *,
    pg_bindir: str | None = None,
    pg_image: str | None = None,
    proxy_image: str | None = None,
) -> Backend:
    """Open a backend session (a context manager: close it to tear everything down).

    ``pg_bindir`` is for the local backend; ``pg_image`` and ``proxy_image`` for the docker
    backend (default: ``DEPLOY_CHAOS_POSTGRES_IMAGE`` / ``DEPLOY_CHAOS_PROXY_IMAGE``).
    """
    choice = choose_backend(name)
    if choice is BackendName.DOCKER:
        from harness.backends.docker import DockerBackend, DockerConfig

        config = DockerConfig.from_env(postgres_image=pg_image, proxy_image=proxy_image)
        return DockerBackend(config=config)
    from harness.backends.local import LocalBackend

    return LocalBackend(pg_bindir=pg_bindir)
