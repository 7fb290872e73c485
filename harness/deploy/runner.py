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
from harness.backends.base import AppInstance, Backend, Stack
from harness.deploy.canary import Analysis, Canary, analyse, analyse_sides, exposure
from harness.deploy.plan import Plan, Step, StepKind, build_plan, reported_release
from harness.deploy.points import FaultPoint, When
from harness.deploy.strategies import StrategyName, recover
from harness.errors import ChaosError, NothingToActOn, ServiceError, SpecError, WaitTimeout
from harness.faults.base import Fault, FaultContext, FaultKind, Injected
from harness.flags import FlagRollout, switch_flag
from harness.invariants.base import FaultWindow, Invariant
from harness.report.outcome import (
    EndState,
    EventKind,
    InstanceState,
    RunError,
    RunOutcome,
    Timeline,
)
from harness.spec import Release, Target
from harness.workload.balancer import Balancer, MemberState
from harness.workload.model import ErrorBudget as ErrorBudgetSpec
from harness.workload.phases import PhaseResult, Phases

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
    #: A weighted canary's analysis failed or could not judge (harness.deploy.canary).
    ANALYSIS = "analysis"


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
    #: The quotas of the warm-up, the bakes and the soak; None: the target workload's.
    phases: Phases | None = None
    #: The availability invariant with the scenario's budget (replaces the default one).
    availability: Invariant | None = None
    #: A weighted canary: weight steps after the first rollout, each judged by an analysis.
    canary: Canary | None = None
    #: A flag the plan turns on step by step after verify (harness.flags), each step
    #: judged by an analysis; the kill_switch strategy turns it off.
    flag: FlagRollout | None = None
    #: Detection by the clients' error rate; None: the target workload's own budget.
    budget: ErrorBudgetSpec | None = None

    def plan(self) -> Plan:
        plan = build_plan(
            self.target,
            self.target.release(self.source),
            self.target.release(self.dest),
            instances=self.instances,
            canary=self.canary.weights if self.canary is not None else (),
            flag=self.flag,
        )
        self.point.check(plan)
        if self.strategy is StrategyName.KILL_SWITCH and self.flag is None:
            raise SpecError(
                "strategy kill_switch without a flag rollout: there is no flag to turn off",
                expected="a flag rollout (a scenario's flag: key), or another strategy",
            )
        control = self.fault.kind is FaultKind.CONTROL
        if self.point.when is When.NEVER and not control:
            raise SpecError(
                f"fault {self.fault.name} at point none: nothing would fire",
                expected="a point of the plan (point none is for no_fault)",
            )
        moments = getattr(self.fault, "moments", None)
        if moments is not None and not control and self.point.when.value not in moments:
            raise SpecError(
                f"fault {self.fault.name} at {self.point.name}: it acts on what runs during a "
                "step, so it can only fire at a during: point",
                expected=" or ".join(f"{m}:<step>" for m in moments),
            )
        if self.point.when is not When.NEVER:
            self.fault.validate(plan, None if self.point.in_recovery else self.point.step)
            validate_point = getattr(self.fault, "validate_point", None)
            if callable(validate_point):
                validate_point(plan, self.point)
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
class _Injection:
    """One injection of the run's fault, and what became of it."""

    where: str
    injected_at: float
    t: float
    handle: Any = None
    acted_on: Mapping[str, Any] | None = None
    error: str | None = None
    missed: str | None = None
    healed: bool = False
    healed_t: float | None = None
    heal_reason: str = ""
    timer: threading.Timer | None = None
    #: Set once the heal has finished (whoever ran it: the duration's timer or heal_all).
    done: threading.Event = field(default_factory=threading.Event)

    def to_json(self, declared: float | None) -> dict[str, Any]:
        lasted = None if self.healed_t is None else round(self.healed_t - self.t, 4)
        return {
            "where": self.where,
            "injected_t": round(self.t, 4),
            "healed_t": None if self.healed_t is None else round(self.healed_t, 4),
            "lasted_s": lasted,
            "declared_s": declared,
            "healed_by": self.heal_reason,
            "acted_on": None if self.acted_on is None else dict(self.acted_on),
            "error": self.error,
            "missed": self.missed,
        }


