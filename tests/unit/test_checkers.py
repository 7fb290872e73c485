"""Invariant declarations, verdicts and the parts of checking that need no database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness._loader import load_target
from harness.errors import SpecError
from harness.invariants import (
    Availability,
    CallableInvariant,
    CheckContext,
    Conservation,
    DurableAcknowledgedWrites,
    Flow,
    IdempotentWrite,
    MigrationProbe,
    NoDuplicateEffects,
    ReadableByRunningRelease,
    ReadBack,
    ReferentialIntegrity,
    Relation,
    SqlInvariant,
    Status,
    Verdict,
    Write,
    check_all,
    invariants_for,
    open_check_context,
)
from harness.invariants.run import recovery_verdict
from harness.spec import Release, Target
from harness.workload import History, WorkloadSpec

ROOT = Path(__file__).resolve().parents[2]
#: Never connected to: the checks below need no database.
NO_DB = "postgresql://nobody@127.0.0.1:1/none"


def _target(**kw: object) -> Target:
    release = Release("r1", command=("{python}", "-c", "pass"), migrate_command=("true",))
    return Target("t", (release,), "SELECT 1", **kw)  # type: ignore[arg-type]


def test_verdict_json_shape() -> None:
    verdict = Verdict.invalid(lost=2, examples=["a", "b"])
    assert verdict.to_json() == {
        "status": "invalid",
        "evidence": {"lost": 2, "examples": ["a", "b"]},
    }
    assert json.loads(json.dumps(verdict.to_json())) == verdict.to_json()
    assert [s.value for s in Status] == ["valid", "invalid", "unknown"]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Write("", "t", "c", "f"),
        lambda: Write("op", "a.b.c", "c", "f"),
        lambda: DurableAcknowledgedWrites(()),
        lambda: IdempotentWrite((), "k"),
        lambda: IdempotentWrite(("op",), "k"),
        lambda: IdempotentWrite(("op",), "k", table="t"),
        lambda: NoDuplicateEffects(()),
        lambda: Flow("op", "amount", sign=2),
        lambda: Conservation("", (Flow("op", "amount"),)),
        lambda: Conservation("SELECT 1", ()),
        lambda: Relation("child", "", "parent"),
        lambda: ReferentialIntegrity(()),
        lambda: MigrationProbe("0001", ""),
        lambda: ReadBack("op", "no-slash/{id}", ("id",)),
        lambda: ReadBack("op", "/x/{id}", ()),
        lambda: ReadableByRunningRelease(()),
        lambda: ReadableByRunningRelease((ReadBack("op", "/x/{id}", ("id",)),), sample=0),
        lambda: SqlInvariant("x", ""),
        lambda: CallableInvariant("x", "not callable"),  # type: ignore[arg-type]
    ],
)
def test_bad_declarations_fail_at_construction(build: object) -> None:
    with pytest.raises(SpecError):
        build()  # type: ignore[operator]


def test_a_checker_error_is_unknown_with_the_error_but_a_bug_propagates() -> None:
    def broken(_ctx: CheckContext) -> Verdict:
        raise LookupError("no such thing")

    def buggy(_ctx: CheckContext) -> Verdict:
        raise RuntimeError("a bug")

    with open_check_context(NO_DB, History.of(())) as ctx:
        verdicts = check_all([CallableInvariant("broken", broken)], ctx)
        assert verdicts["broken"].to_json() == {
            "status": "unknown",
            "evidence": {"error": "LookupError: no such thing"},
        }
        with pytest.raises(RuntimeError):
            check_all([CallableInvariant("buggy", buggy)], ctx)


def test_a_database_invariant_without_database_is_unknown() -> None:
    with open_check_context(NO_DB, History.of(())) as ctx:
        verdicts = check_all([SqlInvariant("x", "SELECT 1")], ctx)
    assert verdicts["x"].status is Status.UNKNOWN
    assert "error" in verdicts["x"].evidence


class _Step:
    def __init__(self, name: str, ok: bool, error: str = "") -> None:
        self.name, self.ok, self.error = name, ok, error


def test_recovery_verdict_names_the_failed_step() -> None:
    good = recovery_verdict("rollback", [_Step("rollback:migrate:0002", True)])
    assert good.to_json() == {
        "status": "valid",
        "evidence": {"needed": True, "strategy": "rollback", "steps": ["rollback:migrate:0002"]},
    }
    bad = recovery_verdict(
        "roll_forward", [_Step("a", True), _Step("b", False, "exit 1"), _Step("c", False, "x")]
    )
    assert bad.status is Status.INVALID
    assert (bad.evidence["failed_step"], bad.evidence["error"]) == ("b", "exit 1")


def test_invariants_for_adds_the_defaults_once() -> None:
    assert [i.name for i in invariants_for(_target())] == [
        "schema_compatible",
        "end_state_serves",
    ]

    class Model:
        pass

    spec = WorkloadSpec(model=Model)  # type: ignore[arg-type]
    assert [i.name for i in invariants_for(_target(workload=spec))] == [
        "schema_compatible",
        "availability",
        "end_state_serves",
        "no_regression",
    ]
    own = _target(workload=spec, invariants=(Availability(max_error_rate=0.1),))
    assert [i.name for i in invariants_for(own)] == [
        "availability",
        "schema_compatible",
        "end_state_serves",
        "no_regression",
    ]


def test_target_checks_its_invariants_and_workload() -> None:
    with pytest.raises(SpecError, match="repeat"):
        _target(invariants=(Availability(), Availability()))
    with pytest.raises(SpecError, match="no name or no check"):
        _target(invariants=(object(),))
    with pytest.raises(SpecError, match="WorkloadSpec"):
        _target(workload=object())


def test_the_ledger_declares_its_workload_and_invariants() -> None:
    ledger = load_target(str(ROOT / "examples/ledger/target.py"))
    assert ledger.workload is not None
    assert [i.name for i in invariants_for(ledger)] == [
        "durable_acknowledged_writes",
        "no_duplicate_effects",
        "conservation",
        "referential_integrity",
        "schema_compatible",
        "readable_by_running_release",
        "books_balance",
        "availability",
        "end_state_serves",
        "no_regression",
    ]


def test_nothing_in_the_harness_names_the_ledger() -> None:
    for path in (ROOT / "harness" / "workload").rglob("*.py"):
        assert "ledger" not in path.read_text().lower(), path
    for path in (ROOT / "harness" / "invariants").rglob("*.py"):
        assert "ledger" not in path.read_text().lower(), path
