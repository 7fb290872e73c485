"""A chaos session: options, the backend (opened on first use), and running judged runs.

The pytest plugin and ``deploy-chaos run`` both go through this module; nothing here needs
pytest. ``ChaosOptions.parse`` checks every setting and raises :class:`ConfigError` naming
the setting, the value and what was expected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import logging
import re
import secrets
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends import BackendName
from harness.deploy.canary import exposure_text
from harness.deploy.strategies import StrategyName
from harness.errors import ChaosError, ConfigError, SpecError, clip
from harness.expect import Judgement, judge, judge_runs, judge_verdicts, verdicts_of
from harness.report import json as results_json
from harness.report.outcome import RunOutcome
from harness.scenario import RunCase, parse_shard, run_seed

if TYPE_CHECKING:
    from harness.backends.base import Backend, Stack

__all__ = ["CellRecord", "ChaosOptions", "ChaosSession", "RunRecord", "replay_command"]

log = logging.getLogger("deploy_chaos")

_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")
_MAX_SEED = 2**63 - 1


def _count(value: str | int, setting: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(setting, value, f"an integer in {low}..{high}") from None
    if not low <= number <= high:
        raise ConfigError(setting, value, f"an integer in {low}..{high}")
    return number


def _seed(value: str, setting: str) -> int:
    try:
        seed = int(value)
    except ValueError:
        raise ConfigError(setting, value, "a non-negative integer") from None
    if not 0 <= seed <= _MAX_SEED:
        raise ConfigError(setting, value, "a non-negative integer")
    return seed


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    """Every setting of a session, checked."""

    backend: BackendName = BackendName.AUTO
    pg_bindir: str | None = None
    seed: int | None = None
    report_dir: Path | None = None
    keep: bool = False
    strategies: tuple[StrategyName, ...] = ()
    fault_glob: str | None = None
    shard: tuple[int, int] | None = None
    pg_image: str | None = None
    proxy_image: str | None = None
    #: How many times each cell runs (each with its own seed, derived from the run's).
    repeat: int = 1
    #: Run only this repetition of each cell (a replay of one run); None: all of them.
    repetition: int | None = None
    #: A results.json whose runs these reruns are compared with (a replay).
    replay_of: Path | None = None

    @classmethod
    def parse(
        cls,
        *,
        backend: str | None = None,
        pg_bindir: str | None = None,
        seed: str | None = None,
        report_dir: str | None = None,
        keep: bool = False,
        strategies: tuple[str, ...] = (),
        fault_glob: str | None = None,
        shard: str | None = None,
        pg_image: str | None = None,
        proxy_image: str | None = None,
        repeat: str | int | None = None,
        repetition: str | int | None = None,
        replay_of: str | None = None,
    ) -> ChaosOptions:
        """Check raw values (from options, ini keys or the CLI); ConfigError on a bad one."""
        repeat_value = _count(repeat, "--chaos-repeat", 1, 1000) if repeat not in (None, "") else 1
        repetition_value = (
            _count(repetition, "--chaos-repetition", 0, 999)
            if repetition not in (None, "")
            else None
        )
        replay_path = Path(replay_of) if replay_of else None
        if replay_path is not None and not replay_path.is_file():
            raise ConfigError("--chaos-replay-of", replay_of, "an existing results.json")
        if (
            replay_path is not None
            and report_dir
            and Path(report_dir).resolve() == replay_path.resolve().parent
        ):
            raise ConfigError(
                "--chaos-report",
                report_dir,
                f"another directory than the one of {replay_path} (the replay's results would "
                "overwrite the results it replays)",
            )
        chosen: list[StrategyName] = []
        for text in strategies:
            for part in (p.strip() for p in text.split(",")):
                try:
                    strategy = StrategyName(part)
                except ValueError:
                    raise ConfigError(
                        "--chaos-strategy",
                        part,
                        "one of " + ", ".join(s.value for s in StrategyName),
                    ) from None
                if strategy not in chosen:
                    chosen.append(strategy)
        if fault_glob is not None and not fault_glob.strip():
            raise ConfigError("--chaos-fault", fault_glob, "a glob such as 'db_*'")
        shard_value = None
        if shard:
            try:
                shard_value = parse_shard(shard)
            except SpecError:
                raise ConfigError(
                    "--chaos-shard", shard, "K/N with 1 <= K <= N, e.g. 2/4"
                ) from None
        for setting, image in (
            ("--chaos-pg-image", pg_image),
            ("--chaos-proxy-image", proxy_image),
        ):
            if image is not None and not _IMAGE.match(image):
                raise ConfigError(setting, image, "an image reference such as postgres:16")
        if pg_bindir is not None and not Path(pg_bindir).is_dir():
            raise ConfigError("--chaos-pg-bindir", pg_bindir, "an existing directory")
        try:
            backend_name = BackendName.parse(backend or "auto")
        except ConfigError:
            raise ConfigError(
                "--chaos-backend", backend, "one of " + ", ".join(b.value for b in BackendName)
            ) from None
        return cls(
            backend=backend_name,
            pg_bindir=pg_bindir,
            seed=None if seed in (None, "") else _seed(str(seed), "--chaos-seed"),
            report_dir=Path(report_dir) if report_dir else None,
            keep=keep,
            strategies=tuple(chosen),
            fault_glob=fault_glob,
            shard=shard_value,
            pg_image=pg_image,
            proxy_image=proxy_image,
            repeat=repeat_value,
            repetition=repetition_value,
            replay_of=replay_path,
        )

    @property
    def repetitions(self) -> tuple[int, ...]:
        """The repetitions of each cell this session runs."""
        if self.repetition is not None:
            return (self.repetition,)
        return tuple(range(self.repeat))

    def selects(self, case: RunCase) -> bool:
        """Whether the strategy and fault filters keep ``case``."""
        if self.strategies and case.strategy not in self.strategies:
            return False
        return self.fault_glob is None or fnmatch.fnmatchcase(case.fault.name, self.fault_glob)


def new_seed() -> int:
    """A random session seed (printed, so the session can be replayed)."""
    return secrets.randbelow(2**31)


def entry_point() -> list[str]:
    """How to start ``deploy-chaos`` in this environment: the console script beside the
    running interpreter (the project's virtualenv), relative to the working directory when
    under it; else ``python -m harness.cli`` with that interpreter."""
    here = Path(sys.executable).parent / "deploy-chaos"
    if not here.exists():
        return [sys.executable, "-m", "harness.cli"]
    with contextlib.suppress(ValueError):
        return [str(here.relative_to(Path.cwd()))]
    return [str(here)]


def replay_command(
    nodeid: str,
    base_seed: int,
    backend: BackendName,
    repetition: int = 0,
    results: Path | None = None,
) -> str:
    """The exact command that replays one run: the same cell, seed, repetition (hence the
    same phase schedules), compared with the recorded run when ``results`` is given."""
    argv = [
        *entry_point(),
        "run",
        nodeid,
        "--seed",
        str(base_seed),
        "--backend",
        backend.value,
        "--repetition",
        str(repetition),
    ]
    if results is not None:
        argv += ["--replay-of", str(results), "--report", str(results.parent / "replay")]
    return shlex.join(argv)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A finished, judged run."""

    case: RunCase
    nodeid: str
    seed: int
    base_seed: int
    judgement: Judgement
    verdicts: dict[str, dict[str, Any]]
    outcome: RunOutcome | None
    error: str | None
    replay: str
    wall_s: float
    kept: str | None = None
    #: Which run of its cell this is (0-based), and of how many.
    repetition: int = 0
    runs: int = 1
    #: The judgement of the whole cell (every repetition), once it is known.
    cell: Judgement | None = None
    #: Against the recorded run it replays: ``same``, ``differences`` (a replay only).
    replay_check: dict[str, Any] | None = None

    @property
    def rep_key(self) -> str:
        """The run's key among the runs of a session: the cell's, ``#<n>`` after a repeat."""
        return self.case.key if self.repetition == 0 else f"{self.case.key}#{self.repetition}"

    def to_json(self) -> dict[str, Any]:
        return {
            "rep_key": self.rep_key,
            "repetition": self.repetition,
            "runs": self.runs,
            "cell": None if self.cell is None else self.cell.to_json(),
            "replay_check": self.replay_check,
            "key": self.case.key,
            "nodeid": self.nodeid,
            "scenario": self.case.scenario.name,
            "compare": self.case.scenario.compare or self.case.scenario.name,
            "fault": self.case.fault.name,
            "point": self.case.point.name,
            "strategy": self.case.strategy.value,
            "order": list(self.case.order),
            "seed": self.seed,
            "base_seed": self.base_seed,
            "replay": self.replay,
            "wall_s": round(self.wall_s, 4),
            "judgement": self.judgement.to_json(),
            "verdicts": self.verdicts,
            "error": self.error,
            "kept": self.kept,
            "outcome": None if self.outcome is None else self.outcome.to_json(),
        }

    def section(self) -> str:
        """The per-run report section: timeline, verdicts, seed and the replay command."""
        lines = [
            f"run      {self.rep_key}"
            + (f" (run {self.repetition + 1} of {self.runs})" if self.runs > 1 else ""),
            f"seed     {self.seed} (session seed {self.base_seed})",
            f"replay   {self.replay}",
            f"result   {self.judgement.cell.value}: {self.judgement.summary}",
        ]
        for reason in self.judgement.reasons:
            lines.append(f"because  {reason}")
        if self.kept:
            lines += [f"kept     {line}" for line in self.kept.splitlines()]
        if self.error:
            lines.append(f"error    {self.error}")
        if self.replay_check is not None:
            check = self.replay_check
            if check.get("recorded") is None:
                lines.append("replay   no recorded run to compare with")
            elif check["same"]:
                lines.append("replay   the same verdicts as the recorded run")
            else:
                lines.append(
                    "replay   different from the recorded run: " + "; ".join(check["differences"])
                )
        outcome = self.outcome
        if outcome is not None:
            end = outcome.end_state
            lines.append(f"plan     {' -> '.join(outcome.plan)}")
            lines.append(f"detected {outcome.detected or '-'}; recovered {outcome.recovered}")
            for analysis in outcome.analysis:
                lines.append(
                    f"analysis {analysis['step']}: {analysis['verdict']}: {analysis['detail']}"
                )
            lines.append(f"exposure {exposure_text(outcome.exposure)}")
            if end is not None:
                lines.append(
                    f"end      migrations {list(end.migrations or [])}, "
                    f"instances {list(end.releases)}"
                )
            lines.append(
                f"time     {outcome.duration_s:.2f}s, of which {outcome.fault_seconds:.2f}s "
                "inside fault durations"
            )
            for record in outcome.faults:
                lasted = record.get("lasted_s")
                declared = record.get("declared_s")
                acted = record.get("acted_on")
                lines.append(
                    f"fault    {outcome.fault} {record.get('where')}: lasted "
                    + ("-" if lasted is None else f"{lasted:.2f}s")
                    + (f" (declared {declared:g}s)" if declared is not None else "")
                    + f", healed by {record.get('healed_by') or '-'}; acted on "
                    + ("(not reported)" if acted is None else json.dumps(acted, sort_keys=True))
                    + (f"; no effect: {record['missed']}" if record.get("missed") else "")
                )
            for phase in outcome.phases:
                lines.append(
                    f"phase    {phase['name']:<22} {phase['served']}/{phase['scheduled']} served "
                    f"in {phase['seconds']:.2f}s"
                    + (" (timed out)" if phase.get("timed_out") else "")
                    + (f"; dropped: {phase['dropped'][0]}" if phase.get("dropped") else "")
                )
            lines.append("timeline")
            for event in outcome.events:
                # A failure keeps its end: a migration tool's error is its last line.
                keep = 2000 if event.kind.value.endswith("failed") else 160
                detail = f" {clip(event.detail, keep)}" if event.detail else ""
                lines.append(f"  {event.t:7.2f}s {event.kind.value:<20} {event.subject}{detail}")
            for err in outcome.errors:
                message = clip(err.message, 2000)
                lines.append(f"error    {err.phase} {err.subject}: {err.kind}: {message}")
        lines.append("verdicts")
        for name, verdict in sorted(self.verdicts.items()):
            lines.append(f"  {name:<30} {verdict.get('status', 'unknown')}")
        return "\n".join(lines)


Executor = Callable[[RunCase, int, "ChaosSession"], RunOutcome | None]


@dataclass
class ChaosSession:
    """One process's chaos session: its backend is opened on the first run, closed at the end.

    ``worker`` names the process (``main`` or an xdist worker id) for partial report files.
    ``execute`` may produce an outcome instead of the engine (a replay, a test double).
    """

    options: ChaosOptions
    base_seed: int
    worker: str = "main"
    execute: Executor | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _backend: Backend | None = None
    _recorded_runs: dict[tuple[str, int], dict[str, Any]] | None = None

    def backend(self) -> Backend:
        """The session's backend (a stack per run; all torn down by :meth:`close`)."""
        if self._backend is None:
            from harness.backends import open_backend

            log.info("deploy-chaos: opening the %s backend", self.options.backend.value)
            backend = open_backend(
                self.options.backend,
                pg_bindir=self.options.pg_bindir,
                pg_image=self.options.pg_image,
                proxy_image=self.options.proxy_image,
            )
            self._backend = self._stack.enter_context(backend)
        return self._backend

    def close(self) -> None:
        self._backend = None
        self._stack.close()

    def __enter__(self) -> ChaosSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def base_seed_for(self, case: RunCase) -> int:
        """--chaos-seed, else the scenario's ``seed:``, else the session's random seed."""
        if self.options.seed is not None:
            return self.options.seed
        return self.base_seed if case.scenario.seed is None else case.scenario.seed

    def seed_for(self, case: RunCase, repetition: int = 0) -> int:
        """The run's seed: the cell's for its first run, one derived from it for each
        repetition after."""
        key = case.key if repetition == 0 else f"{case.key}#{repetition}"
        return run_seed(self.base_seed_for(case), key)

    def _engine(self, case: RunCase, seed: int, kept: list[str], repetition: int = 0) -> RunOutcome:
        from harness.deploy.runner import run_chaos

        def after_run(stack: Stack, outcome: RunOutcome) -> None:
            if self.options.keep and judge(case, outcome).cell.failed:
                kept.append(self._keep(case, stack))

        history = None
        if self.options.report_dir is not None:
            name = case.key if repetition == 0 else f"{case.key}#{repetition}"
            history = self.options.report_dir / "histories" / f"{_slug(name)}.jsonl"
            history.parent.mkdir(parents=True, exist_ok=True)
        return run_chaos(
            self.backend(),
            case.run_spec(seed, data_seed=self.base_seed_for(case)),
            progress=log.info,
            after_run=after_run,
            history_path=history,
        )

    def _keep(self, case: RunCase, stack: Stack) -> str:
        """Keep a failed run's stack running (the backend's ``keep``: how to connect) and its
        evidence on disk: a dump of its database, the service logs, the addresses."""
        directory = (self.options.report_dir or Path("chaos-report")) / "kept" / _slug(case.key)
        directory.mkdir(parents=True, exist_ok=True)
        notes = [f"run {case.key}"]
        try:
            live = self.backend().keep(stack)
        except (ChaosError, OSError) as exc:
            live = [f"the stack could not be kept running ({exc}); it is torn down"]
        notes += live
        try:
            stack.database.backup(directory / "database.dump")
            notes.append(f"restore: pg_restore -d <url> {directory / 'database.dump'}")
        except (ChaosError, OSError) as exc:
            notes.append(f"database dump failed: {exc}")
        for service in (stack.database, *stack.apps):
            with contextlib.suppress(Exception):
                (directory / f"{_slug(service.name)}.log").write_text(service.log_tail(500))
        (directory / "README.txt").write_text("\n".join(notes) + "\n")
        return "\n".join([f"evidence in {directory}", *live])

    def run(
        self,
        case: RunCase,
        nodeid: str,
        *,
        on_run: Callable[[RunRecord], None] | None = None,
    ) -> CellRecord:
        """Run ``case`` once per repetition (``options.repeat``; or the one
        ``options.repetition``), judge the cell from all its runs, record every run."""
        records = [self.run_once(case, nodeid, r) for r in self.options.repetitions]
        for record in records:
            if on_run is not None:
                on_run(record)
        judgement = judge_runs(
            [r.verdicts for r in records],
            case.expectations,
            judged=case.scenario.judged,
            harness_errors=[e for r in records for e in r.judgement.harness_errors],
        )
        records = [dataclasses.replace(r, cell=judgement) for r in records]
        if self.options.report_dir is not None:
            for record in records:
                results_json.append_partial(self.options.report_dir, self.worker, record.to_json())
        return CellRecord(case, nodeid, tuple(records), judgement)

    def run_once(self, case: RunCase, nodeid: str, repetition: int = 0) -> RunRecord:
        """Run one repetition of ``case`` (or have ``execute`` produce it) and judge it."""
        seed = self.seed_for(case, repetition)
        base = self.base_seed_for(case)
        started = time.monotonic()
        kept: list[str] = []
        outcome: RunOutcome | None = None
        error: str | None = None
        log.info("deploy-chaos: %s run %d (seed %d)", case.key, repetition, seed)
        try:
            if self.execute is not None:
                outcome = self.execute(case, seed, self)
            if outcome is None:
                outcome = self._engine(case, seed, kept, repetition)
        except ChaosError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if outcome is not None:
            judgement = judge(case, outcome)
            verdicts = verdicts_of(outcome)
        else:
            judgement = judge_verdicts(
                {}, case.expectations, harness_errors=[error or "no outcome"]
            )
            verdicts = {}
        results = None
        if self.options.report_dir is not None:
            results = self.options.report_dir / results_json.RESULTS_FILE
        return RunRecord(
            case=case,
            nodeid=nodeid,
            seed=seed,
            base_seed=base,
            judgement=judgement,
            verdicts=verdicts,
            outcome=outcome,
            error=error,
            replay=replay_command(nodeid, base, self.options.backend, repetition, results),
            wall_s=time.monotonic() - started,
            kept=kept[0] if kept else None,
            repetition=repetition,
            runs=len(self.options.repetitions) if self.options.repetition is None else 1,
            replay_check=self._replay_check(case, repetition, judgement, verdicts, outcome),
        )

    def _recorded(self) -> dict[tuple[str, int], dict[str, Any]]:
        if self._recorded_runs is None:
            self._recorded_runs = {}
            if self.options.replay_of is not None:
                document = results_json.load_results(self.options.replay_of)
                for record in document["runs"]:
                    key = (str(record["key"]), int(record.get("repetition", 0)))
                    self._recorded_runs[key] = record
        return self._recorded_runs

    def _replay_check(
        self,
        case: RunCase,
        repetition: int,
        judgement: Judgement,
        verdicts: dict[str, dict[str, Any]],
        outcome: RunOutcome | None,
    ) -> dict[str, Any] | None:
        """A replay (``--chaos-replay-of``): did this run reach the recorded verdicts, the
        same cell, and the same phase schedules?"""
        if self.options.replay_of is None:
            return None
        recorded = self._recorded().get((case.key, repetition))
        if recorded is None:
            return {"recorded": None, "same": False, "differences": ["no recorded run"]}
        differences = []
        before = {n: str(v.get("status")) for n, v in (recorded.get("verdicts") or {}).items()}
        now = {n: str(v.get("status")) for n, v in verdicts.items()}
        for name in sorted(set(before) | set(now)):
            if before.get(name) != now.get(name):
                differences.append(f"{name} {before.get(name)} -> {now.get(name)}")
        cell_before = (recorded.get("judgement") or {}).get("cell")
        if cell_before != judgement.cell.value:
            differences.append(f"cell {cell_before} -> {judgement.cell.value}")
        phases_before = [
            (p.get("name"), p.get("schedule"))
            for p in ((recorded.get("outcome") or {}).get("phases") or ())
        ]
        phases_now = [
            (p.get("name"), p.get("schedule")) for p in (outcome.phases if outcome else ())
        ]
        schedules_same = phases_before == phases_now
        return {
            "recorded": recorded.get("rep_key", recorded.get("key")),
            "seed": recorded.get("seed"),
            "same": not differences,
            "differences": differences,
            "schedules_same": schedules_same,
        }


@dataclass(frozen=True, slots=True)
class CellRecord:
    """A cell of the matrix, run once per repetition and judged from all its runs."""

    case: RunCase
    nodeid: str
    runs: tuple[RunRecord, ...]
    judgement: Judgement

    @property
    def first(self) -> RunRecord:
        """The run the cell is shown by: its first run whose own judgement failed, or the
        first (so that the replay command printed replays a failure)."""
        return next((r for r in self.runs if r.judgement.cell.failed), self.runs[0])

    @property
    def seed(self) -> int:
        return self.first.seed

    @property
    def replay(self) -> str:
        return self.first.replay

    @property
    def verdicts(self) -> dict[str, dict[str, Any]]:
        return self.first.verdicts

    @property
    def outcome(self) -> RunOutcome | None:
        return self.first.outcome

    @property
    def error(self) -> str | None:
        return next((r.error for r in self.runs if r.error), None)

    @property
    def kept(self) -> str | None:
        return next((r.kept for r in self.runs if r.kept), None)

    def section(self) -> str:
        """The cell's report section: its judgement over every run, then each run's."""
        parts = []
        if len(self.runs) > 1:
            j = self.judgement
            parts.append(
                f"cell     {self.case.key}: {j.cell.value} over {j.runs} runs "
                f"({j.hits} with a violation): {j.summary}"
            )
        parts += [r.section() for r in self.runs]
        return "\n\n".join(parts)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


@contextlib.contextmanager
def open_session(options: ChaosOptions, base_seed: int | None = None) -> Iterator[ChaosSession]:
    """A session outside pytest (the Python API)."""
    session = ChaosSession(options, base_seed if base_seed is not None else new_seed())
    try:
        yield session
    finally:
        session.close()
