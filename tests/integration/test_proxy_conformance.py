"""Every behaviour of ../shared/TOXIPROXY.md, over real sockets.

Runs against the embedded server (its own process) by default, or a real Toxiproxy when
DEPLOY_CHAOS_TOXIPROXY_URL is set. Timing tolerances: latency +/-15 ms at 100 ms,
bandwidth within 20% of the rate.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable

import pytest

from harness.errors import ProxyApiError
from harness.faults.network import ProxyInfo, Stream, ToxicSpec, ToxicType
from tests.integration._proxy_fixtures import (
    ProxyTarget,
    TcpServer,
    closed_port,
    connect,
    echo_server,
    embedded,
    proxies,
    read_to_end,
    recv_exactly,
    refused,
    round_trip,
    server_factory,
    target,
)

__all__ = ["echo_server", "embedded", "proxies", "server_factory", "target"]  # fixtures

pytestmark = pytest.mark.integration

Make = Callable[..., ProxyInfo]
ServerFactory = Callable[[Callable[[socket.socket], None]], TcpServer]


def _add(target: ProxyTarget, proxy: str, body: dict[str, object]) -> dict[str, object]:
    status, answer = target.json("POST", f"/proxies/{proxy}/toxics", body)
    assert status == 200, answer
    assert isinstance(answer, dict)
    return answer


# --- server-level API ----------------------------------------------------------------------


def test_version_and_request_id(target: ProxyTarget) -> None:
    status, headers, body = target.raw("GET", "/version")
    assert status == 200
    assert headers.get("x-toxiproxy-request-id")
    assert isinstance(target.client.version(), str)
    assert b'"version"' in body


def test_request_id_on_every_response(target: ProxyTarget) -> None:
    answers = [
        target.raw("GET", "/proxies"),
        target.raw("GET", "/proxies/nope"),
        target.raw("POST", "/proxies", "{"),
        target.raw("GET", "/version", headers={"User-Agent": "Mozilla/5.0"}),
    ]
    if target.embedded:  # gorilla/mux runs middleware only on matched routes
        answers += [target.raw("GET", "/nothing/here"), target.raw("PUT", "/version")]
    for status, headers, _body in answers:
        assert headers.get("x-toxiproxy-request-id"), status


def test_browser_user_agent_forbidden(target: ProxyTarget) -> None:
    status, _h, _b = target.raw("GET", "/proxies", headers={"User-Agent": "Mozilla/5.0 (X11)"})
    assert status == 403
    status, _h, _b = target.raw("GET", "/proxies", headers={"User-Agent": "curl/8"})
    assert status == 200


def test_unknown_path_404_wrong_method_405(target: ProxyTarget) -> None:
    assert target.raw("GET", "/nothing")[0] == 404
    assert target.raw("GET", "/proxies/a/toxics/b/c")[0] == 404
    assert target.raw("PUT", "/proxies")[0] == 405
    assert target.raw("DELETE", "/version")[0] == 405
    assert target.raw("GET", "/reset")[0] == 405


def test_proxies_index_empty_then_listed(target: ProxyTarget, proxies: Make) -> None:
    status, answer = target.json("GET", "/proxies")
    assert status == 200
    assert answer == {}
    proxy = proxies(closed_port())
    listed = target.client.list_proxies()
    assert list(listed) == [proxy.name]
    assert listed[proxy.name] == proxy


# --- proxies -------------------------------------------------------------------------------


def test_create_shows_bound_address(target: ProxyTarget, proxies: Make) -> None:
    status, answer = target.json(
        "POST", "/proxies", {"name": "bound_a", "upstream": closed_port(), "listen": "localhost:0"}
    )
    try:
        assert status == 201
        assert isinstance(answer, dict)
        assert set(answer) == {"name", "listen", "upstream", "enabled", "toxics"}
        host, port = str(answer["listen"]).rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) > 0
        assert answer["enabled"] is True
        assert answer["toxics"] == []
    finally:
        target.client.delete_proxy("bound_a")


def test_disabled_proxy_shows_listen_as_given(target: ProxyTarget, proxies: Make) -> None:
    proxy = proxies(closed_port(), listen="localhost:0", enabled=False)
    assert proxy.listen == "localhost:0"
    assert proxy.enabled is False
    enabled = target.client.enable(proxy.name)
    assert enabled.listen.startswith("127.0.0.1:")
    assert enabled.listen_port > 0


def test_create_errors(target: ProxyTarget, proxies: Make) -> None:
    proxy = proxies(closed_port())
    cases: list[tuple[object, int, str]] = [
        ({"name": proxy.name, "upstream": closed_port()}, 409, "proxy already exists"),
        ({"upstream": closed_port()}, 400, "missing required field: name"),
        ({"name": "x_missing"}, 400, "missing required field: upstream"),
        ({"name": "", "upstream": "a:1"}, 400, "missing required field: name"),
    ]
    for body, status, message in cases:
        got, answer = target.json("POST", "/proxies", body)
        assert (got, answer) == (status, {"error": message, "status": status})
    for raw in ("{", "", "[1, 2]", '{"name": 5, "upstream": "a:1"}', '{"enabled": "yes"}'):
        got, _headers, body_bytes = target.raw("POST", "/proxies", raw)
        assert got == 400, raw
        assert b"bad request body" in body_bytes


def test_bind_failure_is_500_and_not_added(target: ProxyTarget, proxies: Make) -> None:
    holder = proxies(closed_port())
    status, answer = target.json(
        "POST", "/proxies", {"name": "taken_port", "upstream": "a:1", "listen": holder.listen}
    )
    assert status == 500
    assert isinstance(answer, dict)
    assert answer["status"] == 500
    assert "address already in use" in str(answer["error"])
    assert "taken_port" not in target.client.list_proxies()


def test_get_and_delete(target: ProxyTarget, proxies: Make, echo_server: TcpServer) -> None:
    proxy = proxies(echo_server.address)
    assert target.client.get_proxy(proxy.name) == proxy
    assert target.json("GET", "/proxies/nope") == (404, {"error": "proxy not found", "status": 404})
    sock = connect(proxy)
    round_trip(sock)
    status, _headers, body = target.raw("DELETE", f"/proxies/{proxy.name}")
    assert (status, body) == (204, b"")
    assert read_to_end(sock, 2).how in ("eof", "reset")
    assert refused(proxy)
    assert target.raw("DELETE", f"/proxies/{proxy.name}")[0] == 404
    assert target.raw("GET", f"/proxies/{proxy.name}")[0] == 404


def test_update_keeps_omitted_fields(
    target: ProxyTarget, proxies: Make, echo_server: TcpServer
) -> None:
    proxy = proxies(echo_server.address)
    for method in ("POST", "PATCH"):
        status, answer = target.json(method, f"/proxies/{proxy.name}", {"name": "renamed"})
        assert status == 200
        assert isinstance(answer, dict)
        assert answer["name"] == proxy.name
        assert answer["listen"] == proxy.listen
        assert answer["upstream"] == proxy.upstream
        assert answer["enabled"] is True
    assert target.json("PATCH", "/proxies/nope", {})[0] == 404
    assert target.raw("PATCH", f"/proxies/{proxy.name}", "{bad")[0] == 400


def test_disable_closes_everything_enable_reopens_toxics_survive(
    target: ProxyTarget, proxies: Make, echo_server: TcpServer
) -> None:
    proxy = proxies(echo_server.address)
    target.client.add_toxic(proxy.name, ToxicSpec.noop())
    socks = [connect(proxy) for _ in range(3)]
    for sock in socks:
        round_trip(sock)
    disabled = target.client.disable(proxy.name)
    assert disabled.enabled is False
    for sock in socks:
        assert read_to_end(sock, 2).how in ("eof", "reset")
    assert refused(proxy)
    enabled = target.client.enable(proxy.name)
    assert [t.name for t in enabled.toxics] == ["noop_downstream"]
    round_trip(connect(enabled))


def test_changed_upstream_restarts_and_drops_connections(
    target: ProxyTarget, proxies: Make, server_factory: ServerFactory
) -> None:
    first = server_factory(lambda conn: conn.sendall(b"first") or conn.recv(10))
    second = server_factory(lambda conn: conn.sendall(b"second") or conn.recv(10))
    proxy = proxies(first.address, listen="127.0.0.1:0")
    sock = connect(proxy)
    assert recv_exactly(sock, 5) == b"first"
    updated = target.client.update_proxy(proxy.name, upstream=second.address)
    assert updated.upstream == second.address
    assert updated.enabled is True
    assert read_to_end(sock, 2).how in ("eof", "reset")
    again = connect(updated)
    assert recv_exactly(again, 6) == b"second"


def test_reset_enables_all_removes_toxics_keeps_proxies(target: ProxyTarget, proxies: Make) -> None:
    one = proxies(closed_port())
    two = proxies(closed_port(), enabled=False)
    target.client.add_toxic(one.name, ToxicSpec.latency(10))
    target.client.add_toxic(two.name, ToxicSpec.latency(10, stream=Stream.UPSTREAM))
    status, _headers, body = target.raw("POST", "/reset")
    assert (status, body) == (204, b"")
    listed = target.client.list_proxies()
    assert {one.name, two.name} <= set(listed)
    assert listed[one.name].enabled
    assert listed[two.name].enabled
    assert listed[one.name].toxics == ()
    assert listed[two.name].toxics == ()


def _free_listen() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_populate(target: ProxyTarget, proxies: Make) -> None:
    keep_listen, replace_listen = _free_listen(), _free_listen()
    upstream = closed_port()
    untouched = proxies(closed_port())
    kept = proxies(upstream, listen=keep_listen)
    replaced = proxies(upstream, listen=replace_listen)
    target.client.add_toxic(kept.name, ToxicSpec.latency(5))
    target.client.add_toxic(replaced.name, ToxicSpec.latency(5))
    target.client.disable(kept.name)
    # a disabled proxy shows listen as given, which here is the same address
    body = [
        {"name": kept.name, "upstream": upstream, "listen": keep_listen},
        {"name": replaced.name, "upstream": closed_port(), "listen": replace_listen},
        {"name": f"{untouched.name}_new", "upstream": upstream, "listen": "127.0.0.1:0"},
    ]
    status, answer = target.json("POST", "/populate", body)
    try:
        assert status == 201, answer
        assert isinstance(answer, dict)
        names = [p["name"] for p in answer["proxies"]]
        assert names == [kept.name, replaced.name, f"{untouched.name}_new"]
        listed = target.client.list_proxies()
        assert listed[kept.name].enabled is False  # kept as is
        assert len(listed[kept.name].toxics) == 1
        assert listed[replaced.name].toxics == ()  # replaced: a new proxy
        assert listed[replaced.name].upstream != upstream
        assert listed[untouched.name] == untouched
    finally:
        if f"{untouched.name}_new" in target.client.list_proxies():
            target.client.delete_proxy(f"{untouched.name}_new")


def test_populate_validates_everything_first(target: ProxyTarget) -> None:
    body = [{"name": "pop_ok", "upstream": "a:1"}, {"upstream": "a:1"}]
    status, answer = target.json("POST", "/populate", body)
    assert status == 400
    assert isinstance(answer, dict)
    assert answer["error"] == "missing required field: name at proxy 2"
    assert "pop_ok" not in target.client.list_proxies()
    assert target.raw("POST", "/populate", "{}")[0] == 400
    assert target.raw("POST", "/populate", "nope")[0] == 400


# --- toxics API ----------------------------------------------------------------------------


def test_toxic_defaults_and_listing_order(target: ProxyTarget, proxies: Make) -> None:
    proxy = proxies(closed_port())
    answer = _add(target, proxy.name, {"type": "latency"})
    assert answer == {
        "attributes": {"latency": 0, "jitter": 0},
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1,
    }
    _add(
        target,
        proxy.name,
        {"type": "slicer", "stream": "upstream", "name": "u1", "attributes": {"average_size": 10}},
    )
    _add(target, proxy.name, {"type": "noop", "name": "d2"})
    _add(
        target,
        proxy.name,
        {
            "type": "bandwidth",
            "stream": "upstream",
            "name": "u2",
            "attributes": {"rate": 5, "unknown": 7},
            "toxicity": 0.5,
        },
    )
    status, listed = target.json("GET", f"/proxies/{proxy.name}/toxics")
    assert status == 200
    assert isinstance(listed, list)
    assert [t["name"] for t in listed] == ["u1", "u2", "latency_downstream", "d2"]
    assert listed[1]["attributes"] == {"rate": 5}
    assert listed[1]["toxicity"] == 0.5
    assert [t.name for t in target.client.get_proxy(proxy.name).toxics] == [
        "u1",
        "u2",
        "latency_downstream",
        "d2",
    ]


def test_toxic_errors(target: ProxyTarget, proxies: Make) -> None:
    proxy = proxies(closed_port())
    path = f"/proxies/{proxy.name}/toxics"
    _add(target, proxy.name, {"type": "latency", "name": "dup", "stream": "upstream"})
    cases: list[tuple[object, int, str]] = [
        ({"type": "latency", "name": "dup"}, 409, "toxic already exists"),
        (
            {"type": "latency", "stream": "sideways"},
            400,
            "stream was invalid, can be either upstream or downstream",
        ),
        ({"type": "nope"}, 400, "invalid toxic type"),
        ({}, 400, "invalid toxic type"),
    ]
    for body, status, message in cases:
        assert target.json("POST", path, body) == (status, {"error": message, "status": status})
    for raw in (
        "{",
        '{"type": "latency", "attributes": {"latency": "slow"}}',
        '{"type": "latency", "toxicity": "high"}',
        '{"type": 3}',
        "[]",
        '{"type": "latency", "name": "f", "attributes": {"latency": 1.5}}',
    ):
        status, _h, body = target.raw("POST", path, raw)
        assert status == 400, raw
        assert b"bad request body" in body, raw
    assert target.json("POST", "/proxies/nope/toxics", {"type": "noop"})[0] == 404
    assert target.json("GET", f"{path}/missing") == (
        404,
        {"error": "toxic not found", "status": 404},
    )
    assert target.json("PATCH", f"{path}/missing", {}) == (
        404,
        {"error": "toxic not found", "status": 404},
    )
    assert target.raw("DELETE", f"{path}/missing")[0] == 404


def test_toxic_update_is_partial(target: ProxyTarget, proxies: Make) -> None:
    proxy = proxies(closed_port())
    path = f"/proxies/{proxy.name}/toxics/lat"
    _add(
        target,
        proxy.name,
        {
            "type": "latency",
            "name": "lat",
            "toxicity": 0.25,
            "attributes": {"latency": 100, "jitter": 10},
        },
    )
    for method in ("POST", "PATCH"):
        status, answer = target.json(method, path, {"attributes": {"jitter": 3}})
        assert status == 200
        assert answer == {
            "attributes": {"latency": 100, "jitter": 3},
            "name": "lat",
            "type": "latency",
            "stream": "downstream",
            "toxicity": 0.25,
        }
    status, answer = target.json(
        "PATCH", path, {"toxicity": 1, "name": "x", "type": "noop", "stream": "upstream"}
    )
    assert status == 200
    assert isinstance(answer, dict)
    assert (answer["name"], answer["type"], answer["stream"], answer["toxicity"]) == (
        "lat",
        "latency",
        "downstream",
        1,
    )
    assert target.json("GET", path)[1] == answer
    assert target.raw("PATCH", path, '{"attributes": {"latency": "x"}}')[0] == 400
    assert target.raw("DELETE", path)[:1] == (204,)
    assert target.raw("GET", path)[0] == 404


def test_bad_sizes_are_refused(embedded: ProxyTarget, proxies: Make) -> None:
    proxy = proxies(closed_port())
    path = f"/proxies/{proxy.name}/toxics"
    bad = [
        {"type": "slicer"},
        {"type": "slicer", "attributes": {"average_size": 0, "size_variation": 0}},
        {"type": "latency", "attributes": {"latency": -1}},
        {"type": "bandwidth", "attributes": {"rate": -5}},
        {"type": "limit_data", "attributes": {"bytes": -1}},
        {"type": "slicer", "attributes": {"average_size": 10, "size_variation": -3}},
        {"type": "timeout", "attributes": {"timeout": 2**70}},
    ]
    for body in bad:
        status, answer = embedded.json("POST", path, body)
        assert status == 400, body
        assert isinstance(answer, dict)
        assert str(answer["error"]).startswith("bad request body: "), answer
    _add(embedded, proxy.name, {"type": "slicer", "name": "s", "attributes": {"average_size": 10}})
    status, _ = embedded.json("PATCH", f"{path}/s", {"attributes": {"average_size": 0}})
    assert status == 400
    assert embedded.client.get_toxic(proxy.name, "s").spec.attr("average_size") == 10


# --- connections ---------------------------------------------------------------------------


def test_upstream_dial_failure_closes_client(target: ProxyTarget, proxies: Make) -> None:
    proxy = proxies(closed_port())
    sock = connect(proxy)
    ending = read_to_end(sock, 3)
    assert ending.how in ("eof", "reset")
    assert ending.after < 1.0


def test_upstream_eof_closes_client(
    target: ProxyTarget, proxies: Make, server_factory: ServerFactory
) -> None:
    server = server_factory(lambda conn: conn.sendall(b"bye"))
    proxy = proxies(server.address)
    ending = read_to_end(connect(proxy), 3)
    assert (ending.data, ending.how) == (b"bye", "eof")


def test_client_eof_closes_upstream(
    target: ProxyTarget, proxies: Make, server_factory: ServerFactory
) -> None:
    seen: list[bytes] = []
    done = threading.Event()

    def sink(conn: socket.socket) -> None:
        while data := conn.recv(65536):
            seen.append(data)
        done.set()

    proxy = proxies(server_factory(sink).address)
    sock = connect(proxy)
    sock.sendall(b"last words")
    sock.shutdown(socket.SHUT_WR)
    assert done.wait(3)
    assert b"".join(seen) == b"last words"


def test_echo_through_proxy_keeps_every_byte(
    target: ProxyTarget, proxies: Make, echo_server: TcpServer
) -> None:
    rng = random.Random(target.seed)
    proxy = proxies(echo_server.address)
    payload = rng.randbytes(3_000_000)
    sock = connect(proxy)
    sender = threading.Thread(target=sock.sendall, args=(payload,))
    sender.start()
    assert recv_exactly(sock, len(payload), 20) == payload
    sender.join()


def test_live_toxic_changes_keep_bytes_and_order(
    target: ProxyTarget, proxies: Make, echo_server: TcpServer
) -> None:
    rng = random.Random(target.seed)
    proxy = proxies(echo_server.address)
    sock = connect(proxy)
    payload = rng.randbytes(400_000)
    received = bytearray()
    done = threading.Event()

    def reader() -> None:
        while len(received) < len(payload):
            sock.settimeout(20)
            data = sock.recv(65536)
            if not data:
                break
            received.extend(data)
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    client = target.client
    up, down = Stream.UPSTREAM, Stream.DOWNSTREAM
    for offset in range(0, len(payload), 4000):
        sock.sendall(payload[offset : offset + 4000])
        step = offset // 4000
        if step == 5:
            client.add_toxic(proxy.name, ToxicSpec.latency(20, 5, stream=down), name="lat")
        elif step == 15:
            client.add_toxic(proxy.name, ToxicSpec.slicer(100, 50, 10, stream=up), name="sl")
        elif step == 25:
            client.update_toxic(proxy.name, "lat", attributes={"latency": 1})
        elif step == 35:
            client.add_toxic(proxy.name, ToxicSpec.bandwidth(2000, stream=down), name="bw")
        elif step == 50:
            client.remove_toxic(proxy.name, "lat")
        elif step == 60:
            client.update_toxic(proxy.name, "sl", attributes={"average_size": 3000})
        elif step == 70:
            client.remove_toxic(proxy.name, "bw")
        elif step == 85:
            client.remove_toxic(proxy.name, "sl")
    assert done.wait(30)
    assert bytes(received) == payload


# --- toxics on the wire --------------------------------------------------------------------


def test_latency_100ms_each_direction(
    target: ProxyTarget, proxies: Make, echo_server: TcpServer
) -> None:
    proxy = proxies(echo_server.address)
    sock = connect(proxy)
    baseline = min(round_trip(sock) for _ in range(3))
    for stream in (Stream.DOWNSTREAM, Stream.UPSTREAM):
        with target.client.toxic(proxy.name, ToxicSpec.latency(100, stream=stream)):
            for _ in range(3):
                added = round_trip(sock) - baseline
                assert abs(added - 0.100) <= 0.015, (stream, added)
    assert round_trip(sock) < 0.05


def test_two_latency_toxics_add(target: ProxyTarget, proxies: Make, echo_server: TcpServer) -> None:
    proxy = proxies(echo_server.address)
    target.client.add_toxic(proxy.name, ToxicSpec.latency(50), name="a")
    target.client.add_toxic(proxy.name, ToxicSpec.latency(50), name="b")
    sock = connect(proxy)
    assert abs(round_trip(sock) - 0.100) <= 0.015


def test_latency_does_not_accumulate_along_the_stream(
    target: ProxyTarget, proxies: Make, server_factory: ServerFactory
) -> None:
    def ticker(conn: socket.socket) -> None:
        for index in range(5):
            conn.sendall(bytes([index]))
            time.sleep(0.02)  # the upstream's own pacing, part of the scenario
        conn.recv(1)

    proxy = proxies(server_factory(ticker).address)
    target.client.add_toxic(proxy.name, ToxicSpec.latency(100))
    sock = connect(proxy)
    start = time.monotonic()
    arrivals = [(recv_exactly(sock, 1), time.monotonic() - start) for _ in range(5)]
    assert [data for data, _ in arrivals] == [bytes([i]) for i in range(5)]
    # chunk i is sent at ~20*i ms and arrives ~100 ms later: not 100*i ms
    assert arrivals[-1][1] < 0.100 + 4 * 0.020 + 0.06


def test_latency_jitter_bounds(target: ProxyTarget, proxies: Make, echo_server: TcpServer) -> None:
    proxy = proxies(echo_server.address)
    target.client.add_toxic(proxy.name, ToxicSpec.latency(60, 30))
    sock = connect(proxy)
    times = [round_trip(sock) for _ in range(8)]
    assert all(0.030 - 0.005 <= t <= 0.090 + 0.015 for t in times), times


def test_bandwidth_within_20_percent(
    target: ProxyTarget, proxies: Make, server_factory: ServerFactory
) -> None:
    size = 300_000
    rate_kb = 1000  # 1 MB/s: 300 kB in 0.3 s

    def source(conn: socket.socket) -> None:
        conn.sendall(b"x" * size)
        conn.recv(1)

    proxy = proxies(server_factory(source).address)
    target.client.add_toxic(proxy.name, ToxicSpec.bandwidth(rate_kb))
    sock = connect(proxy)
    start = time.monotonic()
    recv_exactly(sock, size, 10)
    elapsed = time.monotonic() - start
    rate = size / elapsed / 1000
    assert abs(rate - rate_kb) <= 0.2 * rate_kb, f"{rate:.0f} KB/s"


def test_bandwidth_zero_stalls_until_removed(
    target: ProxyTarget, proxies: Make, echo_server: TcpServer
) -> None:
    proxy = proxies(echo_server.address)
    target.client.add_toxic(proxy.name, ToxicSpec.bandwidth(0))
    sock = connect(proxy)
    sock.sendall(b"stuck")
    stalled = read_to_end(sock, 0.3)
    assert (stalled.data, stalled.how) == (b"", "open")
    target.client.remove_toxic(proxy.name, "bandwidth_downstream")
    assert recv_exactly(sock, 5) == b"stuck"


def test_slow_close_delays_the_close(
    target: ProxyTarget, proxies: Make, server_factory: ServerFactory
) -> None:
    proxy = proxies(server_factory(lambda conn: conn.sendall(b"data")).address)
    target.client.add_toxic(proxy.name, ToxicSpec.slow_close(300))
    sock = connect(proxy)
    start = time.monotonic()
    assert recv_exactly(sock, 4) == b"data"
    assert time.monotonic() - start < 0.2
    ending = read_to_end(sock, 3)
    assert ending.how == "eof"
    assert 0.25 <= time.monotonic() - start <= 0.6


def test_timeout_closes_after_timeout_and_drops_data(
    target: ProxyTarget, proxies: Make, echo_server: TcpServer
) -> None:
    proxy = proxies(echo_server.address)
    target.client.add_toxic(proxy.name, ToxicSpec.timeout(200))
    sock = connect(proxy)
    sock.sendall(b"hello")
    ending = read_to_end(sock, 3)
    assert ending.data == b""
    assert ending.how in ("eof", "reset")
    assert 0.15 <= ending.after <= 0.6


def test_timeout_zero_holds_until_removed_then_closes(
    target: ProxyTarget, proxies: Make, echo_server: TcpServer
) -> None:
    proxy = proxies(echo_server.address)
    target.client.add_toxic(proxy.name, ToxicSpec.timeout(0))
    sock = connect(proxy)
    sock.sendall(b"hello")
    assert read_to_end(sock, 0.3).how == "open"
    target.client.remove_toxic(proxy.name, "timeout_downstream")
    ending = read_to_end(sock, 3)
    assert ending.data == b""
    assert ending.how in ("eof", "reset")


def test_reset_peer_gives_econnreset(
    target: ProxyTarget, proxies: Make, echo_server: TcpServer
) -> None:
    proxy = proxies(echo_server.address)
    target.client.add_toxic(proxy.name, ToxicSpec.reset_peer(100, stream=Stream.UPSTREAM))
    sock = connect(proxy)
    start = time.monotonic()
    sock.sendall(b"hello")
    ending = read_to_end(sock, 3)
    assert ending.how == "reset"
    assert 0.08 <= time.monotonic() - start <= 0.5


def test_slicer_cuts_chunks_keeps_bytes(
    target: ProxyTarget, proxies: Make, server_factory: ServerFactory
) -> None:
    payload = bytes(range(256)) * 40  # 10 kB

    def source(conn: socket.socket) -> None:
        conn.sendall(payload)
        conn.recv(1)

    proxy = proxies(server_factory(source).address)
    target.client.add_toxic(proxy.name, ToxicSpec.slicer(100, 20, 2000))
    sock = connect(proxy)
    sizes: list[int] = []
    got = bytearray()
    while len(got) < len(payload):
        sock.settimeout(5)
        data = sock.recv(65536)
        assert data
        sizes.append(len(data))
        got.extend(data)
    assert bytes(got) == payload
    assert len(sizes) >= 40
    assert max(sizes) <= 2 * 120


def test_limit_data_truncates_and_closes(
    target: ProxyTarget, proxies: Make, echo_server: TcpServer
) -> None:
    proxy = proxies(echo_server.address)
    target.client.add_toxic(proxy.name, ToxicSpec.limit_data(10))
    sock = connect(proxy)
    sock.sendall(b"0123456")
    assert recv_exactly(sock, 7) == b"0123456"
    target.client.update_toxic(proxy.name, "limit_data_downstream", attributes={"bytes": 12})
    sock.sendall(b"789abcdefgh")  # the count (7) survived the update: 5 more pass
    ending = read_to_end(sock, 3)
    assert ending.data == b"789ab"
    assert ending.how in ("eof", "reset")


def test_limit_data_upstream_limits_what_the_server_gets(
    target: ProxyTarget, proxies: Make, server_factory: ServerFactory
) -> None:
    seen = bytearray()
    done = threading.Event()

    def sink(conn: socket.socket) -> None:
        while data := conn.recv(65536):
            seen.extend(data)
        done.set()

    proxy = proxies(server_factory(sink).address)
    target.client.add_toxic(proxy.name, ToxicSpec.limit_data(4, stream=Stream.UPSTREAM))
    sock = connect(proxy)
    sock.sendall(b"abcdefgh")
    assert done.wait(3)
    assert bytes(seen) == b"abcd"


def test_noop_passes(target: ProxyTarget, proxies: Make, echo_server: TcpServer) -> None:
    proxy = proxies(echo_server.address)
    target.client.add_toxic(proxy.name, ToxicSpec.noop(stream=Stream.UPSTREAM))
    target.client.add_toxic(proxy.name, ToxicSpec.noop())
    assert round_trip(connect(proxy), b"noop" * 1000) < 1


def _limited(proxy: ProxyInfo) -> bool:
    """Whether limit_data(1) applied to this new connection."""
    with connect(proxy) as sock:
        sock.sendall(b"hello")
        got = b""
        while len(got) < 5:
            sock.settimeout(3)
            data = sock.recv(5)
            if not data:
                break
            got += data
        assert got in (b"h", b"hello"), got
        return got == b"h"


def test_toxicity_decides_per_connection(
    target: ProxyTarget, proxies: Make, echo_server: TcpServer
) -> None:
    proxy = proxies(echo_server.address)
    for toxicity, low, high in ((0.0, 0, 0), (1.0, 40, 40), (0.5, 8, 32)):
        target.client.add_toxic(proxy.name, ToxicSpec.limit_data(1, toxicity=toxicity))
        hits = sum(_limited(proxy) for _ in range(40))
        assert low <= hits <= high, (toxicity, hits, f"seed {target.seed}")
        target.client.remove_toxic(proxy.name, "limit_data_downstream")


def test_client_errors_name_proxy_and_toxic(target: ProxyTarget, proxies: Make) -> None:
    proxy = proxies(closed_port())
    with pytest.raises(ProxyApiError) as info:
        target.client.remove_toxic(proxy.name, "ghost")
    assert (info.value.proxy, info.value.toxic, info.value.status) == (proxy.name, "ghost", 404)
    assert "toxic not found" in str(info.value)
    with pytest.raises(ProxyApiError) as info:
        target.client.add_toxic("no_such_proxy", ToxicSpec.latency(1))
    assert info.value.status == 404
    assert info.value.proxy == "no_such_proxy"
    spec = ToxicSpec.of(ToxicType.SLICER, "upstream", 0.5, average_size=5)
    added = target.client.add_toxic(proxy.name, spec)
    assert added.spec == spec


def test_server_logged_no_unexpected_error(target: ProxyTarget) -> None:
    # file order: runs after every test above; the server must not have hit a bug meanwhile
    log = target.log_tail()
    assert "Traceback" not in log, log[-4000:]
