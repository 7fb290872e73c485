"""The balancer over real sockets: small HTTP servers on 127.0.0.1 stand in for instances.

Rotation, drain (in-flight requests finish, nothing new is sent), admit only once healthy,
ejection the way a real balancer notices (a refused connection, failed health checks),
readmission, and panic routing when nothing is in rotation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness._wait import wait_for
from harness.workload.balancer import Balancer, MemberState


class _Handler(BaseHTTPRequestHandler):
    server: _Instance

    def log_message(self, *_args: object) -> None:
        return

    def do_GET(self) -> None:
        status = 200 if self.server.healthy else 503
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


class _Instance(ThreadingHTTPServer):
    daemon_threads = True
    healthy = True


@dataclass
class _Release:
    name: str
    health_path: str = "/healthz"


class _Endpoint:
    """What the balancer needs of an app instance, served by a real HTTP server."""

    def __init__(self, index: int, release: str) -> None:
        self.index = index
        self.release = _Release(release)
        self._server: _Instance | None = None
        self.port = 0
        self.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = _Instance(("127.0.0.1", self.port), _Handler)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def set_healthy(self, healthy: bool) -> None:
        assert self._server is not None
        self._server.healthy = healthy

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def endpoints() -> Iterator[list[_Endpoint]]:
    made = [_Endpoint(0, "v1"), _Endpoint(1, "v1")]
    try:
        yield made
    finally:
        for endpoint in made:
            endpoint.stop()


def test_round_robin_over_the_rotation(endpoints: list[_Endpoint]) -> None:
    with Balancer(endpoints, interval=0.05) as balancer:
        picks = [balancer.pick() for _ in range(6)]
    assert [p.index for p in picks if p is not None] == [0, 1, 0, 1, 0, 1]
    assert all(p is not None and p.release == "v1" and not p.panic for p in picks)


def test_drain_waits_for_in_flight_requests_and_sends_nothing_new(
    endpoints: list[_Endpoint],
) -> None:
    with Balancer(endpoints, interval=0.05) as balancer:
        pick = balancer.pick()
        assert pick is not None
        assert pick.index == 0
        release = threading.Event()
        in_flight = threading.Event()

        def request() -> None:
            with balancer.sending(pick):
                in_flight.set()
                release.wait(5)

        thread = threading.Thread(target=request)
        thread.start()
        assert in_flight.wait(5)
        drained: list[tuple[int, float]] = []
        drainer = threading.Thread(target=lambda: drained.append(balancer.drain(0, 5.0)))
        drainer.start()
        wait_for(lambda: balancer.state(0) is MemberState.DRAINING, what="drain", timeout=5)
        assert all(p is not None and p.index == 1 for p in (balancer.pick() for _ in range(4)))
        assert drainer.is_alive(), "the drain waits for the request in flight"
        release.set()
        drainer.join(5)
        thread.join(5)
        assert drained
        assert drained[0][0] == 1
        # A request picked before the drain started and not yet sent is refused (it goes
        # elsewhere): a drained instance never gets one.
        with balancer.sending(pick) as may_send:
            assert not may_send
        # Still out of rotation until admitted, even though it answers its health check.
        assert balancer.state(0) is MemberState.DRAINING
        assert balancer.admit(0, 5.0)
        assert balancer.state(0) is MemberState.IN


def test_admit_waits_for_a_passing_health_check(endpoints: list[_Endpoint]) -> None:
    with Balancer(endpoints, interval=0.05) as balancer:
        balancer.drain(1, 1.0)
        endpoints[1].set_healthy(False)
        assert not balancer.admit(1, 0.3), "an unhealthy instance is not admitted"
        assert balancer.state(1) is MemberState.OUT
        endpoints[1].set_healthy(True)
        wait_for(
            lambda: balancer.state(1) is MemberState.IN,
            what="the health checks to put the instance back",
            timeout=5,
        )


def test_a_refused_connection_ejects_and_health_checks_readmit(
    endpoints: list[_Endpoint],
) -> None:
    with Balancer(endpoints, interval=0.05) as balancer:
        endpoints[0].stop()  # killed: nothing listens any more
        pick = balancer.pick()
        assert pick is not None
        assert pick.index == 0
        balancer.report_failure(pick, "ConnectionRefusedError")
        assert balancer.state(0) is MemberState.OUT
        assert {p.index for p in balancer.rotation()} == {1}
        wait_for(
            lambda: "Connection refused" in (balancer.health_answers(0) or [""])[0],
            what="the failed health answer recorded",
            timeout=5,
        )
        endpoints[0].start()  # restarted on the same port
        wait_for(lambda: balancer.state(0) is MemberState.IN, what="readmission", timeout=5)


def test_failed_health_checks_eject_without_being_told(endpoints: list[_Endpoint]) -> None:
    with Balancer(endpoints, interval=0.05, fall=2) as balancer:
        endpoints[1].set_healthy(False)
        wait_for(lambda: balancer.state(1) is MemberState.OUT, what="ejection", timeout=5)
        assert balancer.health_answers(1)[0].startswith("503")
        snapshot = balancer.snapshot()
        assert snapshot["1"]["state"] == "out"  # type: ignore[index]


def test_panic_routing_when_nothing_is_in_rotation(endpoints: list[_Endpoint]) -> None:
    with Balancer(endpoints, interval=0.05) as balancer:
        for endpoint in endpoints:
            endpoint.set_healthy(False)
        wait_for(lambda: not balancer.rotation(), what="every instance ejected", timeout=5)
        picks = [balancer.pick() for _ in range(4)]
        assert all(p is not None and p.panic for p in picks), "panic: send to all"
        assert {p.index for p in picks if p is not None} == {0, 1}
        for index in (0, 1):
            balancer.drain(index, 1.0)
        assert balancer.pick() is None, "every instance draining: nowhere to send"
        assert balancer.pick(prefer=0, release="v1") is None
