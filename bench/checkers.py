"""How fast the built-in checkers check a large history against a populated database.

Prints, from one run on this machine:
- the time to check a history of N operations (default 1,000,000: accounts opened, deposits
  and transfers with idempotency keys, reads; ok/fail/info mixed, replays included) against
  a database holding the matching rows (plus losses, phantoms and orphans injected so the
  checkers have something to find): pairing the history, loading it (COPY), then each
  built-in checker; and the total, against the target of 10 s;
- as the baseline, measured in the same run: a naive checker that asks the database one
  query per acknowledged write, over 10,000 operations; with the per-operation ratio.

``readable_by_running_release`` is not measured: it reads a bounded sample through the app's
HTTP API, so its cost does not grow with the history.

Usage: .venv/bin/python bench/checkers.py [--operations 1000000] [--naive 10000] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from harness.backends.local import LocalBackend  # noqa: E402
from harness.backends.postgres import PgCluster  # noqa: E402
from harness.invariants import (  # noqa: E402
    Availability,
    Conservation,
    DurableAcknowledgedWrites,
    Flow,
    IdempotentWrite,
    Invariant,
    MigrationProbe,
    NoDuplicateEffects,
    ReferentialIntegrity,
    Relation,
    SchemaCompatible,
    Write,
    open_check_context,
)
from harness.invariants.base import HistoryFields  # noqa: E402
from harness.report.outcome import EndState, InstanceState  # noqa: E402
from harness.spec import Release, Target  # noqa: E402
from harness.workload.history import ErrorKind, History, Op, OpType, Scalar  # noqa: E402

SCHEMA = """
CREATE TABLE schema_migrations (id text PRIMARY KEY);
INSERT INTO schema_migrations VALUES ('0001'), ('0002');
CREATE TABLE accounts (id bigint PRIMARY KEY, owner text, balance_cents bigint, currency text);
CREATE TABLE transfers (id bigserial PRIMARY KEY, idempotency_key text UNIQUE,
    from_account bigint, to_account bigint, amount_cents bigint, currency text);
