"""Toxic stages on a fake link: the rules of each toxic without sockets."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable

import pytest

from harness.proxy.schema import Stream, ToxicConfig, ToxicType
from harness.proxy.toxics import Chunk, Stage, make_stage, slice_bounds


class FakeLink:
    """A LinkControl with a virtual clock: sleeps advance time instantly."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.clock = 0.0
        self.sleeps: list[float] = []
        self.terminated: list[int] = []
        self.interrupt_next = False

    def now(self) -> float:
        return self.clock

    async def sleep(self, stage: Stage, delay: float) -> bool:
        if self.interrupt_next or math.isinf(delay):
            self.interrupt_next = False
            return False
        self.sleeps.append(delay)
        self.clock += max(delay, 0.0)
        return True

    def terminate(self, after_seq: int) -> None:
        self.terminated.append(after_seq)

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback)


def _toxic(kind: ToxicType, toxicity: float = 1.0, **attrs: int) -> ToxicConfig:
    return ToxicConfig(f"{kind.value}_x", kind, Stream.DOWNSTREAM, toxicity, tuple(attrs.items()))


def _run(stage: Stage, link: FakeLink, data: bytes, stamp: float = 0.0) -> list[Chunk]:
    out: list[Chunk] = []

    async def emit(chunk: Chunk) -> None:
        out.append(chunk)

    async def go() -> None:
        stage.attach(link)
        await stage.process(link, Chunk(data, stamp), emit)

    asyncio.run(go())
    return out


@pytest.mark.parametrize("seed", range(20))
def test_slice_bounds_cover_everything(seed: int) -> None:
    rng = random.Random(seed)
    length = rng.randrange(0, 5000)
    average, variation = rng.randrange(1, 200), rng.randrange(0, 400)
    bounds = slice_bounds(length, average, variation, rng)
    assert [b for b in bounds if b[0] >= b[1]] == []
    flat = [i for start, end in bounds for i in range(start, end)]
    assert flat == list(range(length))
    assert all(end - start <= average + variation for start, end in bounds)


def test_slice_bounds_refuses_zero_average() -> None:
    with pytest.raises(ValueError):
        slice_bounds(10, 0, 0, random.Random(0))


def test_latency_measured_from_read_time() -> None:
    link = FakeLink()
    link.clock = 0.030  # read 30 ms ago
    stage = make_stage(_toxic(ToxicType.LATENCY, latency=100), 1, link.rng)
    out = _run(stage, link, b"abc", stamp=0.0)
    assert [c.data for c in out] == [b"abc"]
    assert link.sleeps == [pytest.approx(0.070)]
    assert out[0].stamp == pytest.approx(0.100)  # a later latency toxic adds from here


def test_latency_interrupted_forwards_at_once() -> None:
    link = FakeLink()
    link.interrupt_next = True
    stage = make_stage(_toxic(ToxicType.LATENCY, latency=1000), 1, link.rng)
    assert [c.data for c in _run(stage, link, b"abc")] == [b"abc"]


def test_toxicity_zero_is_noop() -> None:
    link = FakeLink()
    stage = make_stage(_toxic(ToxicType.LIMIT_DATA, toxicity=0.0, bytes=0), 1, link.rng)
    assert [c.data for c in _run(stage, link, b"abc")] == [b"abc"]
    assert link.terminated == []


def test_bandwidth_paces_in_100ms_pieces() -> None:
    link = FakeLink()
    stage = make_stage(_toxic(ToxicType.BANDWIDTH, rate=10), 1, link.rng)  # 10 kB/s
    out = _run(stage, link, b"x" * 2500)
    assert [len(c.data) for c in out] == [1000, 1000, 500]
    assert link.clock == pytest.approx(0.25)


def test_bandwidth_zero_stalls_until_changed() -> None:
    link = FakeLink()
    stage = make_stage(_toxic(ToxicType.BANDWIDTH, rate=0), 1, link.rng)
    assert [c.data for c in _run(stage, link, b"abc")] == [b"abc"]  # after the interrupt


def test_limit_data_truncates_counts_and_closes() -> None:
    link = FakeLink()
    stage = make_stage(_toxic(ToxicType.LIMIT_DATA, bytes=5), 7, link.rng)
    assert [c.data for c in _run(stage, link, b"abc")] == [b"abc"]
    assert link.terminated == []
    stage.reconfigure(_toxic(ToxicType.LIMIT_DATA, bytes=6), link)
    assert [c.data for c in _run(stage, link, b"defgh")] == [b"def"]
    assert link.terminated == [7]


def test_timeout_drops_data() -> None:
    link = FakeLink()
    stage = make_stage(_toxic(ToxicType.TIMEOUT, timeout=0), 3, link.rng)
    assert _run(stage, link, b"abc") == []
    stage.remove(link)
    assert link.terminated == [3]  # removal closes the connection


def test_slicer_pieces_and_delay() -> None:
    link = FakeLink()
    stage = make_stage(
        _toxic(ToxicType.SLICER, average_size=10, size_variation=0, delay=500), 1, link.rng
    )
    out = _run(stage, link, bytes(range(40)))
    assert b"".join(c.data for c in out) == bytes(range(40))
    assert [len(c.data) for c in out] == [10, 10, 10, 10]
    assert link.sleeps == [pytest.approx(0.0005)] * 3


def test_slicer_interrupted_sends_the_rest_whole() -> None:
    link = FakeLink()
    link.interrupt_next = True
    stage = make_stage(
        _toxic(ToxicType.SLICER, average_size=10, size_variation=0, delay=500), 1, link.rng
    )
    assert [len(c.data) for c in _run(stage, link, bytes(40))] == [10, 30]


def test_reset_peer_drops_and_terminates() -> None:
    link = FakeLink()
    stage = make_stage(_toxic(ToxicType.RESET_PEER, timeout=0), 4, link.rng)
    assert _run(stage, link, b"abc") == []
    assert link.terminated == [4]


def test_every_type_has_a_stage() -> None:
    rng = random.Random(0)
    for kind in ToxicType:
        attrs = {"average_size": 1} if kind is ToxicType.SLICER else {}
        assert make_stage(_toxic(kind, **attrs), 1, rng).kind is kind
