"""The pytest plugin end to end, through ``pytester``.

Most tests replace the engine with the ``pytest_deploy_chaos_execute`` hook (outcomes built
from a table), so they check collection, ids, options, judgement and reporting in seconds
without starting anything; ``test_xdist_equals_serial_on_real_runs`` runs real stacks.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
LEDGER = ROOT / "examples" / "ledger" / "target.py"

SCENARIO = f"""\
scenario: ledger_currency
target: {LEDGER}
upgrade: {{from: v1, to: v2, fix: v2.1}}
faults: [db_crash, "kill_app(1)"]
points: [before:migrate:0003, during:migrate:0004]
strategies: [rollback, roll_forward, halt]
"""

#: A stand-in for the engine: verdicts by strategy, and a file proving it ran.
FAKE_ENGINE = """\
from pathlib import Path

from harness.report.outcome import RunOutcome

VERDICTS = {verdicts!r}


def pytest_deploy_chaos_execute(case, seed, session):
    Path("engine-ran").write_text("yes")
    statuses = VERDICTS.get(case.strategy.value, {{}})
    return RunOutcome(
        scenario=case.scenario.name, target="ledger", source="v1", dest="v2",
        fault=case.fault.name, point=case.point.name, strategy=case.strategy.value,
        seed=seed, backend="fake", run_id="fake", plan=(),
        verdicts={{
            name: {{"status": status, "evidence": {{"rows": [name, 42]}}}}
            for name, status in statuses.items()
        }},
        recovered=True, duration_s=1.0,
    )
"""


def _fake_engine(pytester: pytest.Pytester, verdicts: dict[str, dict[str, str]]) -> None:
    pytester.makeconftest(FAKE_ENGINE.format(verdicts=verdicts))


def _scenario(pytester: pytest.Pytester, text: str = SCENARIO, name: str = "ledger") -> Path:
    directory = pytester.path / "scenarios"
    directory.mkdir(exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


def test_dash_m_deploy_chaos_finds_the_scenarios_where_testpaths_names_only_tests(
    pytester: pytest.Pytester,
) -> None:
    """A repo whose ini says ``testpaths = tests``: ``pytest -m deploy_chaos`` still runs its
    scenarios (the ini ``chaos_scenarios`` globs), a plain ``pytest`` and ``-m "not slow"``
    do not, and a path given on the command line is what is collected."""
    _scenario(pytester)
    pytester.makeini("[pytest]\ntestpaths = tests\nmarkers = slow\n")
    tests = pytester.path / "tests"
    tests.mkdir()
    (tests / "test_app.py").write_text("def test_app():\n    pass\n")
    chaos = pytester.runpytest("--collect-only", "-q", "-m", "deploy_chaos")
    chaos.stdout.fnmatch_lines(["12/13 tests collected (1 deselected)*"])
    plain = pytester.runpytest("--collect-only", "-q")
    plain.stdout.fnmatch_lines(["tests/test_app.py::test_app", "1 test collected*"])
    other = pytester.runpytest("--collect-only", "-q", "-m", "not slow")
    other.stdout.fnmatch_lines(["1 test collected*"])
    given = pytester.runpytest("--collect-only", "-q", "-m", "deploy_chaos", "tests")
    given.stdout.fnmatch_lines(["no tests collected (1 deselected)*"])


def test_collects_one_item_per_run_with_readable_ids(pytester: pytest.Pytester) -> None:
    _scenario(pytester)
    result = pytester.runpytest("--collect-only", "-q", "scenarios/")
    result.stdout.fnmatch_lines(
        [
            "scenarios/ledger.yaml::ledger_currency[[]db_crash-before:migrate:0003-rollback[]]",
            "scenarios/ledger.yaml::ledger_currency[[]kill_app(1)-during:migrate:0004-halt[]]",
            "12 tests collected*",
        ]
    )
    marked = pytester.runpytest("--collect-only", "-q", "-m", "deploy_chaos", "scenarios/")
    marked.stdout.fnmatch_lines(["12 tests collected*"])
    assert not (pytester.path / "engine-ran").exists()


def test_chaos_fixtures_get_the_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_uses(chaos_session):
            pass

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest("--collect-only", "-q", "-m", "deploy_chaos")
    result.stdout.fnmatch_lines(["*test_uses*", "1/2 tests collected (1 deselected)*"])


def test_expect_and_strict_semantics(pytester: pytest.Pytester) -> None:
    _fake_engine(
        pytester,
        {
            "rollback": {"recovery": "valid", "readable_by_running_release": "invalid"},
            "roll_forward": {"recovery": "valid", "conservation": "invalid"},
            "halt": {"recovery": "valid", "availability": "unknown"},
            "restore": {"recovery": "valid"},
        },
    )
    _scenario(
        pytester,
        f"""\