@dataclass(slots=True)
class _Faults:
    """Inject/heal bookkeeping: heal runs once, from a timer or from ``heal_all``."""

    fault: Fault
    ctx: FaultContext
    timeline: Timeline
    errors: list[RunError]
    active: list[_Injection] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fault_seconds: float = 0.0

    def inject(self, where: str) -> None:
        event = self.timeline.add(EventKind.FAULT_INJECT, self.fault.name, where)
        entry = _Injection(where, time.monotonic(), event.t)
        try:
            result = self.fault.inject(self.ctx)
        except NothingToActOn as exc:
            entry.error = str(exc)
            self.errors.append(RunError("inject", self.fault.name, "NothingToActOn", exc.detail))
            self.timeline.add(EventKind.NOTE, self.fault.name, f"nothing to act on: {exc.detail}")
        except Exception as exc:  # a fault's own code (a user's too) must not end the run
            entry.error = f"{type(exc).__name__}: {exc}"
            self.errors.append(RunError("inject", self.fault.name, type(exc).__name__, str(exc)))
            self.timeline.add(EventKind.NOTE, self.fault.name, f"inject failed: {exc}")
        else:
            if isinstance(result, Injected):
                entry.acted_on, entry.handle = dict(result.acted_on), result.handle
                acted = ", ".join(f"{k}={v}" for k, v in result.acted_on.items())
                self.timeline.add(EventKind.NOTE, self.fault.name, f"acted on: {acted or '-'}")
            else:
                entry.handle = result
        with self.lock:
            self.active.append(entry)
        duration = self.fault.duration
        if duration is not None and entry.error is None:
            entry.timer = threading.Timer(duration, self._heal, (entry, "duration elapsed"))
            entry.timer.daemon = True
            entry.timer.start()

    @property
    def fired(self) -> bool:
        return bool(self.active)

    def _heal(self, entry: _Injection, why: str) -> None:
        with self.lock:
            if entry.healed:
                return
            entry.healed = True
            self.fault_seconds += time.monotonic() - entry.injected_at
        missed = getattr(self.fault, "missed", None)
        try:
            if entry.error is None and callable(missed):
                entry.missed = missed(self.ctx, entry.handle)
                if entry.missed is not None:
                    self.errors.append(
                        RunError("inject", self.fault.name, "NoEffect", entry.missed)
                    )
                    self.timeline.add(EventKind.NOTE, self.fault.name, f"no effect: {entry.missed}")
            self.fault.heal(self.ctx, entry.handle)
        except Exception as exc:  # recorded as a harness error; the run goes on to its checks
            self.errors.append(RunError("heal", self.fault.name, type(exc).__name__, str(exc)))
            self.timeline.add(EventKind.FAULT_HEAL_FAILED, self.fault.name, str(exc)[:2000])
            return
        finally:
            entry.healed_t = self.timeline.elapsed()
            entry.heal_reason = why
            entry.done.set()
        self.timeline.add(EventKind.FAULT_HEAL, self.fault.name, why)

    def pending_durations(self) -> list[_Injection]:
        """Injections whose declared duration is still running."""
        return [e for e in list(self.active) if e.timer is not None and not e.done.is_set()]

    def hold(self, watch: Callable[[], Detection | None] | None) -> Detection | None:
        """Wait until every declared duration has elapsed (a fault keeps its word even when
        the plan finishes first); ``watch`` is asked meanwhile and ends the wait with a
        detection."""
        while self.pending_durations():
            for entry in self.pending_durations():
                entry.done.wait(0.1)
            if watch is not None and (found := watch()) is not None:
                return found
        return None

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

    def records(self) -> list[dict[str, Any]]:
        return [e.to_json(self.fault.duration) for e in self.active]

    def windows(self) -> tuple[FaultWindow, ...]:
        """When and where the fault acted on the stack's infrastructure (a release fault is
        a change of the system under test, not a window to look past)."""
        kind = self.fault.kind
        if kind in (FaultKind.RELEASE, FaultKind.CONTROL):
            return ()
        windows = []
        for entry in self.active:
            if entry.error is not None:
                continue
            acted = entry.acted_on or {}
            instance = acted.get("instance")
            scope: tuple[int, ...] | None
            if isinstance(instance, int):
                scope = (instance,)
            elif kind in (FaultKind.DATABASE, FaultKind.NETWORK):
                scope = None
            else:
                scope = ()
            windows.append(FaultWindow(self.fault.name, entry.t, entry.healed_t, scope))
        return tuple(windows)


