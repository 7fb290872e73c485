"""Recovery waits for a heal already under way (a duration's timer restarting a database)."""

from __future__ import annotations

import threading
import time
from typing import Any

from harness.deploy.runner import _Faults
from harness.report.outcome import EventKind, Timeline


class _SlowHeal:
    """A fault whose heal takes a while (like restarting a crashed database)."""

    name = "slow_heal"
    duration = 0.01

    def __init__(self) -> None:
        self.healing = threading.Event()
        self.healed = threading.Event()
        self.heals = 0

    def inject(self, ctx: Any) -> str:
        return "handle"

    def heal(self, ctx: Any, handle: Any) -> None:
        self.heals += 1
        self.healing.set()
        time.sleep(0.3)
        self.healed.set()


def test_heal_all_waits_for_the_heal_the_timer_started() -> None:
    fault = _SlowHeal()
    timeline = Timeline()
    faults = _Faults(fault, None, timeline, [])  # type: ignore[arg-type]
    faults.inject("before:step")
    assert fault.healing.wait(timeout=5), "the duration's timer started the heal"
    faults.heal_all("recovery starts")
    assert fault.healed.is_set(), "heal_all returned while the heal was half done"
    assert fault.heals == 1
    kinds = [e.kind for e in timeline.events]
    assert kinds == [EventKind.FAULT_INJECT, EventKind.FAULT_HEAL]
