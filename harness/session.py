"""A chaos session: options, the backend (opened on first use), and running judged runs.

The pytest plugin and ``deploy-chaos run`` both go through this module; nothing here needs
pytest. ``ChaosOptions.parse`` checks every setting and raises :class:`ConfigError` naming
the setting, the value and what was expected.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import re
import secrets
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends import BackendName
from harness.deploy.strategies import StrategyName
from harness.errors import ChaosError, ConfigError, SpecError
from harness.expect import Judgement, judge, verdicts_of
from harness.report import json as results_json
from harness.report.outcome import RunOutcome
from harness.scenario import RunCase, parse_shard, run_seed

if TYPE_CHECKING:
    from harness.backends.base import Backend, Stack

__all__ = ["ChaosOptions", "ChaosSession", "RunRecord", "replay_command"]

log = logging.getLogger("deploy_chaos")

_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")
_MAX_SEED = 2**63 - 1


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
    ) -> ChaosOptions:
        """Check raw values (from options, ini keys or the CLI); ConfigError on a bad one."""
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
        )

    def selects(self, case: RunCase) -> bool:
        """Whether the strategy and fault filters keep ``case``."""
        if self.strategies and case.strategy not in self.strategies:
            return False
        return self.fault_glob is None or fnmatch.fnmatchcase(case.fault.name, self.fault_glob)


def new_seed() -> int:
    """A random session seed (printed, so the session can be replayed)."""
    return secrets.randbelow(2**31)


def replay_command(nodeid: str, base_seed: int, backend: BackendName) -> str:
    """The exact command that replays one run."""
    argv = ["pytest", nodeid, f"--chaos-seed={base_seed}", f"--chaos-backend={backend.value}"]
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

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.case.key,
            "nodeid": self.nodeid,
            "scenario": self.case.scenario.name,
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
            f"run      {self.case.key}",
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
        outcome = self.outcome
        if outcome is not None:
            end = outcome.end_state
            lines.append(f"plan     {' -> '.join(outcome.plan)}")
            lines.append(f"detected {outcome.detected or '-'}; recovered {outcome.recovered}")
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
                detail = f" {event.detail[:160]}" if event.detail else ""
                lines.append(f"  {event.t:7.2f}s {event.kind.value:<20} {event.subject}{detail}")
            for err in outcome.errors:
                lines.append(f"error    {err.phase} {err.subject}: {err.kind}: {err.message[:300]}")
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

    def seed_for(self, case: RunCase) -> int:
        return run_seed(self.base_seed_for(case), case.key)

    def _engine(self, case: RunCase, seed: int, kept: list[str]) -> RunOutcome:
        from harness.deploy.runner import run_chaos

        def after_run(stack: Stack, outcome: RunOutcome) -> None:
            if self.options.keep and judge(case, outcome).cell.failed:
                kept.append(self._keep(case, stack))

        history = None
        if self.options.report_dir is not None:
            history = self.options.report_dir / "histories" / f"{_slug(case.key)}.jsonl"
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

    def run(self, case: RunCase, nodeid: str) -> RunRecord:
        """Run ``case`` (or have ``execute`` produce it), judge it, record it."""
        seed = self.seed_for(case)
        base = self.base_seed_for(case)
        started = time.monotonic()
        kept: list[str] = []
        outcome: RunOutcome | None = None
        error: str | None = None
        log.info("deploy-chaos: %s (seed %d)", case.key, seed)
        try:
            if self.execute is not None:
                outcome = self.execute(case, seed, self)
            if outcome is None:
                outcome = self._engine(case, seed, kept)
        except ChaosError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if outcome is not None:
            judgement = judge(case, outcome)
            verdicts = verdicts_of(outcome)
        else:
            from harness.expect import judge_verdicts

            judgement = judge_verdicts(
                {}, case.expectations, harness_errors=[error or "no outcome"]
            )
            verdicts = {}
        record = RunRecord(
            case=case,
            nodeid=nodeid,
            seed=seed,
            base_seed=base,
            judgement=judgement,
            verdicts=verdicts,
            outcome=outcome,
            error=error,
            replay=replay_command(nodeid, base, self.options.backend),
            wall_s=time.monotonic() - started,
            kept=kept[0] if kept else None,
        )
        if self.options.report_dir is not None:
            results_json.append_partial(self.options.report_dir, self.worker, record.to_json())
        return record


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