#: How long recovery waits for a heal already under way (a database restart, say).
_HEAL_WAIT = 120.0


class _Deployer:
    """Replace an instance's release the way an orchestrator does: the balancer drains it
    (its requests in flight finish, no new ones), it is redeployed, and it is admitted back
    once the balancer's health check passes."""

    def __init__(
        self, balancer: Balancer | None, drain_timeout: float, admit_timeout: float
    ) -> None:
        self.balancer = balancer
        self.drain_timeout = drain_timeout
        self.admit_timeout = admit_timeout

    def __call__(self, app: AppInstance, release: Release) -> None:
        balancer = self.balancer
        if balancer is None:
            app.deploy(release)
            return
        balancer.drain(app.index, self.drain_timeout)
        deployed = False
        try:
            app.deploy(release)
            deployed = True
        finally:
            # A failed deploy is not waited for: the health checks put it back if it heals.
            balancer.admit(app.index, self.admit_timeout if deployed else 0.0)


class _Traffic:
    """The run's traffic through the balancer: free (paced) between phases, scheduled in
    the phases; every operation labelled with the phase it belongs to."""

    def __init__(
        self,
        workload: Workload | None,
        balancer: Balancer | None,
        stack: Stack,
        timeline: Timeline,
        settings: Phases,
        say: Progress,
    ) -> None:
        from harness.workload.client import ClientWorkload

        self.client = workload if isinstance(workload, ClientWorkload) else None
        self.balancer = balancer
        self.stack = stack
        self.timeline = timeline
        self.settings = settings
        self.say = say
        self.results: list[PhaseResult] = []
        self.labels: list[str] = []
        self.analyses: list[Analysis] = []

    def label(self, name: str) -> None:
        if name not in self.labels:
            self.labels.append(name)
        if self.client is not None:
            self.client.label(name)

    def _by_release(self) -> dict[str, list[tuple[int, str | None]]]:
        groups: dict[str, list[tuple[int, str | None]]] = {}
        for pick in self.balancer.rotation() if self.balancer is not None else ():
            groups.setdefault(pick.release or "?", []).append((pick.index, pick.release))
        return groups

    def _phase(
        self,
        name: str,
        quota: int,
        groups: Mapping[str, list[tuple[int, str | None]]],
    ) -> PhaseResult | None:
        if self.client is None or quota <= 0:
            return None
        self.label(name)
        self.timeline.add(
            EventKind.PHASE_START, name, f"{quota} of each operation per {', '.join(groups)}"
        )
        result = self.client.run_phase(name, groups, quota, self.settings.timeout)
        self.timeline.add(EventKind.PHASE_END, name, result.describe())
        self.say(f"  {name}: {result.describe()}")
        self.results.append(result)
        return result

    def warmup(self) -> None:
        self._phase("warmup", self.settings.warmup, self._by_release())

    def _window(
        self, since: float, counted: Callable[[Any], bool], samples: int, seconds: float
    ) -> list[Any] | None:
        """The completed operations invoked from ``since`` on, once ``samples`` of them are
        ``counted`` (or after ``seconds``, or when the workload stops); None without one."""
        client = self.client
        if client is None:
            return None
        deadline = time.monotonic() + seconds
        while True:
            ops = [o for o in client.history.operations(completed=True) if o.invoke_time >= since]
            if sum(1 for o in ops if counted(o)) >= samples or time.monotonic() >= deadline:
                return ops
            if client.wait_stopped(0.05):  # the history has no wake-up: poll it
                return ops

    def analyse(self, step: Step, stable: str, canary: Canary) -> Analysis:
        """A weight step's analysis window (see harness.deploy.canary): live traffic until
        the canary (any release but ``stable``) answered ``canary.samples`` operations sent
        since the weight was set, at most ``canary.window`` seconds; then the judgement."""
        assert step.arg is not None
        weight = int(step.arg)
        self.label(f"analysis:{step.name}")
        began = time.monotonic()
        since = self.client.history.now() if self.client is not None else 0.0
        ops = self._window(
            since, lambda o: o.release not in (stable, None), canary.samples, canary.window
        )
        if ops is None:
            result = Analysis(step.name, weight, "inconclusive", 0, 0, 0, 0, 0.0, "no workload")
        else:
            result = analyse(step.name, weight, ops, stable, canary, time.monotonic() - began)
        return self._record(result)

    def _record(self, result: Analysis) -> Analysis:
        self.analyses.append(result)
        self.timeline.add(EventKind.ANALYSIS, result.step, f"{result.verdict}: {result.detail}")
        self.say(f"  analysis {result.step}: {result.verdict}: {result.detail}")
        return result

    def analyse_flip(
        self, step: Step, started: float, flipped: float, flag: FlagRollout
    ) -> Analysis:
        """A flag step's analysis: live traffic until ``flag.samples`` operations sent after
        the flip took effect (``flipped``: the step's end, after the apps confirmed it)
        completed, at most ``flag.window`` s, against the operations sent in as long a time
        before the step began (``started``); the confirmation's own time is in neither."""
        percent = step.flag[1]
        self.label(f"analysis:{step.name}")
        began = time.monotonic()
        after = self._window(flipped, lambda o: True, flag.samples, flag.window)
        if after is None or self.client is None:
            result = Analysis(step.name, percent, "inconclusive", 0, 0, 0, 0, 0.0, "no workload")
            return self._record(result)
        span = max((o.invoke_time for o in after), default=flipped) - flipped
        before = [
            o
            for o in self.client.history.operations(completed=True)
            if started - max(span, 1.0) <= o.invoke_time < started
        ]
        result = analyse_sides(step.name, percent, after, before, flag, time.monotonic() - began)
        return self._record(result)

    def bake(self, step: Step) -> None:
        self._phase(f"bake:{step.name}", self.settings.bake, self._by_release())

    def soak(self) -> None:
        """The soak: each instance left running, once back in rotation (waited for at most
        half the phase's timeout; one still out is not soaked, and the end-state verdict
        says why), gets its quota, sent to it alone."""
        if self.client is None or self.settings.soak <= 0 or self.balancer is None:
            return
        running = [a.index for a in self.stack.apps if a.running and not a.paused]
        self.balancer.wait_for_rotation(running, self.settings.timeout / 2)
        # No release to fall back on: an instance's entries wait for that instance.
        groups: dict[str, list[tuple[int, str | None]]] = {
            f"app{p.index}": [(p.index, None)] for p in self.balancer.rotation()
        }
        self._phase("soak", self.settings.soak, groups)


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

    def finish(self) -> str | None:
        """The step ended: stop watching. None when the fault fired; else why not (a
        fault fired after its step is over would test something else: it does not fire)."""
        with self._lock:
            self._done.set()
            fired = self._fired.is_set()
            self._fired.set()  # from now on the watcher cannot fire
        self._thread.join()
        if fired:
            return None
        point = self._point
        if point.statement is not None:
            return (
                f"the step ended before a statement matching {point.statement!r} was seen running"
            )
        return f"the step ended before {point.effective_delay:.2f}s had passed"


