"""Fixtures and socket helpers for the proxy tests (imported explicitly by those modules).

The proxy under test is the embedded server, started as its own process, unless
``DEPLOY_CHAOS_TOXIPROXY_URL`` names a real Toxiproxy API (e.g. ``http://127.0.0.1:8474``)
running on this host: then the same tests run against it. Upstream servers are the tests'
own, on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import itertools
import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from harness._wait import wait_for
from harness.faults.network import ProxyInfo, ToxiproxyClient
from harness.proxy import start_proxy_server

ENV_URL = "DEPLOY_CHAOS_TOXIPROXY_URL"
ENV_SEED = "DEPLOY_CHAOS_SEED"


@dataclass
class ProxyTarget:
    """The API under test: its URL, a client, whether it is the embedded server, the seed."""

    url: str
    client: ToxiproxyClient
    embedded: bool
    seed: int
    log_tail: Callable[[], str] = lambda: ""

    def raw(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One raw HTTP request: (status, headers with lower-case names, body)."""
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        try:
            data = body.encode() if isinstance(body, str) else body
            conn.request(method, path, body=data, headers=headers or {})
            answer = conn.getresponse()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body)
        status, _headers, raw = self.raw(method, path, data)
        return status, (json.loads(raw) if raw.strip() else None)


def _seed() -> int:
    text = os.environ.get(ENV_SEED)
    return int(text) if text else random.SystemRandom().randrange(2**31)


@pytest.fixture(scope="module")
def target() -> Iterator[ProxyTarget]:
    """The Toxiproxy API under test (embedded server process unless the env var is set)."""
    seed = _seed()
    url = os.environ.get(ENV_URL)
    print(f"proxy tests: seed {seed} (replay: {ENV_SEED}={seed})")
    if url:
        yield ProxyTarget(url.rstrip("/"), ToxiproxyClient(url, timeout=10), False, seed)
        return
    with start_proxy_server(seed=seed) as server:
        client = ToxiproxyClient(server.api_url, timeout=10)
        yield ProxyTarget(server.api_url, client, True, seed, lambda: server.log_tail(10_000))


@pytest.fixture
def embedded(target: ProxyTarget) -> ProxyTarget:
    """Skip unless the embedded server is under test (behaviour Toxiproxy does not have)."""
    if not target.embedded:
        pytest.skip("embedded server only: the real Toxiproxy hangs or crashes here")
    return target


_names = itertools.count(1)


@pytest.fixture
def proxies(target: ProxyTarget) -> Iterator[Callable[..., ProxyInfo]]:
    """Factory creating uniquely named proxies; they are deleted at teardown."""
    created: list[str] = []

    def make(upstream: str, *, name: str | None = None, **kwargs: object) -> ProxyInfo:
        name = name or f"t{os.getpid()}_{next(_names)}"
        created.append(name)
        return target.client.create_proxy(name, upstream, **kwargs)  # type: ignore[arg-type]

    yield make
    for name in created:
        if name in target.client.list_proxies():
            target.client.delete_proxy(name)


# --- upstream servers ----------------------------------------------------------------------


@dataclass
class TcpServer:
    """A threaded TCP server on 127.0.0.1 running ``handler(conn)`` per connection."""

    handler: Callable[[socket.socket], None]
    sock: socket.socket = field(init=False)
    conns: list[socket.socket] = field(default_factory=list)
    accepted: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns.append(conn)
            self.accepted += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass  # the test closed or reset it: that is what many tests do
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


@pytest.fixture
def echo_server() -> Iterator[TcpServer]:
    server = TcpServer(echo)
    yield server
    server.close()


@pytest.fixture
def server_factory() -> Iterator[Callable[[Callable[[socket.socket], None]], TcpServer]]:
    servers: list[TcpServer] = []

    def make(handler: Callable[[socket.socket], None]) -> TcpServer:
        servers.append(TcpServer(handler))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def closed_port() -> str:
    """An address on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


# --- client side helpers -------------------------------------------------------------------


def connect(proxy: ProxyInfo, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((proxy.listen_host, proxy.listen_port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, size: int, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    parts: list[bytes] = []
    got = 0
    while got < size:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        data = sock.recv(size - got)
        if not data:
            raise ConnectionError(f"EOF after {got} of {size} bytes")
        parts.append(data)
        got += len(data)
    return b"".join(parts)


@dataclass
class Ending:
    """How a connection ended for the reader: the bytes it got, then 'eof', 'reset' or 'open'."""

    data: bytes
    how: str
    after: float


def read_to_end(sock: socket.socket, timeout: float = 5.0) -> Ending:
    """Read until EOF or reset; 'open' if neither happened within ``timeout``."""
    start = time.monotonic()
    deadline = start + timeout
    parts: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Ending(b"".join(parts), "open", time.monotonic() - start)
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return Ending(b"".join(parts), "open", time.monotonic() - start)
        except ConnectionResetError:
            return Ending(b"".join(parts), "reset", time.monotonic() - start)
        except OSError as exc:
            if exc.errno == errno.ECONNRESET:
                return Ending(b"".join(parts), "reset", time.monotonic() - start)
            raise
        if not data:
            return Ending(b"".join(parts), "eof", time.monotonic() - start)
        parts.append(data)


def refused(proxy: ProxyInfo) -> bool:
    """Whether connecting to the proxy's listen address is refused."""
    try:
        with socket.create_connection((proxy.listen_host, proxy.listen_port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def eventually(check: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    wait_for(check, what=what, timeout=timeout, interval=0.005, max_interval=0.05)


def round_trip(sock: socket.socket, payload: bytes = b"ping", timeout: float = 5.0) -> float:
    """Send ``payload`` to an echo upstream and time its return (seconds)."""
    start = time.perf_counter()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload), timeout) == payload
    return time.perf_counter() - start
