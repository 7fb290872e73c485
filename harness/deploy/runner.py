"""One chaos run: upgrade A -> B step by step, fire a fault at its point, detect, recover.

:func:`run_chaos` is the core the pytest plugin and the CLI both call::

    with open_backend("local") as backend:
        outcome = run_chaos(backend, RunSpec(target, "v1", "v2", DbCrash(),
                                             parse_point("during:migrate:0004"),
                                             StrategyName.ROLLBACK))

Faults are healed in ``finally`` whatever happens; every step, fault, detection and recovery
step lands in the outcome's timeline; the end state is read back from the database and the
instances themselves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from harness._wait import wait_for
from harness.backends.base import Backend, Stack
from harness.deploy.plan import Plan, Step, StepKind, build_plan, reported_release
from harness.deploy.points import FaultPoint, When
from harness.deploy.strategies import StrategyName, recover
from harness.errors import ChaosError, ServiceError, SpecError, WaitTimeout
from harness.faults.base import Fault, FaultContext
from harness.report.outcome import (
    EndState,
    EventKind,
    InstanceState,
    RunError,
    RunOutcome,
    Timeline,
)
from harness.spec import Target

__all__ = [
    "Detection",
    "DetectionKind",
    "ErrorBudget",
    "Progress",
    "RunSpec",
    "run_chaos",
]

Progress = Callable[[str], None]


class DetectionKind(enum.Enum):
    STEP_ERROR = "step_error"
    HEALTH = "health"
    ERROR_BUDGET = "error_budget"
    FORCED = "forced"


@dataclass(frozen=True, slots=True)
class Detection:
    kind: DetectionKind
    step: str
    detail: str

    def describe(self) -> str:
        return f"{self.kind.value} at {self.step}: {self.detail}"


class ErrorBudget(Protocol):
    """What a workload reports detection through (like Argo Rollouts' analysis)."""

    def breach(self) -> str | None:
        """A description when the error budget is exceeded right now, else None."""


class RunController(Protocol):
    """Someone watching and steering the run as it goes (the game day).

    ``attach`` is called once the stack is up and the workload runs; ``before_step`` before
    each plan step; ``at_fault_point`` right before the fault is injected (it may block until
    a facilitator says go); ``choose_strategy`` after detection (it may ask the team).
    """

    def attach(
        self,
        stack: Stack,
        timeline: Timeline,
        plan: Sequence[str],
        rates: Callable[[], tuple[float, float] | None] | None,
    ) -> None: ...

    def before_step(self, step: Step) -> None: ...

    def at_fault_point(self, point: FaultPoint, fault: str) -> None: ...

    def choose_strategy(self, detection: str, default: StrategyName) -> StrategyName: ...


class Workload(Protocol):
    """Live traffic during the run (see harness.workload)."""

    def start(self, stack: Stack, timeline: Timeline) -> None: ...

    def stop(self) -> dict[str, Any]:
        """Stop (in-flight operations become ``info``) and return history statistics."""

    def breach(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Everything that defines one run."""

    target: Target
    source: str
    dest: str
    fault: Fault
    point: FaultPoint
    strategy: StrategyName
    fix: str | None = None
    instances: int = 2
    seed: int = 0
    #: The seed of the target's seed data; None: ``seed``. A scenario gives every run the
    #: same data (its base seed) and each run its own workload draw (``seed``).
    data_seed: int | None = None
    scenario: str = "adhoc"
    recover_after: str | None = None
    step_timeout: float = 120.0
    health_grace: float = 2.0
    #: Run the target's own workload (when it declares one and none is passed in).
    target_workload: bool = True
    #: Overrides of the target's workload settings (``clients``, ``rate``, ``timeout``).
    workload_settings: Mapping[str, float] = field(default_factory=dict)

    def plan(self) -> Plan:
        plan = build_plan(
            self.target,
            self.target.release(self.source),
            self.target.release(self.dest),
            instances=self.instances,
        )
        self.point.check(plan)
        self.fault.validate(plan, None if self.point.in_recovery else self.point.step)
        if self.fix is not None:
            self.target.release(self.fix)
        if self.recover_after is not None and self.recover_after not in plan.step_names:
            raise SpecError(
                f"recover_after {self.recover_after!r} names no step of the plan",
                choices=plan.step_names,
            )
        if self.step_timeout <= 0 or self.health_grace < 0:
            raise SpecError("step_timeout must be > 0 and health_grace >= 0")
        return plan


@dataclass(slots=True)
class _Active:
    handle: Any
    injected_at: float
    healed: bool = False
    timer: threading.Timer | None = None
    #: Set once the heal has finished (whoever ran it: the duration's timer or heal_all).
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(slots=True)
class _Faults:
    """Inject/heal bookkeeping: heal runs once, from a timer or from ``heal_all``."""

    fault: Fault
    ctx: FaultContext
    timeline: Timeline
    errors: list[RunError]
    active: list[_Active] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fault_seconds: float = 0.0

    def inject(self, where: str) -> None:
        self.timeline.add(EventKind.FAULT_INJECT, self.fault.name, where)
        try:
            handle = self.fault.inject(self.ctx)
        except (ChaosError, OSError) as exc:
            self.errors.append(RunError("inject", self.fault.name, type(exc).__name__, str(exc)))
            self.timeline.add(EventKind.NOTE, self.fault.name, f"inject failed: {exc}")
            handle = None
        entry = _Active(handle, time.monotonic())
        with self.lock:
            self.active.append(entry)
        duration = self.fault.duration
        if duration is not None:
            entry.timer = threading.Timer(duration, self._heal, (entry, "duration elapsed"))
            entry.timer.daemon = True
            entry.timer.start()

    def _heal(self, entry: _Active, why: str) -> None:
        with self.lock:
            if entry.healed:
                return
            entry.healed = True
            self.fault_seconds += time.monotonic() - entry.injected_at
        try:
            self.fault.heal(self.ctx, entry.handle)
        except (ChaosError, OSError) as exc:
            self.errors.append(RunError("heal", self.fault.name, type(exc).__name__, str(exc)))
            self.timeline.add(EventKind.FAULT_HEAL_FAILED, self.fault.name, str(exc)[:2000])
            return
        finally:
            entry.done.set()
        self.timeline.add(EventKind.FAULT_HEAL, self.fault.name, why)

    def heal_all(self, why: str) -> None:
        """Heal what is still active and wait for heals already under way (a duration's
        timer may be restarting the database right now): recovery must not start, and
        must not look at the stack, while a heal is half done."""
        for entry in list(self.active):
            if entry.timer is not None:
                entry.timer.cancel()
            self._heal(entry, why)
            if not entry.done.wait(timeout=_HEAL_WAIT):
                self.errors.append(
                    RunError(
                        "heal",
                        self.fault.name,
                        "HealTimeout",
                        f"a heal under way did not finish within {_HEAL_WAIT:.0f}s",
                    )
                )


#: How long recovery waits for a heal already under way (a database restart, say).
_HEAL_WAIT = 120.0


def _step_release(ctx: FaultContext, plan: Plan) -> Any:
    return ctx.release_override or plan.dest


#: What a statement-triggered ``during`` point watches: statements running right now in
#: every session but the harness's own.
_ACTIVE_STATEMENTS = (
    "SELECT query FROM pg_stat_activity WHERE state = 'active' "
    "AND pid <> pg_backend_pid() AND application_name NOT LIKE 'deploy-chaos%'"
)


class _DuringTrigger:
    """Fires the fault while a step runs: after a delay, or when a statement is seen."""

    def __init__(self, point: FaultPoint, stack: Stack, fire: Callable[[str], None]) -> None:
        self._point = point
        self._stack = stack
        self._fire = fire
        self._done = threading.Event()
        self._fired = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="during-trigger", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _fire_once(self, detail: str) -> None:
        with self._lock:
            if self._fired.is_set():
                return
            self._fired.set()
        self._fire(detail)

    def _run(self) -> None:
        if self._point.statement is None:
            if not self._done.wait(self._point.effective_delay):
                self._fire_once(f"{self._point.effective_delay:.2f}s into the step")
            return
        pattern = re.compile(self._point.statement, re.IGNORECASE)
        if self._point.delay and self._done.wait(self._point.delay):
            return
        # One connection for the whole watch (a new one every 10 ms costs a server process
        # each time); opened again after a failure (the fault may be a database crash).
        conn: Any = None
        try:
            while not self._done.is_set():
                rows: list[tuple[Any, ...]] = []
                try:
                    if conn is None:
                        conn = self._stack.database.connect(timeout=2)
                    rows = conn.execute(_ACTIVE_STATEMENTS).fetchall()
                except Exception:
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            conn.close()
                    conn = None
                for (query,) in rows:
                    if query and pattern.search(str(query)):
                        self._fire_once(f"statement seen running: {str(query)[:200]}")
                        return
                self._done.wait(0.01)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

    def finish(self) -> None:
        """The step ended: stop watching; fire now if the trigger never did."""
        self._done.set()
        self._thread.join()
        self._fire_once("at the step's end (the step finished before the trigger)")


def _run_step(stack: Stack, plan: Plan, step: Step, ctx: FaultContext, timeout: float) -> None:
    if step.kind in (StepKind.MIGRATE, StepKind.CONTRACT):
        assert step.arg is not None
        release = plan.dest
        command = stack.start_command(release, release.migrate_command, {"target": step.arg})
        ctx.command = command
        try:
            result = command.wait(timeout=timeout)
        finally:
            ctx.command = None
        if not result.ok:
            raise ServiceError(
                f"{stack.name}.migrate",
                step.name,
                f"exit status {result.returncode} after {result.seconds:.1f}s",
                result.output[-3000:],
            )
    elif step.kind is StepKind.ROLLOUT:
        assert step.arg is not None
        stack.apps[int(step.arg)].deploy(_step_release(ctx, plan))
    else:
        expected = list(plan.dest.expand_migrations)
        applied = stack.applied_migrations()
        if applied != expected:
            raise ServiceError(stack.name, "verify", f"migrations {applied}, expected {expected}")
        for app in stack.apps:
            said = reported_release(app.base_url, app.release)
            if said != plan.dest.name:
                raise ServiceError(
                    app.name, "verify", f"reports release {said!r}, expected {plan.dest.name!r}"
                )


def _unhealthy(stack: Stack, grace: float) -> str | None:
    """Instances still unhealthy after ``grace`` seconds, described; None when all are fine."""
    bad: list[str] = []

    def all_healthy() -> bool:
        bad[:] = [a.name for a in stack.apps if not _app_healthy(a)]
        return not bad

    try:
        wait_for(all_healthy, what="every instance to be healthy", timeout=grace, interval=0.05)
    except WaitTimeout:
        return f"{', '.join(bad)} failing the health check for {grace:.1f}s"
    return None


def _app_healthy(app: Any) -> bool:
    return bool(app.running and not app.paused and app.healthy(timeout=1.0))


def read_end_state(stack: Stack) -> EndState:
    """The state as the system itself reports it."""
    try:
        migrations: tuple[str, ...] | None = tuple(stack.applied_migrations())
    except Exception:
        migrations = None
    instances = []
    for app in stack.apps:
        try:
            release = reported_release(app.base_url, app.release) if app.running else None
        except (OSError, ValueError):
            release = None
        instances.append(
            InstanceState(
                app.index,
                release,
                _app_healthy(app) if app.running else False,
                app.running,
                app.paused,
            )
        )
    return EndState(migrations, tuple(instances))


def run_chaos(
    backend: Backend,
    spec: RunSpec,
    *,
    workload: Workload | None = None,
    progress: Progress | None = None,
    after_run: Callable[[Stack, RunOutcome], None] | None = None,
    history_path: Path | None = None,
    controller: RunController | None = None,
) -> RunOutcome:
    """Run one chaos deploy and return its outcome (never raises for what the fault caused).

    When no ``workload`` is given and the target declares one, the target's workload runs
    (seeded from ``spec.seed``); its history is written as JSON lines to ``history_path``
    when given. The target's invariants run after the end state is read, before teardown;
    each verdict lands in ``outcome.verdicts[name]`` as ``{"status", "evidence"}``, with
    ``recovery`` always among them. ``after_run`` is called with the stack still up, after
    faults are healed, the end state read and the invariants checked.
    """
    from harness.invariants import invariants_for
    from harness.invariants.base import Verdict
    from harness.invariants.run import (
        check_run,
        recovery_verdict,
        stop_workload,
        take_baselines,
    )
    from harness.workload.client import ClientWorkload

    plan = spec.plan()
    say = progress or (lambda _msg: None)
    timeline = Timeline()
    errors: list[RunError] = []
    outcome = RunOutcome(
        scenario=spec.scenario,
        target=spec.target.name,
        source=spec.source,
        dest=spec.dest,
        fault=spec.fault.name,
        point=spec.point.name,
        strategy=spec.strategy.value,
        seed=spec.seed,
        backend=backend.name,
        run_id=backend.run_id,
        plan=plan.step_names,
    )
    timeline.add(EventKind.RUN_START, outcome.run_key)
    invariants = invariants_for(spec.target)
    if workload is None and spec.target_workload and spec.target.workload is not None:
        workload = ClientWorkload(
            dataclasses.replace(spec.target.workload, **spec.workload_settings),  # type: ignore[arg-type]
            seed=spec.seed,
        )
        say(f"{outcome.run_key}: workload seed {spec.seed}")
    data_seed = spec.seed if spec.data_seed is None else spec.data_seed
    recovery = Verdict.valid(needed=False)
    baselines: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    say(f"{outcome.run_key}: starting stack on {spec.source} (seed data: seed {data_seed})")
    with (
        backend.start_stack(
            spec.target, plan.source, instances=spec.instances, seed=data_seed
        ) as stack,
        tempfile.TemporaryDirectory(prefix="deploy-chaos-backup-") as tmp,
    ):
        ctx = FaultContext(stack, plan)
        faults = _Faults(spec.fault, ctx, timeline, errors)
        # The backup the restore strategy restores; only taken when restore may be chosen.
        backup: Path | None = None
        if spec.strategy is StrategyName.RESTORE or controller is not None:
            backup = Path(tmp) / "before-plan.dump"
            stack.database.backup(backup)
        detection: Detection | None = None
        try:
            baselines, problems = take_baselines(invariants, stack)
            errors.extend(RunError("baseline", n, "BaselineFailed", m) for n, m in problems)
            if workload is not None:
                workload.start(stack, timeline)
            if controller is not None:
                live = workload.history if isinstance(workload, ClientWorkload) else None
                controller.attach(
                    stack,
                    timeline,
                    plan.step_names,
                    partial(live_rates, live) if live is not None else None,
                )
            detection = _walk_plan(
                stack, plan, spec, ctx, faults, timeline, workload, say, controller
            )
            if detection is None and not faults.active and not spec.point.in_recovery:
                errors.append(
                    RunError(
                        "plan", spec.point.name, "NotFired", "the fault point was never reached"
                    )
                )
            faults.heal_all("recovery starts" if detection else "plan finished")
            strategy = spec.strategy
            if detection is not None and controller is not None:
                strategy = controller.choose_strategy(detection.describe(), spec.strategy)
                if strategy is not spec.strategy:
                    outcome.strategy = strategy.value
                    timeline.add(EventKind.NOTE, "strategy", f"chosen live: {strategy.value}")
            if detection is not None:
                outcome.detected = detection.describe()
                say(
                    f"{outcome.run_key}: detected {detection.describe()}; "
                    f"recovering by {strategy.value}"
                )
                recovery = Verdict.unknown(
                    needed=True, strategy=strategy.value, reason="recovery did not finish"
                )
                recovery_trigger = None
                if spec.point.in_recovery:
                    recovery_trigger = _DuringTrigger(
                        spec.point, stack, lambda d: faults.inject(f"during recovery, {d}")
                    )
                    recovery_trigger.start()
                try:
                    result = recover(
                        strategy,
                        stack=stack,
                        plan=plan,
                        timeline=timeline,
                        fix=spec.target.release(spec.fix) if spec.fix else None,
                        backup=backup,
                        step_timeout=spec.step_timeout,
                    )
                finally:
                    if recovery_trigger is not None:
                        recovery_trigger.finish()
                outcome.recovered = result.ok
                for failed in (s for s in result.steps if not s.ok):
                    errors.append(
                        RunError("recovery", failed.name, "RecoveryStepFailed", failed.error)
                    )
                recovery = recovery_verdict(strategy.value, result.steps)
        finally:
            faults.heal_all("run ends")
            if workload is not None:
                outcome.history_stats, problems = stop_workload(workload)
                errors.extend(RunError("workload", n, "WorkloadError", m) for n, m in problems)
            outcome.end_state = read_end_state(stack)
            errors.extend(_leftovers(stack))
            history = workload.history if isinstance(workload, ClientWorkload) else None
            if history is not None:
                outcome.history_stats["series"] = throughput_series(history)
            if history is not None and history_path is not None:
                history.write_jsonl(history_path)
                outcome.history_stats["history_file"] = str(history_path)
            outcome.verdicts = check_run(
                stack,
                outcome.end_state,
                invariants,
                history,
                baselines=baselines,
                target=spec.target,
                seed=spec.seed,
                progress=say,
            )
            outcome.verdicts["recovery"] = recovery.to_json()
            if after_run is not None:
                after_run(stack, outcome)
            timeline.add(EventKind.RUN_END, outcome.run_key)
            outcome.events = timeline.events
            outcome.errors = tuple(errors)
            outcome.duration_s = timeline.elapsed()
            outcome.fault_seconds = faults.fault_seconds
            say(
                f"{outcome.run_key}: done in {outcome.duration_s:.1f}s; end state "
                f"migrations={list(outcome.end_state.migrations or [])} "
                f"releases={list(outcome.end_state.releases)}"
            )
    return outcome


def _walk_plan(
    stack: Stack,
    plan: Plan,
    spec: RunSpec,
    ctx: FaultContext,
    faults: _Faults,
    timeline: Timeline,
    workload: Workload | None,
    say: Progress,
    controller: RunController | None = None,
) -> Detection | None:
    point = spec.point
    for step in plan.steps:
        ctx.step = step
        if controller is not None:
            controller.before_step(step)
            if point.step == step.name and point.when is not When.AFTER:
                controller.at_fault_point(point, spec.fault.name)
        if point.when is When.BEFORE and point.step == step.name:
            faults.inject(point.name)
        trigger = None
        if point.when is When.DURING and point.step == step.name:
            trigger = _DuringTrigger(point, stack, lambda d: faults.inject(f"{point.name}, {d}"))
        say(f"  step {step.name}")
        timeline.add(EventKind.STEP_START, step.name)
        failure: str | None = None
        if trigger is not None:
            trigger.start()
        try:
            _run_step(stack, plan, step, ctx, spec.step_timeout)
        except (ChaosError, OSError) as exc:
            failure = f"{type(exc).__name__}: {exc}"
        finally:
            if trigger is not None:
                trigger.finish()
        if failure is not None:
            timeline.add(EventKind.STEP_FAILED, step.name, failure[:2000])
            return _detected(timeline, DetectionKind.STEP_ERROR, step.name, failure)
        timeline.add(EventKind.STEP_END, step.name)
        if point.when is When.AFTER and point.step == step.name:
            if controller is not None:
                controller.at_fault_point(point, spec.fault.name)
            faults.inject(point.name)
        unhealthy = _unhealthy(stack, spec.health_grace)
        if unhealthy is not None:
            return _detected(timeline, DetectionKind.HEALTH, step.name, unhealthy)
        breach = workload.breach() if workload is not None else None
        if breach is not None:
            return _detected(timeline, DetectionKind.ERROR_BUDGET, step.name, breach)
        if spec.recover_after == step.name:
            return _detected(
                timeline, DetectionKind.FORCED, step.name, "the scenario forces recovery here"
            )
    return None


def _detected(timeline: Timeline, kind: DetectionKind, step: str, detail: str) -> Detection:
    detection = Detection(kind, step, detail[:2000])
    timeline.add(EventKind.DETECTION, kind.value, f"{step}: {detail[:2000]}")
    return detection


def _leftovers(stack: Stack) -> list[RunError]:
    """Faults must leave nothing behind: no paused process, no toxic, no disabled proxy."""
    errors = []
    with contextlib.suppress(Exception):
        if stack.database.paused:
            errors.append(RunError("teardown", "database", "Leftover", "database left paused"))
    for app in stack.apps:
        if app.paused:
            errors.append(RunError("teardown", app.name, "Leftover", "instance left paused"))
    if stack.db_proxy is not None:
        from harness.faults.network import leftover_network_faults

        try:
            left = leftover_network_faults(stack.db_proxy)
        except ChaosError as exc:
            left = [f"cannot read the proxy: {exc}"]
        errors.extend(RunError("teardown", stack.db_proxy.name, "Leftover", x) for x in left)
    return errors


def live_rates(history: Any, window: float = 5.0) -> tuple[float, float] | None:
    """Completed operations per second and the error rate over the last ``window`` seconds."""
    now = history.now()
    recent = [op for op in history.ops if op.type.value != "invoke" and op.time >= now - window]
    if not recent:
        return None
    errors = sum(
        1
        for op in recent
        if op.type.value == "info"
        or (op.type.value == "fail" and getattr(op.error_kind, "value", "") != "rejected")
    )
    return len(recent) / window, errors / len(recent)


def throughput_series(history: Any, bucket: float = 0.5) -> list[list[float]]:
    """``[t, ok, fail, info]`` per ``bucket`` seconds of the run, in operations per second."""
    counts: dict[int, list[int]] = {}
    for op in history.ops:
        kind = op.type.value
        if kind == "invoke":
            continue
        slot = counts.setdefault(int(op.time // bucket), [0, 0, 0])
        slot[("ok", "fail", "info").index(kind)] += 1
    if not counts:
        return []
    return [
        [round(i * bucket, 3), *(n / bucket for n in counts.get(i, [0, 0, 0]))]
        for i in range(min(counts), max(counts) + 1)
    ]