def _run_step(
    stack: Stack,
    plan: Plan,
    step: Step,
    ctx: FaultContext,
    timeout: float,
    deploy: Callable[[AppInstance, Release], None],
    note: Callable[[str], None] | None = None,
) -> None:
    if step.kind in (StepKind.MIGRATE, StepKind.CONTRACT):
        assert step.arg is not None
        release = plan.dest
        command = stack.start_command(
            release, release.migrate_command, {"target": release.migrate_target(step.arg)}
        )
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
        app = stack.apps[int(step.arg)]
        if ctx.release_override is not None:
            ctx.overridden.append(app.index)
        deploy(app, _step_release(ctx, plan))
    elif step.kind is StepKind.FLAG:
        seen = switch_flag(stack, *step.flag, where=step.name)
        if note is not None:
            note(seen)
    elif step.kind is StepKind.WEIGHT:
        assert step.arg is not None
        balancer = getattr(deploy, "balancer", None)
        if balancer is None:
            raise ServiceError(stack.name, step.name, "a traffic weight needs the run's balancer")
        balancer.set_weight(int(step.arg), stable=plan.source.name)
    else:
        expected = plan.verified_migrations
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


#: How long the end state waits for a healthy instance to be readmitted (ten checks).
_READMIT_S = 2.0


