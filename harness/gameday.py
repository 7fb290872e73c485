"""Game day: a team rehearses a failed deploy together, live, step by step.

``deploy-chaos gameday SCENARIO`` brings the stack up, starts the workload and walks the
upgrade with a live terminal view (current step, release on each instance, workload ops/s
and error rate, active faults, elapsed time). At the fault point it waits for the
facilitator to inject (or injects by itself with ``--auto``), shows what detection saw, asks
the team to choose the recovery (unless ``--strategy`` gave it), runs it live, and ends with
a debrief: verdicts with evidence, the timeline, what clients were told versus what the
database holds.

Without a terminal on stdin it needs its choices as flags and never waits, so the same
command runs in CI. Ctrl-C at any point heals the faults and tears the stack down (the
engine's ``finally`` blocks do that; the game day only stops drawing).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from harness.backends.base import Stack
from harness.deploy.plan import Step
from harness.deploy.points import FaultPoint
from harness.deploy.strategies import StrategyName
from harness.report.outcome import Event, EventKind, RunOutcome, Timeline

__all__ = ["GameDay", "LiveView", "debrief"]

_STRATEGY_HELP = {
    StrategyName.ROLLBACK: "down-migrate to the old release's schema, redeploy the old release",
    StrategyName.ROLL_FORWARD: "finish the upgrade (with the fix release when there is one)",
    StrategyName.HALT: "freeze the rollout where it is; nothing is reversed",
    StrategyName.RESTORE: "restore the pre-deploy backup, redeploy the old release",
    StrategyName.KILL_SWITCH: "turn the flags the plan turned on back off (no redeploy)",
}


@dataclass(slots=True)
class _State:
    stack: Stack | None = None
    timeline: Timeline | None = None
    rates: Callable[[], tuple[float, float] | None] | None = None
    plan: tuple[str, ...] = ()
    current: str = ""
    message: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


class LiveView:
    """The status screen, drawn with rich (a live region redrawn in place on a terminal);
    without one it prints each change as a line instead."""

    def __init__(self, out: TextIO, *, title: str, tty: bool, interval: float = 0.5) -> None:
        from rich.console import Console

        self.out = out
        self.title = title
        self.tty = tty
        self.interval = interval
        self.state = _State()
        self.console = Console(file=out, force_terminal=tty, highlight=False, markup=False)
        self._live: Any = None
        self._started = time.monotonic()

    def start(self) -> None:
        if not self.tty:
            return
        from rich.live import Live

        self._live = Live(
            console=self.console,
            get_renderable=self.render,
            refresh_per_second=1 / self.interval,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="visible",
        )
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    def freeze(self) -> None:
        """Stop redrawing (a prompt is waiting for the team); the last frame stays."""
        if self._live is not None:
            self._live.refresh()
            self._live.stop()

    def thaw(self) -> None:
        if self._live is not None:
            self._live.start()

    def say(self, message: str) -> None:
        with self.state.lock:
            self.state.message = message
        if not self.tty:
            self.out.write(f"[{time.monotonic() - self._started:7.2f}s] {message}\n")
            self.out.flush()

    def rows(self) -> list[tuple[str, str]]:
        """What the screen shows, as (label, value) rows."""
        s = self.state
        events: tuple[Event, ...] = s.timeline.events if s.timeline is not None else ()
        done = {e.subject for e in events if e.kind is EventKind.STEP_END}
        failed = {e.subject for e in events if e.kind is EventKind.STEP_FAILED}
        started = {e.subject for e in events if e.kind is EventKind.STEP_START}
        marks = []
        for step in s.plan:
            mark = (
                "x" if step in failed else "+" if step in done else ">" if step in started else "."
            )
            marks.append(f"[{mark}] {step}")
        rows = [
            ("elapsed", f"{time.monotonic() - self._started:6.1f}s"),
            ("plan", "  ".join(marks)),
        ]
        if s.stack is not None:
            instances = []
            for app in s.stack.apps:
                state = "paused" if app.paused else "up" if app.running else "DOWN"
                instances.append(f"#{app.index} {app.release.name} ({state})")
            db = s.stack.database
            db_state = "paused" if db.paused else "up" if db.running else "DOWN"
            rows.append(("instances", "   ".join(instances) + f"   database ({db_state})"))
        rates = s.rates() if s.rates is not None else None
        if rates is not None:
            rows.append(("workload", f"{rates[0]:6.1f} ops/s   error rate {rates[1]:6.1%}"))
        active: dict[str, float] = {}
        for event in events:
            if event.kind is EventKind.FAULT_INJECT:
                active[event.subject] = event.t
            elif event.kind in (EventKind.FAULT_HEAL, EventKind.FAULT_HEAL_FAILED):
                active.pop(event.subject, None)
        faults = ", ".join(f"{name} (since {t:.1f}s)" for name, t in active.items())
        rows.append(("faults", faults or "none active"))
        detections = [e for e in events if e.kind is EventKind.DETECTION]
        if detections:
            first = detections[-1].detail.splitlines()[0] if detections[-1].detail else ""
            rows.append(("detected", f"{detections[-1].subject}: {first}"))
        for event in events[-6:]:
            detail = event.detail.replace("\n", " ")
            rows.append(
                ("event", f"{event.t:7.2f}s {event.kind.value:<20} {event.subject} {detail}")
            )
        if s.message:
            rows.append(("", s.message))
        return rows

    def render(self) -> Any:
        """The screen as a rich renderable: a panel holding a two-column grid."""
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True, min_width=10)
        grid.add_column(overflow="ellipsis", no_wrap=True)
        for label, value in self.rows():
            style = "bold red" if label == "detected" else ""
            grid.add_row(Text(label), Text(value, style=style))
        return Panel(grid, title=Text(f"deploy-chaos game day - {self.title}"), expand=True)

    def draw(self) -> None:
        if self._live is not None:
            self._live.refresh()


class GameDay:
    """The run controller the engine calls back: steps, the fault point, the strategy."""

    def __init__(
        self,
        view: LiveView,
        *,
        interactive: bool,
        auto: bool,
        strategy: StrategyName | None,
        ask: Callable[[str], str] | None = None,
    ) -> None:
        self.view = view
        self.interactive = interactive
        self.auto = auto or not interactive
        self.strategy = strategy
        self._ask = ask or input

    # -- what the engine calls ---------------------------------------------------------------

    def attach(
        self,
        stack: Stack,
        timeline: Timeline,
        plan: Sequence[str],
        rates: Callable[[], tuple[float, float] | None] | None,
    ) -> None:
        with self.view.state.lock:
            self.view.state.stack = stack
            self.view.state.timeline = timeline
            self.view.state.plan = tuple(plan)
            self.view.state.rates = rates
        self.view.say("stack up; workload running")

    def before_step(self, step: Step) -> None:
        with self.view.state.lock:
            self.view.state.current = step.name

    def at_fault_point(self, point: FaultPoint, fault: str) -> None:
        if self.auto:
            self.view.say(f"fault point {point.name}: injecting {fault}")
            return
        self._prompt(f"Fault point {point.name} reached. Press Enter to inject {fault} ...")
        self.view.say(f"facilitator injected {fault} at {point.name}")

    def choose_strategy(self, detection: str, default: StrategyName) -> StrategyName:
        detection = detection.splitlines()[0] if detection else detection
        self.view.say(f"DETECTED: {detection}")
        if self.strategy is not None:
            self.view.say(f"recovery: {self.strategy.value} (chosen beforehand)")
            return self.strategy
        if not self.interactive:
            return default
        stack = self.view.state.stack
        flags_on = bool(stack is not None and stack.flags.on())
        # kill_switch only when a flag is on: otherwise there is nothing for it to turn off.
        choices = [s for s in StrategyName if s is not StrategyName.KILL_SWITCH or flags_on]
        menu = "\n".join(
            f"  {i + 1}) {s.value:<13} {_STRATEGY_HELP[s]}" for i, s in enumerate(choices)
        )
        while True:
            answer = (
                self._prompt(
                    f"Choose the recovery:\n{menu}\nYour choice (1-{len(choices)} or a name): "
                )
                .strip()
                .lower()
            )
            for i, s in enumerate(choices):
                if answer in (str(i + 1), s.value):
                    self.view.say(f"the team chose {s.value}")
                    return s
            self.view.say(f"not a choice: {answer!r}")

    def _prompt(self, question: str) -> str:
        self.view.freeze()
        try:
            self.view.draw()
            self.view.out.write("\n" + question)
            self.view.out.flush()
            return self._ask("")
        finally:
            self.view.thaw()


def debrief(outcome: RunOutcome, out: TextIO = sys.stdout) -> None:
    """What happened, and what the clients were told versus what the database holds."""
    w = out.write
    w("\n=== debrief: " + outcome.run_key + " ===\n")
    w(f"detected   {outcome.detected or 'nothing'}\n")
    w(f"recovered  {outcome.recovered}\n")
    if outcome.end_state is not None:
        releases = ", ".join(f"#{i.index} {i.release}" for i in outcome.end_state.instances)
        w(f"end state  migrations {list(outcome.end_state.migrations or [])}; {releases}\n")
    stats = outcome.history_stats
    if stats:
        w(
            "clients were told: "
            + json.dumps(
                {
                    k: stats[k]
                    for k in sorted(stats)
                    if k in ("ok", "fail", "info", "by_status", "operations", "error_rate")
                },
                default=str,
            )
            + "\n"
        )
    w("\nverdicts:\n")
    for name in sorted(outcome.verdicts):
        verdict: Any = outcome.verdicts[name]
        status = verdict.get("status") if isinstance(verdict, dict) else verdict
        w(f"  {name:<30} {status}\n")
        evidence = verdict.get("evidence") if isinstance(verdict, dict) else None
        if status != "valid" and evidence:
            text = json.dumps(evidence, indent=2, sort_keys=True, default=str)
            w("".join(f"      {line}\n" for line in text.splitlines()[:20]))
    w("\ntimeline:\n")
    for event in outcome.events:
        detail = event.detail.replace("\n", " ")[:100]
        w(f"  {event.t:7.2f}s {event.kind.value:<22} {event.subject} {detail}\n")
    out.flush()


@dataclass(frozen=True, slots=True)
class GameDayOptions:
    scenario: str
    backend: str = "auto"
    fault: str | None = None
    point: str | None = None
    strategy: str | None = None
    auto: bool = False
    seed: int | None = None
    report: str = "chaos-report"
    pg_bindir: str | None = None


def _pick(options: GameDayOptions, interactive: bool) -> Any:
    """The scenario's run case the flags select (a clear error listing the choices)."""
    import fnmatch

    from harness.errors import SpecError
    from harness.scenario import load_scenario

    scenario = load_scenario(options.scenario)
    cases = list(scenario.runs())
    faults = sorted({c.fault.name for c in cases})
    points = sorted({c.point.name for c in cases})
    for flag, value, names in (
        ("--fault", options.fault, faults),
        ("--point", options.point, points),
    ):
        if value is None and len(names) > 1 and not interactive:
            raise SpecError(
                f"{flag} is needed without a terminal (the scenario has several)",
                source=options.scenario,
                choices=names,
            )
    if options.fault is not None:
        cases = [c for c in cases if fnmatch.fnmatchcase(c.fault.name, options.fault)]
        if not cases:
            raise SpecError(
                f"no fault matches {options.fault!r}", source=options.scenario, choices=faults
            )
    if options.point is not None:
        cases = [c for c in cases if c.point.name == options.point]
        if not cases:
            raise SpecError(
                f"no fault point {options.point!r}", source=options.scenario, choices=points
            )
    if options.strategy is not None:
        wanted = StrategyName.parse(options.strategy)
        cases = [c for c in cases if c.strategy is wanted] or [
            c for c in cases if c.strategy is cases[0].strategy
        ]
    elif not interactive:
        raise SpecError(
            "--strategy is needed without a terminal", choices=[s.value for s in StrategyName]
        )
    return cases[0]


