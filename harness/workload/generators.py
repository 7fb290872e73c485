"""Seeded randomness for the workload: Faker per client, the operation mix, the pacer.

Everything random derives from the run's seed and the client's number, so a run's requests
are reproducible for a given seed (up to the interleaving of the threads).
"""

from __future__ import annotations

import bisect
import itertools
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.errors import SpecError

if TYPE_CHECKING:
    from faker import Faker

__all__ = ["Mix", "Pacer", "client_seed", "make_faker", "make_rng"]


def client_seed(seed: int, client: int) -> int:
    """A per-client seed derived from the run's seed."""
    return (seed * 1_000_003 + client * 7_919 + 17) & 0x7FFF_FFFF


def make_rng(seed: int, client: int) -> random.Random:
    return random.Random(client_seed(seed, client))


def make_faker(seed: int, client: int, locale: str = "en_US") -> Faker:
    """A Faker instance seeded for one client (instances are not shared between threads)."""
    from faker import Faker

    fake = Faker(locale)
    fake.seed_instance(client_seed(seed, client))
    return fake


@dataclass(frozen=True, slots=True)
class Mix:
    """A weighted choice of operations; ``order`` lists the others to try after the draw."""

    names: tuple[str, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def of(cls, weights: Mapping[str, float]) -> Mix:
        names = tuple(weights)
        if not names:
            raise SpecError("workload mix is empty", expected="at least one operation")
        total = 0.0
        cumulative = []
        for name in names:
            weight = weights[name]
            if weight < 0:
                raise SpecError(f"workload mix: weight of {name!r} is {weight}", expected=">= 0")
            total += weight
            cumulative.append(total)
        if total <= 0:
            raise SpecError("workload mix: every weight is 0")
        return cls(names, tuple(cumulative))

    def choose(self, rng: random.Random) -> str:
        point = rng.random() * self.cumulative[-1]
        return self.names[min(bisect.bisect_right(self.cumulative, point), len(self.names) - 1)]

    def order(self, rng: random.Random) -> list[str]:
        """The drawn operation first, then the others in declaration order (fallbacks)."""
        first = self.choose(rng)
        return [first, *itertools.filterfalse(lambda n: n == first, self.names)]


class Pacer:
    """Paces one client to ``rate`` operations per second (0: no pacing).

    Waits on ``stop`` (an event) so a stop is immediate; falls back to the schedule without
    bursting when the client is behind it.
    """

    def __init__(self, rate: float, stop: threading.Event, *, offset: float = 0.0) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._stop = stop
        self._next = time.monotonic() + offset * self._interval

    def wait(self) -> bool:
        """Wait for the next slot; False when stopped meanwhile."""
        if self._interval == 0.0:
            return not self._stop.is_set()
        now = time.monotonic()
        delay = self._next - now
        self._next = max(self._next, now) + self._interval
        if delay > 0:
            return not self._stop.wait(delay)
        return not self._stop.is_set()