scenario: s
target: {LEDGER}
upgrade: {{from: v1, to: v2, fix: v2.1}}
faults: [db_crash]
points: [during:migrate:0004]
strategies: [rollback, roll_forward, halt, restore]
expect:
  - strategy: rollback
    violates: [readable_by_running_release]
    reason: v2's 0003 down drops the currency columns
  - strategy: halt
    violates: [schema_compatible]
    reason: halt leaves 0004 half-applied
  - strategy: restore
    violates: [availability]
    reason: restoring takes the database away for a moment
    strict: false
""",
    )
    result = pytester.runpytest("scenarios/", "-rxXf")
    result.assert_outcomes(passed=1, failed=2, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*XFAIL*rollback*known hazard (readable_by_running_release)*v2's 0003 down drops*",
        ]
    )
    out = result.stdout.str()
    assert "undeclared violation of conservation" in out
    assert '"rows"' in out, "the evidence is shown"
    assert "42" in out
    assert "declared hazard did not happen: schema_compatible" in out
    assert "replay: " in out
    assert "deploy-chaos run 'scenarios/" in out, "the project's own entry point"
    assert "--seed " in out
    result.stdout.fnmatch_lines(
        [
            "*deploy-chaos scorecard*",
            "*fault*point*rollback*roll_forward*halt*restore",
            "*db_crash*during:migrate:0004*HAZARD*FAIL*FAIL*pass",
            "4 runs: 1 pass, 1 known hazard, 2 unexpected failure",
        ]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chaos-backend=kubernetes"], "--chaos-backend='kubernetes': expected one of auto"),
        (["--chaos-seed=-1"], "--chaos-seed='-1': expected a non-negative integer"),
        (["--chaos-seed=abc"], "--chaos-seed='abc'"),
        (["--chaos-strategy=rewind"], "--chaos-strategy='rewind': expected one of rollback"),
        (["--chaos-shard=3/2"], "--chaos-shard='3/2': expected K/N"),
        (["--chaos-shard=1"], "--chaos-shard='1'"),
        (["--chaos-fault= "], "--chaos-fault"),
        (["--chaos-pg-image=UPPER CASE"], "--chaos-pg-image"),
    ],
)
def test_bad_option_values_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nchaos_backend = nomad\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--chaos-backend='nomad'*"])


def _bad(body: str) -> str:
    return SCENARIO.replace(body.split("|")[0], body.split("|")[1])


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        (
            _bad("faults: [db_crash, |faults: [db_crashh, "),
            4,
            "unknown fault 'db_crashh'*choices:*db_crash*",
        ),
        (_bad("point|poynt"), 5, "unknown key 'poynts'*choices:*points"),
        (
            _bad("before:migrate:0003|before:migrate:0009"),
            5,
            "names no step*choices:*before:migrate:0003*",
        ),
        (
            _bad("roll_forward|rollforward"),
            6,
            "unknown strategy 'rollforward'*choices: rollback, roll_forward*",
        ),
        (_bad("fix: v2.1|fix: v3"), 3, "no release 'v3'*choices: v1, v2*"),
        (_bad("kill_app(1)|kill_app(one)"), 4, "kill_app(one): instance='one'*expected int*"),
        (_bad("strategies: [|strategies: [[ "), 7, "not valid YAML*"),
        (SCENARIO + "expect:\n  - violates: [conservation]\n", 8, "needs violates and reason*"),
        (
            SCENARIO + "expect:\n  - {violates: [nope], reason: r}\n",
            8,
            "'nope' is not a judged invariant*choices:*conservation*",
        ),
    ],
)
def test_malformed_scenarios_fail_collection_with_file_and_line(
    pytester: pytest.Pytester, text: str, line: int, expected: str
) -> None:
    _fake_engine(pytester, {})
    _scenario(pytester, text, name="bad")
    result = pytester.runpytest("scenarios/")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([f"*scenarios/bad.yaml:{line}: *{expected}*"])
    assert not (pytester.path / "engine-ran").exists(), "nothing may start"


def test_invalid_fault_point_combination_names_the_run(pytester: pytest.Pytester) -> None:
    _fake_engine(pytester, {})
    text = _bad("faults: [db_crash, |faults: [db_crash, bad_release(v2-unhealthy), ")
    _scenario(pytester, text.replace("during:migrate:0004", "before:contract:0005"))
    result = pytester.runpytest("scenarios/")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*ledger.yaml:4: run ledger_currency[[]bad_release(v2-unhealthy)-before:contract:0005-"
            "rollback[]]: *no rollout follows*add an exclude entry*"
        ]
    )
    assert not (pytester.path / "engine-ran").exists()
    excluded = text.replace("during:migrate:0004", "before:contract:0005") + (
        "exclude:\n  - {fault: bad_release*, point: before:contract:*}\n"
    )
    _scenario(pytester, excluded)
    result = pytester.runpytest("--collect-only", "-q", "scenarios/")
    result.stdout.fnmatch_lines(["15 tests collected*"])


def _collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest("--collect-only", "-q", "scenarios/", *args)
    return [line for line in result.stdout.lines if "::" in line]


def test_shards_cover_every_run_exactly_once(pytester: pytest.Pytester) -> None:
    _scenario(pytester)
    _scenario(pytester, SCENARIO.replace("ledger_currency", "second"), name="second")
    everything = _collected(pytester)
    assert len(everything) == 24
    shards = [_collected(pytester, f"--chaos-shard={k}/5") for k in range(1, 6)]
    flat = [nodeid for s in shards for nodeid in s]
    assert sorted(flat) == sorted(everything)
    assert len(flat) == len(set(flat))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_fault_and_strategy_filters(pytester: pytest.Pytester) -> None:
    _scenario(pytester)
    kept = _collected(pytester, "--chaos-fault=kill_*", "--chaos-strategy=halt")
    assert kept == [
        "scenarios/ledger.yaml::ledger_currency[kill_app(1)-before:migrate:0003-halt]",
        "scenarios/ledger.yaml::ledger_currency[kill_app(1)-during:migrate:0004-halt]",
    ]


def _verdicts(report_dir: Path) -> dict[str, tuple[str, dict[str, str]]]:
    document = json.loads((report_dir / "results.json").read_text())
    assert document["schema_version"] == 1
    return {
        run["key"]: (
            run["judgement"]["cell"],
            {name: v["status"] for name, v in run["verdicts"].items()},
        )
        for run in document["runs"]
    }


def test_results_json_and_junit_properties(pytester: pytest.Pytester) -> None:
    _fake_engine(pytester, {"halt": {"recovery": "valid", "conservation": "invalid"}})
    _scenario(pytester)
    result = pytester.runpytest(
        "scenarios/", "--chaos-report=out", "--junitxml=junit.xml", "--chaos-seed=11"
    )
    result.assert_outcomes(passed=8, failed=4)
    verdicts = _verdicts(pytester.path / "out")
    assert len(verdicts) == 12
    key = "ledger_currency[db_crash-before:migrate:0003-halt]"
    assert verdicts[key] == ("unexpected failure", {"recovery": "valid", "conservation": "invalid"})
    assert not list((pytester.path / "out").glob("partial-*")), "partials are merged away"
    page = (pytester.path / "out" / "report.html").read_text()
    assert page.count('class="cell ') == 12, "report.html beside results.json, a cell per run"
    tree = ET.parse(pytester.path / "junit.xml")
    case = next(c for c in tree.iter("testcase") if c.get("name") == key)
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["chaos.fault"] == "db_crash"
    assert props["chaos.point"] == "before:migrate:0003"
    assert props["chaos.strategy"] == "halt"
    assert props["chaos.seed"].isdigit()
    assert props["chaos.verdicts"] == "conservation=invalid,recovery=valid"
    assert "--seed 11" in props["chaos.replay"]
    assert props["chaos.runs"] == "1"


def test_xdist_equals_serial_in_verdicts(pytester: pytest.Pytester) -> None:
    _fake_engine(
        pytester,
        {
            "rollback": {"recovery": "valid", "readable_by_running_release": "invalid"},
            "halt": {"recovery": "invalid"},
        },
    )
    _scenario(pytester)
    serial = pytester.runpytest_subprocess("scenarios/", "--chaos-report=serial", "--chaos-seed=5")
    parallel = pytester.runpytest_subprocess(
        "scenarios/", "--chaos-report=parallel", "--chaos-seed=5", "-n", "2"
    )
    assert serial.ret == parallel.ret == pytest.ExitCode.TESTS_FAILED
    assert _verdicts(pytester.path / "serial") == _verdicts(pytester.path / "parallel")
    assert _scorecard(serial.stdout.lines) == _scorecard(parallel.stdout.lines)


def _scorecard(lines: list[str]) -> list[str]:
    start = next(i for i, line in enumerate(lines) if "deploy-chaos scorecard" in line)
    end = next(i for i, line in enumerate(lines) if " runs: " in line and i > start)
    return lines[start : end + 1]


@pytest.mark.slow
def test_xdist_equals_serial_on_real_runs(pytester: pytest.Pytester) -> None:
    """Real stacks: one backend session per worker; the merged verdicts equal a serial run."""
    _scenario(
        pytester,
        f"""\