def read_end_state(stack: Stack, balancer: Balancer | None = None) -> EndState:
    """The state as the system itself reports it (and, with a balancer, whether each
    instance was in rotation and its last health answers)."""
    try:
        migrations: tuple[str, ...] | None = tuple(stack.applied_migrations())
    except Exception:
        migrations = None
    healthy = {app.index: app.running and _app_healthy(app) for app in stack.apps}
    if balancer is not None:
        # An instance whose health came back just as the run ended gets the balancer's own
        # readmission time (a passed check every interval) before it counts as out of
        # rotation: without a soak (no workload) the end state is read right after recovery.
        back = [i for i, ok in healthy.items() if ok and balancer.state(i) is not MemberState.IN]
        if back:
            balancer.wait_for_rotation(back, timeout=_READMIT_S)
    instances = []
    for app in stack.apps:
        try:
            release = reported_release(app.base_url, app.release) if app.running else None
        except (OSError, ValueError):
            release = None
        in_rotation = None
        health: tuple[str, ...] = ()
        if balancer is not None:
            in_rotation = balancer.state(app.index) is MemberState.IN
            health = tuple(balancer.health_answers(app.index)[:5])
        instances.append(
            InstanceState(
                app.index,
                release,
                healthy[app.index],
                app.running,
                app.paused,
                in_rotation,
                health,
            )
        )
    return EndState(migrations, tuple(instances))


#: Client backends of the app still working on something (not the harness's own).
_BUSY_SESSIONS = (
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
    " AND pid <> pg_backend_pid() AND application_name NOT LIKE 'deploy-chaos%'"
    " AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')"
)


