"""The deploy-chaos pytest plugin (entry point ``pytest11: deploy_chaos``).

Thin on purpose: options, the marker, fixtures over the core API, scenario collection and the
report hooks. The logic lives in :mod:`harness.session` (options, running and judging a run),
:mod:`harness.scenario` (YAML, matrix, shards), :mod:`harness.expect` and
:mod:`harness.report`. Heavy modules are imported lazily.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.errors import ConfigError, SpecError

if TYPE_CHECKING:
    from harness.backends.base import Backend
    from harness.deploy.runner import RunSpec
    from harness.report.outcome import RunOutcome
    from harness.report.terminal import ScoreEntry
    from harness.scenario import RunCase
    from harness.session import ChaosOptions, ChaosSession

__all__ = [
    "MARKER",
    "OPT_BACKEND",
    "OPT_FAULT",
    "OPT_KEEP",
    "OPT_PG_BINDIR",
    "OPT_PG_IMAGE",
    "OPT_PROXY_IMAGE",
    "OPT_REPEAT",
    "OPT_REPETITION",
    "OPT_REPLAY_OF",
    "OPT_REPORT",
    "OPT_SEED",
    "OPT_SHARD",
    "OPT_STRATEGY",
    "ScenarioFile",
    "ScenarioItem",
]

MARKER = "deploy_chaos"
OPT_BACKEND = "chaos_backend"
OPT_PG_BINDIR = "chaos_pg_bindir"
OPT_SEED = "chaos_seed"
OPT_REPORT = "chaos_report"
OPT_KEEP = "chaos_keep"
OPT_STRATEGY = "chaos_strategy"
OPT_FAULT = "chaos_fault"
OPT_SHARD = "chaos_shard"
OPT_PG_IMAGE = "chaos_pg_image"
OPT_PROXY_IMAGE = "chaos_proxy_image"
OPT_REPEAT = "chaos_repeat"
OPT_REPETITION = "chaos_repetition"
OPT_REPLAY_OF = "chaos_replay_of"
INI_SCENARIOS = "chaos_scenarios"
_DEFAULT_SCENARIOS = ("scenarios/*.yaml", "scenarios/*.yml")
_WORKER_SEED = "deploy_chaos_seed"

_CHAOS_FIXTURES = frozenset({"chaos_backend", "chaos_session", "chaos_run"})

_session_key = pytest.StashKey["ChaosSession"]()

log = logging.getLogger("deploy_chaos")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from harness import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("deploy-chaos", "deploy-chaos: rehearse deployments under failure")

    def option(flag: str, dest: str, help_text: str, **kwargs: Any) -> None:
        group.addoption(flag, dest=dest, help=f"{help_text} (ini: {dest})", **kwargs)

    option("--chaos-backend", OPT_BACKEND, "what runs the stacks: auto, local or docker")
    option("--chaos-seed", OPT_SEED, "session seed (default: the scenario's, else random; printed)")
    option("--chaos-report", OPT_REPORT, "directory for results.json (and kept runs)")
    option(
        "--chaos-keep",
        OPT_KEEP,
        "keep a failed run's stack running (and print how to connect; deploy-chaos reap"
        " removes it), with its database dump and logs in the report directory",
        action="store_true",
        default=None,
    )
    option(
        "--chaos-strategy",
        OPT_STRATEGY,
        "run only this recovery strategy (repeatable; rollback, roll_forward, halt, restore)",
        action="append",
    )
    option("--chaos-fault", OPT_FAULT, "run only faults whose name matches this glob")
    option("--chaos-shard", OPT_SHARD, "run only shard K of N of the matrix (K/N, 1-based)")
    option(
        "--chaos-pg-bindir",
        OPT_PG_BINDIR,
        "PostgreSQL server binaries (env DEPLOY_CHAOS_PG_BINDIR)",
    )
    option("--chaos-pg-image", OPT_PG_IMAGE, "PostgreSQL image for the docker backend")
    option("--chaos-proxy-image", OPT_PROXY_IMAGE, "Toxiproxy image for the docker backend")
    option(
        "--chaos-repeat",
        OPT_REPEAT,
        "run each cell N times (seeds derived from the run's); the scorecard shows counts",
    )
    option(
        "--chaos-repetition",
        OPT_REPETITION,
        "run only repetition R (0-based) of each cell: the replay of one run",
    )
    option(
        "--chaos-replay-of",
        OPT_REPLAY_OF,
        "a results.json: say for each run whether it reached the recorded run's verdicts",
    )
    parser.addini(OPT_BACKEND, "default for --chaos-backend", default="auto")
    parser.addini(OPT_SEED, "default for --chaos-seed", default="")
    parser.addini(OPT_REPORT, "default for --chaos-report", default="")
    parser.addini(OPT_KEEP, "default for --chaos-keep", type="bool", default=False)
    parser.addini(OPT_STRATEGY, "default for --chaos-strategy", type="args", default=[])
    parser.addini(OPT_FAULT, "default for --chaos-fault", default="")
    parser.addini(OPT_SHARD, "default for --chaos-shard", default="")
    parser.addini(OPT_PG_BINDIR, "default for --chaos-pg-bindir", default="")
    parser.addini(OPT_PG_IMAGE, "default for --chaos-pg-image", default="")
    parser.addini(OPT_PROXY_IMAGE, "default for --chaos-proxy-image", default="")
    parser.addini(OPT_REPEAT, "default for --chaos-repeat", default="")
    parser.addini(
        INI_SCENARIOS,
        "globs (relative to the rootdir) of YAML scenario files to collect",
        type="args",
        default=list(_DEFAULT_SCENARIOS),
    )


def _value(config: pytest.Config, dest: str) -> Any:
    value = config.getoption(dest)
    if value is None or value == []:
        ini = config.getini(dest)
        value = ini if ini not in ("", [], None) else None
    return value


def _options(config: pytest.Config) -> ChaosOptions:
    from harness.session import ChaosOptions

    strategies = _value(config, OPT_STRATEGY) or ()
    try:
        return ChaosOptions.parse(
            backend=_value(config, OPT_BACKEND),
            pg_bindir=_value(config, OPT_PG_BINDIR),
            seed=_value(config, OPT_SEED),
            report_dir=_value(config, OPT_REPORT),
            keep=bool(_value(config, OPT_KEEP)),
            strategies=tuple(str(s) for s in strategies),
            fault_glob=_value(config, OPT_FAULT),
            shard=_value(config, OPT_SHARD),
            pg_image=_value(config, OPT_PG_IMAGE),
            proxy_image=_value(config, OPT_PROXY_IMAGE),
            repeat=_value(config, OPT_REPEAT),
            repetition=config.getoption(OPT_REPETITION),
            replay_of=config.getoption(OPT_REPLAY_OF),
        )
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None


class _XdistHooks:
    """Registered only when pytest-xdist is loaded: every worker gets the controller's seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_WORKER_SEED] = self.seed


