"""The ledger's migrate command on a real PostgreSQL: up, down, fix-forward, hazards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pg_errors

from harness._wait import wait_for

LEDGER_DIR = Path(__file__).resolve().parents[2] / "examples" / "ledger"
if str(LEDGER_DIR) not in sys.path:
    sys.path.insert(0, str(LEDGER_DIR))

from ledger.migrations.sql import SqlFile  # noqa: E402

APPLIED_SQL = "SELECT id FROM schema_migrations ORDER BY id"
ALL = ["0001", "0002", "0003", "0004", "0005"]


def _env(url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": url, **extra}


def migrate(
    url: str, release: str, target: str, *, expect: int = 0, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the migrate command; fail the test unless it exits with ``expect``."""
    result = subprocess.run(
        [sys.executable, "-m", "ledger.migrate", "--release", release, "--to", target],
        cwd=LEDGER_DIR,
        env=_env(url, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != expect:
        pytest.fail(
            f"migrate --release {release} --to {target}: exit {result.returncode}, expected"
            f" {expect}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def applied(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            return [row[0] for row in conn.execute(APPLIED_SQL)]
        except pg_errors.UndefinedTable:
            return []


def currency_nullable(url: str) -> dict[str, bool]:
    """table -> whether its currency column is nullable (absent tables/columns omitted)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, is_nullable = 'YES' FROM information_schema.columns"
            " WHERE column_name = 'currency' AND table_schema = 'public'"
        ).fetchall()
    return {str(table): bool(nullable) for table, nullable in rows}


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


@contextmanager
def migrating_in_background(
    url: str, release: str, target: str, **env: str
) -> Iterator[subprocess.Popen[str]]:
    """The migrate command running on its own (lock timeout 20 s unless ``env`` says
    otherwise); killed if still running when the block ends, however it ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ledger.migrate", "--release", release, "--to", target],
        cwd=LEDGER_DIR,
        env=_env(url, **{"MIGRATE_LOCK_TIMEOUT": "20s", **env}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until_migrate_waits_on_a_lock(url: str, statement: str = "") -> None:
    """Until the migrate command's running statement (containing ``statement``) waits on a
    lock, as pg_stat_activity shows it."""
    with psycopg.connect(url, autocommit=True) as observer:

        def waits() -> bool:
            row = observer.execute(
                "SELECT wait_event_type, query FROM pg_stat_activity"
                " WHERE application_name = 'ledger-migrate'"
                " AND datname = current_database() AND state = 'active'"
            ).fetchone()
            return row is not None and row[0] == "Lock" and statement in row[1]

        wait_for(waits, what="migrate waiting on a lock", timeout=10)


def test_up_to_v2_down_to_v1_up_to_v2_1_and_down_to_base(pg_url: str) -> None:
    # Before anything ran, the harness's query fails with "undefined table": none applied.
    with psycopg.connect(pg_url) as conn, pytest.raises(pg_errors.UndefinedTable):
        conn.execute(APPLIED_SQL)

    out = migrate(pg_url, "v1", "0002").stdout
    assert "0001 up: accounts (atomic)" in out
    assert "database at 0002" in out
    assert applied(pg_url) == ["0001", "0002"]
    assert currency_nullable(pg_url) == {}

    out = migrate(pg_url, "v2", "0005").stdout
    assert "database at 0002, target 0005: up 0003, 0004, 0005" in out
    assert applied(pg_url) == ALL
    assert currency_nullable(pg_url) == {"accounts": False, "transfers": False}

    out = migrate(pg_url, "v2", "0002").stdout
    assert "down 0005, 0004, 0003" in out
    assert "ALTER TABLE accounts DROP COLUMN currency" in out
    assert applied(pg_url) == ["0001", "0002"]
    assert currency_nullable(pg_url) == {}

    migrate(pg_url, "v2.1", "0005")
    assert applied(pg_url) == ALL
    assert currency_nullable(pg_url) == {"accounts": False, "transfers": False}
    assert "nothing to do" in migrate(pg_url, "v2.1", "0005").stdout

    migrate(pg_url, "v2.1", "base")
    assert applied(pg_url) == []
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('accounts')").fetchone() == (None,)


def test_impossible_plans_and_bad_settings_exit_2(pg_url: str) -> None:
    migrate(pg_url, "v2", "0005")
    err = migrate(pg_url, "v1", "0002", expect=2).stderr
    assert "does not know: ['0003', '0004', '0005']" in err
    err = migrate(pg_url, "v2", "0042", expect=2).stderr
    assert "unknown target '0042'" in err
    err = migrate(pg_url, "v2", "0002", expect=2, LEDGER_BACKFILL_BATCH_SIZE="0").stderr
    assert "LEDGER_BACKFILL_BATCH_SIZE='0'" in err
    assert applied(pg_url) == ALL


def test_lock_timeout_and_application_name(pg_url: str) -> None:
    migrate(pg_url, "v2", "0002")
    with psycopg.connect(pg_url) as blocker:
        # An open transaction that read accounts: ALTER TABLE must wait for it.
        blocker.execute("SELECT count(*) FROM accounts")

        result = migrate(pg_url, "v2", "0003", expect=1, MIGRATE_LOCK_TIMEOUT="200ms")
        assert "lock timeout" in result.stderr
        assert "0003 is not recorded" in result.stderr

        with migrating_in_background(pg_url, "v2", "0003") as waiting:
            wait_until_migrate_waits_on_a_lock(pg_url, "ALTER TABLE")
            blocker.commit()
            out, _ = waiting.communicate(timeout=30)
            assert waiting.returncode == 0, out
    assert applied(pg_url) == ["0001", "0002", "0003"]


def test_half_applied_v2_expand_fails_on_rerun_and_v2_1_completes_it(pg_url: str) -> None:
    migrate(pg_url, "v2", "0002")
    # The migrate command died after the first of 0003's two ALTERs: nothing recorded.
    first, _second = SqlFile("v2/0003_currency_expand.up.sql").statements()
    execute(pg_url, first)
    assert currency_nullable(pg_url) == {"accounts": True}

    err = migrate(pg_url, "v2", "0005", expect=1).stderr
    assert 'column "currency" of relation "accounts" already exists' in err
    assert applied(pg_url) == ["0001", "0002"]

    out = migrate(pg_url, "v2.1", "0005").stdout
    assert "ADD COLUMN IF NOT EXISTS" in out
    assert applied(pg_url) == ALL
    assert currency_nullable(pg_url) == {"accounts": False, "transfers": False}


def _seed_v1_rows(url: str, accounts: int) -> None:
    """Rows as v1 writes them: no currency."""
    execute(
        url,
        f"INSERT INTO accounts (owner, balance_cents) SELECT 'owner ' || i, 100"
        f" FROM generate_series(1, {accounts}) AS i",
        "INSERT INTO transfers (idempotency_key, to_account, amount_cents)"
        " SELECT 'seed-' || id, id, 100 FROM accounts",
    )


def _currencies(url: str, table: str) -> dict[str | None, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT currency, count(*) FROM {table} GROUP BY 1").fetchall()
    return {currency: count for currency, count in rows}


def test_v2_backfill_is_batched_and_v2_1_resumes_it_after_a_kill(pg_url: str) -> None:
    migrate(pg_url, "v2", "0003")
    _seed_v1_rows(pg_url, 450)
    # Throttled, so the test can kill it after its first committed batch.
    lines: list[str] = []
    with migrating_in_background(pg_url, "v2", "0004", LEDGER_BACKFILL_PAUSE="30") as killed:
        assert killed.stdout is not None
        for line in killed.stdout:
            lines.append(line)
            if "accounts batch 1:" in line:
                break
    assert "  0004 up: accounts batch 1: ids 1-200, 200 rows set to USD\n" in lines, lines
    assert _currencies(pg_url, "accounts") == {"USD": 200, None: 250}
    assert applied(pg_url) == ["0001", "0002", "0003"]

    out = migrate(pg_url, "v2.1", "0005", LEDGER_BACKFILL_BATCH_SIZE="100").stdout
    assert "accounts: resuming, 200 of 450 rows already have a currency" in out
    assert "accounts batch 3: 50 rows set to USD" in out
    assert "transfers batch 5: 50 rows set to USD" in out
    assert _currencies(pg_url, "accounts") == {"USD": 450}
    assert _currencies(pg_url, "transfers") == {"USD": 450}
    assert applied(pg_url) == ALL


def test_v2_backfill_logs_each_batch(pg_url: str) -> None:
    migrate(pg_url, "v2", "0003")
    _seed_v1_rows(pg_url, 450)
    out = migrate(pg_url, "v2", "0004").stdout
    for batch, ids, rows in ((1, "1-200", 200), (2, "201-400", 200), (3, "401-600", 50)):
        assert f"accounts batch {batch}: ids {ids}, {rows} rows set to USD" in out
    assert _currencies(pg_url, "transfers") == {"USD": 450}


def test_v2_contract_fails_on_a_row_v1_wrote_after_the_backfill(pg_url: str) -> None:
    migrate(pg_url, "v2", "0004")
    execute(pg_url, "INSERT INTO accounts (owner) VALUES ('written by v1 during the rollout')")
    err = migrate(pg_url, "v2", "0005", expect=1).stderr
    assert 'column "currency" of relation "accounts" contains null values' in err
    assert applied(pg_url) == ["0001", "0002", "0003", "0004"]

    out = migrate(pg_url, "v2.1", "0005").stdout
    assert "accounts: 1 rows written since the backfill set to USD" in out
    assert applied(pg_url) == ALL
    assert currency_nullable(pg_url) == {"accounts": False, "transfers": False}


def test_rerunning_v2_backfill_overwrites_eur_and_v2_1_does_not(pg_url: str) -> None:
    for release, expected in (("v2", {"USD": 1}), ("v2.1", {"EUR": 1})):
        migrate(pg_url, release, "0004")
        execute(pg_url, "TRUNCATE transfers, accounts")
        execute(pg_url, "INSERT INTO accounts (owner, currency) VALUES ('written by v2', 'EUR')")
        # Roll back to 0003 (0004 down does nothing) and forward again: 0004 runs twice.
        migrate(pg_url, release, "0003")
        migrate(pg_url, release, "0004")
        assert _currencies(pg_url, "accounts") == expected, release
        migrate(pg_url, release, "0002")


@pytest.mark.parametrize(("start", "migration"), [("0002", "0003"), ("0004", "0005")])
def test_v2_1_atomic_migration_retries_a_deadlock_with_a_transfer(
    pg_url: str, start: str, migration: str
) -> None:
    # A transfer reads transfers (idempotency key) and then locks accounts; v2.1's expand
    # and contract lock accounts, then transfers. The migration waits first, so it is the
    # one PostgreSQL aborts; nothing of it was applied, and the migrate command retries it.
    migrate(pg_url, "v2", start)
    execute(pg_url, "INSERT INTO accounts (owner) VALUES ('a')")
    with psycopg.connect(pg_url) as transfer:
        transfer.execute("SET deadlock_timeout = '30s'")
        # Held before the migration starts: the migration then waits on it.
        transfer.execute("SELECT count(*) FROM transfers WHERE idempotency_key = 'k'")
        with migrating_in_background(pg_url, "v2.1", migration) as migrating:
            wait_until_migrate_waits_on_a_lock(pg_url)
            # Closes the cycle; returns once the migration was aborted and let go of accounts.
            transfer.execute("SELECT id FROM accounts ORDER BY id FOR UPDATE").fetchall()
            transfer.commit()
            out, _ = migrating.communicate(timeout=30)
    assert migrating.returncode == 0, out
    assert f"{migration} up: attempt 1 of 5: DeadlockDetected, nothing of it was applied" in out
    assert applied(pg_url) == ALL[: ALL.index(migration) + 1]


@pytest.mark.parametrize(("release", "schema"), [("v1", "0002"), ("v2", "0003"), ("v2", "0004")])
def test_seed_works_on_every_schema_a_stack_can_start_from(
    pg_url: str, release: str, schema: str
) -> None:
    # A stack that starts from v2 is seeded after 0004 made currency NOT NULL.
    migrate(pg_url, release, schema)
    result = subprocess.run(
        [sys.executable, "-m", "ledger.seed", "--accounts", "20", "--transfers", "30"],
        cwd=LEDGER_DIR,
        env=_env(pg_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with psycopg.connect(pg_url) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM transfers),"
            " (SELECT sum(balance_cents) FROM accounts),"
            " (SELECT sum(amount_cents) FROM transfers WHERE from_account IS NULL)"
        ).fetchone()
    assert counts is not None
    accounts, transfers, held, deposited = counts
    assert (accounts, transfers) == (20, 50)
    assert held == deposited  # transfers between accounts move money, deposits bring it
    currencies = {t: _currencies(pg_url, t) for t in currency_nullable(pg_url)}
    expected = {"accounts": {"USD": 20}, "transfers": {"USD": 50}} if schema != "0002" else {}
    assert currencies == expected
