"""The workload's clients: N threads issuing a target's operations over HTTP, into a history.

:class:`ClientWorkload` implements the runner's ``Workload`` protocol (``start``, ``stop``,
``breach``). Each client thread paces itself to its share of the target rate, picks an
operation from the model's mix, sends it to the next app instance in turn (an instance being
redeployed is still used: its failures are what the history is for), and records ``invoke``
then ``ok``/``fail``/``info``. Only loopback addresses are ever contacted.

Stopping is prompt: the stop event ends the pacing waits, in-flight operations are closed as
``info`` in the history, their sockets are shut down, and every thread is joined (bounded by
the client timeout); a thread that does not end is an error, never left behind.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from harness.errors import SpecError, WorkloadError, WorkloadRequestFailed, WorkloadStuck
from harness.workload.generators import Mix, Pacer, make_faker, make_rng
from harness.workload.history import (
    ErrorKind,
    History,
    HistoryStats,
    JsonValue,
    OpType,
    history_stats,
)
from harness.workload.model import Answer, Call, Completion, Draw, Model, WorkloadSpec

if TYPE_CHECKING:
    from harness.backends.base import Stack
    from harness.report.outcome import Timeline

__all__ = ["ClientWorkload", "HttpClient", "check_loopback"]

#: Largest answer body read, in bytes.
_MAX_BODY = 1 << 20


def check_loopback(base_url: str) -> tuple[str, int]:
    """``(host, port)`` of an ``http://`` URL on a loopback address; SpecError otherwise."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.scheme != "http" or not host:
        raise SpecError(f"app URL {base_url!r}", expected="http://<loopback address>:<port>")
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise SpecError(
            f"app URL {base_url!r} is not on a loopback address",
            expected="127.0.0.0/8, ::1 or localhost (the workload sends only loopback traffic)",
        )
    return host, parts.port or 80