scenario: real
target: {LEDGER}
upgrade: {{from: v1, to: v2, fix: v2.1}}
seed: 3
health_grace: 1s
workload: {{rate: 20, clients: 3}}
faults: [migration_fails_at(3)]
points: [before:migrate:0003]
strategies: [rollback, halt]
""",
    )
    serial = pytester.runpytest_subprocess("scenarios/", "--chaos-report=serial")
    parallel = pytester.runpytest_subprocess("scenarios/", "--chaos-report=parallel", "-n", "2")
    assert serial.ret == parallel.ret, serial.stdout.str() + parallel.stdout.str()
    one, two = _verdicts(pytester.path / "serial"), _verdicts(pytester.path / "parallel")
    assert len(one) == 2
    assert one.keys() == two.keys()
    for key in one:
        assert one[key][0] == two[key][0], f"{key}: the judgement differs"
        # 'unknown' means the run's traffic gave the checker nothing to judge (a short run
        # may acknowledge no deposit before the fault): compare what both runs could judge.
        known = {
            name
            for name in one[key][1].keys() | two[key][1].keys()
            if "unknown" not in (one[key][1].get(name), two[key][1].get(name))
        }
        assert {n: one[key][1].get(n) for n in known} == {n: two[key][1].get(n) for n in known}
        assert len(known) >= 6, f"{key}: most verdicts are known in both runs"
    # The scenario's workload settings reached the engine.
    runs = json.loads((pytester.path / "serial" / "results.json").read_text())["runs"]
    notes = [
        e["detail"] for r in runs for e in r["outcome"]["events"] if e["subject"] == "workload"
    ]
    assert len(notes) == 2
    assert all(n.startswith("started: 3 clients, 20 ops/s") for n in notes), notes


#: An engine whose verdicts follow the run's seed: conservation is invalid for odd seeds.
SEEDED_ENGINE = """\
from harness.report.outcome import RunOutcome


