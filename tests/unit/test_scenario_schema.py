"""The published JSON Schema of scenario files: current with the declared models, accepting
every scenario the project ships, and refusing what the validator refuses (the same
declarations feed both)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from harness.errors import SpecError
from harness.scenario import load_scenario
from harness.scenario_schema import SCHEMA_FILE, json_schema, schema_text

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(
    [*(ROOT / "scenarios").glob("*.yaml"), *(ROOT / "examples").glob("*/scenario.yaml")]
)


def _validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_committed_schema_is_current() -> None:
    committed = (ROOT / SCHEMA_FILE).read_text(encoding="utf-8")
    assert committed == schema_text(), "run: deploy-chaos schema -o scenario.schema.json"


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_scenario_validates_and_names_the_schema(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    errors = [e.message for e in _validator().iter_errors(yaml.safe_load(text))]
    assert errors == []
    first = text.splitlines()[0]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert match, first
    assert (path.parent / match[1]).resolve() == ROOT / SCHEMA_FILE


BASE = ROOT / "scenarios" / "ledger_no_fix.yaml"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: d.update(strategeis=["rollback"]), "strategeis"),
        (lambda d: d.update(strategies=["rollbak"]), "rollbak"),
        (lambda d: d.pop("upgrade"), "upgrade"),
        (lambda d: d["upgrade"].update(form="v1"), "form"),
        (lambda d: d.update(faults=["db_crsh"]), "db_crsh"),
        (lambda d: d.update(expect=[{"violates": ["x"], "reson": "typo"}]), "reson"),
        (lambda d: d.update(canary={"weights": [10], "sample": 3}), "sample"),
        (lambda d: d.update(error_budget={"window": "5s"}), "max_error_rate"),
    ],
)
def test_what_the_schema_refuses_the_validator_refuses(
    tmp_path: Path, change: Any, key: str
) -> None:
    data = yaml.safe_load(BASE.read_text(encoding="utf-8"))
    data["target"] = str(ROOT / "examples" / "ledger" / "target.py")
    change(data)
    errors = [e.message for e in _validator().iter_errors(data)]
    print(errors)
    assert errors
    assert any(key in message for message in errors)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_scenario(path)
    print(info.value)
    assert key in str(info.value)