class _Slot:
    """The connection a client has in flight, so that stop can abort it from outside."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._aborted = False

    def attach(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._conn = conn

    def connected(self) -> bool:
        """Called once the socket exists; False when stop came first."""
        with self._lock:
            return not self._aborted

    def detach(self) -> None:
        with self._lock:
            self._conn = None

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            conn = self._conn
            sock = conn.sock if conn is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed: nothing in flight
                    sock.shutdown(socket.SHUT_RDWR)


class HttpClient:
    """JSON over HTTP to loopback addresses, one connection per request, with a timeout.

    Raises :class:`WorkloadRequestFailed` with ``sent=False`` when the connection could not
    be opened (the request cannot have been applied) and ``sent=True`` when it failed after
    (timeout, reset: unknown).
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def send(self, base_url: str, call: Call, slot: _Slot | None = None) -> Answer:
        host, port = check_loopback(base_url)
        method = call.method.value
        url = base_url.rstrip("/") + call.path
        conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        if slot is not None:
            slot.attach(conn)
        try:
            try:
                conn.connect()
            except OSError as exc:
                raise WorkloadRequestFailed(method, url, sent=False, detail=_describe(exc)) from exc
            if slot is not None and not slot.connected():
                raise WorkloadRequestFailed(method, url, sent=False, detail="workload stopped")
            headers = {"Connection": "close", "Accept": "application/json"}
            payload = None
            if call.body is not None:
                payload = json.dumps(call.body).encode()
                headers["Content-Type"] = "application/json"
            try:
                conn.request(method, call.path, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read(_MAX_BODY)
                status = int(response.status)
            except (OSError, http.client.HTTPException) as exc:
                raise WorkloadRequestFailed(method, url, sent=True, detail=_describe(exc)) from exc
        finally:
            if slot is not None:
                slot.detach()
            conn.close()
        return _answer(status, raw)

    def get(self, base_url: str, path: str) -> Answer:
        from harness.workload.model import HttpMethod

        return self.send(base_url, Call("read", HttpMethod.GET, path, {}))


def _answer(status: int, raw: bytes) -> Answer:
    text = raw.decode("utf-8", errors="replace")
    try:
        body = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        body = {}
    return Answer(status, body if isinstance(body, dict) else {}, text[:2000])


def _describe(exc: BaseException) -> str:
    text = str(exc) or "no message"
    return f"{type(exc).__name__}: {text}"


class ClientWorkload:
    """A target's workload running against a stack's app instances (see the module doc)."""

    def __init__(self, spec: WorkloadSpec, *, seed: int) -> None:
        self.spec = spec
        self.seed = seed
        self._model: Model = spec.model()
        self._mix = Mix.of(self._model.mix())
        self._client = HttpClient(spec.timeout)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._slots: list[_Slot] = []
        self._history = History()
        self._urls: Callable[[], Sequence[str]] = lambda: ()
        self._crashes: list[tuple[int, str]] = []
        self._crash_lock = threading.Lock()
        self._stats: HistoryStats | None = None
        self._in_flight_at_stop = 0

    @property
    def history(self) -> History:
        return self._history

    @property
    def crashes(self) -> tuple[tuple[int, str], ...]:
        """(client, traceback) for every client thread the model's code crashed."""
        with self._crash_lock:
            return tuple(self._crashes)

    def start(self, stack: Stack, timeline: Timeline | None = None) -> None:
        apps = list(stack.apps)
        self.start_urls(lambda: [app.base_url for app in apps], timeline)

    def start_urls(
        self, urls: Callable[[], Sequence[str]], timeline: Timeline | None = None
    ) -> None:
        """Start against the instances ``urls()`` returns (read again for every operation)."""
        if self._threads:
            raise WorkloadError("the workload was already started")
        first = list(urls())
        if not first:
            raise SpecError("the workload needs at least one app instance")
        for url in first:
            check_loopback(url)
        self._urls = urls
        self._history = History(origin=timeline.start if timeline is not None else None)
        if timeline is not None:
            from harness.report.outcome import EventKind

            timeline.add(
                EventKind.NOTE,
                "workload",
                f"started: {self.spec.clients} clients, {self.spec.rate:g} ops/s, "
                f"timeout {self.spec.timeout:g}s, seed {self.seed}",
            )
        for number in range(self.spec.clients):
            slot = _Slot()
            self._slots.append(slot)
            thread = threading.Thread(
                target=self._client_loop,
                args=(number, slot),
                name=f"workload-client-{number}",
                daemon=True,
            )
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()

    def _client_loop(self, number: int, slot: _Slot) -> None:
        spec = self.spec
        clients = spec.clients
        rng = make_rng(self.seed, number)
        fake = make_faker(self.seed, number)
        pacer = Pacer(spec.rate / clients if spec.rate > 0 else 0.0, self._stop, offset=number)
        process = number
        turn = number
        try:
            while pacer.wait():
                urls = list(self._urls())
                if not urls:
                    continue
                draw = Draw(rng, fake, number, process)
                call = self._next_call(draw)
                if call is None:
                    continue
                url = urls[turn % len(urls)]
                turn += 1
                try:
                    invoke = self._history.invoke(process, call.f, call.value)
                except ValueError:
                    return  # closed: the workload is stopping
                completion = self._perform(url, call, slot)
                if (
                    self._history.complete(
                        invoke,
                        completion.type,
                        completion.value,
                        error=completion.error,
                        error_kind=completion.error_kind,
                    )
                    is None
                ):
                    return  # closed as info by stop
                self._model.completed(call, completion, draw)
                if completion.type is OpType.INFO:
                    process += clients  # Jepsen: a crashed process is replaced by a new one
        except Exception:
            with self._crash_lock:
                self._crashes.append((number, traceback.format_exc()))

    def _next_call(self, draw: Draw) -> Call | None:
        for f in self._mix.order(draw.rng):
            call = self._model.call(f, draw)
            if call is not None:
                return call
        return None

    def _perform(self, url: str, call: Call, slot: _Slot) -> Completion:
        try:
            answer = self._client.send(url, call, slot)
        except WorkloadRequestFailed as exc:
            if exc.sent:
                return Completion(OpType.INFO, {}, exc.detail, ErrorKind.INDETERMINATE)
            return Completion(OpType.FAIL, {}, exc.detail, ErrorKind.UNAVAILABLE)
        completion = self._model.interpret(call, answer)
        return Completion(
            completion.type,
            {**call.value, **completion.value},
            completion.error,
            completion.error_kind,
        )

    def breach(self) -> str | None:
        """The error budget, if the spec has one, exceeded over its recent window."""
        budget = self.spec.budget
        if budget is None or not self._threads:
            return None
        recent = self._history.recent(self._history.now() - budget.window_s)
        if len(recent) < budget.min_operations:
            return None
        errors = sum(
            1
            for op in recent
            if op.type is OpType.INFO
            or (op.type is OpType.FAIL and op.error_kind is not ErrorKind.REJECTED)
        )
        rate = errors / len(recent)
        if rate <= budget.max_error_rate:
            return None
        return (
            f"workload error rate {rate:.0%} over the last {budget.window_s:g}s "
            f"({errors}/{len(recent)} operations) exceeds the budget {budget.max_error_rate:.0%}"
        )

    def stop(self) -> dict[str, JsonValue]:
        """Stop every client: in-flight operations become ``info``; return the statistics."""
        if self._stats is None:
            self._stop.set()
            self._in_flight_at_stop = self._history.close() if self._threads else 0
            for slot in self._slots:
                slot.abort()
            waited = self.spec.timeout + 2.0
            deadline = time.monotonic() + waited
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            alive = [t.name for t in self._threads if t.is_alive()]
            if alive:
                raise WorkloadStuck(alive, waited)
            self._stats = history_stats(self._history.operations())
        return self.stats_json()

    def stats_json(self) -> dict[str, JsonValue]:
        stats = self._stats or history_stats(self._history.operations())
        data = stats.to_json()
        data.update(
            {
                "seed": self.seed,
                "clients": self.spec.clients,
                "target_rate": self.spec.rate,
                "timeout_s": self.spec.timeout,
                "in_flight_at_stop": self._in_flight_at_stop,
                "client_crashes": len(self.crashes),
            }
        )
        return data

    def __enter__(self) -> ClientWorkload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
