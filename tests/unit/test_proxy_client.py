"""The Toxiproxy client's values and errors (no server needed)."""

from __future__ import annotations

import socket

import pytest

from harness.errors import ConfigError, ProxyApiError
from harness.faults.network import ProxyInfo, Stream, ToxicSpec, ToxicType, ToxiproxyClient


def test_spec_names() -> None:
    assert ToxicSpec.latency(800).name == "latency(800ms,downstream)"
    assert ToxicSpec.latency(800, 50, stream=Stream.UPSTREAM).name == (
        "latency(800ms+-50ms,upstream)"
    )
    assert ToxicSpec.bandwidth(100, toxicity=0.5).name == "bandwidth(100KB/s,downstream,p=0.5)"
    assert ToxicSpec.slicer(64, 8, 10).name == "slicer(64B+-8B/10us,downstream)"
    assert ToxicSpec.limit_data(1024).name == "limit_data(1024B,downstream)"
    assert ToxicSpec.timeout(0).name == "timeout(0ms,downstream)"
    assert ToxicSpec.noop().name == "noop(downstream)"
    assert ToxicSpec.reset_peer().default_name == "reset_peer_downstream"


def test_spec_is_a_frozen_hashable_value() -> None:
    spec = ToxicSpec.of("latency", "upstream", latency=5)
    assert spec == ToxicSpec.latency(5, stream=Stream.UPSTREAM)
    assert spec.attributes == (("latency", 5), ("jitter", 0))
    assert {spec: 1}[ToxicSpec.latency(5, stream=Stream.UPSTREAM)] == 1
    with pytest.raises(AttributeError):
        spec.toxicity = 0.5  # type: ignore[misc]
    assert spec.to_json() == {
        "name": "latency_upstream",
        "type": "latency",
        "stream": "upstream",
        "toxicity": 1.0,
        "attributes": {"latency": 5, "jitter": 0},
    }


@pytest.mark.parametrize(
    "build",
    [
        lambda: ToxicSpec.latency(-1),
        lambda: ToxicSpec.bandwidth(1, toxicity=1.5),
        lambda: ToxicSpec.slicer(0),
        lambda: ToxicSpec.of("nope"),
        lambda: ToxicSpec.of("latency", "sideways"),
        lambda: ToxicSpec.of("latency", rate=5),
        lambda: ToxicSpec(ToxicType.LATENCY, attributes=(("latency", 1.5),)),  # type: ignore[arg-type]
    ],
)
def test_spec_validation(build: object) -> None:
    with pytest.raises(ConfigError):
        build()  # type: ignore[operator]


def test_client_config_checked() -> None:
    with pytest.raises(ConfigError):
        ToxiproxyClient("ftp://x")
    with pytest.raises(ConfigError):
        ToxiproxyClient("http://127.0.0.1:8474", timeout=0)
    assert ToxiproxyClient("http://127.0.0.1:8474/").api_url == "http://127.0.0.1:8474"


def test_no_answer_is_a_proxy_api_error_naming_proxy_and_toxic() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ToxiproxyClient(f"http://127.0.0.1:{port}", timeout=1)
    with pytest.raises(ProxyApiError) as info:
        client.remove_toxic("db", "lat")
    assert (info.value.proxy, info.value.toxic, info.value.status) == ("db", "lat", None)
    assert "remove toxic" in str(info.value)
    assert "'db'" in str(info.value)


def test_proxy_info_address() -> None:
    info = ProxyInfo("p", "[::1]:5432", "h:1", True)
    assert (info.listen_host, info.listen_port) == ("::1", 5432)
