"""``readable_by_running_release`` over real HTTP: a 503 ("not now") is retried and never
counted as a wrong read; any other error answer or a changed value is."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from harness.invariants.base import AppEndpoint, CheckContext, _Session
from harness.invariants.builtin import ReadableByRunningRelease, ReadBack
from harness.workload.history import History, OpType


class _Accounts(ThreadingHTTPServer):
    """Answers GET /accounts/<id> with ``currency`` after ``unavailable`` 503s per path."""

    def __init__(self, unavailable: int, status: int = 200, currency: str = "EUR") -> None:
        self.unavailable = unavailable
        self.status = status
        self.currency = currency
        self.asked: dict[str, int] = {}
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Accounts

    def do_GET(self) -> None:
        with self.server.lock:
            n = self.server.asked[self.path] = self.server.asked.get(self.path, 0) + 1
        if n <= self.server.unavailable:
            status, body = 503, {"error": "database unavailable"}
        else:
            account = int(self.path.rsplit("/", 1)[1])
            status, body = self.server.status, {"id": account, "currency": self.server.currency}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[_Accounts] = []

    def start(**kwargs: Any) -> _Accounts:
        server = _Accounts(**kwargs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _check(server: _Accounts) -> tuple[str, dict[str, Any]]:
    history = History()
    for account in range(1, 6):
        op = history.invoke(account, "open_account", {"id": account, "currency": "EUR"})
        history.complete(op, OpType.OK)
    ctx = CheckContext(
        _Session("postgresql://unused", history),
        apps=(AppEndpoint(0, "v2", f"http://127.0.0.1:{server.server_address[1]}"),),
    )
    check = ReadableByRunningRelease(
        (ReadBack("open_account", "/accounts/{id}", ("currency",)),), sample=5
    )
    verdict = check.check(ctx)
    return verdict.status.value, dict(verdict.evidence)


def test_a_503_that_clears_is_retried_and_the_reads_judged(serve: Any) -> None:
    server = serve(unavailable=2)
    status, evidence = _check(server)
    assert status == "valid", evidence
    assert (evidence["reads"], evidence["unavailable"], evidence["mismatches"]) == (5, 0, 0)
    assert set(server.asked.values()) == {3}


def test_an_instance_that_stays_unavailable_is_unknown_not_invalid(serve: Any) -> None:
    server = serve(unavailable=1000)
    status, evidence = _check(server)
    assert status == "unknown", evidence
    assert (evidence["unavailable"], evidence["unreadable"]) == (5, 0)
    # Retried until the first read gave up on the instance, then not waited on again.
    assert sum(server.asked.values()) < 5 * 3


def test_a_500_and_a_changed_value_are_invalid(serve: Any) -> None:
    status, evidence = _check(serve(unavailable=0, status=500))
    assert status == "invalid"
    assert evidence["unreadable"] == 5
    status, evidence = _check(serve(unavailable=0, currency="USD"))
    assert status == "invalid"
    assert evidence["by_field"] == {"currency": 5}
