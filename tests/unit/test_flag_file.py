"""The harness's flag file: flagd's format, atomic rewrites, refused settings; a scenario's
``flag:`` key and its plan steps."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.flags import FlagFile, FlagRollout, flag_definition
from harness.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]


def test_the_file_is_flagd_json_and_follows_every_change(tmp_path: Path) -> None:
    flags = FlagFile(tmp_path / "f" / "flags.json")
    assert json.loads(flags.path.read_text())["flags"] == {}
    flags.set("new-transfers", 10)
    doc = json.loads(flags.path.read_text())
    assert doc["$schema"] == "https://flagd.dev/schema/v0/flags.json"
    flag = doc["flags"]["new-transfers"]
    assert flag["variants"] == {"on": True, "off": False}
    assert flag["defaultVariant"] == "off"
    assert flag["targeting"] == {"fractional": [["on", 10], ["off", 90]]}
    assert flag["metadata"] == {"percent": 10}
    flags.set("new-transfers", 100)
    assert flag_definition(100)["defaultVariant"] == "on"
    assert "targeting" not in json.loads(flags.path.read_text())["flags"]["new-transfers"]
    assert flags.on() == ["new-transfers"]
    flags.set("new-transfers", 0)
    assert flags.on() == []
    assert not list(flags.path.parent.glob("*.tmp")), "written beside, then renamed"


@pytest.mark.parametrize(
    "kwargs",
    [{"name": "bad name"}, {"steps": ()}, {"steps": (50, 10)}, {"steps": (0,)}, {"window": 0}],
)
def test_bad_flag_rollouts_are_refused(kwargs: dict[str, object]) -> None:
    settings: dict[str, object] = {"name": "new-transfers", **kwargs}
    with pytest.raises(SpecError, match="flag"):
        FlagRollout(**settings)  # type: ignore[arg-type]


def test_a_scenario_flag_adds_flag_steps_after_verify(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            scenario: t
            target: {ROOT / "examples/ledger/target.py"}
            upgrade: {{from: v1, to: v1-flagged, fix: v1.0.1}}
            faults: [no_fault]
            points: [after:flag:new-transfers:10]
            strategies: [kill_switch]
            flag: {{name: new-transfers, steps: [10, 100], samples: 12}}
            """
        )
    )
    scenario = load_scenario(path)
    assert scenario.flag == FlagRollout("new-transfers", (10, 100), samples=12)
    plan = scenario.runs()[0].run_spec(1).plan()
    assert plan.step_names[-3:] == ("verify", "flag:new-transfers:10", "flag:new-transfers:100")


def test_kill_switch_with_no_flag_on_says_so_and_does_not_pass(tmp_path: Path) -> None:
    """Detected before any flag step (a bad canary): kill_switch has nothing to turn off;
    its recovery is a failed step, not a silent success."""
    from types import SimpleNamespace

    from harness.deploy.strategies import StrategyName, recover
    from harness.report.outcome import Timeline

    stack = SimpleNamespace(name="s", flags=FlagFile(tmp_path / "flags.json"), apps=[])
    result = recover(
        StrategyName.KILL_SWITCH,
        stack=stack,  # type: ignore[arg-type]
        plan=None,  # type: ignore[arg-type]
        timeline=Timeline(),
        fix=None,
        backup=None,
    )
    assert not result.ok
    (step,) = result.steps
    assert step.name == "kill_switch:no_flag_on"
    assert "nothing to turn off" in step.error