"""

CURRENCIES = ("EUR", "GBP", "USD")
_KIND = {OpType.OK: None, OpType.FAIL: ErrorKind.UNAVAILABLE, OpType.INFO: ErrorKind.INDETERMINATE}


def build(n: int, seed: int) -> tuple[list[Op], list[tuple[object, ...]], list[tuple[object, ...]]]:
    """A history of ``n`` operations and the rows a correct app would have kept."""
    rng = random.Random(seed)
    ops: list[Op] = []
    accounts: list[tuple[object, ...]] = []
    transfers: list[tuple[object, ...]] = []
    t = 0.0
    n_accounts = max(2, n // 10)
    for i in range(n):
        t += 0.0001
        process = i % 16
        roll = rng.random()
        status = OpType.OK if roll < 0.9 else OpType.FAIL if roll < 0.95 else OpType.INFO
        kind = rng.random()
        value: dict[str, Scalar]
        if i < n_accounts:
            f = "open_account"
            account = i + 1
            currency = CURRENCIES[i % 3]
            value = {"owner": f"owner {i}", "requested_currency": currency}
            done: dict[str, Scalar] = {"id": account, "currency": currency}
            status = OpType.OK
            accounts.append((account, f"owner {i}", 0, currency))
        elif kind < 0.2:
            f = "read"
            value = {"id": rng.randint(1, n_accounts)}
            done = {"balance_cents": 0}
        else:
            account = rng.randint(1, n_accounts)
            currency = CURRENCIES[(account - 1) % 3]
            f = "deposit" if kind < 0.6 else "transfer"
            key = f"k{i}"
            amount = rng.randint(1, 10_000)
            value = {"account_id": account, "amount_cents": amount, "idempotency_key": key}
            value["currency"] = currency
            done = {"id": i, "created": True}
            if status is OpType.OK or (status is OpType.INFO and rng.random() < 0.5):
                transfers.append((key, None, account, amount, currency))
        ops.append(Op(len(ops), process, OpType.INVOKE, f, value, t))
        ops.append(
            Op(
                len(ops),
                process,
                status,
                f,
                done if status is OpType.OK else {},
                t + 5e-5,
                None,
                _KIND[status],
            )
        )
    return ops, accounts, transfers


def populate(conn: psycopg.Connection[tuple[object, ...]], accounts: list, transfers: list) -> None:
    conn.execute(SCHEMA)  # type: ignore[arg-type]
    with conn.cursor() as cur:
        with cur.copy("COPY accounts FROM STDIN") as copy:
            for row in accounts:
                copy.write_row(row)
        with cur.copy(
            "COPY transfers (idempotency_key, from_account, to_account, amount_cents, currency)"
            " FROM STDIN"
        ) as copy:
            for row in transfers:
                copy.write_row(row)
        # What the checkers should find: lost writes, orphans.
        cur.execute("DELETE FROM transfers WHERE id % 50000 = 7")
        cur.execute(
            "INSERT INTO transfers (idempotency_key, to_account, amount_cents, currency)"
            " SELECT 'orphan-' || g, 10000000 + g, 1, 'USD' FROM generate_series(1, 5) g"
        )
        cur.execute(
            "UPDATE accounts a SET balance_cents = s.total FROM (SELECT to_account,"
            " sum(amount_cents) AS total FROM transfers GROUP BY 1) s WHERE s.to_account = a.id"
        )
        cur.execute("VACUUM ANALYZE")


def invariants() -> list[Invariant]:
    return [
        DurableAcknowledgedWrites(
            (
                Write("open_account", "accounts", "id", "id"),
                Write("deposit", "transfers", "idempotency_key", "idempotency_key"),
                Write("transfer", "transfers", "idempotency_key", "idempotency_key"),
            )
        ),
        NoDuplicateEffects(
            (
                IdempotentWrite(
                    ("deposit", "transfer"),
                    "idempotency_key",
                    "transfers",
                    "idempotency_key",
                    applied_field="created",
                ),
            )
        ),
        Conservation(
            "SELECT currency, sum(balance_cents) FROM accounts GROUP BY 1",
            (Flow("deposit", "amount_cents", "currency", "idempotency_key"),),
        ),
        ReferentialIntegrity((Relation("transfers", "to_account", "accounts", "id"),)),
        SchemaCompatible(
            (
                MigrationProbe(
                    "0002",
                    "SELECT count(*)::float8 FROM information_schema.tables"
                    " WHERE table_name = 'transfers'",
                ),
            )
        ),
        Availability(max_error_rate=0.5),
    ]


def naive(
    conn: psycopg.Connection[tuple[object, ...]], ops: list[Op], limit: int
) -> tuple[float, int]:
    """One query per acknowledged write: the checker everyone writes first."""
    checked = lost = 0
    started = time.perf_counter()
    pending: dict[int, Op] = {}
    with conn.cursor() as cur:
        for op in ops:
            if op.type is OpType.INVOKE:
                pending[op.process] = op
                continue
            invoke = pending.pop(op.process)
            checked += 1
            if op.type is OpType.OK and invoke.f in ("deposit", "transfer"):
                cur.execute(
                    "SELECT 1 FROM transfers WHERE idempotency_key = %s",
                    (invoke.value["idempotency_key"],),
                )
                lost += cur.fetchone() is None
            elif op.type is OpType.OK and invoke.f == "open_account":
                cur.execute("SELECT 1 FROM accounts WHERE id = %s", (op.value["id"],))
                lost += cur.fetchone() is None
            if checked >= limit:
                break
    return time.perf_counter() - started, lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=1_000_000)
    parser.add_argument("--naive", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"bench/checkers.py: {args.operations:,} operations, seed {args.seed}")
    started = time.perf_counter()
    ops, accounts, transfers = build(args.operations, args.seed)
    print(f"  built the synthetic history in {time.perf_counter() - started:.1f}s (not counted)")
    with LocalBackend() as backend:
        cluster = PgCluster(
            name="bench-checkers.db",
            binaries=backend.binaries,
            run=backend.run,
            directory=backend.run.subdir("bench-checkers"),
            database="app",
        )
        cluster.create_from(backend.template("app"))
        cluster.start()
        try:
            started = time.perf_counter()
            with psycopg.connect(cluster.url, autocommit=True) as conn:
                populate(conn, accounts, transfers)
            print(
                f"  populated the database: {len(accounts):,} accounts, {len(transfers):,}"
                f" transfers in {time.perf_counter() - started:.1f}s (not counted)"
            )
            release = Release(
                "r", command=("true",), migrate_command=("true",), migrations=("0001", "0002")
            )
            target = Target("bench", (release,), "SELECT id FROM schema_migrations ORDER BY id")
            end = EndState(("0001", "0002"), (InstanceState(0, "r", True, True, False),))
            history = History.of(ops)
            rows: list[tuple[str, float, str]] = []
            total_started = time.perf_counter()
            with open_check_context(
                cluster.url,
                history,
                target=target,
                end_state=end,
                baselines={"conservation": {c: 0 for c in CURRENCIES}},
            ) as ctx:
                checks = invariants()
                for inv in checks:
                    if isinstance(inv, HistoryFields):
                        ctx.session.want(inv.history_fields())
                t = time.perf_counter()
                ctx.history_table()
                rows.append(("pair + load history (COPY, ANALYZE)", time.perf_counter() - t, ""))
                for inv in checks:
                    t = time.perf_counter()
                    verdict = inv.check(ctx)
                    seconds = time.perf_counter() - t
                    found = {
                        k: v
                        for k, v in verdict.evidence.items()
                        if k
                        in (
                            "lost",
                            "failed_but_present",
                            "orphans",
                            "applied_more_than_once",
                            "violations",
                            "error_rate",
                        )
                    }
                    rows.append((inv.name, seconds, f"{verdict.status.value} {found}"))
                total = time.perf_counter() - total_started
                (loaded,) = ctx.query("SELECT count(*) FROM chaos_history")[0]
                assert loaded == args.operations, loaded
            with psycopg.connect(cluster.url, autocommit=True) as conn:
                naive_s, naive_lost = naive(conn, ops, args.naive)
        finally:
            cluster.close()
    n = args.operations
    print(f"\n  {'step':<34} {'seconds':>8} {'us/op':>8}  verdict")
    for name, seconds, note in rows:
        print(f"  {name:<34} {seconds:8.2f} {seconds / n * 1e6:8.2f}  {note}")
    per_op = total / n * 1e6
    naive_per_op = naive_s / args.naive * 1e6
    print(f"  {'total (built-in checkers)':<34} {total:8.2f} {per_op:8.2f}")
    verdict = "meets" if total < 10.0 else "MISSES"
    print(f"\n  {n:,} operations checked in {total:.2f}s: {verdict} the 10 s target")
    print(
        f"  naive per-operation checker: {args.naive:,} operations in {naive_s:.2f}s"
        f" = {naive_per_op:.1f} us/op (found {naive_lost} lost), only durability"
    )
    print(
        f"  per operation: set-based, all checkers {per_op:.2f} us/op vs naive, durability only"
        f" {naive_per_op:.1f} us/op: {naive_per_op / per_op:.0f}x"
    )
    print(f"  naive extrapolated to {n:,} operations: {naive_s / args.naive * n:.0f}s")
    return 0 if total < 10.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
