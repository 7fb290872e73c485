"""A health probe: the simplest workload, usable with any target.

One thread polls every app instance's health URL at a fixed rate and records, per poll,
whether the stack as a whole was serving (at least one instance answered 200). It yields the
error rate and the longest window in which no instance served.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["HealthProbe", "ProbeStats"]


@dataclass(frozen=True, slots=True)
class ProbeStats:
    polls: int
    failed_polls: int
    longest_outage_s: float

    @property
    def error_rate(self) -> float:
        return self.failed_polls / self.polls if self.polls else 0.0


def _ok(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return int(response.status) == 200
    except (OSError, urllib.error.URLError):
        return False


class HealthProbe:
    """Polls ``urls()`` every ``interval`` seconds until stopped; a context manager."""

    def __init__(
        self, urls: Callable[[], list[str]], *, interval: float = 0.05, timeout: float = 0.5
    ) -> None:
        self._urls = urls
        self._interval = interval
        self._timeout = timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="health-probe", daemon=True)
        self._polls = 0
        self._failed = 0
        self._outage_start: float | None = None
        self._longest = 0.0

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            serving = any(_ok(url, self._timeout) for url in self._urls())
            self._polls += 1
            if serving:
                if self._outage_start is not None:
                    self._longest = max(self._longest, now - self._outage_start)
                    self._outage_start = None
            else:
                self._failed += 1
                if self._outage_start is None:
                    self._outage_start = now
            self._stop.wait(self._interval)

    def start(self) -> HealthProbe:
        self._thread.start()
        return self

    def stop(self) -> ProbeStats:
        self._stop.set()
        self._thread.join()
        if self._outage_start is not None:
            self._longest = max(self._longest, time.monotonic() - self._outage_start)
        return ProbeStats(self._polls, self._failed, self._longest)

    def __enter__(self) -> HealthProbe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if not self._stop.is_set():
            self.stop()
