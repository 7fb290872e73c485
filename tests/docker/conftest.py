"""Fixtures for docker backend tests: an engine, the images, one docker backend per session.

Without a Docker engine or the images, these tests skip with a reason saying how to enable
them. With ``DEPLOY_CHAOS_REQUIRE_DOCKER=1`` (CI) that skip is a failure instead.

Images come from the environment, else from ``docker/local-images.env`` (written by
``docker/build-images.sh``), without exporting that file to the rest of the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness._loader import load_target
from harness.backends.docker import (
    LABEL_RUN,
    POSTGRES_IMAGE_ENV,
    PROXY_IMAGE_ENV,
    DockerBackend,
    DockerConfig,
    DockerUnavailable,
    connect,
    image_status,
)
from harness.spec import Target

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = ROOT / "docker" / "local-images.env"
REQUIRE_ENV = "DEPLOY_CHAOS_REQUIRE_DOCKER"
LEDGER_IMAGE_ENV = "DEPLOY_CHAOS_LEDGER_IMAGE"
_ENABLE = "bash docker/build-images.sh (see docs/docker.md)"


def images_env() -> dict[str, str]:
    """The image settings: the process environment first, then docker/local-images.env."""
    values: dict[str, str] = {}
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip()
    for key in (POSTGRES_IMAGE_ENV, PROXY_IMAGE_ENV, LEDGER_IMAGE_ENV):
        if os.environ.get(key):
            values[key] = os.environ[key]
    return values


def _load_ledger(env: dict[str, str]) -> Target:
    old = os.environ.get(LEDGER_IMAGE_ENV)
    if env.get(LEDGER_IMAGE_ENV):
        os.environ[LEDGER_IMAGE_ENV] = env[LEDGER_IMAGE_ENV]
    try:
        return load_target(str(ROOT / "examples/ledger/target.py"))
    finally:
        if old is None:
            os.environ.pop(LEDGER_IMAGE_ENV, None)
        else:
            os.environ[LEDGER_IMAGE_ENV] = old


def _unavailable(config: DockerConfig, ledger: Target) -> str | None:
    try:
        client = connect(timeout=5)
    except DockerUnavailable as exc:
        detail = exc.detail[:120]
        return f"docker tests need a Docker engine ({detail}); enable: start dockerd, {_ENABLE}"
    try:
        wanted = [config.postgres_image, config.proxy_image]
        wanted += sorted({r.image for r in ledger.releases if r.image})
        missing = [image for image, ok in image_status(client, wanted).items() if not ok]
    finally:
        client.close()
    if missing:
        return f"docker tests need the images {', '.join(missing)}; enable: {_ENABLE}"
    return None


@pytest.fixture(scope="session")
def ledger_target() -> Target:
    """The reference app, its releases pointing at the configured images."""
    return _load_ledger(images_env())


@pytest.fixture(scope="session")
def docker_config(ledger_target: Target) -> DockerConfig:
    """The images to use; skips (or fails, when required) without an engine or images."""
    env = images_env()
    config = DockerConfig.from_env(
        postgres_image=env.get(POSTGRES_IMAGE_ENV), proxy_image=env.get(PROXY_IMAGE_ENV)
    )
    reason = _unavailable(config, ledger_target)
    if reason is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return config


@pytest.fixture(scope="session")
def docker_backend(docker_config: DockerConfig) -> Iterator[DockerBackend]:
    """One docker backend for the session; at its end nothing with its run id may remain."""
    backend = DockerBackend(config=docker_config)
    run_id = backend.run_id
    with backend:
        yield backend
    client = connect()
    try:
        selector = {"label": f"{LABEL_RUN}={run_id}"}
        left = [c.name for c in client.containers.list(all=True, filters=selector)]
        left += [n.name for n in client.networks.list(filters=selector)]
    finally:
        client.close()
    assert left == [], f"the docker backend left {left} behind"