def pytest_deploy_chaos_execute(case, seed, session):
    status = "invalid" if seed % 2 else "valid"
    return RunOutcome(
        scenario=case.scenario.name, target="ledger", source="v1", dest="v2",
        fault=case.fault.name, point=case.point.name, strategy=case.strategy.value,
        seed=seed, backend="fake", run_id="fake", plan=(),
        verdicts={"recovery": {"status": "valid", "evidence": {}},
                  "conservation": {"status": status, "evidence": {}}},
        recovered=True, duration_s=1.0,
    )
"""


def _rates_scenario(pytester: pytest.Pytester, rate: str) -> None:
    _scenario(
        pytester,
        f"""\
scenario: r
target: {LEDGER}
upgrade: {{from: v1, to: v2, fix: v2.1}}
seed: 5
faults: [db_crash]
points: [before:migrate:0003, during:migrate:0004]
strategies: [rollback, halt]
expect:
  - violates: [conservation]
    rate: "{rate}"
    reason: the conservation draw
""",
    )


def test_repeat_runs_each_cell_n_times_and_the_scorecard_shows_counts(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(SEEDED_ENGINE)
    _rates_scenario(pytester, "20%..80%")
    result = pytester.runpytest("scenarios/", "--chaos-repeat=6", "--chaos-report=out")
    result.assert_outcomes(xfailed=4)
    document = json.loads((pytester.path / "out" / "results.json").read_text())
    runs = document["runs"]
    assert len(runs) == 4 * 6, "results.json keeps every run"
    by_cell: dict[str, list[dict[str, object]]] = {}
    for run in runs:
        by_cell.setdefault(run["key"], []).append(run)
    for cell_runs in by_cell.values():
        assert sorted(r["repetition"] for r in cell_runs) == list(range(6))
        assert len({r["seed"] for r in cell_runs}) == 6, "each repetition its own seed"
        odd = sum(1 for r in cell_runs if r["seed"] % 2)
        assert {r["cell"]["hits"] for r in cell_runs} == {odd}
        assert {r["cell"]["runs"] for r in cell_runs} == {6}
    out = result.stdout.str()
    assert re.search(r"db_crash +before:migrate:0003 +HAZARD [1-6]/6", out), out


def test_a_rate_the_counts_contradict_fails_the_cell(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SEEDED_ENGINE)
    _rates_scenario(pytester, "100%")  # strict: every run
    result = pytester.runpytest("scenarios/", "--chaos-repeat=4")
    out = result.stdout.str()
    assert "declared hazard did not happen as often as declared: conservation" in out
    _rates_scenario(pytester, "<= 0%")
    result = pytester.runpytest("scenarios/", "--chaos-repeat=4")
    assert "happened more often than declared: conservation" in result.stdout.str()


def test_a_replay_reruns_one_run_and_says_whether_it_reached_the_same_verdicts(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(SEEDED_ENGINE)
    _rates_scenario(pytester, ">= 0%")
    pytester.runpytest("scenarios/", "--chaos-repeat=3", "--chaos-report=out")
    recorded = json.loads((pytester.path / "out" / "results.json").read_text())["runs"]
    key = "r[db_crash-during:migrate:0004-halt]"
    second = next(r for r in recorded if r["key"] == key and r["repetition"] == 2)
    replay = second["replay"]
    assert " --repetition 2 " in replay
    assert "--replay-of out/results.json" in replay
    result = pytester.runpytest(
        f"scenarios/ledger.yaml::{key}",
        "--chaos-seed=5",
        "--chaos-repetition=2",
        "--chaos-replay-of=out/results.json",
        "--chaos-report=out/replay",
        "-rA",
    )
    assert "replay: 1 of 1 run(s) reached the recorded run's verdicts" in result.stdout.str()
    again = json.loads((pytester.path / "out" / "replay" / "results.json").read_text())["runs"]
    assert [(r["seed"], r["replay_check"]["same"]) for r in again] == [(second["seed"], True)]
    # A different seed replays something else: it says so.
    other = pytester.runpytest(
        f"scenarios/ledger.yaml::{key}",
        "--chaos-seed=6",
        "--chaos-repetition=2",
        "--chaos-replay-of=out/results.json",
        "--chaos-report=out/replay2",
        "-rA",
    )
    assert "replay: " in other.stdout.str()
    check = json.loads((pytester.path / "out" / "replay2" / "results.json").read_text())["runs"][0]
    assert check["replay_check"]["same"] is (check["seed"] % 2 == second["seed"] % 2)
    # The replay never overwrites the results it replays.
    refused = pytester.runpytest(
        "scenarios/", "--chaos-replay-of=out/results.json", "--chaos-report=out"
    )
    assert "overwrite the results it replays" in refused.stderr.str()
