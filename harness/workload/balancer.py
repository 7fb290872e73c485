"""The balancer: what the workload's traffic goes through to reach the app instances.

It does what a production load balancer with readiness probes and a preStop hook does:

- **rotation**: a request goes to an instance in rotation (round robin, or the instance a
  phase's schedule names). Every member starts in rotation (a stack starts healthy).
- **drain** (:meth:`Balancer.drain`): before the harness stops an instance to deploy it, the
  instance leaves the rotation and the balancer waits for the requests in flight to it to
  finish. Nothing new is sent to a draining instance.
- **admit** (:meth:`Balancer.admit`): once the new release is up, the instance is put back
  only after the balancer's own health check passes.
- **noticing**, not being told: an instance the harness breaks on purpose (kill, pause) is
  taken out the way a real balancer takes it out: a request that could not connect, or got
  no answer within the client timeout, ejects it at once (passive health checking, like
  Envoy's outlier detection), and ``fall`` failed active health checks in a row eject it
  too; ``rise`` passed checks in a row put it back. The requests that noticed still failed:
  a fault that breaks an instance hits its clients.
- **traffic weights** (:meth:`Balancer.set_weight`): a weighted canary's split, the way a
  service mesh does it: the instances running anything but the stable release get a percent
  of the requests that are not sent to a named instance, spread by smooth weighted round
  robin (so 10 % is one request in ten, not a draw); the stable release gets the rest.
  Without a split, or when only one side is in rotation, requests go round robin over the
  rotation.
- **panic routing**: when no instance is in rotation, requests go to every instance that is
  not draining (Envoy's panic mode), so the app keeps seeing traffic while, say, its
  database is down; when every instance drains, a request is not sent at all and fails as
  ``unreached``.

The balancer lives in the harness's process (client-side balancing, as gRPC or a service
mesh sidecar does it): a request still travels over a real socket to the instance, and the
client keeps knowing whether a failed request reached the app (see docs/decisions.md). Only
loopback addresses are contacted.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import http.client
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from harness.workload.history import JsonValue

if TYPE_CHECKING:
    from harness.report.outcome import Timeline

__all__ = ["Balancer", "Endpoint", "MemberState", "Pick"]

#: Health answers kept per instance (the end-state verdict shows them as evidence).
_ANSWERS_KEPT = 8


class Endpoint(Protocol):
    """What the balancer needs of an instance (an :class:`~harness.backends.base.AppInstance`
    has all of it). ``release`` may be None for a bare URL."""

    @property
    def index(self) -> int: ...

    @property
    def base_url(self) -> str: ...


class MemberState(enum.Enum):
    IN = "in rotation"
    OUT = "out of rotation"
    DRAINING = "draining"


@dataclass(frozen=True, slots=True)
class Pick:
    """Where one request goes: the instance's index, its URL and the release it runs."""

    index: int
    url: str
    release: str | None
    panic: bool = False


class _Member:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.state = MemberState.IN
        self.in_flight = 0
        self.ok_streak = 0
        self.fail_streak = 0
        self.answers: collections.deque[tuple[float, str]] = collections.deque(maxlen=_ANSWERS_KEPT)

    @property
    def index(self) -> int:
        return self.endpoint.index

    @property
    def release(self) -> str | None:
        release = getattr(self.endpoint, "release", None)
        return None if release is None else str(getattr(release, "name", release))

    @property
    def health_url(self) -> str | None:
        release = getattr(self.endpoint, "release", None)
        path = getattr(release, "health_path", None)
        return None if path is None else self.endpoint.base_url + str(path)

    def pick(self, panic: bool = False) -> Pick:
        return Pick(self.index, self.endpoint.base_url, self.release, panic)


def health_answer(url: str, timeout: float) -> tuple[bool, str]:
    """GET ``url`` (loopback): whether it answered 200, and the answer in a few words."""
    from harness._net import check_loopback

    host, port = check_loopback(url)
    path = url.split(f":{port}", 1)[1] if f":{port}" in url else "/"
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path or "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read(300).decode("utf-8", errors="replace").strip()
        status = int(response.status)
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{type(exc).__name__}: {exc}"[:200]
    finally:
        conn.close()
    return status == 200, f"{status} {body}"[:200]


