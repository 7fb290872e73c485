"""Each invariant on the ledger, with a real fault that breaks it, and a run where all hold.

Every run is a real chaos run (``run_chaos``): the ledger's own workload during the whole
deployment, the fault, the recovery, then the verdicts in ``outcome.verdicts``. Bugs come
from the ledger's ``LEDGER_BUG`` switches, as release variants of the target.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from harness._loader import load_target
from harness.backends.local import LocalBackend
from harness.deploy.points import parse_point
from harness.deploy.runner import RunSpec, run_chaos
from harness.deploy.strategies import StrategyName
from harness.faults.base import Fault
from harness.faults.database import DbCrash, LockConflict, TerminateBackends
from harness.faults.release import BadRelease, MigrationFailsAt
from harness.invariants import Availability, CheckContext, Status, check_all, open_check_context
from harness.invariants.base import AppEndpoint
from harness.report.outcome import RunOutcome
from harness.spec import Release, Target
from harness.workload import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
LEDGER = load_target(str(ROOT / "examples/ledger/target.py"))
_model = importlib.import_module("_deploy_chaos_ledger_workload")  # loaded by target.py


def _variant(base: str, name: str, bug: str) -> Release:
    release = LEDGER.release(base)
    return dataclasses.replace(release, name=name, env={**release.env, "LEDGER_BUG": bug})


def _target(
    *,
    currencies: Mapping[str, float] | None = None,
    mix: Mapping[str, float] | None = None,
    availability: Availability | None = None,
) -> Target:
    """The ledger with bug variants of v1, and optionally another model or budget."""
    workload = LEDGER.workload
    assert workload is not None
    if currencies is not None or mix is not None:
        model = functools.partial(
            _model.LedgerModel, currencies=currencies or _model.CURRENCIES, mix=mix
        )
        workload = dataclasses.replace(workload, model=model)
    invariants = LEDGER.invariants
    if availability is not None:
        invariants = (*invariants, availability)
    return dataclasses.replace(
        LEDGER,
        releases=(
            *LEDGER.releases,
            _variant("v1", "v1-ack", "ack_before_commit"),
            _variant("v1", "v1-double", "double_apply"),
        ),
        workload=workload,
        invariants=invariants,
    )


def _run(
    backend: LocalBackend,
    tmp_path: Path,
    target: Target,
    fault: Fault,
    point: str,
    strategy: str,
    *,
    source: str = "v1",
    dest: str = "v2",
    fix: str | None = None,
    recover_after: str | None = None,
    seed: int = 11,
    workload: Mapping[str, float] | None = None,
) -> tuple[RunOutcome, dict[str, Any]]:
    spec = RunSpec(
        target,
        source,
        dest,
        fault,
        parse_point(point),
        StrategyName(strategy),
        fix=fix,
        recover_after=recover_after,
        seed=seed,
        workload_settings=workload or {},
    )
    print(f"seed {seed}")
    history = tmp_path / "history.jsonl"
    outcome = run_chaos(backend, spec, progress=print, history_path=history)
    print(json.dumps(outcome.history_stats))
    for name, verdict in outcome.verdicts.items():
        print(name, json.dumps(verdict)[:1500])
    assert outcome.history_stats["history_file"] == str(history)
    assert len(read_jsonl(history).ops) > 0
    assert not [e for e in outcome.errors if e.phase in ("workload", "baseline")]
    for verdict in outcome.verdicts.values():
        assert set(verdict) == {"status", "evidence"}
        assert verdict["status"] in ("valid", "invalid", "unknown")
        json.dumps(verdict)
    return outcome, outcome.verdicts


def _status(verdicts: dict[str, Any]) -> dict[str, str]:
    return {name: v["status"] for name, v in verdicts.items()}


def test_rollback_before_any_v2_write_holds_every_invariant(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    target = _target(availability=Availability(max_error_rate=0.9, max_unavailable_s=60.0))
    outcome, verdicts = _run(
        local_backend, tmp_path, target, LockConflict("accounts"), "before:migrate:0003", "rollback"
    )
    assert outcome.detected is not None
    assert _status(verdicts) == dict.fromkeys(verdicts, "valid")
    assert verdicts["recovery"]["evidence"]["needed"] is True
    assert verdicts["durable_acknowledged_writes"]["evidence"]["acknowledged"] > 0
    assert set(verdicts) >= {
        "durable_acknowledged_writes",
        "no_duplicate_effects",
        "conservation",
        "referential_integrity",
        "schema_compatible",
        "readable_by_running_release",
        "books_balance",
        "availability",
        "recovery",
    }


def test_acknowledged_before_commit_loses_acknowledged_writes(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    _, verdicts = _run(
        local_backend,
        tmp_path,
        _target(),
        LockConflict("accounts"),
        "before:migrate:0003",
        "rollback",
        source="v1-ack",
    )
    durable = verdicts["durable_acknowledged_writes"]
    assert durable["status"] == "invalid"
    [accounts, money] = durable["evidence"]["writes"]
    assert accounts["lost"] == 0, "opening an account is not affected by the bug"
    assert money["lost"] == money["acknowledged"] > 0
    assert money["lost_examples"]
    # Acknowledged twice but never kept is a durability failure, not a duplicate effect.
    assert verdicts["no_duplicate_effects"]["status"] == "valid"
    assert verdicts["books_balance"]["status"] == "valid"


def test_double_apply_of_a_replayed_key_is_a_duplicate_effect(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    _, verdicts = _run(
        local_backend,
        tmp_path,
        _target(mix={"open_account": 2, "deposit": 4, "transfer": 2, "read": 1, "replay": 3}),
        LockConflict("accounts"),
        "before:migrate:0003",
        "rollback",
        source="v1-double",
    )
    duplicates = verdicts["no_duplicate_effects"]
    assert duplicates["status"] == "invalid"
    assert duplicates["evidence"]["applied_more_than_once"] > 0
    assert duplicates["evidence"]["duplicated_keys"] == 0, "the key is unique: one row"
    assert duplicates["evidence"]["writes"][0]["applied_examples"][0]["times"] >= 2
    # The custom SQL invariant sees the money moved twice; every write is still there.
    assert verdicts["books_balance"]["status"] == "invalid"
    assert verdicts["durable_acknowledged_writes"]["status"] == "valid"


def test_release_that_loses_a_cent_breaks_conservation(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    # A bad build of v2 (v2-lose-cent) is rolled out over v2; verify notices the wrong
    # release; v2.1 rolls forward. Transfers served meanwhile credited one cent less than
    # they debited. From v2, so no migration runs before the rollout: from v1, v2's 0003
    # sometimes deadlocked with a live transfer and the bad build never served (a CI run).
    outcome, verdicts = _run(
        local_backend,
        tmp_path,
        _target(mix={"open_account": 2, "deposit": 3, "transfer": 6, "read": 1, "replay": 0}),
        BadRelease("v2-lose-cent"),
        "before:rollout:0",
        "roll_forward",
        source="v2",
        dest="v2.1",
        fix="v2.1",
    )
    assert outcome.detected is not None
    assert " at verify:" in outcome.detected, outcome.detected
    # The roll-forward itself may fail: v2.1's 0005 locks both tables and can deadlock with
    # live transfers (seen under this workload). The recovery verdict says which.
    assert verdicts["recovery"]["status"] == ("valid" if outcome.recovered else "invalid")
    conservation = verdicts["conservation"]
    assert conservation["status"] == "invalid"
    short = [g for g in conservation["evidence"]["groups"] if g["difference"] < 0]
    assert short
    assert all(g["difference"] >= -g["acknowledged_ops"] * 100 for g in short)
    assert verdicts["books_balance"]["status"] == "invalid"
    assert verdicts["durable_acknowledged_writes"]["status"] == "valid"


def test_rollback_after_v2_wrote_eur_loses_meaning(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    # Accounts are opened in EUR; v2 instances serve them from rollout:0 to verify; the
    # rollback's 0003 down drops the currency columns. Only openings and deposits, at twice
    # the usual rate: the window is about a second, and conservation needs EUR deposits
    # acknowledged in it (with the full mix a quick run sometimes had none; at 30 ops/s
    # runs acknowledged 3 to 11).
    outcome, verdicts = _run(
        local_backend,
        tmp_path,
        _target(currencies={"EUR": 1.0}, mix={"open_account": 1, "deposit": 3}),
        TerminateBackends(),
        "after:rollout:1",
        "rollback",
        recover_after="verify",
        workload={"rate": 60.0},
    )
    assert outcome.recovered is True
    assert verdicts["recovery"]["status"] == "valid"
    readable = verdicts["readable_by_running_release"]
    assert readable["status"] == "invalid"
    assert readable["evidence"]["by_field"]["currency"] > 0
    eur = [e for e in readable["evidence"]["examples"] if e.get("field") == "currency"]
    assert eur
    assert all(e["told"] == "EUR" and e["absent"] and e["release"] == "v1" for e in eur)
    conservation = verdicts["conservation"]
    assert conservation["status"] == "invalid"
    groups = {g["group"]: g for g in conservation["evidence"]["groups"]}
    assert groups["EUR"]["held"] == 0 < groups["EUR"]["expected_min"]
    assert groups["USD"]["held"] > groups["USD"]["expected_max"], "EUR now counts as USD"
    # Nothing was lost, the schema is v1's: only the meaning changed.
    assert verdicts["durable_acknowledged_writes"]["status"] == "valid"
    assert verdicts["schema_compatible"]["status"] == "valid"
    assert verdicts["books_balance"]["status"] == "valid"


def test_half_applied_expand_is_reported_and_the_failed_recovery_step(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    # Statement 3 is 0003's second ALTER: accounts has currency, transfers not, unrecorded;
    # v2's 0003 cannot be re-run, so rolling forward with v2 fails.
    outcome, verdicts = _run(
        local_backend,
        tmp_path,
        _target(),
        MigrationFailsAt(3),
        "before:migrate:0003",
        "roll_forward",
    )
    assert outcome.recovered is False
    recovery = verdicts["recovery"]
    assert recovery["status"] == "invalid"
    assert recovery["evidence"]["failed_step"].startswith("roll_forward")
    schema = verdicts["schema_compatible"]
    assert schema["status"] == "invalid"
    probe = {p["migration"]: p for p in schema["evidence"]["probes"]}["0003"]
    assert probe == {"migration": "0003", "recorded": False, "present": 0.5, "half_applied": True}


def test_database_crash_exceeds_the_unavailability_budget(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    _, verdicts = _run(
        local_backend,
        tmp_path,
        _target(availability=Availability(max_unavailable_s=0.3)),
        # Down until recovery starts: after the step, the health checks fail for the whole
        # health grace (2 s) before detection, so the outage cannot end early by chance.
        DbCrash(duration=None),
        "after:migrate:0003",
        "rollback",
    )
    availability = verdicts["availability"]
    assert availability["status"] == "invalid"
    assert "longest_unavailable_s" in availability["evidence"]["exceeded"]
    assert availability["evidence"]["longest_unavailable_s"] > 0.3


def test_orphans_on_the_ledger_without_foreign_keys(
    local_backend: LocalBackend,
) -> None:
    """No deployment fault of the ledger orphans a transfer (it has foreign keys); a team
    that drops them and deletes an account does."""
    target = _target()
    [ri] = [i for i in target.invariants if i.name == "referential_integrity"]
    with local_backend.start_stack(target, target.release("v1"), instances=1) as stack:
        db = stack.database
        db.sql("INSERT INTO accounts (owner, balance_cents) VALUES ('a', 0), ('b', 0)")
        a, b = (r[0] for r in db.sql("SELECT id FROM accounts ORDER BY id"))
        db.sql(
            "INSERT INTO transfers (idempotency_key, from_account, to_account, amount_cents)"
            " VALUES ('k1', NULL, %s, 5), ('k2', %s, %s, 1)",
            (a, a, b),
        )
        apps = [AppEndpoint(0, "v1", stack.apps[0].base_url)]
        from harness.workload import History

        def check() -> dict[str, Any]:
            with open_check_context(db.url, History.of(()), apps=apps) as ctx:
                return check_all([ri], ctx)[ri.name].to_json()

        assert check()["status"] == "valid"
        db.sql("ALTER TABLE transfers DROP CONSTRAINT transfers_to_account_fkey")
        db.sql("ALTER TABLE transfers DROP CONSTRAINT transfers_from_account_fkey")
        db.sql("DELETE FROM accounts WHERE id = %s", (a,))
        verdict = check()
    assert verdict["status"] == "invalid"
    relations = {r["relation"]: r for r in verdict["evidence"]["relations"]}
    assert relations["transfers.to_account -> accounts.id"]["examples"] == [str(a)]
    assert relations["transfers.from_account -> accounts.id"]["examples"] == [str(a)]
    assert verdict["evidence"]["orphans"] == 2


def test_callable_context_reaches_the_app(local_backend: LocalBackend) -> None:
    """A Python invariant gets the running apps and the database through its context."""
    with local_backend.start_stack(LEDGER, LEDGER.release("v1"), instances=1) as stack:
        from harness.invariants import CallableInvariant, Verdict
        from harness.workload import History, HttpClient

        def healthy(ctx: CheckContext) -> Verdict:
            answer = HttpClient(2.0).get(ctx.apps[0].base_url, "/healthz")
            (n,) = ctx.query("SELECT count(*) FROM accounts")[0]
            return Verdict.valid(status=answer.status, accounts=int(n))

        inv = CallableInvariant("healthy", healthy)
        apps = [AppEndpoint(0, "v1", stack.apps[0].base_url)]
        with open_check_context(stack.database.url, History.of(()), apps=apps) as ctx:
            verdict = check_all([inv], ctx)["healthy"]
    assert verdict.status is Status.VALID
    assert verdict.evidence == {"status": 200, "accounts": 0}


@pytest.fixture(autouse=True)
def _no_threads_left() -> Any:
    yield
    import threading

    assert [t.name for t in threading.enumerate() if t.name.startswith("workload-client")] == []