def run_gameday(
    options: GameDayOptions,
    *,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
) -> int:
    """Run a game day; return 0 when nothing unexpected happened (like ``deploy-chaos run``)."""
    from pathlib import Path

    from harness.backends import open_backend
    from harness.deploy.runner import run_chaos
    from harness.expect import judge
    from harness.report.html import write_report
    from harness.report.json import write_results
    from harness.scenario import run_seed

    interactive = stdin.isatty() and stdout.isatty() and not options.auto
    case = _pick(options, interactive)
    strategy = StrategyName.parse(options.strategy) if options.strategy else None
    base = options.seed if options.seed is not None else int(time.time()) % 100_000
    seed = run_seed(base, case.key)
    report = Path(options.report)
    report.mkdir(parents=True, exist_ok=True)
    view = LiveView(stdout, title=f"{case.key} (seed {seed})", tty=stdout.isatty())
    controller = GameDay(
        view,
        interactive=interactive,
        auto=options.auto or not interactive,
        strategy=strategy,
        ask=(lambda _p: stdin.readline().rstrip("\n")),
    )
    stdout.write(f"game day: {case.key}, seed {seed}, backend {options.backend}\n")
    stdout.flush()
    view.start()
    try:
        with open_backend(options.backend, pg_bindir=options.pg_bindir) as backend:
            outcome = run_chaos(
                backend,
                case.run_spec(seed),
                progress=view.say,
                controller=controller,
                history_path=report / f"history-{seed}.jsonl",
            )
    except KeyboardInterrupt:
        view.stop()
        stdout.write("\ngame day interrupted: faults healed, stack torn down\n")
        return 130
    finally:
        view.stop()
    debrief(outcome, stdout)
    judgement = judge(case, outcome)
    replay = (
        f"deploy-chaos gameday {options.scenario} --fault '{case.fault.name}' "
        f"--point {case.point.name} --strategy {outcome.strategy} --seed {base} --auto"
    )
    record = {
        "key": outcome.run_key,
        "nodeid": case.key,
        "seed": seed,
        "replay": replay,
        "judgement": judgement.to_json(),
        "outcome": outcome.to_json(),
    }
    results = write_results(report, [record], meta={"seed": base, "gameday": True})
    page = write_report([results], report / "report.html")
    stdout.write(
        f"\njudgement: {judgement.cell.value}: {judgement.summary}\n"
        f"replay:    {replay}\nresults:   {results}\nreport:    {page}\n"
    )
    stdout.flush()
    return 1 if judgement.cell.failed else 0
