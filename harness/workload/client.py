"""The workload's clients: N threads issuing a target's operations over HTTP, into a history.

:class:`ClientWorkload` implements the runner's ``Workload`` protocol (``start``, ``stop``,
``breach``). Each client thread paces itself to its share of the target rate, picks an
operation from the model's mix, sends it to the instance the balancer picks (see
:mod:`harness.workload.balancer`: drained before a redeploy, ejected when it fails), and
records ``invoke`` (with the instance, its release and the run's phase) then
``ok``/``fail``/``info``. During a phase (:meth:`ClientWorkload.run_phase`) the clients
send the phase's seeded schedule instead, unpaced. Only loopback addresses are contacted.

Stopping is prompt: the stop event ends the pacing waits, in-flight operations are closed as
``info`` in the history, their sockets are shut down, and every thread is joined (bounded by
the client timeout); a thread that does not end is an error, never left behind.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import random
import socket
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness._net import check_loopback
from harness.errors import SpecError, WorkloadError, WorkloadRequestFailed, WorkloadStuck
from harness.workload.balancer import Balancer, Pick
from harness.workload.generators import Mix, Pacer, make_faker, make_rng
from harness.workload.history import (
    ErrorKind,
    History,
    HistoryStats,
    JsonValue,
    OpType,
    history_stats,
    is_error,
)
from harness.workload.model import Answer, Call, Completion, Draw, Model, WorkloadSpec
from harness.workload.phases import PhaseResult, ScheduleItem, build_schedule, schedule_digest

if TYPE_CHECKING:
    from faker import Faker

    from harness.backends.base import Stack
    from harness.report.outcome import Timeline

__all__ = ["ClientWorkload", "HttpClient", "check_loopback"]

#: Largest answer body read, in bytes.
_MAX_BODY = 1 << 20


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


@dataclass(frozen=True, slots=True)
class _Url:
    """A bare URL as a balancer member (tests, ad-hoc use): no release, no health check."""

    index: int
    base_url: str


@dataclass(slots=True)
class _ClientState:
    number: int
    process: int


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


@dataclass(slots=True)
class _Entry:
    """A scheduled entry in a phase's queue: how often it was tried, how often it erred."""

    item: ScheduleItem
    attempts: int = 0
    errors: int = 0
    #: Since when it has found no instance of its release in rotation (None: it has one).
    unrouted_since: float | None = None


class _PhaseRun:
    """A phase in progress: its schedule (taken in order by every client) and its result."""

    def __init__(self, result: PhaseResult, items: Sequence[ScheduleItem], deadline: float):
        self.result = result
        self.queue: collections.deque[_Entry] = collections.deque(_Entry(i) for i in items)
        self.deadline = deadline
        self.pending = len(items)
        self.lock = threading.Condition()
        self.done = threading.Event()
        #: Set when the phase is over: an entry finished later changes nothing recorded.
        self.closed = False
        if not items:
            self.done.set()

    def take(self) -> _Entry | None:
        """The next entry to send (None: nothing left to take now)."""
        with self.lock:
            return self.queue.popleft() if self.queue else None

    def requeue(self, entry: _Entry) -> None:
        with self.lock:
            self.queue.append(entry)
            self.lock.notify_all()

    def served(self, item: ScheduleItem) -> None:
        with self.lock:
            if self.closed:
                return
            counts = self.result.coverage.setdefault(item.group, {})
            counts[item.f] = counts.get(item.f, 0) + 1
            self.result.served += 1
            self._settle()

    def drop(self, item: ScheduleItem, reason: str) -> None:
        with self.lock:
            if self.closed:
                return
            self.result.dropped.append(f"{item.f} for {item.group}: {reason}")
            self._settle()

    def _settle(self) -> None:
        self.pending -= 1
        if self.pending <= 0:
            self.done.set()
        self.lock.notify_all()

    def wait_progress(self, timeout: float) -> None:
        """Wait a little for another client to make progress (or the phase to end)."""
        with self.lock:
            self.lock.wait(timeout)


#: Attempts at a scheduled entry that the model cannot issue yet, or that found no
#: instance of its release in rotation, before it is dropped.
_PHASE_ATTEMPTS = 8
#: How long an entry waits for an instance of its release to be back in rotation (one the
#: balancer ejected may be back after its next passed health check) before it is dropped.
_ROTATION_WAIT = 2.0
#: An entry whose answer was an error is sent once more (as a client retries): a
#: transient error (a stale pooled connection after a fault) is told from one that stays.
_ERROR_RETRIES = 1


