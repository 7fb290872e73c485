"""Proxied connections: two sockets, two one-way links, each a pipeline of toxic stages.

Data path of one link (one direction)::

    source socket --data_received--> [fast path: dest.write]            --> dest socket
                                     [queue -> pump -> stage, stage, ... -> dest.write]

With no toxic in its direction and nothing queued, a link writes each read straight to the
other socket (no task, no copy, flow control through ``pause_reading``). As soon as a toxic
exists, reads are queued with the time they were read and a pump task runs them through the
stages in order. The stage list can change at any moment (add, update, remove); the pump
picks the next stage by the toxic's sequence number, so a chunk that is half-way through
the chain keeps its place and its order, and no chunk is dropped by a change (except by
a toxic whose job is to drop). When the queue drains and the chain is empty, the link
returns to the fast path.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol, cast

from harness.proxy.schema import Stream, ToxicConfig, ToxicType
from harness.proxy.toxics import Chunk, Stage, make_stage


class ToxicChains(Protocol):
    """The toxics of a proxy, as a new connection takes them."""

    def snapshot(self) -> dict[Stream, list[tuple[int, ToxicConfig]]]: ...


class ProxyOwner(Protocol):
    """What a connection needs of the proxy that accepted it (:class:`harness.proxy.proxy.
    Proxy`): the proxy sits above its links, which know it only by this."""

    name: str
    upstream: str
    rng: random.Random

    @property
    def toxics(self) -> ToxicChains: ...

    async def resolve_upstream(self) -> tuple[str, int]: ...

    def connection_closed(self, connection: Connection) -> None: ...


__all__ = ["Connection", "Endpoint", "Link"]

_log = logging.getLogger(__name__)

#: Pause reading the source when this many bytes wait in a link's queue.
QUEUE_HIGH_WATER = 1 << 20
QUEUE_LOW_WATER = 1 << 18
#: How long the proxy waits for the upstream to accept a connection.
DIAL_TIMEOUT = 10.0
_LINGER_ZERO = struct.pack("ii", 1, 0)


def _wake(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


class Endpoint(asyncio.Protocol):
    """The protocol of one socket of a proxied connection (client side or upstream side)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reading: Link | None = None  # the link whose source is this socket
        self.writing: Link | None = None  # the link whose destination is this socket
        self.lost = False
        self.write_paused = False
        self.early: list[bytes] = []
        self.early_eof = False
        self.on_lost: Callable[[Endpoint], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:
                _log.debug("TCP_NODELAY not set: %s", exc)

    def data_received(self, data: bytes) -> None:
        if self.reading is not None:
            self.reading.feed(data)
        else:
            self.early.append(data)

    def eof_received(self) -> bool:
        if self.reading is not None:
            self.reading.feed_eof()
        else:
            self.early_eof = True
        return True  # keep the transport: the link closes it after flushing

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.early_eof = True
        if self.reading is not None:
            self.reading.feed_eof()
        if self.writing is not None:
            self.writing.dest_gone()
        if self.on_lost is not None:
            self.on_lost(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.writing is not None:
            self.writing.dest_paused()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.writing is not None:
            self.writing.dest_resumed()

    def set_linger_zero(self) -> None:
        """Make the next close of this socket a TCP RST."""
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            except OSError as exc:
                _log.warning("SO_LINGER 0 not set, reset_peer will close with FIN: %s", exc)

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()


class Link:
    """One direction of a connection: source socket, toxic stages, destination socket."""

    def __init__(
        self,
        label: str,
        stream: Stream,
        source: Endpoint,
        dest: Endpoint,
        stages: list[Stage],
        rng: random.Random,
    ) -> None:
        self.label = label
        self.stream = stream
        self.source = source
        self.dest = dest
        self.stages = stages
        self.rng = rng
        self._loop = asyncio.get_running_loop()
        self._queue: deque[Chunk | None] = deque()
        self._queued_bytes = 0
        self._pump: asyncio.Task[None] | None = None
        self._eof = False
        self._done = False
        self._terminate_after: int | None = None
        self._sleeper: tuple[Stage, asyncio.Future[bool]] | None = None
        self._drain: asyncio.Future[bool] | None = None
        self._paused_for_queue = False
        self._paused_for_dest = False
        for stage in stages:
            stage.attach(self)

    # --- LinkControl, for the stages -------------------------------------------------

    def now(self) -> float:
        return self._loop.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self._loop.call_later(delay, callback)

    async def sleep(self, stage: Stage, delay: float) -> bool:
        if delay <= 0:
            return not stage.removed
        fut: asyncio.Future[bool] = self._loop.create_future()
        handle = None if math.isinf(delay) else self._loop.call_later(delay, _wake, fut, True)
        self._sleeper = (stage, fut)
        try:
            return await fut
        finally:
            if handle is not None:
                handle.cancel()
            self._sleeper = None

    def terminate(self, after_seq: int) -> None:
        if self._done:
            return
        if self._terminate_after is None or after_seq < self._terminate_after:
            self._terminate_after = after_seq
        if self._sleeper is not None and self._sleeper[0].seq <= after_seq:
            _wake(self._sleeper[1], False)
        self._ensure_pump()

    # --- toxic changes ----------------------------------------------------------------

    def add_stage(self, stage: Stage) -> None:
        self.stages.append(stage)  # sequence numbers only grow: the list stays sorted
        if not self._done:
            stage.attach(self)

    def update_stage(self, toxic: ToxicConfig) -> None:
        for stage in self.stages:
            if stage.toxic.name == toxic.name:
                stage.reconfigure(toxic, self)
                self._interrupt(stage)
                return

    def remove_stage(self, name: str) -> None:
        for stage in self.stages:
            if stage.toxic.name == name:
                self.stages.remove(stage)
                stage.remove(self)
                self._interrupt(stage)
                return

    def _interrupt(self, stage: Stage) -> None:
        if self._sleeper is not None and self._sleeper[0] is stage:
            _wake(self._sleeper[1], False)

    # --- data in ----------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self._done or self._eof or self._terminate_after is not None:
            return
        if not self.stages and self._pump is None:
            if not self.dest.lost and self.dest.transport is not None:
                self.dest.transport.write(data)  # fast path
            return
        self._queue.append(Chunk(data, self._loop.time()))
        self._queued_bytes += len(data)
        if self._queued_bytes > QUEUE_HIGH_WATER and not self._paused_for_queue:
            self._paused_for_queue = True
            self._update_reading()
        self._ensure_pump()

    def feed_eof(self) -> None:
        if self._eof or self._done:
            return
        self._eof = True
        if not self.stages and self._pump is None:
            self._finish()
            return
        self._queue.append(None)
        self._ensure_pump()

    # --- flow control -----------------------------------------------------------------

    def _update_reading(self) -> None:
        transport = self.source.transport
        if transport is None or self.source.lost:
            return
        if self._paused_for_queue or self._paused_for_dest:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def dest_paused(self) -> None:
        self._paused_for_dest = True
        self._update_reading()

    def dest_resumed(self) -> None:
        self._paused_for_dest = False
        self._update_reading()
        if self._drain is not None:
            _wake(self._drain, True)

    def dest_gone(self) -> None:
        self._paused_for_dest = False
        if self._drain is not None:
            _wake(self._drain, False)

    # --- the pump ---------------------------------------------------------------------

    def _ensure_pump(self) -> None:
        if self._pump is None and not self._done:
            self._pump = self._loop.create_task(self._run_pump(), name=f"pump {self.label}")

    async def _run_pump(self) -> None:
        try:
            while not self._done:
                if self._terminate_after is not None:
                    await self._close_after(self._terminate_after)
                    return
                if not self._queue:
                    return
                item = self._queue.popleft()
                if item is None:
                    await self._close_after(-1)
                    return
                self._queued_bytes -= len(item.data)
                if self._paused_for_queue and self._queued_bytes <= QUEUE_LOW_WATER:
                    self._paused_for_queue = False
                    self._update_reading()
                await self._through(-1, item)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("link %s failed; closing its connection", self.label)
            self.source.abort()
            self.dest.abort()
        finally:
            self._pump = None

    def _next_stage(self, after_seq: int) -> Stage | None:
        for stage in self.stages:
            if stage.seq > after_seq:
                return stage
        return None

    async def _through(self, after_seq: int, chunk: Chunk) -> None:
        """Run a chunk through the stages after ``after_seq``, then write it."""
        if self._terminate_after is not None and after_seq < self._terminate_after:
            return  # a stage further down closed the link: this chunk never gets there
        stage = self._next_stage(after_seq)
        if stage is None:
            await self._deliver(chunk)
            return
        seq = stage.seq

        async def emit(piece: Chunk) -> None:
            await self._through(seq, piece)

        await stage.process(self, chunk, emit)

    async def _deliver(self, chunk: Chunk) -> None:
        transport = self.dest.transport
        if self.dest.lost or transport is None or not chunk.data:
            return
        transport.write(chunk.data)
        if self.dest.write_paused:
            self._drain = self._loop.create_future()
            try:
                await self._drain
            finally:
                self._drain = None

    async def _close_after(self, after_seq: int) -> None:
        """EOF through the stages after ``after_seq`` (slow_close may wait), then close."""
        self._queue.clear()
        self._queued_bytes = 0
        stage = self._next_stage(after_seq)
        while stage is not None:
            await stage.on_eof(self)
            stage = self._next_stage(stage.seq)
        self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        for stage in self.stages:
            stage.detach()
        self.dest.close()

    def cancel(self) -> None:
        """Stop at once (the connection is being torn down)."""
        self._done = True
        for stage in self.stages:
            stage.detach()
        if self._pump is not None:
            self._pump.cancel()


class Connection:
    """One accepted client, its upstream socket and the two links between them."""

    def __init__(self, proxy: ProxyOwner, client: Endpoint) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: Endpoint | None = None
        self.links: dict[Stream, Link] = {}
        self.closed = False
        peer = client.transport.get_extra_info("peername") if client.transport else None
        self.label = f"{proxy.name}:{peer[0]}:{peer[1]}" if peer else proxy.name
        client.on_lost = self._endpoint_lost
        self._dial = asyncio.get_running_loop().create_task(self._connect(), name=self.label)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            host, port = await self.proxy.resolve_upstream()
            _transport, upstream = await asyncio.wait_for(
                loop.create_connection(Endpoint, host, port), DIAL_TIMEOUT
            )
        except (OSError, TimeoutError, ValueError) as exc:
            _log.warning(
                "proxy %s: unable to open connection to upstream %s: %s",
                self.proxy.name,
                self.proxy.upstream,
                exc,
            )
            self.client.close()
            self._forget()
            return
        if self.closed or self.client.lost:
            upstream.abort()
            self._forget()
            return
        self.upstream = upstream
        upstream.on_lost = self._endpoint_lost
        chains = self.proxy.toxics.snapshot()
        if any(t.type is ToxicType.RESET_PEER for chain in chains.values() for _, t in chain):
            self.client.set_linger_zero()
            upstream.set_linger_zero()
        rng = self.proxy.rng
        up = Link(
            f"{self.label} upstream",
            Stream.UPSTREAM,
            self.client,
            upstream,
            _stages(chains[Stream.UPSTREAM], rng),
            rng,
        )
        down = Link(
            f"{self.label} downstream",
            Stream.DOWNSTREAM,
            upstream,
            self.client,
            _stages(chains[Stream.DOWNSTREAM], rng),
            rng,
        )
        self.links = {Stream.UPSTREAM: up, Stream.DOWNSTREAM: down}
        self.client.reading = up
        self.client.writing = down
        upstream.reading = down
        upstream.writing = up
        # Bytes either side sent before the links existed go first, in order.
        for endpoint, link in ((self.client, up), (upstream, down)):
            early, endpoint.early = endpoint.early, []
            for data in early:
                link.feed(data)
            if endpoint.early_eof:
                link.feed_eof()
            if link.dest.write_paused:
                link.dest_paused()

    def _endpoint_lost(self, endpoint: Endpoint) -> None:
        if self.client.lost and (self.upstream is None or self.upstream.lost):
            self._forget()

    def _forget(self) -> None:
        self.closed = True
        for link in self.links.values():
            link.cancel()
        self.proxy.connection_closed(self)

    def abort(self) -> None:
        """Close both sockets now (proxy disabled, deleted or changed)."""
        self.closed = True
        self._dial.cancel()
        for link in self.links.values():
            link.cancel()
        self.client.abort()
        if self.upstream is not None:
            self.upstream.abort()
        self.proxy.connection_closed(self)


def _stages(chain: Iterable[tuple[int, ToxicConfig]], rng: random.Random) -> list[Stage]:
    return [make_stage(toxic, seq, rng) for seq, toxic in chain]
