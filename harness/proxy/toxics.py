"""Toxic behaviours: how one toxic acts on one link (one connection, one direction).

A link (:mod:`harness.proxy.link`) runs its chunks through an ordered list of
:class:`Stage` objects, one per toxic of its direction. A stage receives a chunk, may delay,
split, drop or truncate it, and hands zero or more chunks to ``emit`` (the rest of the
chain). Stages talk to their link only through the :class:`LinkControl` protocol, so each
behaviour can be read (and tested) on its own.

Live changes: when a toxic is updated or removed, the stage's ``version`` changes and its
current sleep is interrupted; the stage then forwards what it holds unchanged, so no byte
is lost or reordered (Toxiproxy's "don't drop any data on the floor").
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Protocol

from harness.proxy.schema import ToxicConfig, ToxicType

__all__ = [
    "Chunk",
    "Emit",
    "LinkControl",
    "Stage",
    "make_stage",
    "slice_bounds",
]

#: Yield to the event loop after this many slicer pieces written without a delay.
_SLICER_YIELD_EVERY = 256


@dataclass(slots=True)
class Chunk:
    """Bytes read from a socket, with the loop time they were read (``stamp``, seconds)."""

    data: bytes
    stamp: float


Emit = Callable[[Chunk], Awaitable[None]]


class LinkControl(Protocol):
    """What a stage may ask of the link it belongs to."""

    rng: random.Random

    def now(self) -> float:
        """The event loop's clock, in seconds."""
        ...

    async def sleep(self, stage: Stage, delay: float) -> bool:
        """Sleep ``delay`` seconds (``math.inf``: until interrupted).

        Returns False when the stage's toxic was updated or removed meanwhile.
        """
        ...

    def terminate(self, after_seq: int) -> None:
        """Close the link at this stage: chunks before it are dropped, later ones flushed."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        """Schedule a callback on the link's event loop."""
        ...


class Stage:
    """One toxic applied to one link. Subclasses implement one toxic type each.

    ``active`` is the toxicity draw for this link: an inactive stage behaves as a noop.
    """

    kind: ClassVar[ToxicType] = ToxicType.NOOP

    def __init__(self, toxic: ToxicConfig, seq: int, rng: random.Random) -> None:
        self.toxic = toxic
        self.seq = seq
        self.version = 0
        self.removed = False
        self.active = rng.random() < toxic.toxicity

    def reconfigure(self, toxic: ToxicConfig, link: LinkControl) -> None:
        """The toxic was updated: take the new settings and draw toxicity again."""
        self.detach()
        self.toxic = toxic
        self.version += 1
        self.active = link.rng.random() < toxic.toxicity
        self.attach(link)

    def attach(self, link: LinkControl) -> None:
        """The stage joined a running link (start timers here)."""

    def detach(self) -> None:
        """The stage leaves its link, or the link ends (cancel timers here)."""

    def remove(self, link: LinkControl) -> None:
        """The toxic was deleted."""
        self.removed = True
        self.version += 1
        self.detach()

    def changed(self, version: int) -> bool:
        """Whether the toxic was updated or removed since ``version`` was read."""
        return self.removed or self.version != version

    async def process(self, link: LinkControl, chunk: Chunk, emit: Emit) -> None:
        """Handle one chunk; pass what goes on to ``emit``. Default: unchanged."""
        await emit(chunk)

    async def on_eof(self, link: LinkControl) -> None:
        """The source reached EOF (or the link is closing after this stage). Default: pass."""


class NoopStage(Stage):
    """``noop``: accepted, does nothing."""

    kind = ToxicType.NOOP


class LatencyStage(Stage):
    """``latency``: each chunk leaves ``latency +/- jitter`` ms after it was read."""

    kind = ToxicType.LATENCY

    async def process(self, link: LinkControl, chunk: Chunk, emit: Emit) -> None:
        if not self.active:
            await emit(chunk)
            return
        delay_ms = self.toxic.attr("latency")
        jitter = self.toxic.attr("jitter")
        if jitter > 0:
            delay_ms += link.rng.randrange(-jitter, jitter)
        due = chunk.stamp + delay_ms / 1000.0
        if await link.sleep(self, due - link.now()):
            # Measured from when it was read, so delays never add up along a stream, but
            # a second latency toxic further down the chain adds its own delay.
            chunk.stamp = due
        await emit(chunk)


