"""The currency migrations that need code: the batched backfill (0004) and v2.1's contract.

Every batch runs in its own transaction, so a backfill can be caught half-way.
"""

from __future__ import annotations

import time

import psycopg

from ledger.errors import MigrationFailed
from ledger.migrations.model import StepContext

__all__ = [
    "TABLES",
    "backfill_by_id_range",
    "backfill_nulls",
    "contract_with_validation",
    "nothing",
]

#: The tables that carry a currency column, in backfill order.
TABLES = ("accounts", "transfers")


def nothing(ctx: StepContext) -> None:
    """A down step with nothing to undo (v2's 0004 down: the values stay)."""
    ctx.progress("nothing to undo")


def _fail(migration: str, direction: str, exc: psycopg.Error) -> MigrationFailed:
    primary = exc.diag.message_primary or str(exc).strip()
    return MigrationFailed(migration, direction, f"{primary} ({type(exc).__name__})")


def backfill_by_id_range(ctx: StepContext) -> None:
    """v2's 0004 up: set currency to USD for every id range between min(id) and max(id).

    Written in a hurry: it overwrites every row (not only NULL ones), and the id range is
    fixed when it starts. Re-running it after v2 wrote EUR rows turns them into USD; rows
    inserted by v1 after it read max(id) stay NULL, and then v2's 0005 fails.
    """
    try:
        for table in TABLES:
            row = ctx.conn.execute(f"SELECT min(id), max(id) FROM {table}").fetchone()
            low, high = row if row is not None else (None, None)
            if low is None or high is None:
                ctx.progress(f"{table}: no rows")
                continue
            starts = range(low, high + 1, ctx.batch_size)
            for batch, start in enumerate(starts, start=1):
                end = start + ctx.batch_size - 1
                with ctx.conn.transaction():
                    cursor = ctx.conn.execute(
                        f"UPDATE {table} SET currency = 'USD' WHERE id BETWEEN %s AND %s",
                        (start, end),
                    )
                ctx.progress(
                    f"{table} batch {batch}: ids {start}-{end}, {cursor.rowcount} rows set to USD"
                )
                if ctx.batch_pause:
                    time.sleep(ctx.batch_pause)
    except psycopg.Error as exc:
        raise _fail("0004", "up", exc) from exc


def backfill_nulls(ctx: StepContext) -> None:
    """v2.1's 0004 up: set currency to USD where it is NULL, in id order, resumably.

    Rows already backfilled (by a half-run v2 0004) are skipped, rows written since are
    picked up, and EUR rows written by v2 are never touched.
    """
    try:
        for table in TABLES:
            total, missing = ctx.conn.execute(
                f"SELECT count(*), count(*) FILTER (WHERE currency IS NULL) FROM {table}"
            ).fetchone() or (0, 0)
            if total and missing < total:
                ctx.progress(
                    f"{table}: resuming, {total - missing} of {total} rows already have a currency"
                )
            ctx.progress(f"{table}: {missing} rows to backfill")
            last_id, batch = 0, 0
            while True:
                with ctx.conn.transaction():
                    rows = ctx.conn.execute(
                        f"WITH batch AS (SELECT id FROM {table} WHERE id > %s"
                        " AND currency IS NULL ORDER BY id LIMIT %s FOR UPDATE)"
                        f" UPDATE {table} AS t SET currency = 'USD' FROM batch"
                        " WHERE t.id = batch.id RETURNING t.id",
                        (last_id, ctx.batch_size),
                    ).fetchall()
                if not rows:
                    break
                batch += 1
                last_id = max(int(row[0]) for row in rows)
                ctx.progress(
                    f"{table} batch {batch}: {len(rows)} rows set to USD (up to id {last_id})"
                )
                if ctx.batch_pause:
                    time.sleep(ctx.batch_pause)
    except psycopg.Error as exc:
        raise _fail("0004", "up", exc) from exc


def contract_with_validation(ctx: StepContext) -> None:
    """v2.1's 0005 up, inside the migration's transaction: lock, complete, validate, contract.

    Rows left NULL (written by v1 instances after the backfill) are set to USD (v1 only
    knows USD) under an exclusive lock, so none can appear before NOT NULL is set. Works
    whether v2's 0005 was half-applied or not at all.

    Under traffic the two table locks can deadlock with a transfer (which reads
    ``transfers`` by idempotency key, then locks ``accounts``, then inserts into
    ``transfers``): the migrate command retries an atomic migration that deadlocks.
    """
    try:
        _lock_complete_contract(ctx)
    except psycopg.Error as exc:
        raise _fail("0005", "up", exc) from exc


def _lock_complete_contract(ctx: StepContext) -> None:
    ctx.conn.execute("LOCK TABLE accounts, transfers IN ACCESS EXCLUSIVE MODE")
    for table in TABLES:
        cursor = ctx.conn.execute(f"UPDATE {table} SET currency = 'USD' WHERE currency IS NULL")
        if cursor.rowcount:
            ctx.progress(f"{table}: {cursor.rowcount} rows written since the backfill set to USD")
        remaining = ctx.conn.execute(
            f"SELECT count(*) FROM {table} WHERE currency IS NULL"
        ).fetchone()
        if remaining and remaining[0]:
            raise MigrationFailed(
                "0005", "up", f"{table} still has {remaining[0]} rows without a currency"
            )
        ctx.progress(f"{table}: no NULL currency left; setting NOT NULL")
        ctx.conn.execute(f"ALTER TABLE {table} ALTER COLUMN currency SET NOT NULL")