class ClientWorkload:
    """A target's workload running against a stack's app instances (see the module doc).

    Traffic goes through a :class:`~harness.workload.balancer.Balancer`: given a stack,
    the workload makes its own (and closes it on stop); the runner passes the one it drains
    and admits instances with.
    """

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
        self._balancer: Balancer | None = None
        self._owns_balancer = False
        self._crashes: list[tuple[int, str]] = []
        self._crash_lock = threading.Lock()
        self._stats: HistoryStats | None = None
        self._in_flight_at_stop = 0
        self._label: str | None = None
        self._phase: _PhaseRun | None = None
        self._phase_lock = threading.Lock()
        self._fakes: dict[int, Faker] = {}

    @property
    def history(self) -> History:
        return self._history

    @property
    def balancer(self) -> Balancer | None:
        return self._balancer

    @property
    def operations(self) -> tuple[str, ...]:
        """The operations of the model's mix that have a weight (what a phase schedules)."""
        weights = self._model.mix()
        return tuple(f for f in self._mix.names if weights[f] > 0)

    @property
    def crashes(self) -> tuple[tuple[int, str], ...]:
        """(client, traceback) for every client thread the model's code crashed."""
        with self._crash_lock:
            return tuple(self._crashes)

    def start(self, target: Stack | Balancer, timeline: Timeline | None = None) -> None:
        """Start against a stack's instances (through a balancer of the workload's own) or
        through ``target``, a started :class:`Balancer`."""
        if isinstance(target, Balancer):
            self._start(target, timeline, owned=False)
        else:
            balancer = Balancer(list(target.apps), timeout=min(1.0, self.spec.timeout))
            self._start(balancer.start(), timeline, owned=True)

    def start_urls(self, urls: Sequence[str], timeline: Timeline | None = None) -> None:
        """Start against bare URLs (no health checks; a failed request still ejects)."""
        if not urls:
            raise SpecError("the workload needs at least one app instance")
        for url in urls:
            check_loopback(url)
        endpoints = [_Url(i, url) for i, url in enumerate(urls)]
        self._start(Balancer(endpoints, checks=False), timeline, owned=True)

    def _start(self, balancer: Balancer, timeline: Timeline | None, *, owned: bool) -> None:
        if self._threads:
            raise WorkloadError("the workload was already started")
        for pick in balancer.rotation():
            check_loopback(pick.url)
        self._balancer = balancer
        self._owns_balancer = owned
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

    # -- phases ------------------------------------------------------------------------

    def wait_stopped(self, timeout: float) -> bool:
        """Wait at most ``timeout`` s for the workload to stop; whether it is stopping."""
        return self._stop.wait(timeout) or not self._threads_alive()

    def label(self, phase: str | None) -> None:
        """The phase free traffic is recorded under from now on (``step:migrate:0003``...)."""
        self._label = phase

    def run_phase(
        self,
        name: str,
        groups: Mapping[str, Sequence[tuple[int, str | None]]],
        quota: int,
        timeout: float,
    ) -> PhaseResult:
        """Run phase ``name``: ``quota`` of each operation for each group (see
        :mod:`harness.workload.phases`); returns when served, timed out or stopped."""
        result = PhaseResult(name, quota, self._history.now())
        items = build_schedule(
            seed=self.seed, phase=name, operations=self.operations, groups=groups, quota=quota
        )
        result.scheduled = len(items)
        result.schedule = schedule_digest(items)
        run = _PhaseRun(result, items, time.monotonic() + timeout)
        previous = self._label
        with self._phase_lock:
            self._phase = run
            self._label = name
        if quota > 0 and not items:
            result.dropped.append("no instance in rotation: nothing to send the phase to")
        try:
            while not run.done.wait(min(0.25, max(0.0, run.deadline - time.monotonic()))):
                if time.monotonic() >= run.deadline:
                    result.timed_out = True
                    break
                if self._stop.is_set() or not self._threads_alive():
                    with run.lock:
                        result.dropped.append("the workload stopped before the phase ended")
                    break
        finally:
            with self._phase_lock:
                self._phase = None
                self._label = previous
            with run.lock:
                run.closed = True
                run.queue.clear()
                run.lock.notify_all()
        result.end = self._history.now()
        return result

    def _threads_alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # -- the clients -------------------------------------------------------------------

    def _client_loop(self, number: int, slot: _Slot) -> None:
        spec = self.spec
        clients = spec.clients
        rng = make_rng(self.seed, number)
        fake = make_faker(self.seed, number)
        pacer = Pacer(spec.rate / clients if spec.rate > 0 else 0.0, self._stop, offset=number)
        state = _ClientState(number, number)
        try:
            while not self._stop.is_set():
                run = self._phase
                if run is not None:
                    if not self._phase_step(run, state, fake, slot):
                        return
                    continue
                if not pacer.wait():
                    return
                if self._phase is not None:
                    continue
                draw = Draw(rng, fake, number, state.process)
                call = self._next_call(draw)
                if call is None:
                    continue
                if self._send(call, draw, state, slot, self._route()) is None:
                    return
        except Exception:
            with self._crash_lock:
                self._crashes.append((number, traceback.format_exc()))

    def _phase_step(self, run: _PhaseRun, state: _ClientState, fake: Faker, slot: _Slot) -> bool:
        """Send the phase's next entry; False when the workload is stopping."""
        limit = self.spec.phases.clients
        if limit and state.number >= limit:
            run.wait_progress(0.05)  # not one of the phase's senders: wait for its end
            return not self._stop.is_set()
        taken = run.take()
        if taken is None:
            # Nothing to take: the others' entries are in flight, or the phase is served and
            # the runner is about to end it. Wait for either (no busy loop).
            run.wait_progress(0.05)
            return not self._stop.is_set()
        item = taken.item
        if time.monotonic() > run.deadline:
            run.drop(item, "the phase timed out")
            return True
        # Routed before the model is asked: a call the model hands out (it may be a retry
        # it queued) is always sent.
        pick = self._route(item.instance, item.release)
        if pick is None:
            now = time.monotonic()
            taken.unrouted_since = taken.unrouted_since or now
            if now - taken.unrouted_since >= _ROTATION_WAIT:
                run.drop(item, f"no instance of {item.group} in rotation for {_ROTATION_WAIT:g}s")
            else:
                run.requeue(taken)
                self._stop.wait(0.05)
            return True
        taken.unrouted_since = None
        fake.seed_instance(item.seed)
        draw = Draw(random.Random(item.seed), fake, state.number, state.process)
        call = self._model.call(item.f, draw)
        if call is None:
            self._unroute(pick)
            self._retry(run, taken, "the model could not issue it yet")
            return True
        completion = self._send(call, draw, state, slot, pick, entry=item.number)
        if completion is None:
            return False
        if completion.error_kind is ErrorKind.UNREACHED:
            self._retry(run, taken, f"instance {pick.index} could not be reached")
        elif is_error(completion.type, completion.error_kind) and taken.errors < _ERROR_RETRIES:
            taken.errors += 1
            run.requeue(taken)
        else:
            run.served(item)
        return True

    def _retry(self, run: _PhaseRun, entry: _Entry, reason: str) -> None:
        entry.attempts += 1
        if entry.attempts >= _PHASE_ATTEMPTS:
            run.drop(entry.item, reason)
            return
        run.requeue(entry)
        self._stop.wait(0.02 * entry.attempts)

    def _route(self, prefer: int | None = None, release: str | None = None) -> Pick | None:
        """An instance for one request, already counted in flight (see
        :meth:`Balancer.reserve`); None when there is none to send to."""
        balancer = self._balancer
        if balancer is None:
            return None
        for _ in range(3):  # picked, then found draining: pick again
            pick = balancer.pick(prefer, release)
            if pick is None:
                return None
            if balancer.reserve(pick):
                return pick
        return None

    def _unroute(self, pick: Pick | None) -> None:
        if pick is not None and self._balancer is not None:
            self._balancer.release(pick)

    def _send(
        self,
        call: Call,
        draw: Draw,
        state: _ClientState,
        slot: _Slot,
        pick: Pick | None,
        *,
        entry: int | None = None,
    ) -> Completion | None:
        """Send one call to ``pick`` (reserved by :meth:`_route`, released here; None: no
        instance to send to) and record it, with the phase's schedule ``entry`` it serves:
        its completion; None when the history closed (the workload stops)."""
        try:
            try:
                invoke = self._history.invoke(
                    state.process,
                    call.f,
                    call.value,
                    instance=None if pick is None else pick.index,
                    release=None if pick is None else pick.release,
                    phase=self._label,
                    entry=entry,
                )
            except ValueError:
                return None  # closed: the workload is stopping
            if pick is None:
                completion = Completion(
                    OpType.FAIL,
                    {},
                    "no instance to send to (every instance is draining)",
                    ErrorKind.UNREACHED,
                )
            else:
                completion = self._perform(pick, call, slot)
        finally:
            self._unroute(pick)
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
            return None  # closed as info by stop
        self._model.completed(call, completion, draw)
        if completion.type is OpType.INFO:
            state.process += self.spec.clients  # Jepsen: a crashed process is replaced
        return completion

    def _next_call(self, draw: Draw) -> Call | None:
        for f in self._mix.order(draw.rng):
            call = self._model.call(f, draw)
            if call is not None:
                return call
        return None

    def _perform(self, pick: Pick, call: Call, slot: _Slot) -> Completion:
        try:
            answer = self._client.send(pick.url, call, slot)
        except WorkloadRequestFailed as exc:
            if not self._stop.is_set() and self._balancer is not None:
                self._balancer.report_failure(pick, exc.detail)
            if exc.sent:
                return Completion(OpType.INFO, {}, exc.detail, ErrorKind.INDETERMINATE)
            return Completion(OpType.FAIL, {}, exc.detail, ErrorKind.UNREACHED)
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
        errors = sum(1 for op in recent if is_error(op.type, op.error_kind))
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
            if self._owns_balancer and self._balancer is not None:
                self._balancer.close()
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
