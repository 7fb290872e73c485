"""``end_state_serves`` and ``no_regression`` on synthetic histories (no database: the check
context is never connected)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.invariants import (
    Availability,
    EndStateServes,
    NoRegression,
    Status,
    Verdict,
    invariants_for,
    open_check_context,
)
from harness.invariants.base import FaultWindow, Invariant, RunFacts
from harness.report.outcome import EndState, InstanceState
from harness.spec import Release, Target
from harness.workload import History, WorkloadSpec
from harness.workload.history import ErrorKind, Op, OpType

#: Never connected to: these checks need no database.
NO_DB = "postgresql://nobody@127.0.0.1:1/none"

PHASES = ("warmup", "step:migrate:0004", "bake:migrate:0004", "bake:migrate:0005", "soak")
NOT_NULL = '500 {"error": "null value in column \\"currency\\" violates not-null constraint"}'


@dataclass
class Ops:
    """A synthetic history: each call adds an invoke and its completion, one second apart."""

    ops: list[Op] = field(default_factory=list)
    clock: itertools.count[int] = field(default_factory=lambda: itertools.count(0, 2))

    def add(
        self,
        f: str,
        kind: OpType,
        *,
        release: str | None,
        phase: str,
        instance: int | None = 0,
        error_kind: ErrorKind | None = None,
        error: str | None = None,
        n: int = 1,
        entry: int | None = None,
    ) -> list[int]:
        indexes = []
        for _ in range(n):
            t = float(next(self.clock))
            index = len(self.ops)
            if kind is OpType.INFO and error_kind is None:
                error_kind = ErrorKind.INDETERMINATE
            self.ops.append(
                Op(
                    index,
                    index,
                    OpType.INVOKE,
                    f,
                    {},
                    t,
                    None,
                    None,
                    instance,
                    release,
                    phase,
                    entry,
                )
            )
            self.ops.append(Op(index + 1, index, kind, f, {}, t + 1.0, error, error_kind))
            indexes.append(index)
        return indexes

    def ok(self, f: str, release: str, phase: str, n: int = 3, instance: int = 0) -> list[int]:
        return self.add(f, OpType.OK, release=release, phase=phase, n=n, instance=instance)

    def error(
        self, f: str, release: str, phase: str, n: int = 3, instance: int = 0, text: str = NOT_NULL
    ) -> list[int]:
        return self.add(
            f,
            OpType.FAIL,
            release=release,
            phase=phase,
            n=n,
            instance=instance,
            error_kind=ErrorKind.UNAVAILABLE,
            error=text,
        )

    def rejected(self, f: str, release: str, phase: str, n: int = 3) -> list[int]:
        return self.add(
            f,
            OpType.FAIL,
            release=release,
            phase=phase,
            n=n,
            error_kind=ErrorKind.REJECTED,
            error='422 {"error": "insufficient funds"}',
        )

    def now(self) -> float:
        return float(self.ops[-1].time) if self.ops else 0.0

    def history(self) -> History:
        return History.of(self.ops)


def _check(
    invariant: Invariant,
    ops: Ops | None,
    *,
    run: RunFacts | None = None,
    end_state: EndState | None = None,
) -> Verdict:
    history = ops.history() if ops is not None else History.of(())
    with open_check_context(NO_DB, history, run=run, end_state=end_state) as ctx:
        return invariant.check(ctx)


def _facts(phases: Sequence[str] = PHASES, faults: Sequence[FaultWindow] = ()) -> RunFacts:
    return RunFacts(phases=tuple(phases), faults=tuple(faults), strategy="rollback")


def _violations(verdict: Verdict) -> list[dict[str, Any]]:
    return list(verdict.evidence["violations"])  # type: ignore[arg-type]


# -- no_regression -------------------------------------------------------------------------


def _before_0005(ops: Ops) -> None:
    """deposit and read work on v1 in the warm-up and after 0004."""
    for phase in ("warmup", "bake:migrate:0004"):
        ops.ok("deposit", "v1", phase)
        ops.ok("read", "v1", phase)


def test_a_not_null_regression_names_the_step_the_operation_and_the_release() -> None:
    ops = Ops()
    _before_0005(ops)
    broken = ops.error("deposit", "v1", "bake:migrate:0005")
    ops.ok("read", "v1", "bake:migrate:0005")
    ops.ok("deposit", "v1", "soak")  # the rollback brought it back
    ops.ok("read", "v1", "soak")
    verdict = _check(NoRegression(), ops, run=_facts())
    assert verdict.status is Status.INVALID, verdict.evidence
    [violation] = _violations(verdict)
    assert violation["kind"] == "same_release"
    assert (violation["step"], violation["op"], violation["release"]) == (
        "migrate:0005",
        "deposit",
        "v1",
    )
    assert violation["worked_in"] == "bake:migrate:0004"
    assert (violation["ops"], violation["ok"], violation["errors"]) == (3, 0, 3)
    assert [e["index"] for e in violation["examples"]] == broken
    assert "not-null" in violation["examples"][0]["error"]
    assert violation["still_broken_in"] == []


def test_a_regression_that_recovery_did_not_fix_is_one_break_still_broken_in_the_soak() -> None:
    ops = Ops()
    _before_0005(ops)
    ops.error("deposit", "v1", "bake:migrate:0005")
    ops.error("deposit", "v1", "soak")
    [violation] = _violations(_check(NoRegression(), ops, run=_facts()))
    assert violation["step"] == "migrate:0005"
    assert violation["still_broken_in"] == ["soak"]


def test_errors_under_a_fault_window_are_not_a_regression() -> None:
    ops = Ops()
    _before_0005(ops)
    start = ops.now() + 1.0
    ops.error("deposit", "v1", "bake:migrate:0005", text="503 database unavailable")
    crash = FaultWindow("db_crash", start, ops.now() + 0.5)
    ops.ok("deposit", "v1", "bake:migrate:0005")  # healed: it works again
    ops.ok("deposit", "v1", "soak")
    verdict = _check(NoRegression(), ops, run=_facts(faults=[crash]))
    assert verdict.status is Status.VALID, verdict.evidence
    assert verdict.evidence["under_fault"] == 3
    # The same errors without the fault are a regression (the window is what excused them).
    ops = Ops()
    _before_0005(ops)
    ops.error("deposit", "v1", "bake:migrate:0005", text="503 database unavailable")
    ops.ok("deposit", "v1", "soak")
    assert _check(NoRegression(), ops, run=_facts()).status is Status.INVALID


def test_a_fault_on_another_instance_does_not_excuse_errors() -> None:
    ops = Ops()
    _before_0005(ops)
    start = ops.now() + 1.0
    ops.error("deposit", "v1", "bake:migrate:0005", instance=0)
    kill = FaultWindow("kill(app1)", start, ops.now() + 0.5, instances=(1,))
    verdict = _check(NoRegression(), ops, run=_facts(faults=[kill]))
    assert verdict.status is Status.INVALID
    assert verdict.evidence["under_fault"] == 0


def test_all_rejected_is_not_broken() -> None:
    ops = Ops()
    _before_0005(ops)
    ops.ok("transfer", "v1", "warmup")
    ops.rejected("transfer", "v1", "bake:migrate:0005")
    ops.ok("deposit", "v1", "bake:migrate:0005")
    verdict = _check(NoRegression(), ops, run=_facts())
    assert verdict.status is Status.VALID, verdict.evidence
    pairs = {(p["release"], p["op"]): p for p in verdict.evidence["not_judged_pairs"]}  # type: ignore[union-attr, index]
    assert pairs[("v1", "transfer")]["judged_in"] == ["warmup"]
    assert pairs[("v1", "transfer")]["ran_in"] == ["warmup", "bake:migrate:0005"]


def test_one_error_is_not_broken_and_unreached_requests_say_nothing() -> None:
    ops = Ops()
    _before_0005(ops)
    ops.error("deposit", "v1", "bake:migrate:0005", n=1)  # a single error: too few
    ops.add(
        "read",
        OpType.FAIL,
        release="v1",
        phase="bake:migrate:0005",
        error_kind=ErrorKind.UNREACHED,
        error="ConnectionRefusedError",
        n=3,
    )
    verdict = _check(NoRegression(), ops, run=_facts())
    assert verdict.status is Status.VALID, verdict.evidence
    assert verdict.evidence["pairs_compared"] == 2
    assert verdict.evidence["windows_compared"] == 2


def test_broken_on_the_recovered_release_after_recovery_names_both_releases() -> None:
    ops = Ops()
    _before_0005(ops)
    ops.ok("deposit", "v1", "bake:migrate:0005")
    ops.error("deposit", "v2.1", "soak", text='500 {"error": "no such column"}')
    ops.ok("read", "v2.1", "soak")
    verdict = _check(NoRegression(), ops, run=_facts())
    assert verdict.status is Status.INVALID, verdict.evidence
    [violation] = _violations(verdict)
    assert violation["kind"] == "recovered_release"
    assert (violation["step"], violation["op"]) == ("recovery", "deposit")
    assert (violation["release"], violation["source_release"]) == ("v2.1", "v1")
    assert violation["worked_in"] == "warmup"
    # Working on the recovered release: compared against the source's warm-up, valid.
    ops = Ops()
    _before_0005(ops)
    ops.ok("deposit", "v2.1", "soak")
    verdict = _check(NoRegression(), ops, run=_facts())
    assert verdict.status is Status.VALID, verdict.evidence
    assert verdict.evidence["pairs_compared"] == 3  # v1 deposit, v1 read, v2.1 deposit


def test_no_regression_says_unknown_and_why() -> None:
    ops = Ops()
    _before_0005(ops)
    assert "run facts" in str(_check(NoRegression(), ops).evidence["reason"])
    empty = _check(NoRegression(), None, run=_facts())
    assert empty.status is Status.UNKNOWN
    assert "no history" in str(empty.evidence["reason"])
    no_window = _check(NoRegression(), ops, run=_facts(("step:migrate:0004", "recovery")))
    assert no_window.status is Status.UNKNOWN
    assert "no window" in str(no_window.evidence["reason"])
    only_warmup = Ops()
    only_warmup.ok("deposit", "v1", "warmup")
    alone = _check(NoRegression(), only_warmup, run=_facts())
    assert alone.status is Status.UNKNOWN
    assert "nothing to compare" in str(alone.evidence["reason"])
    assert alone.evidence["not_judged_pairs"] == [
        {
            "release": "v1",
            "op": "deposit",
            "ran_in": ["warmup"],
            "judged_in": ["warmup"],
            "why": "judged in one window only",
        }
    ]


# -- end_state_serves ----------------------------------------------------------------------


def _instance(index: int, **kw: Any) -> InstanceState:
    values: dict[str, Any] = {
        "release": "v1",
        "healthy": True,
        "running": True,
        "paused": False,
        "in_rotation": True,
        "health": ('200 {"status": "ok"}',),
    }
    values.update(kw)
    return InstanceState(index, **values)


def _end(*instances: InstanceState) -> EndState:
    return EndState(("0001", "0002"), instances)


def _by_index(verdict: Verdict) -> dict[int, dict[str, Any]]:
    return {i["index"]: i for i in verdict.evidence["instances"]}  # type: ignore[union-attr, index]


def test_a_healthy_instance_with_a_clean_soak_serves() -> None:
    ops = Ops()
    for instance in (0, 1):
        ops.ok("deposit", "v1", "soak", instance=instance)
    ops.rejected("transfer", "v1", "soak")  # a business rule's answer is served
    verdict = _check(EndStateServes(), ops, end_state=_end(_instance(0), _instance(1)))
    assert verdict.status is Status.VALID, verdict.evidence
    assert verdict.evidence["serving"] == [0, 1]
    assert _by_index(verdict)[0]["soak"]["by_op"]["transfer"] == {
        "ok": 0,
        "rejected": 3,
        "errors": 0,
    }


def test_an_unhealthy_instance_does_not_serve_and_its_health_answers_say_why() -> None:
    ops = Ops()
    ops.ok("deposit", "v1", "soak", instance=0)
    refused = "ConnectionRefusedError: [Errno 111] Connection refused"
    end = _end(_instance(0), _instance(1, healthy=False, in_rotation=False, health=(refused,)))
    verdict = _check(EndStateServes(), ops, end_state=end)
    assert verdict.status is Status.INVALID
    assert verdict.evidence["not_serving"] == [1]
    bad = _by_index(verdict)[1]
    assert bad["status"] == "does not serve"
    assert bad["release"] == "v1"
    assert bad["health"] == [refused]
    assert bad["problems"] == ["not healthy", "not in the balancer's rotation"]


def test_an_instance_in_rotation_whose_soak_operations_all_failed_does_not_serve() -> None:
    ops = Ops()
    ops.ok("deposit", "v1", "soak", instance=0)
    failed = ops.error("deposit", "v2", "soak", instance=1)
    ops.add("read", OpType.INFO, release="v2", phase="soak", instance=1, error="timed out")
    end = _end(_instance(0), _instance(1, release="v2"))
    verdict = _check(EndStateServes(), ops, end_state=end)
    assert verdict.status is Status.INVALID
    bad = _by_index(verdict)[1]
    assert bad["soak"]["errors"] == 4
    assert bad["problems"] == ["4 of its 4 soak operations ended in an error"]
    assert [e["index"] for e in bad["error_examples"]][:3] == failed
    assert "not-null" in bad["error_examples"][0]["error"]


def test_one_error_in_the_soak_is_enough_to_not_serve() -> None:
    ops = Ops()
    ops.ok("deposit", "v1", "soak")
    ops.error("read", "v1", "soak", n=1)
    verdict = _check(EndStateServes(), ops, end_state=_end(_instance(0)))
    assert verdict.status is Status.INVALID
    assert _by_index(verdict)[0]["problems"] == ["1 of its 4 soak operations ended in an error"]


def test_an_instance_with_no_soak_operation_is_not_tested() -> None:
    ops = Ops()
    ops.ok("deposit", "v1", "warmup")
    ops.ok("deposit", "v1", "soak", instance=0)
    ops.add("deposit", OpType.INFO, release="v1", phase="soak", instance=1,
            error_kind=ErrorKind.STOPPED, error="still in flight")  # fmt: skip
    verdict = _check(EndStateServes(), ops, end_state=_end(_instance(0), _instance(1)))
    assert verdict.status is Status.UNKNOWN
    assert verdict.evidence["not_tested"] == [1]
    assert _by_index(verdict)[1]["why"] == "it got no soak operation"
    # No soak ran at all (a target without one): said so.
    ops = Ops()
    ops.ok("deposit", "v1", "warmup")
    verdict = _check(EndStateServes(), ops, end_state=_end(_instance(0)))
    assert _by_index(verdict)[0]["why"] == "no soak phase ran: it got no soak operation"


def test_end_state_serves_without_history_or_end_state_or_anything_running() -> None:
    healthy = _check(EndStateServes(), None, end_state=_end(_instance(0)))
    assert healthy.status is Status.UNKNOWN
    assert "health alone" in _by_index(healthy)[0]["why"]
    # Health alone can tell an instance does not serve.
    sick = _check(EndStateServes(), None, end_state=_end(_instance(0, healthy=False)))
    assert sick.status is Status.INVALID
    assert "no end state" in str(_check(EndStateServes(), None).evidence["reason"])
    ops = Ops()
    ops.ok("deposit", "v1", "soak")
    stopped = _instance(0, running=False, healthy=False, release=None, in_rotation=False)
    nothing = _check(EndStateServes(), ops, end_state=_end(stopped))
    assert nothing.status is Status.INVALID
    assert "does not serve at all" in str(nothing.evidence["reason"])
    assert _by_index(nothing)[0]["status"] == "not running"
    # An instance not left running is listed, not judged.
    both = _check(EndStateServes(), ops, end_state=_end(_instance(0), _instance(1, running=False)))
    assert both.status is Status.VALID
    assert both.evidence["not_running"] == [1]


# -- registration --------------------------------------------------------------------------


def test_invariants_for_adds_end_state_serves_always_and_no_regression_with_a_workload() -> None:
    release = Release("r1", command=("{python}", "-c", "pass"), migrate_command=("true",))

    class Model:
        pass

    bare = Target("t", (release,), "SELECT 1")
    assert "end_state_serves" in [i.name for i in invariants_for(bare)]
    assert "no_regression" not in [i.name for i in invariants_for(bare)]
    spec = WorkloadSpec(model=Model)  # type: ignore[arg-type]
    busy = Target("t", (release,), "SELECT 1", workload=spec)
    names = [i.name for i in invariants_for(busy)]
    assert names.count("end_state_serves") == names.count("no_regression") == 1
    own = Target(
        "t",
        (release,),
        "SELECT 1",
        workload=spec,
        invariants=(Availability(name="no_regression"), Availability(name="end_state_serves")),
    )
    chosen = [i.name for i in invariants_for(own)]
    assert chosen.count("no_regression") == chosen.count("end_state_serves") == 1
    by_name = {i.name: i for i in invariants_for(own)}
    assert isinstance(by_name["no_regression"], Availability)
    assert isinstance(by_name["end_state_serves"], Availability)


# -- schedule entries: an error that its retry served is not a failure ----------------------


def test_an_error_served_on_its_retry_still_serves() -> None:
    """A stale pooled connection after a fault: the entry's first attempt errs, its retry is
    served. Free traffic under the phase's label does not count when entries exist."""
    ops = Ops()
    ops.add(
        "deposit",
        OpType.FAIL,
        release="v1",
        phase="soak",
        entry=0,
        error_kind=ErrorKind.UNAVAILABLE,
        error="503 AdminShutdown",
    )
    ops.add("deposit", OpType.OK, release="v1", phase="soak", entry=0)
    ops.add("read", OpType.OK, release="v1", phase="soak", entry=1)
    ops.error("read", "v1", "soak", n=2)  # free traffic (no entry): not the soak's schedule
    verdict = _check(EndStateServes(), ops, end_state=_end(_instance(0)))
    assert verdict.status is Status.VALID, verdict.evidence
    soak = _by_index(verdict)[0]["soak"]
    assert (soak["operations"], soak["errors"], soak["served_on_retry"]) == (2, 0, 1)