def settle(stack: Stack, timeout: float) -> tuple[bool, float]:
    """Wait (at most ``timeout`` s) until no session of the app is still working on a
    request the workload gave up on: the checks then judge settled data. (settled, s)."""
    started = time.monotonic()
    conn: Any = None

    def idle() -> bool:
        nonlocal conn
        if conn is None:
            conn = stack.database.connect(timeout=2)
        return int(conn.execute(_BUSY_SESSIONS).fetchone()[0]) == 0

    try:
        wait_for(
            idle,
            what="the app's database sessions to finish their work",
            timeout=timeout,
            interval=0.02,
            max_interval=0.05,
        )
        settled = True
    except (WaitTimeout, ChaosError, OSError, Exception):
        settled = False
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
    return settled, time.monotonic() - started


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

    The run's phases, in order: the stack starts on the source release; the workload
    starts through the run's balancer and a warm-up runs; each plan step runs (the fault
    fires at its point; instances are drained before a redeploy and admitted once healthy),
    followed by a bake and the detection checks; when nothing was detected, the run holds
    while a declared fault duration still runs; the strategy recovers; faults are healed;
    a soak shows what the recovered app serves; the workload stops, the app's in-flight
    work settles, the end state is read and the invariants are checked.

    When no ``workload`` is given and the target declares one, the target's workload runs
    (seeded from ``spec.seed``); its history is written as JSON lines to ``history_path``
    when given. Each verdict lands in ``outcome.verdicts[name]`` as ``{"status",
    "evidence"}``, with ``recovery`` always among them. ``after_run`` is called with the
    stack still up, after faults are healed, the end state read and the invariants checked.
    """
    from harness.invariants import invariants_for
    from harness.invariants.base import RunFacts, Verdict
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
    if spec.availability is not None:
        name = spec.availability.name
        invariants = (*(i for i in invariants if i.name != name), spec.availability)
    workload_spec = None
    if spec.target.workload is not None:
        workload_spec = dataclasses.replace(spec.target.workload, **spec.workload_settings)  # type: ignore[arg-type]
        if spec.phases is not None:
            workload_spec = dataclasses.replace(workload_spec, phases=spec.phases)
        if spec.budget is not None:
            workload_spec = dataclasses.replace(workload_spec, budget=spec.budget)
    if workload is None and spec.target_workload and workload_spec is not None:
        workload = ClientWorkload(workload_spec, seed=spec.seed)
        say(f"{outcome.run_key}: workload seed {spec.seed}")
    settings = (
        workload.spec.phases if isinstance(workload, ClientWorkload) else (spec.phases or Phases())
    )
    client_timeout = workload.spec.timeout if isinstance(workload, ClientWorkload) else 2.0
    data_seed = spec.seed if spec.data_seed is None else spec.data_seed
    recovery = Verdict.valid(needed=False)
    baselines: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    strategy = spec.strategy
    detection: Detection | None = None
    say(f"{outcome.run_key}: starting stack on {spec.source} (seed data: seed {data_seed})")
    with (
        backend.start_stack(
            spec.target, plan.source, instances=spec.instances, seed=data_seed
        ) as stack,
        tempfile.TemporaryDirectory(prefix="deploy-chaos-backup-") as tmp,
        Balancer(list(stack.apps), timeline=timeline) as balancer,
    ):
        ctx = FaultContext(stack, plan)
        faults = _Faults(spec.fault, ctx, timeline, errors)
        deploy = _Deployer(balancer, client_timeout + 1.0, max(5.0, spec.health_grace))
        traffic = _Traffic(workload, balancer, stack, timeline, settings, say)
        # The backup the restore strategy restores; only taken when restore may be chosen.
        backup: Path | None = None
        if spec.strategy is StrategyName.RESTORE or controller is not None:
            backup = Path(tmp) / "before-plan.dump"
            stack.database.backup(backup)
        try:
            baselines, problems = take_baselines(invariants, stack)
            errors.extend(RunError("baseline", n, "BaselineFailed", m) for n, m in problems)
            traffic.label("warmup")
            if workload is not None:
                if isinstance(workload, ClientWorkload):
                    workload.start(balancer, timeline)
                else:
                    workload.start(stack, timeline)
            if controller is not None:
                live = workload.history if isinstance(workload, ClientWorkload) else None
                controller.attach(
                    stack,
                    timeline,
                    plan.step_names,
                    partial(live_rates, live) if live is not None else None,
                )
            traffic.warmup()
            detection = _walk_plan(
                stack,
                plan,
                spec,
                ctx,
                faults,
                timeline,
                workload,
                say,
                traffic,
                deploy,
                errors,
                controller,
            )
            if detection is None and faults.pending_durations():
                traffic.label("hold")
                say("  hold: the fault's declared duration is still running")
                detection = faults.hold(partial(_watch, stack, plan, workload, timeline))
            faults.heal_all("recovery starts" if detection else "plan finished")
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
                traffic.label("recovery")
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
                        deploy=deploy,
                    )
                finally:
                    if recovery_trigger is not None:
                        late = recovery_trigger.finish()
                        if late is not None:
                            errors.append(
                                RunError("plan", spec.point.name, "NotFired", f"recovery: {late}")
                            )
                outcome.recovered = result.ok
                for failed in (s for s in result.steps if not s.ok):
                    errors.append(
                        RunError("recovery", failed.name, "RecoveryStepFailed", failed.error)
                    )
                recovery = recovery_verdict(strategy.value, result.steps)
                if balancer.split is not None and result.ok and strategy is not StrategyName.HALT:
                    balancer.set_weight(None)  # recovered: one release again, no split
                if faults.pending_durations():
                    faults.hold(None)
                faults.heal_all("recovery ended")
            if (
                not faults.fired
                and spec.fault.kind is not FaultKind.CONTROL
                and not any(e.kind == "NotFired" for e in errors)
            ):
                errors.append(_not_fired(spec.point, detection, plan))
            traffic.soak()
        finally:
            try:
                faults.heal_all("run ends")
            finally:
                traffic_ended = time.monotonic()
                if workload is not None:
                    outcome.history_stats, problems = stop_workload(workload)
                    errors.extend(RunError("workload", n, "WorkloadError", m) for n, m in problems)
            outcome.end_state = read_end_state(stack, balancer)
            balancer.close()
            settled, waited = settle(stack, client_timeout + 1.0)
            timeline.add(
                EventKind.NOTE,
                "settle",
                f"the app's database sessions {'settled' if settled else 'still busy'} "
                f"after {waited:.2f}s",
            )
            errors.extend(_leftovers(stack))
            history = workload.history if isinstance(workload, ClientWorkload) else None
            if history is not None:
                outcome.history_stats["series"] = throughput_series(history)
            if history is not None and history_path is not None:
                history.write_jsonl(history_path)
                outcome.history_stats["history_file"] = str(history_path)
            outcome.phases = [r.to_json() for r in traffic.results]
            outcome.faults = faults.records()
            facts = RunFacts(
                phases=tuple(traffic.labels),
                faults=faults.windows(),
                strategy=strategy.value if detection is not None else None,
                detected_at=detection.step if detection is not None else None,
                traffic_ended=traffic_ended,
            )
            outcome.verdicts = check_run(
                stack,
                outcome.end_state,
                invariants,
                history,
                baselines=baselines,
                target=spec.target,
                seed=spec.seed,
                progress=say,
                run=facts,
            )
            outcome.verdicts["recovery"] = recovery.to_json()
            outcome.analysis = [a.to_json() for a in traffic.analyses]
            outcome.exposure = _exposure(timeline, history, plan, spec.fix, outcome.verdicts)
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


def _not_fired(point: FaultPoint, detection: Detection | None, plan: Plan) -> RunError:
    """Why the fault never fired, as a harness error: the cell was not tested."""
    if point.in_recovery:
        why = "nothing was detected, so there was no recovery for it to fire in"
    elif detection is not None and detection.step in plan.step_names:
        why = (
            f"the plan stopped at {detection.step} ({detection.kind.value}) before the "
            f"fault point {point.name} was reached"
        )
    else:
        why = "the fault point was never reached"
    return RunError("plan", point.name, "NotFired", why)


def _watch(
    stack: Stack, plan: Plan, workload: Workload | None, timeline: Timeline
) -> Detection | None:
    """Detection while the run holds for a fault's duration after the plan: the error
    budget (instances may be unhealthy for as long as the fault lasts)."""
    breach = workload.breach() if workload is not None else None
    if breach is None:
        return None
    last = plan.steps[-1].name
    return _detected(timeline, DetectionKind.ERROR_BUDGET, last, f"after the plan: {breach}")


def _walk_plan(
    stack: Stack,
    plan: Plan,
    spec: RunSpec,
    ctx: FaultContext,
    faults: _Faults,
    timeline: Timeline,
    workload: Workload | None,
    say: Progress,
    traffic: _Traffic,
    deploy: Callable[[AppInstance, Release], None],
    errors: list[RunError],
    controller: RunController | None = None,
) -> Detection | None:
    point = spec.point
    for step in plan.steps:
        ctx.step = step
        traffic.label(f"step:{step.name}")
        if controller is not None:
            controller.before_step(step)
            if point.step == step.name and point.when is not When.AFTER:
                controller.at_fault_point(point, spec.fault.name)
        if point.when is When.BEFORE and point.step == step.name:
            faults.inject(point.name)
        trigger = None
        if point.when is When.DURING and point.step == step.name:
            trigger = _DuringTrigger(point, stack, lambda d: faults.inject(f"{point.name}, {d}"))
        canary_rollout = spec.canary is not None and step.name == "rollout:0"
        if canary_rollout and traffic.balancer is not None:
            # The canary takes no live traffic until its first weight (Argo's setWeight 0).
            traffic.balancer.set_weight(0, stable=plan.source.name)
        say(f"  step {step.name}")
        timeline.add(EventKind.STEP_START, step.name)
        failure: str | None = None
        if trigger is not None:
            trigger.start()
        try:
            _run_step(
                stack,
                plan,
                step,
                ctx,
                spec.step_timeout,
                deploy,
                partial(_note, timeline, step.name),
            )
        except (ChaosError, OSError) as exc:
            failure = f"{type(exc).__name__}: {exc}"
        finally:
            if trigger is not None and (late := trigger.finish()) is not None:
                errors.append(RunError("plan", point.name, "NotFired", late))
                timeline.add(EventKind.NOTE, spec.fault.name, f"not fired: {late}")
        if failure is not None:
            timeline.add(EventKind.STEP_FAILED, step.name, failure[:2000])
            return _detected(timeline, DetectionKind.STEP_ERROR, step.name, failure)
        timeline.add(EventKind.STEP_END, step.name)
        if point.when is When.AFTER and point.step == step.name:
            if controller is not None:
                controller.at_fault_point(point, spec.fault.name)
            faults.inject(point.name)
        if step.kind is StepKind.WEIGHT and spec.canary is not None and step.arg != "100":
            analysis = traffic.analyse(step, plan.source.name, spec.canary)
            if analysis.detected:
                return _detected(
                    timeline,
                    DetectionKind.ANALYSIS,
                    step.name,
                    f"canary analysis {analysis.verdict}: {analysis.detail}",
                )
        elif step.kind is StepKind.FLAG and spec.flag is not None:
            started = timeline.of(EventKind.STEP_START)[-1].t
            flipped = timeline.of(EventKind.STEP_END)[-1].t  # the apps confirmed it by then
            analysis = traffic.analyse_flip(step, started, flipped, spec.flag)
            if analysis.detected:
                return _detected(
                    timeline,
                    DetectionKind.ANALYSIS,
                    step.name,
                    f"flag analysis {analysis.verdict}: {analysis.detail}",
                )
        elif step.kind not in (StepKind.VERIFY, StepKind.WEIGHT) and not canary_rollout:
            traffic.bake(step)  # (a canary's first rollout is baked by its weights' analyses)
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


def _exposure(
    timeline: Timeline,
    history: Any,
    plan: Plan,
    fix: str | None,
    verdicts: Mapping[str, Any],
) -> dict[str, Any]:
    """The run's exposure to its new release (see harness.deploy.canary.exposure)."""
    if history is None:
        return {}

    def first(kind: EventKind, prefix: str = "") -> float | None:
        return next((e.t for e in timeline.of(kind) if e.subject.startswith(prefix)), None)

    # The new code serves from its first rollout; behind a flag, from the flag's first step.
    in_service = first(EventKind.STEP_START, "flag:") or first(EventKind.STEP_START, "rollout:")
    return exposure(
        history.operations(),
        plan.source.name,
        None if fix == plan.dest.name else fix,
        in_service=in_service,
        detected=first(EventKind.DETECTION),
        recovered=first(EventKind.RECOVERY_END),
        verdicts=verdicts,
    )


def _note(timeline: Timeline, subject: str, detail: str) -> None:
    timeline.add(EventKind.NOTE, subject, detail)


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