class BandwidthStage(Stage):
    """``bandwidth``: chunks paced to ``rate`` KB/s (1 KB = 1000 bytes); rate 0 stalls."""

    kind = ToxicType.BANDWIDTH

    def __init__(self, toxic: ToxicConfig, seq: int, rng: random.Random) -> None:
        super().__init__(toxic, seq, rng)
        self.debt = 0.0  # seconds of sending time owed to the rate

    def reconfigure(self, toxic: ToxicConfig, link: LinkControl) -> None:
        super().reconfigure(toxic, link)
        self.debt = 0.0

    async def process(self, link: LinkControl, chunk: Chunk, emit: Emit) -> None:
        if not self.active:
            await emit(chunk)
            return
        version = self.version
        rate = self.toxic.attr("rate")
        data = chunk.data
        if rate <= 0:
            await link.sleep(self, math.inf)  # until the toxic changes
            await emit(chunk)
            return
        self.debt += len(data) / (rate * 1000.0)
        piece = rate * 100  # what the rate allows in 100 ms
        while len(data) > piece:
            if not await link.sleep(self, 0.1) or self.changed(version):
                await emit(Chunk(data, chunk.stamp))
                self.debt = 0.0
                return
            await emit(Chunk(data[:piece], chunk.stamp))
            data = data[piece:]
            self.debt -= 0.1
            if self.changed(version):
                await emit(Chunk(data, chunk.stamp))
                return
        started = link.now()
        finished = await link.sleep(self, self.debt)
        self.debt = self.debt - (link.now() - started) if finished else 0.0
        await emit(Chunk(data, chunk.stamp))


class SlowCloseStage(Stage):
    """``slow_close``: data passes; the close after EOF is delayed by ``delay`` ms."""

    kind = ToxicType.SLOW_CLOSE

    async def on_eof(self, link: LinkControl) -> None:
        while self.active and not self.removed:
            if await link.sleep(self, self.toxic.attr("delay") / 1000.0):
                return
            # Updated: wait again with the new delay (removed: close now).


