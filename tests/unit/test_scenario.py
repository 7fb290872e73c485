"""Scenario files, fault expressions, matrices and shards (pure Python, nothing started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.deploy.strategies import StrategyName
from harness.errors import ConfigError, SpecError
from harness.faults.database import DbCrash, LockConflict
from harness.faults.process import KillApp
from harness.faults.registry import default_registry, parse_duration, parse_fault_call
from harness.scenario import load_scenario, parse_shard, run_seed, shard
from harness.session import ChaosOptions

LEDGER = Path(__file__).resolve().parents[2] / "examples" / "ledger" / "target.py"

BASE = f"""\
scenario: s
target: {LEDGER}
upgrade: {{from: v1, to: v2, fix: v2.1}}
faults: [db_crash, "kill_app(1, duration=none)"]
points:
  - before:migrate:0003
  - {{point: during:migrate:0004, statement: UPDATE}}
strategies: [rollback, halt]
"""


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return load_scenario(path)


def _error(tmp_path: Path, text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        _load(tmp_path, text)
    return info.value


def test_fault_expressions() -> None:
    registry = default_registry()
    assert registry.parse("db_crash") == DbCrash()
    assert registry.parse("db_crash(duration=500ms)") == DbCrash(duration=0.5)
    assert registry.parse("kill_app(1, duration=none)") == KillApp(1, duration=None)
    assert registry.parse("lock(accounts, mode=access exclusive)") == LockConflict(
        "accounts", "access exclusive"
    )
    assert registry.parse("statement_timeout(2s)").name == "statement_timeout(2000ms)"
    assert str(parse_fault_call("kill_app( 1 ,duration=2s)")) == "kill_app(1, duration=2s)"
    assert parse_duration("1.5") == 1.5
    assert parse_duration("1m") == 60.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("db_crsh", "unknown fault 'db_crsh'"),
        ("kill_app(x)", "instance='x'"),
        ("kill_app(1, 2, 3)", "3 arguments"),
        ("kill_app(instanse=1)", "unknown parameter 'instanse'"),
        ("kill_app(duration=1, 0)", "positional argument"),
        ("lock", "missing table"),
        ("db_crash(duration=-1)", "is not a duration"),
        ("Kill", "not a fault name"),
        ("kill_app(1", "missing ')'"),
    ],
)
def test_bad_fault_expressions(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        default_registry().parse(text)


def test_unknown_fault_lists_the_choices() -> None:
    with pytest.raises(SpecError) as info:
        default_registry().parse("nope")
    assert "db_crash" in info.value.choices
    assert "kill_app" in info.value.choices


def test_registering_a_fault_and_a_duplicate() -> None:
    registry = default_registry()
    registry.register("crash_again", DbCrash)
    assert registry.parse("crash_again(2s)") == DbCrash(duration=2.0)
    with pytest.raises(ConfigError):
        registry.register("crash_again", DbCrash)


def test_a_scenario_expands_to_its_matrix(tmp_path: Path) -> None:
    scenario = _load(tmp_path, BASE)
    runs = scenario.runs()  # type: ignore[attr-defined]
    assert [r.key for r in runs] == [
        "s[db_crash-before:migrate:0003-rollback]",
        "s[db_crash-before:migrate:0003-halt]",
        "s[db_crash-during:migrate:0004-rollback]",
        "s[db_crash-during:migrate:0004-halt]",
        "s[kill_app(1)-before:migrate:0003-rollback]",
        "s[kill_app(1)-before:migrate:0003-halt]",
        "s[kill_app(1)-during:migrate:0004-rollback]",
        "s[kill_app(1)-during:migrate:0004-halt]",
    ]
    assert runs[2].point.statement == "UPDATE"
    spec = runs[0].run_spec(99)
    assert (spec.seed, spec.fix, spec.strategy) == (99, "v2.1", StrategyName.ROLLBACK)


def test_workload_settings_reach_the_run_spec(tmp_path: Path) -> None:
    scenario = _load(tmp_path, BASE + "workload: {rate: 12.5, clients: 2}\n")
    spec = scenario.runs()[0].run_spec(1, data_seed=7)  # type: ignore[attr-defined]
    assert dict(spec.workload_settings) == {"rate": 12.5, "clients": 2}
    assert (spec.seed, spec.data_seed) == (1, 7)


@pytest.mark.parametrize(
    ("workload", "message"),
    [
        ("{rat: 10}", "unknown workload setting 'rat'"),
        ("{rate: fast}", "workload.rate is 'fast'"),
        ("{clients: 2.5}", "workload.clients is 2.5"),
        ("{clients: 0}", "workload clients 0"),
        ("[rate]", "workload is a list"),
    ],
)
def test_bad_workload_settings(tmp_path: Path, workload: str, message: str) -> None:
    error = _error(tmp_path, BASE + f"workload: {workload}\n")
    assert error.line == 9, str(error)
    assert message in str(error)


def test_exclude_and_expect_select_runs(tmp_path: Path) -> None:
    text = BASE + (
        "exclude:\n  - {fault: 'kill_*', point: 'during:*'}\n"
        "expect:\n"
        "  - strategy: rollback\n    point: 'before:*'\n"
        "    violates: [conservation]\n    reason: because\n"
    )
    runs = {r.key: r for r in _load(tmp_path, text).runs()}  # type: ignore[attr-defined]
    assert len(runs) == 6
    assert runs["s[db_crash-before:migrate:0003-rollback]"].expectations[0].reason == "because"
    assert runs["s[db_crash-before:migrate:0003-halt]"].expectations == ()


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("scenario: s", "scenario: [s]", 1, "scenario is a list"),
        ("faults: [db_crash,", "faults: [db_crash, db_crash,", 4, "repeats the one on line 4"),
        ("upgrade: {from: v1,", "upgrade: {from: v9,", 3, "no release 'v9'"),
        ("  - before:migrate:0003", "  - later:migrate:0003", 6, "unknown moment 'later'"),
        ("statement: UPDATE", "statement: '('", 7, "not a regular expression"),
        ("strategies: [rollback, halt]", "strategies: []", 8, "strategies is empty"),
        ("strategies: [rollback, halt]", "strategies: [halt, halt]", 8, "'halt' repeats"),
        (f"target: {LEDGER}", "target: nowhere.py", 2, "does not exist"),
    ],
)
def test_errors_carry_the_line(tmp_path: Path, old: str, new: str, line: int, message: str) -> None:
    assert old in BASE
    error = _error(tmp_path, BASE.replace(old, new))
    assert error.line == line, str(error)
    assert message in str(error)
    assert str(error).startswith(f"{tmp_path / 's.yaml'}:{line}: ")


def test_one_fault_with_other_parameters_is_named_by_its_text(tmp_path: Path) -> None:
    text = BASE.replace(
        "faults: [db_crash,", "faults: [db_crash(duration=0.5s), 'db_crash(duration = none)',"
    )
    scenario = _load(tmp_path, text)
    faults = [f.fault for f in scenario.faults]  # type: ignore[attr-defined]
    assert [f.name for f in faults] == [
        "db_crash(duration=0.5s)",
        "db_crash(duration=none)",
        "kill_app(1)",
    ]
    assert [f.duration for f in faults[:2]] == [0.5, None], "the fault's own parameters"
    keys = {r.key for r in scenario.runs()}  # type: ignore[attr-defined]
    assert "s[db_crash(duration=none)-before:migrate:0003-halt]" in keys


def test_an_expect_glob_that_matches_nothing_is_a_typo(tmp_path: Path) -> None:
    error = _error(
        tmp_path, BASE + "expect:\n  - {fault: db_krash, violates: [recovery], reason: r}\n"
    )
    assert error.line == 10
    assert error.choices == ("db_crash", "kill_app(1)")


def test_empty_and_non_mapping_files(tmp_path: Path) -> None:
    assert "empty" in str(_error(tmp_path, ""))
    error = _error(tmp_path, "- a\n- b\n")
    assert "expected a mapping" in str(error)
    missing = _error(tmp_path, "scenario: x\n")
    assert "missing target, upgrade, faults, points, strategies" in str(missing)


def test_shards_partition_and_balance() -> None:
    keys = [f"s[{i}]" for i in range(23)]
    shards = [shard(keys, k, 4) for k in range(1, 5)]
    assert set().union(*shards) == set(keys)
    assert sum(map(len, shards)) == 23
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shard(reversed(keys), 2, 4) == shards[1], "independent of the order given"
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "2", "a/b", "1/0"):
        with pytest.raises(SpecError):
            parse_shard(bad)


def test_run_seeds_are_stable_and_distinct() -> None:
    assert run_seed(7, "s[a]") == run_seed(7, "s[a]")
    assert run_seed(7, "s[a]") != run_seed(7, "s[b]")
    assert run_seed(7, "s[a]") != run_seed(8, "s[a]")
    assert 0 <= run_seed(2**62, "x") < 2**31


def test_options_are_checked() -> None:
    options = ChaosOptions.parse(strategies=("rollback,halt", "halt"), shard="1/2", seed="3")
    assert options.strategies == (StrategyName.ROLLBACK, StrategyName.HALT)
    assert (options.shard, options.seed) == ((1, 2), 3)
    for kwargs in (
        {"backend": "k8s"},
        {"seed": "-2"},
        {"strategies": ("undo",)},
        {"shard": "3/2"},
        {"pg_bindir": "/nonexistent/bin"},
    ):
        with pytest.raises(ConfigError):
            ChaosOptions.parse(**kwargs)  # type: ignore[arg-type]


def test_network_faults_plug_in_by_name() -> None:
    registry = default_registry()
    latency = registry.parse("latency(800ms, downstream, duration=2s)")
    assert latency.name == "latency(800ms,downstream)"
    assert latency.duration == 2.0
    assert registry.parse("latency(800, upstream)").name == "latency(800ms,upstream)"
    assert registry.parse("down").name == "down"
    assert registry.parse("down(duration=1s)").duration == 1.0
    assert "reset_peer" in registry.names
    with pytest.raises(SpecError, match="latency"):
        registry.parse("latency(fast)")


def test_phases_availability_rates_and_the_control_reach_the_runs(tmp_path: Path) -> None:
    text = BASE.replace("faults: [", "faults: [no_fault, ") + (
        "phases: {bake: 5, soak: 0, timeout: 20s}\n"
        "availability: {max_error_rate: 2%, max_unavailable: 1.5s}\n"
        "expect:\n"
        "  - {strategy: rollback, violates: [conservation], rate: '>= 80%', reason: r}\n"
    )
    scenario = _load(tmp_path, text)
    runs = scenario.runs()  # type: ignore[attr-defined]
    control = [r for r in runs if r.fault.name == "no_fault"]
    assert [r.key for r in control] == ["s[no_fault-none-rollback]", "s[no_fault-none-halt]"]
    spec = runs[0].run_spec(1)
    assert (spec.phases.warmup, spec.phases.bake, spec.phases.soak, spec.phases.timeout) == (
        3,
        5,
        0,
        20.0,
    )
    assert spec.availability.max_error_rate == pytest.approx(0.02)
    assert spec.availability.max_unavailable_s == pytest.approx(1.5)
    (expectation,) = runs[0].expectations
    assert expectation.bounds == (0.8, 1.0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("phases: {bake: -1}\n", "phases.bake -1"),
        ("phases: {quota: 3}\n", "unknown key 'quota'"),
        ("availability: {max_error_rate: 150%}\n", "availability.max_error_rate '150%'"),
        ("availability: {}\n", "sets no budget"),
        (
            "expect:\n  - {violates: [conservation], reason: r, rate: often}\n",
            "expect.rate 'often'",
        ),
        (
            "expect:\n  - {violates: [conservation], reason: r, rate: '50%', strict: false}\n",
            "rate and strict both say how often",
        ),
    ],
)
def test_bad_phases_availability_and_rates_name_the_line(
    tmp_path: Path, extra: str, message: str
) -> None:
    error = _error(tmp_path, BASE + extra)
    assert (error.line or 0) >= 9, str(error)
    assert message in str(error)
