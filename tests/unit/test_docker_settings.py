"""Docker backend settings and the reaper's rule, without an engine."""

from __future__ import annotations

import os
import socket

import pytest

from harness.backends import BackendName, choose_backend, open_backend
from harness.backends import docker as docker_backend
from harness.backends.docker import (
    DEFAULT_POSTGRES_IMAGE,
    DEFAULT_PROXY_IMAGE,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    POSTGRES_IMAGE_ENV,
    PROXY_IMAGE_ENV,
    REUSE_PREPARED_ENV,
    DockerConfig,
)
from harness.backends.docker.engine import _owner_dead
from harness.errors import ConfigError


def test_images_come_from_arguments_then_environment_then_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(POSTGRES_IMAGE_ENV, raising=False)
    monkeypatch.delenv(PROXY_IMAGE_ENV, raising=False)
    assert DockerConfig.from_env() == DockerConfig(DEFAULT_POSTGRES_IMAGE, DEFAULT_PROXY_IMAGE)
    monkeypatch.setenv(POSTGRES_IMAGE_ENV, "local/pg:15")
    monkeypatch.setenv(PROXY_IMAGE_ENV, "local/proxy:1")
    assert DockerConfig.from_env().settings() == {
        POSTGRES_IMAGE_ENV: "local/pg:15",
        PROXY_IMAGE_ENV: "local/proxy:1",
    }
    assert DockerConfig.from_env(postgres_image="x/pg:16").postgres_image == "x/pg:16"


@pytest.mark.parametrize(("value", "reuse"), [("on", True), ("1", True), ("OFF", False)])
def test_reusing_prepared_databases_is_a_switch(
    monkeypatch: pytest.MonkeyPatch, value: str, reuse: bool
) -> None:
    monkeypatch.setenv(REUSE_PREPARED_ENV, value)
    assert DockerConfig.from_env().reuse_prepared is reuse


def test_a_bad_reuse_switch_names_the_setting_and_what_it_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(REUSE_PREPARED_ENV, "sometimes")
    with pytest.raises(ConfigError) as info:
        DockerConfig.from_env()
    assert info.value.setting == REUSE_PREPARED_ENV
    assert info.value.value == "sometimes"
    assert "on or off" in str(info.value)


def _labels(pid: int, start: str, host: str | None = None) -> dict[str, str]:
    return {
        LABEL_OWNER_PID: str(pid),
        LABEL_OWNER_START: start,
        LABEL_OWNER_HOST: host or socket.gethostname(),
    }


def test_owner_rule_is_the_process_rule() -> None:
    from harness._runstate import process_start_time

    me = os.getpid()
    started = str(process_start_time(me))
    assert not _owner_dead(_labels(me, started)), "a live owner keeps its containers"
    assert _owner_dead(_labels(me, str(int(started) + 1))), "a reused pid is not the owner"
    assert _owner_dead(_labels(2**22 + 7, "1")), "a dead owner's containers are reaped"
    assert not _owner_dead(_labels(2**22 + 7, "1", host="another-host")), "not ours to judge"
    assert _owner_dead({LABEL_OWNER_HOST: socket.gethostname()}), "no owner pid: orphaned"


def test_auto_is_local_without_an_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_backend, "engine_version", lambda timeout=1.0: None)
    assert choose_backend("auto") is BackendName.LOCAL
    assert choose_backend("docker") is BackendName.DOCKER
    with pytest.raises(ConfigError, match="one of auto, local, docker"):
        open_backend("kubernetes")
