"""Random requests at the embedded server's API; afterwards it must still proxy.

Bounded (a few hundred examples, no deadline) so it runs in seconds. Hypothesis prints the
falsifying example and its seed on failure; ``--hypothesis-seed`` replays it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration._proxy_fixtures import (
    ProxyTarget,
    TcpServer,
    connect,
    echo,
    round_trip,
    target,
)

__all__ = ["target"]  # fixture

pytestmark = pytest.mark.integration

_FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_NAMES = ["fz_a", "fz_b", "fz_c"]
_TOXICS = [
    "latency",
    "bandwidth",
    "slow_close",
    "timeout",
    "reset_peer",
    "slicer",
    "limit_data",
    "noop",
    "bogus",
    "",
]
_ATTRS = [
    "latency",
    "jitter",
    "rate",
    "delay",
    "timeout",
    "average_size",
    "size_variation",
    "bytes",
    "other",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
numbers = st.one_of(
    st.integers(-5, 2000),
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=False),
    st.text(max_size=3),
    st.none(),
    st.booleans(),
)
toxic_bodies = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(_TOXICS) | json_values,
        "name": st.sampled_from(["t1", "t2", ""]) | json_values,
        "stream": st.sampled_from(["upstream", "downstream", "UPSTREAM", "side"]) | json_values,
        "toxicity": st.floats(-1, 2) | json_values,
        "attributes": st.dictionaries(st.sampled_from(_ATTRS), numbers, max_size=4) | json_values,
    },
)
proxy_bodies = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(_NAMES) | json_values,
        "upstream": st.sampled_from(["127.0.0.1:1", "localhost:9", "nohost", ""]) | json_values,
        # only loopback or unusable listen addresses: the fuzzer must not open real ports
        "listen": st.sampled_from(
            ["127.0.0.1:0", "localhost:0", "", "bad", "127.0.0.1:99999", "[::1]:0", "x:y"]
        ),
        "enabled": st.booleans() | json_values,
    },
)
bodies = st.one_of(
    toxic_bodies.map(json.dumps),
    proxy_bodies.map(json.dumps),
    st.lists(proxy_bodies, max_size=3).map(json.dumps),
    json_values.map(json.dumps),
    st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
    st.just(""),
)
segments = st.sampled_from(
    ["proxies", "toxics", "reset", "populate", "version", *_NAMES, "t1", "t2", "%2F", ".."]
) | st.text(min_size=1, max_size=6).map(lambda t: quote(t, safe=""))
paths = st.lists(segments, max_size=5).map(lambda parts: "/" + "/".join(parts))
methods = st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS"])

_STATUSES = {200, 201, 204, 400, 403, 404, 405, 409, 500}


@pytest.fixture(scope="module")
def fuzz_target(target: ProxyTarget) -> Iterator[ProxyTarget]:
    if not target.embedded:
        pytest.skip("fuzzing a real Toxiproxy can crash it (that is the point of the guards)")
    yield target
    for name in target.client.list_proxies():
        target.client.delete_proxy(name)


@_FUZZ_SETTINGS
@given(method=methods, path=paths, body=bodies, browser=st.booleans())
def test_random_requests_get_documented_answers(
    fuzz_target: ProxyTarget, method: str, path: str, body: str, browser: bool
) -> None:
    headers = {"User-Agent": "Mozilla/5.0" if browser else "fuzz"}
    status, _headers, raw = fuzz_target.raw(method, path, body, headers)
    assert status in _STATUSES, (status, raw)
    if browser:
        assert status == 403
    if status >= 400 and raw.startswith(b"{"):
        answer = json.loads(raw)
        assert set(answer) >= {"error", "status"}
        assert answer["status"] == status
    if status == 500:
        assert b"listen" in raw or b"address" in raw, raw  # only bind/resolve failures


@_FUZZ_SETTINGS
@given(junk=st.binary(min_size=1, max_size=300))
def test_raw_junk_never_kills_the_api(fuzz_target: ProxyTarget, junk: bytes) -> None:
    parts = urlsplit(fuzz_target.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(junk + b"\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass


def test_still_proxies_after_fuzzing(fuzz_target: ProxyTarget) -> None:
    # test order is file order: this runs after the two fuzz tests above
    assert fuzz_target.client.version()
    server = TcpServer(echo)
    try:
        proxy = fuzz_target.client.create_proxy("after_fuzz", server.address)
        sock = connect(proxy)
        for _ in range(3):
            round_trip(sock, b"still alive")
        fuzz_target.client.delete_proxy("after_fuzz")
    finally:
        server.close()
    log = fuzz_target.log_tail()
    assert "Traceback" not in log, log[-4000:]
    assert "internal error" not in log