def test_an_entry_whose_retry_errs_too_does_not_serve() -> None:
    ops = Ops()
    for _ in range(2):
        ops.add(
            "deposit",
            OpType.FAIL,
            release="v2",
            phase="soak",
            entry=0,
            error_kind=ErrorKind.UNAVAILABLE,
            error="503 never reconnects",
        )
    ops.add("read", OpType.OK, release="v2", phase="soak", entry=1)
    verdict = _check(EndStateServes(), ops, end_state=_end(_instance(0, release="v2")))
    assert verdict.status is Status.INVALID
    assert _by_index(verdict)[0]["problems"] == ["1 of its 2 soak operations ended in an error"]


def test_a_transient_error_among_rejections_is_not_a_regression() -> None:
    """Two transfers refused by a business rule and one that erred once, then was served:
    the operation is not broken."""
    ops = Ops()
    ops.add("transfer", OpType.OK, release="v1", phase="warmup", entry=0)
    ops.add("transfer", OpType.OK, release="v1", phase="warmup", entry=1)
    for entry in (0, 1):
        ops.add(
            "transfer",
            OpType.FAIL,
            release="v1",
            phase="bake:migrate:0004",
            entry=entry,
            error_kind=ErrorKind.REJECTED,
            error="409 insufficient funds",
        )
    ops.add(
        "transfer",
        OpType.FAIL,
        release="v1",
        phase="bake:migrate:0004",
        entry=2,
        error_kind=ErrorKind.UNAVAILABLE,
        error="503 AdminShutdown",
    )
    ops.add(
        "transfer",
        OpType.FAIL,
        release="v1",
        phase="bake:migrate:0004",
        entry=2,
        error_kind=ErrorKind.REJECTED,
        error="409 insufficient funds",
    )
    verdict = _check(NoRegression(), ops, run=_facts())
    assert _violations(verdict) == []
    # The same three entries failing on their retries too would be a regression.
    broken = Ops()
    broken.add("transfer", OpType.OK, release="v1", phase="warmup", entry=0)
    for entry in (0, 1):
        for _ in range(2):
            broken.add(
                "transfer",
                OpType.FAIL,
                release="v1",
                phase="bake:migrate:0004",
                entry=entry,
                error_kind=ErrorKind.UNAVAILABLE,
                error=NOT_NULL,
            )
    (violation,) = _violations(_check(NoRegression(), broken, run=_facts()))
    assert (violation["step"], violation["op"], violation["release"]) == (
        "migrate:0004",
        "transfer",
        "v1",
    )


def test_an_operation_broken_for_new_requests_only_is_a_regression() -> None:
    """New deposits fail NOT NULL on v1 while replays of old ones are answered: broken."""
    ops = Ops()
    _before_0005(ops)
    ops.error("deposit", "v1", "bake:migrate:0005", n=2)
    ops.ok("deposit", "v1", "bake:migrate:0005", n=1)  # a replay of an old key
    (violation,) = _violations(_check(NoRegression(), ops, run=_facts()))
    assert (violation["step"], violation["op"], violation["ok"], violation["errors"]) == (
        "migrate:0005",
        "deposit",
        1,
        2,
    )