class TimeoutStage(Stage):
    """``timeout``: drops all data; closes the link after ``timeout`` ms without data.

    With timeout 0 data is dropped until the toxic is removed; removal closes the link
    (Toxiproxy's ``Cleanup``), whatever the toxicity draw was.
    """

    kind = ToxicType.TIMEOUT

    def __init__(self, toxic: ToxicConfig, seq: int, rng: random.Random) -> None:
        super().__init__(toxic, seq, rng)
        self._timer: asyncio.TimerHandle | None = None
        self._link: LinkControl | None = None

    def attach(self, link: LinkControl) -> None:
        self._link = link
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        timeout = self.toxic.attr("timeout")
        link = self._link
        if link is not None and self.active and timeout > 0 and not self.removed:
            self._timer = link.call_later(timeout / 1000.0, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._link is not None:
            self._link.terminate(self.seq)

    def detach(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def remove(self, link: LinkControl) -> None:
        super().remove(link)
        link.terminate(self.seq)

    async def process(self, link: LinkControl, chunk: Chunk, emit: Emit) -> None:
        if not self.active:
            await emit(chunk)
            return
        self._arm()  # every dropped chunk restarts the countdown, as in Toxiproxy

    async def on_eof(self, link: LinkControl) -> None:
        self.detach()


class ResetPeerStage(Stage):
    """``reset_peer``: on the first chunk (or EOF), wait ``timeout`` ms then close the link.

    The link's sockets get ``SO_LINGER 0`` when the connection opens with this toxic in
    place, so the close is a TCP RST and both peers see ECONNRESET.
    """

    kind = ToxicType.RESET_PEER

    async def _reset(self, link: LinkControl) -> None:
        await asyncio.sleep(self.toxic.attr("timeout") / 1000.0)
        link.terminate(self.seq)

    async def process(self, link: LinkControl, chunk: Chunk, emit: Emit) -> None:
        if not self.active:
            await emit(chunk)
            return
        await self._reset(link)  # the chunk is dropped

    async def on_eof(self, link: LinkControl) -> None:
        if self.active:
            await self._reset(link)


def slice_bounds(
    length: int, average: int, variation: int, rng: random.Random
) -> list[tuple[int, int]]:
    """Split ``[0, length)`` the way Toxiproxy's slicer does, without its failure modes.

    Halve a span (moved by up to +/- ``variation``) until it is at most
    ``average + variation`` long. Each split point is kept strictly inside its span, so
    every piece is at least one byte and the loop always ends (``average`` must be >= 1).
    """
    if average < 1:
        raise ValueError(f"average must be >= 1, got {average}")
    pieces: list[tuple[int, int]] = []
    stack = [(0, length)] if length > 0 else []
    while stack:
        start, end = stack.pop()
        if (end - start) - average <= variation:
            pieces.append((start, end))
            continue
        mid = start + (end - start) // 2
        if variation > 0:
            mid += rng.randrange(-variation, variation)
        mid = min(max(mid, start + 1), end - 1)
        stack.append((mid, end))
        stack.append((start, mid))
    return pieces


class SlicerStage(Stage):
    """``slicer``: chunks cut into pieces near ``average_size``, ``delay`` us apart."""

    kind = ToxicType.SLICER

    async def process(self, link: LinkControl, chunk: Chunk, emit: Emit) -> None:
        if not self.active:
            await emit(chunk)
            return
        version = self.version
        toxic = self.toxic
        data = chunk.data
        delay = toxic.attr("delay") / 1_000_000.0
        bounds = slice_bounds(
            len(data), toxic.attr("average_size"), toxic.attr("size_variation"), link.rng
        )
        for count, (start, end) in enumerate(bounds, start=1):
            await emit(Chunk(data[start:end], chunk.stamp))
            if end == len(data):
                return
            if self.changed(version) or not await link.sleep(self, delay):
                await emit(Chunk(data[end:], chunk.stamp))
                return
            if delay <= 0 and count % _SLICER_YIELD_EVERY == 0:
                await asyncio.sleep(0)  # keep the API and other connections served


class LimitDataStage(Stage):
    """``limit_data``: the chunk crossing ``bytes`` is truncated and the link closed.

    The byte count is per link and survives updates of the toxic.
    """

    kind = ToxicType.LIMIT_DATA

    def __init__(self, toxic: ToxicConfig, seq: int, rng: random.Random) -> None:
        super().__init__(toxic, seq, rng)
        self.transmitted = 0

    async def process(self, link: LinkControl, chunk: Chunk, emit: Emit) -> None:
        if not self.active:
            await emit(chunk)
            return
        limit = self.toxic.attr("bytes")
        remaining = max(limit - self.transmitted, 0)
        if remaining < len(chunk.data):
            chunk = Chunk(chunk.data[:remaining], chunk.stamp)
        if chunk.data:
            self.transmitted += len(chunk.data)
            await emit(chunk)
        if self.toxic.attr("bytes") - self.transmitted <= 0:
            link.terminate(self.seq)


_STAGES: Mapping[ToxicType, type[Stage]] = MappingProxyType(
    {
        cls.kind: cls
        for cls in (
            NoopStage,
            LatencyStage,
            BandwidthStage,
            SlowCloseStage,
            TimeoutStage,
            ResetPeerStage,
            SlicerStage,
            LimitDataStage,
        )
    }
)


def make_stage(toxic: ToxicConfig, seq: int, rng: random.Random) -> Stage:
    """The stage implementing ``toxic`` on one link."""
    return _STAGES[toxic.type](toxic, seq, rng)
