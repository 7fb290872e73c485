"""Extension points of the deploy-chaos pytest plugin (registered via ``pytest_addhooks``).

Implement them in a ``conftest.py`` or a plugin::

    def pytest_deploy_chaos_register_faults(registry):
        registry.register("disk_full", DiskFull)          # a Fault dataclass

    def pytest_deploy_chaos_invariant_names():
        return ["no_negative_balance"]                    # accepted in scenario files

    def pytest_deploy_chaos_report_sections(entries):
        return [("my section", "text printed after the scorecard")]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from harness.faults.registry import FaultRegistry
    from harness.report.outcome import RunOutcome
    from harness.report.terminal import ScoreEntry
    from harness.scenario import RunCase
    from harness.session import ChaosSession

__all__: list[str] = []


def pytest_deploy_chaos_register_faults(registry: FaultRegistry) -> None:
    """Add fault names to the session's registry (``registry.register(name, cls)``)."""


def pytest_deploy_chaos_invariant_names() -> Sequence[str]:
    """Names of extra invariants (verdicts) that scenario files may list and expect."""
    return ()


@pytest.hookspec(firstresult=True)
def pytest_deploy_chaos_execute(
    case: RunCase, seed: int, session: ChaosSession
) -> RunOutcome | None:
    """Produce the outcome of one run; the first non-None answer wins.

    The default runs the engine on the session's backend. Replays of recorded outcomes and
    tests of the judgement return an outcome here instead.
    """


def pytest_deploy_chaos_run_finished(case: RunCase, outcome: RunOutcome | None) -> None:
    """Called after each run, with its outcome (None when the run crashed)."""


def pytest_deploy_chaos_report_sections(entries: Sequence[ScoreEntry]) -> Sequence[tuple[str, str]]:
    """Extra ``(title, text)`` sections printed after the scorecard."""
    return ()
