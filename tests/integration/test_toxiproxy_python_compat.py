"""toxiproxy-python 0.1.1 (import name ``toxiproxy``) drives the embedded server unchanged.

That client keeps the server address in class attributes (module-level state); the test
points it at the server under test and puts the old address back afterwards.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from harness.faults.network import ProxyInfo
from tests.integration._proxy_fixtures import (
    ProxyTarget,
    TcpServer,
    connect,
    echo_server,
    read_to_end,
    refused,
    round_trip,
    target,
)

__all__ = ["echo_server", "target"]  # fixtures

toxiproxy = pytest.importorskip("toxiproxy")
toxiproxy_api = pytest.importorskip("toxiproxy.api")

pytestmark = pytest.mark.integration


@pytest.fixture
def legacy(target: ProxyTarget) -> Iterator[Any]:
    """A ``toxiproxy.Toxiproxy`` pointed at the server under test."""
    consumer = toxiproxy_api.APIConsumer
    saved = (consumer.host, consumer.port)
    parts = urlsplit(target.url)
    server = toxiproxy.Toxiproxy()
    server.update_api_consumer(parts.hostname, parts.port)
    try:
        yield server
    finally:
        consumer.host, consumer.port = saved


def _info(proxy: Any) -> ProxyInfo:
    listen = str(proxy.listen)
    return ProxyInfo(str(proxy.name), listen, str(proxy.upstream), True)


def test_create_toxics_disable_destroy(
    legacy: Any, target: ProxyTarget, echo_server: TcpServer
) -> None:
    server = legacy
    assert server.running()
    assert b"version" in server.version()
    proxy = server.create(upstream=echo_server.address, name="legacy_compat", listen="127.0.0.1:0")
    try:
        assert proxy.name == "legacy_compat"
        assert proxy.listen.startswith("127.0.0.1:")
        assert "legacy_compat" in server.proxies()
        info = _info(proxy)
        sock = connect(info)
        assert round_trip(sock) < 0.05

        proxy.add_toxic(type="latency", attributes={"latency": 100})
        proxy.add_toxic(
            type="limit_data", stream="upstream", name="cap", attributes={"bytes": 1_000_000}
        )
        toxics = proxy.toxics()
        assert set(toxics) == {"latency_downstream", "cap"}
        assert toxics["latency_downstream"].attributes == {"latency": 100, "jitter": 0}
        assert toxics["cap"].stream == "upstream"
        assert proxy.get_toxic("cap").toxicity == 1
        assert abs(round_trip(sock) - 0.100) <= 0.015

        assert proxy.destroy_toxic("latency_downstream")
        assert round_trip(sock) < 0.05
        assert set(proxy.toxics()) == {"cap"}

        with proxy.down():
            assert read_to_end(sock, 2).how in ("eof", "reset")
            assert refused(info)
            assert server.get_proxy("legacy_compat").enabled is False
        round_trip(connect(info))
        assert server.get_proxy("legacy_compat").enabled is True

        assert server.reset()
        assert proxy.toxics() == {}
    finally:
        server.destroy(server.get_proxy("legacy_compat"))
    assert "legacy_compat" not in server.proxies()
    assert refused(info)


def test_errors_map_to_its_exceptions(legacy: Any, echo_server: TcpServer) -> None:
    server = legacy
    proxy = server.create(upstream=echo_server.address, name="legacy_errors")
    try:
        with pytest.raises(toxiproxy.api.ProxyExists):
            server.create(upstream=echo_server.address, name="legacy_errors")
        with pytest.raises(toxiproxy.api.InvalidToxic):
            proxy.add_toxic(type="nonsense")
        with pytest.raises(toxiproxy.api.NotFound):
            proxy.destroy_toxic("ghost")
    finally:
        proxy.destroy()


def test_populate_and_destroy_all(legacy: Any, echo_server: TcpServer) -> None:
    server = legacy
    created = server.populate(
        [
            {"name": "legacy_pop1", "upstream": echo_server.address, "listen": "127.0.0.1:0"},
            {"name": "legacy_pop2", "upstream": echo_server.address, "listen": "127.0.0.1:0"},
        ]
    )
    assert sorted(p.name for p in created) == ["legacy_pop1", "legacy_pop2"]
    for proxy in created:
        with socket.create_connection(
            (proxy.listen.rsplit(":", 1)[0], int(proxy.listen.rsplit(":", 1)[1])), timeout=2
        ) as sock:
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"
    server.destroy_all()
    assert not {"legacy_pop1", "legacy_pop2"} & set(server.proxies())
