"""schema_compatible on a real database: a halted expand is compatible, a contract under an
old release is not, and an instance that cannot say its release is not judged."""

from __future__ import annotations

from pathlib import Path

import psycopg

from harness._loader import load_target
from harness.invariants import SchemaCompatible, Status, Verdict, open_check_context
from harness.report.outcome import EndState, InstanceState
from harness.workload import History

ROOT = Path(__file__).resolve().parents[2]
TARGET = load_target(str(ROOT / "examples/ledger/target.py"))


def _verdict(pg_url: str, applied: tuple[str, ...], releases: tuple[str | None, ...]) -> Verdict:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS schema_migrations")
        conn.execute("CREATE TABLE schema_migrations (id text PRIMARY KEY)")
        for migration in applied:
            conn.execute("INSERT INTO schema_migrations VALUES (%s)", (migration,))
    end = EndState(
        applied,
        tuple(InstanceState(i, r, True, True, False) for i, r in enumerate(releases)),
    )
    with open_check_context(pg_url, History.of(()), target=TARGET, end_state=end) as ctx:
        return SchemaCompatible().check(ctx)


def test_a_halted_expand_is_compatible_and_a_contract_under_v1_is_not(pg_url: str) -> None:
    halted = _verdict(pg_url, ("0001", "0002", "0003", "0004"), ("v1", "v2"))
    assert halted.status is Status.VALID, halted.evidence
    assert halted.evidence["later_compatible"] == ["0003", "0004"]
    contracted = _verdict(pg_url, ("0001", "0002", "0003", "0004", "0005"), ("v1", "v2"))
    assert contracted.status is Status.INVALID
    first = contracted.evidence["instances"][0]
    assert (first["release"], first["compatible"]) == ("v1", False)
    # v2 code on v1's schema (the down migration ran, the code was not redeployed).
    rolled = _verdict(pg_url, ("0001", "0002"), ("v2", "v1"))
    assert rolled.status is Status.INVALID


def test_an_instance_that_cannot_say_its_release_is_named_not_judged(pg_url: str) -> None:
    verdict = _verdict(pg_url, ("0001", "0002"), ("v1", None))
    assert verdict.status is Status.UNKNOWN, verdict.evidence
    assert verdict.evidence["unjudged"] == ["instance 1: it runs, but did not say its release"]