def pytest_configure(config: pytest.Config) -> None:
    from harness.report import json as results_json
    from harness.session import ChaosSession, new_seed

    config.addinivalue_line(
        "markers",
        f"{MARKER}: a deploy-chaos run (select with -m {MARKER}); added automatically to "
        "scenario runs and to tests that use the harness's fixtures",
    )
    _add_scenario_roots(config)
    options = _options(config)
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        seed = int(workerinput.get(_WORKER_SEED, new_seed()))
        worker = str(workerinput.get("workerid", "gw"))
    else:
        seed = options.seed if options.seed is not None else new_seed()
        worker = "main"
        if options.report_dir is not None:
            results_json.clear_partials(options.report_dir)
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(_XdistHooks(seed), "deploy-chaos-xdist")

    def execute(case: RunCase, run_seed: int, session: ChaosSession) -> RunOutcome | None:
        result: RunOutcome | None = config.hook.pytest_deploy_chaos_execute(
            case=case, seed=run_seed, session=session
        )
        return result

    config.stash[_session_key] = ChaosSession(options, seed, worker, execute)
    config.pluginmanager.register(_Reporter(config), "deploy-chaos-reporter")


def pytest_report_header(config: pytest.Config) -> str | None:
    session = config.stash.get(_session_key, None)
    if session is None:
        return None
    opts = session.options
    seed = opts.seed if opts.seed is not None else session.base_seed
    return (
        f"deploy-chaos: backend {opts.backend.value}, seed {seed} "
        f"(scenario seeds apply unless --chaos-seed is given)"
        + (f", report {opts.report_dir}" if opts.report_dir else "")
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(_session_key, None)
    if session is not None:
        session.close()


# -- collection ------------------------------------------------------------------------


def _selects_chaos_runs(markexpr: str) -> bool:
    """Whether ``-m markexpr`` asks for chaos runs: it selects an item marked only
    ``deploy_chaos`` and not an unmarked one (``-m "not integration"`` does not ask)."""
    if not markexpr.strip():
        return False
    try:
        from _pytest.mark.expression import Expression

        expression = Expression.compile(markexpr)

        def marked(name: str, /, **_: object) -> bool:
            return name == MARKER

        def unmarked(name: str, /, **_: object) -> bool:
            return False

        return bool(expression.evaluate(marked)) and not expression.evaluate(unmarked)
    except Exception:  # an unparsable expression is pytest's to report
        return MARKER in markexpr and f"not {MARKER}" not in markexpr


def _add_scenario_roots(config: pytest.Config) -> None:
    """``pytest -m deploy_chaos`` with no paths collects the scenario files of the ini
    ``chaos_scenarios`` globs even where ``testpaths`` names only the tests (this project's
    own ini does): the usage the plugin exists for works in any repo as it is."""
    if config.args_source is not pytest.Config.ArgsSource.TESTPATHS:
        return  # paths given: they are what the user asked for
    if not _selects_chaos_runs(str(config.getoption("markexpr", "") or "")):
        return
    root = Path(str(config.rootpath))
    have = [Path(a).resolve() for a in config.args]
    for glob in config.getini(INI_SCENARIOS):
        parts = Path(str(glob)).parts
        fixed = next((i for i, p in enumerate(parts) if any(c in p for c in "*?[")), None)
        head = parts[:fixed] if fixed is not None else parts[:-1]  # its fixed directories
        if not head:
            continue  # a glob over the whole repo: the rootdir's own collection covers it
        base = root.joinpath(*head).resolve()
        if base.is_dir() and not any(base == h or h in base.parents for h in have):
            config.args.append(str(base))
            have.append(base)


def _is_scenario(config: pytest.Config, file_path: Path) -> bool:
    if file_path.suffix not in (".yaml", ".yml"):
        return False
    given = {Path(str(a).split("::")[0]).resolve() for a in config.args}
    if file_path.resolve() in given:
        return True
    parts = file_path.resolve().parts
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    globs = [str(g) for g in config.getini(INI_SCENARIOS)]
    return any(fnmatch.fnmatchcase(tail, g) for tail in tails for g in globs)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if _is_scenario(parent.config, file_path):
        collector: pytest.Collector = ScenarioFile.from_parent(parent, path=file_path)
        return collector
    return None


class ScenarioFile(pytest.File):
    """A YAML scenario: one item per run of its matrix. Invalid files fail collection."""

    def collect(self) -> Iterator[ScenarioItem]:
        from harness.faults.registry import default_registry
        from harness.scenario import BUILTIN_INVARIANTS, ScenarioContext, load_scenario

        registry = default_registry()
        hook = self.config.hook
        hook.pytest_deploy_chaos_register_faults(registry=registry)
        extra = [n for names in hook.pytest_deploy_chaos_invariant_names() for n in names]
        context = ScenarioContext(registry, tuple(dict.fromkeys([*BUILTIN_INVARIANTS, *extra])))
        try:
            scenario = load_scenario(self.path, context)
        except SpecError as exc:
            raise self.CollectError(f"invalid scenario: {exc}") from None
        for case in scenario.runs():
            yield ScenarioItem.from_parent(self, name=case.key, case=case)


class _RunFailed(Exception):
    """An unexpected run result; the message is the evidence."""


class ScenarioItem(pytest.Item):
    """One run: (scenario, fault, point, strategy)."""

    def __init__(self, *, case: RunCase, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.add_marker(MARKER)

    def runtest(self) -> None:
        from harness.expect import Cell, evidence_text
        from harness.report.junit import PREFIX, properties, run_properties

        session = self.config.stash[_session_key]
        hook = self.config.hook
        record = session.run(
            self.case,
            self.nodeid,
            on_run=lambda r: hook.pytest_deploy_chaos_run_finished(
                case=self.case, outcome=r.outcome
            ),
        )
        self.user_properties.extend(
            properties(self.case, record.seed, record.judgement, record.verdicts)
        )
        checks = [r.replay_check for r in record.runs if r.replay_check is not None]
        if checks:
            same = sum(1 for c in checks if c["same"])
            self.user_properties.append((PREFIX + "replay_same", f"{same}/{len(checks)}"))
        outcome = record.first.outcome
        if outcome is not None:
            self.user_properties.extend(run_properties(outcome))
        self.user_properties.append((PREFIX + "order", ",".join(map(str, self.case.order))))
        self.user_properties.append((PREFIX + "summary", record.judgement.summary))
        self.user_properties.append((PREFIX + "replay", record.replay))
        self.add_report_section("call", "deploy-chaos run", record.section())
        judgement = record.judgement
        if judgement.cell is Cell.HAZARD:
            pytest.xfail(
                f"known hazard ({', '.join(judgement.violated)}): " + " | ".join(judgement.reasons)
            )
        if judgement.cell.failed:
            lines = [f"{self.case.key}: {judgement.summary}"]
            if judgement.undeclared:
                lines.append("evidence:")
                lines.append(evidence_text(record.verdicts, judgement.undeclared))
            for reason in judgement.reasons:
                lines.append(f"declared: {reason}")
            if record.error:
                lines.append(f"error: {record.error}")
            if record.kept:
                lines += [f"kept: {line}" for line in record.kept.splitlines()]
            lines.append(f"seed {record.seed}; replay: {record.replay}")
            raise _RunFailed("\n".join(lines))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        # A failed run and a known hazard (xfail) say all there is in their message; a
        # traceback of the plugin's own frames would cost 0.1 s each to render and say less.
        if isinstance(excinfo.value, (_RunFailed, pytest.xfail.Exception)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, self.case.line - 1, f"deploy-chaos run {self.case.key}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from harness.scenario import shard

    session = config.stash[_session_key]
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if _CHAOS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(MARKER)
        if isinstance(item, ScenarioItem) and not session.options.selects(item.case):
            dropped.append(item)
        else:
            keep.append(item)
    if session.options.shard is not None:
        k, n = session.options.shard
        mine = shard((i.nodeid for i in keep), k, n)
        dropped += [i for i in keep if i.nodeid not in mine]
        keep = [i for i in keep if i.nodeid in mine]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# -- reporting -------------------------------------------------------------------------


class _Reporter:
    """Registered per session: scorecard entries from every run's report (the workers'
    reports too, on the xdist controller), results.json, the terminal scorecard."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.entries: list[ScoreEntry] = []
        #: node id -> (runs that reached the recorded verdicts, runs replayed).
        self.replays: dict[str, tuple[int, int]] = {}
        self.results: Path | None = None
        self.report: Path | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from harness.report.junit import parse_properties
        from harness.report.terminal import entry_from_properties

        if report.when == "call":
            entry = entry_from_properties(report.user_properties, report.nodeid)
            if entry is not None:
                self.entries.append(entry)
            same = parse_properties(report.user_properties).get("replay_same")
            if same:
                done, _, total = same.partition("/")
                self.replays[report.nodeid] = (int(done), int(total))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from harness.report import json as results_json

        chaos = self.config.stash.get(_session_key, None)
        if chaos is None:
            return
        chaos.close()
        if hasattr(self.config, "workerinput") or chaos.options.report_dir is None:
            return
        seed = chaos.options.seed if chaos.options.seed is not None else chaos.base_seed
        self.results = results_json.merge_partials(
            chaos.options.report_dir,
            meta={"seed": seed, "backend": chaos.options.backend.value},
        )
        if self.results is not None:
            from harness.report.html import write_report

            self.report = write_report([self.results], self.results.parent / "report.html")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from harness.report.terminal import render_scorecard

        if not self.entries or hasattr(self.config, "workerinput"):
            return
        terminalreporter.write_sep("=", "deploy-chaos scorecard")
        for line in render_scorecard(self.entries):
            terminalreporter.write_line(line)
        if self.results is not None:
            terminalreporter.write_line(f"results: {self.results}")
        if self.report is not None:
            terminalreporter.write_line(f"report:  {self.report}")
        if self.replays:
            same = sum(d for d, _ in self.replays.values())
            total = sum(t for _, t in self.replays.values())
            terminalreporter.write_line(
                f"replay: {same} of {total} run(s) reached the recorded run's verdicts"
            )
            for nodeid, (done, runs) in sorted(self.replays.items()):
                if done < runs:
                    terminalreporter.write_line(f"  different: {nodeid} (see its report section)")
        hook = self.config.hook
        for sections in hook.pytest_deploy_chaos_report_sections(entries=list(self.entries)):
            for title, text in sections:
                terminalreporter.write_sep("-", title)
                for line in str(text).splitlines():
                    terminalreporter.write_line(line)


# -- fixtures for hand-written tests ----------------------------------------------------


@pytest.fixture(scope="session")
def chaos_session(pytestconfig: pytest.Config) -> ChaosSession:
    """The session's :class:`harness.session.ChaosSession` (options, seed, backend)."""
    return pytestconfig.stash[_session_key]


@pytest.fixture(scope="session")
def chaos_backend(chaos_session: ChaosSession) -> Backend:
    """The session's backend: every stack started through it is torn down at the end."""
    return chaos_session.backend()


@pytest.fixture
def chaos_run(chaos_session: ChaosSession) -> Callable[[RunSpec], RunOutcome]:
    """Run one chaos deploy on the session's backend: ``outcome = chaos_run(RunSpec(...))``."""
    from harness.deploy.runner import run_chaos

    def run(spec: RunSpec) -> RunOutcome:
        return run_chaos(chaos_session.backend(), spec, progress=log.info)

    return run
