"""The glue the runner calls: baselines before the workload, verdicts after the end state.

Kept here so the runner stays a list of steps: :func:`take_baselines` before the workload
starts, :func:`stop_workload` when the run ends, :func:`check_run` once the end state is read
(the stack still up), :func:`recovery_verdict` for the always-present ``recovery`` verdict.
None of them raises for what the run did to the system: problems become run errors or
``unknown`` verdicts with the error as evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import psycopg

from harness.errors import ChaosError, WorkloadError
from harness.invariants.base import (
    AppEndpoint,
    Invariant,
    RunFacts,
    Verdict,
    capture_baselines,
    check_all,
    open_check_context,
)
from harness.workload.history import History, JsonValue

if TYPE_CHECKING:
    from harness.backends.base import Stack
    from harness.report.outcome import EndState
    from harness.spec import Target

__all__ = ["check_run", "recovery_verdict", "stop_workload", "take_baselines"]


class _Step(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def ok(self) -> bool: ...

    @property
    def error(self) -> str: ...


class _Stoppable(Protocol):
    def stop(self) -> dict[str, Any]: ...


def take_baselines(
    invariants: Sequence[Invariant], stack: Stack
) -> tuple[dict[str, Mapping[str, JsonValue]], list[tuple[str, str]]]:
    """Baselines by invariant name, and (name, error) for those that could not be taken."""
    try:
        baselines, failed = capture_baselines(invariants, stack.database.url)
    except (psycopg.Error, ChaosError, OSError) as exc:
        return {}, [("database", f"{type(exc).__name__}: {exc}"[:2000])]
    return baselines, sorted(failed.items())


def recovery_verdict(strategy: str, steps: Sequence[_Step]) -> Verdict:
    """``valid`` when every recovery step completed; ``invalid`` naming the failed step."""
    names: list[JsonValue] = [s.name for s in steps]
    failed = [s for s in steps if not s.ok]
    if not failed:
        return Verdict.valid(needed=True, strategy=strategy, steps=names)
    return Verdict.invalid(
        needed=True,
        strategy=strategy,
        steps=names,
        failed_step=failed[0].name,
        error=failed[0].error[:2000],
    )


def stop_workload(workload: _Stoppable) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Stop the workload: its statistics, and (subject, message) for what went wrong."""
    from harness.workload.client import ClientWorkload

    problems: list[tuple[str, str]] = []
    try:
        stats = dict(workload.stop())
    except WorkloadError as exc:
        problems.append(("stop", f"{type(exc).__name__}: {exc}"[:2000]))
        stats = {}
    if isinstance(workload, ClientWorkload):
        for client, trace in workload.crashes:
            problems.append((f"client-{client}", trace[-2000:]))
    return stats, problems


def check_run(
    stack: Stack,
    end_state: EndState,
    invariants: Sequence[Invariant],
    history: History | None,
    *,
    baselines: Mapping[str, Mapping[str, JsonValue]],
    target: Target,
    seed: int,
    progress: Callable[[str], None] | None = None,
    run: RunFacts | None = None,
) -> dict[str, Any]:
    """Every invariant's verdict as JSON (``{"status", "evidence"}``) by name."""
    apps = [
        AppEndpoint(app.index, state.release, app.base_url)
        for app, state in zip(stack.apps, end_state.instances, strict=False)
        if state.running and not state.paused
    ]
    timeout = target.workload.timeout if target.workload is not None else 2.0
    verdicts: dict[str, Any] = {}

    def done(name: str, verdict: Verdict, seconds: float) -> None:
        if progress is not None:
            progress(f"  invariant {name}: {verdict.status.value} ({seconds:.2f}s)")

    try:
        with open_check_context(
            stack.database.url,
            history if history is not None else History.of(()),
            target=target,
            end_state=end_state,
            apps=apps,
            baselines=baselines,
            http_timeout=timeout,
            seed=seed,
            run=run,
        ) as ctx:
            for name, verdict in check_all(invariants, ctx, on_done=done).items():
                verdicts[name] = verdict.to_json()
    except (psycopg.Error, ChaosError, OSError) as exc:
        # The database cannot even be reached: nothing can be said about any invariant.
        error = f"{type(exc).__name__}: {exc}"[:2000]
        for inv in invariants:
            verdicts.setdefault(inv.name, Verdict.unknown(error=error).to_json())
    return verdicts