class Balancer:
    """The rotation over a stack's instances (see the module doc). A context manager.

    ``interval``: seconds between active health checks of an instance; ``timeout``: a health
    check's timeout; ``fall``/``rise``: failed/passed checks in a row that eject/readmit.
    ``checks=False`` (bare URLs in tests) turns active health checks off.
    """

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        interval: float = 0.2,
        timeout: float = 1.0,
        fall: int = 2,
        rise: int = 1,
        checks: bool = True,
        timeline: Timeline | None = None,
    ) -> None:
        if not endpoints:
            from harness.errors import SpecError

            raise SpecError("the balancer needs at least one instance")
        self._members = [_Member(e) for e in endpoints]
        self._interval = interval
        self._timeout = timeout
        self._fall = fall
        self._rise = rise
        self._checks = checks
        self._timeline = timeline
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._turn = 0
        #: The canary split: (stable release, canary percent), and the round robin's credits.
        self._split: tuple[str, int] | None = None
        self._credit = {True: 0, False: 0}
        #: Round robin within each side of the split (one shared turn would let the
        #: alternation of the sides starve some members).
        self._side_turn = {True: 0, False: 0}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._health_checks = 0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Balancer:
        if self._checks and not self._threads:
            for member in self._members:
                thread = threading.Thread(
                    target=self._check_loop,
                    args=(member,),
                    name=f"balancer-health-{member.index}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self._timeout + 1.0)
        self._threads.clear()

    def __enter__(self) -> Balancer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- routing -----------------------------------------------------------------------

    def pick(self, prefer: int | None = None, release: str | None = None) -> Pick | None:
        """The instance the next request goes to; None when every instance drains.

        ``prefer``: the instance a schedule names, used while it is in rotation; else
        another in-rotation instance running ``release`` (when given); else None.
        Without ``prefer``: round robin over the rotation, or panic routing.
        """
        with self._lock:
            members = self._members
            if prefer is not None:
                wanted = [m for m in members if m.index == prefer and m.state is MemberState.IN]
                if not wanted:
                    wanted = [
                        m
                        for m in members
                        if m.state is MemberState.IN
                        and release is not None
                        and m.release == release
                    ]
                if not wanted:
                    return None
                chosen = wanted[self._turn % len(wanted)]
                self._turn += 1
                return chosen.pick()
            rotation = [m for m in members if m.state is MemberState.IN]
            panic = not rotation
            if panic:
                rotation = [m for m in members if m.state is not MemberState.DRAINING]
            if not rotation:
                return None
            if self._split is not None and not panic:
                side, members = self._weighted(rotation, *self._split)
                if side is not None:
                    chosen = members[self._side_turn[side] % len(members)]
                    self._side_turn[side] += 1
                    return chosen.pick(panic)
            chosen = rotation[self._turn % len(rotation)]
            self._turn += 1
            return chosen.pick(panic)

    def _weighted(
        self, rotation: list[_Member], stable: str, percent: int
    ) -> tuple[bool | None, list[_Member]]:
        """The side of the split the next request goes to (smooth weighted round robin,
        as nginx does it): (True for the canary, its members); (None, the whole rotation)
        when one side has no member in it."""
        canary = [m for m in rotation if m.release != stable]
        stables = [m for m in rotation if m.release == stable]
        if not canary or not stables:
            return None, rotation
        weights = {True: percent, False: 100 - percent}
        for side, weight in weights.items():
            self._credit[side] += weight
        side = self._credit[True] >= self._credit[False]
        self._credit[side] -= 100
        return side, canary if side else stables

    def set_weight(self, percent: int | None, stable: str | None = None) -> None:
        """Send ``percent`` of the requests not sent to a named instance to the instances
        that run another release than ``stable`` (the canary), the rest to ``stable``'s;
        ``None`` or 100 ends the split."""
        with self._lock:
            if percent is None or percent >= 100 or stable is None:
                self._split = None
            else:
                self._split = (stable, max(0, percent))
            self._credit = {True: 0, False: 0}
        if self._timeline is not None:
            from harness.report.outcome import EventKind

            detail = (
                "split ended"
                if self._split is None
                else f"canary {percent}%, stable {stable} {100 - (percent or 0)}%"
            )
            self._timeline.add(EventKind.BALANCER, "weights", detail)

    @property
    def split(self) -> tuple[str, int] | None:
        """The canary split in force: (stable release, canary percent), or None."""
        with self._lock:
            return self._split

    def reserve(self, pick: Pick) -> bool:
        """Count a request as in flight to ``pick`` before it is sent; False (nothing
        counted) when the instance started draining since it was picked. Checked under the
        lock a drain takes, so a drain either waits for this request or this request sees
        the drain: a drained instance never gets one. Pair with :meth:`release`."""
        member = self._member(pick.index)
        with self._lock:
            if member.state is MemberState.DRAINING:
                return False
            member.in_flight += 1
            return True

    def release(self, pick: Pick) -> None:
        """The request :meth:`reserve` counted is over."""
        member = self._member(pick.index)
        with self._lock:
            member.in_flight -= 1
            self._changed.notify_all()

    @contextlib.contextmanager
    def sending(self, pick: Pick) -> Iterator[bool]:
        """:meth:`reserve` for the block; yields whether the request may go."""
        reserved = self.reserve(pick)
        try:
            yield reserved
        finally:
            if reserved:
                self.release(pick)

    def report_failure(self, pick: Pick, detail: str) -> None:
        """A request to ``pick`` could not connect, or got no answer in time: eject it
        (passive health checking). Its clients already saw the failure."""
        member = self._member(pick.index)
        with self._lock:
            if member.state is not MemberState.IN:
                return
            member.state = MemberState.OUT
            member.ok_streak = 0
            member.fail_streak = self._fall
        self._note(member, f"ejected: a request failed ({detail[:120]})")

    # -- deployments -------------------------------------------------------------------

    def drain(self, index: int, timeout: float) -> tuple[int, float]:
        """Take instance ``index`` out of rotation and wait (at most ``timeout``) for its
        requests in flight to finish; (requests in flight at the start, seconds waited)."""
        member = self._member(index)
        started = time.monotonic()
        with self._lock:
            member.state = MemberState.DRAINING
            at_start = member.in_flight
            self._changed.wait_for(lambda: member.in_flight == 0, timeout)
            left = member.in_flight
        waited = time.monotonic() - started
        detail = f"drained: {at_start} request(s) in flight, finished in {waited:.3f}s"
        if left:
            detail = f"drain timed out after {waited:.1f}s with {left} request(s) in flight"
        self._note(member, detail)
        return at_start, waited

    def admit(self, index: int, timeout: float) -> bool:
        """Put instance ``index`` back once its health check passes ``rise`` times (checked
        right away, then every interval, for at most ``timeout`` s); False if it did not."""
        member = self._member(index)
        with self._lock:
            member.state = MemberState.OUT
            member.ok_streak = member.fail_streak = 0
        deadline = time.monotonic() + timeout
        while True:
            self._check(member)
            with self._lock:
                if member.state is MemberState.IN:
                    return True
            if self._stop.is_set() or time.monotonic() >= deadline:
                self._note(member, f"not admitted: health check failing after {timeout:.1f}s")
                return False
            self._stop.wait(min(self._interval, max(0.0, deadline - time.monotonic())))

    # -- health ------------------------------------------------------------------------

    def _check_loop(self, member: _Member) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                draining = member.state is MemberState.DRAINING
            if not draining:
                self._check(member)

    def _check(self, member: _Member) -> None:
        url = member.health_url
        if url is None:
            ok, answer = True, "no health check"
        else:
            ok, answer = health_answer(url, self._timeout)
        note = None
        with self._lock:
            self._health_checks += 1
            member.answers.append((time.monotonic(), answer))
            if member.state is MemberState.DRAINING:
                return
            if ok:
                member.ok_streak += 1
                member.fail_streak = 0
                if member.state is MemberState.OUT and member.ok_streak >= self._rise:
                    member.state = MemberState.IN
                    note = f"in rotation ({member.release}): health check passed"
            else:
                member.fail_streak += 1
                member.ok_streak = 0
                if member.state is MemberState.IN and member.fail_streak >= self._fall:
                    member.state = MemberState.OUT
                    note = f"ejected: {member.fail_streak} failed health checks ({answer[:120]})"
            self._changed.notify_all()
        if note is not None:
            self._note(member, note)

    # -- views -------------------------------------------------------------------------

    def rotation(self) -> list[Pick]:
        """The instances in rotation now."""
        with self._lock:
            return [m.pick() for m in self._members if m.state is MemberState.IN]

    def state(self, index: int) -> MemberState:
        with self._lock:
            return self._member(index).state

    def wait_for_rotation(self, indices: Sequence[int], timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until every instance of ``indices`` is in rotation."""
        wanted = set(indices)

        def ready() -> bool:
            return all(m.state is MemberState.IN for m in self._members if m.index in wanted)

        with self._lock:
            return self._changed.wait_for(ready, timeout)

    def snapshot(self) -> dict[str, JsonValue]:
        """Per instance: its state, requests in flight, its last health answers."""
        now = time.monotonic()
        with self._lock:
            return {
                str(m.index): {
                    "state": m.state.name.lower(),
                    "release": m.release,
                    "in_flight": m.in_flight,
                    "health": [f"{now - t:.1f}s ago: {a}" for t, a in reversed(m.answers)],
                }
                for m in self._members
            }

    def health_answers(self, index: int) -> list[str]:
        """The last health answers of instance ``index``, newest first."""
        with self._lock:
            return [a for _, a in reversed(self._member(index).answers)]

    @property
    def health_checks(self) -> int:
        return self._health_checks

    def _member(self, index: int) -> _Member:
        for member in self._members:
            if member.index == index:
                return member
        raise KeyError(f"the balancer has no instance {index}")

    def _note(self, member: _Member, detail: str) -> None:
        if self._timeline is not None:
            from harness.report.outcome import EventKind

            self._timeline.add(EventKind.BALANCER, f"app{member.index}", detail)
