"""The ledger's migrate command: bring the database to exactly one migration id.

    python -m ledger.migrate --release v2 --to 0005     # up from wherever it is
    python -m ledger.migrate --release v2 --to 0002     # down
    python -m ledger.migrate --release v2 --to base     # everything down

It reads the applied ids from ``schema_migrations`` (creating the table when missing), plans
the way up or down with the release's registry, and applies one migration at a time,
printing each. Exit status: 0 done (or nothing to do), 1 a migration or the connection
failed, 2 bad arguments, configuration or no possible plan.

Environment: ``DATABASE_URL`` (required), ``MIGRATE_LOCK_TIMEOUT`` (default ``5s``),
``MIGRATE_STATEMENT_TIMEOUT`` (default ``60s``), ``LEDGER_BACKFILL_BATCH_SIZE`` (rows per
backfill batch, default 200) and ``LEDGER_BACKFILL_PAUSE`` (seconds between batches,
default 0).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger.errors import ConfigurationError, MigrationFailed, PlanError
from ledger.migrations import (
    Direction,
    Migration,
    MigrationPlan,
    StepContext,
    migrations_for,
    plan_migrations,
)
from ledger.releases import ReleaseName

if TYPE_CHECKING:
    import psycopg

__all__ = ["MigrateSettings", "applied_migrations", "main", "run"]

APPLIED_SQL = "SELECT id FROM schema_migrations ORDER BY id"
CREATE_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
)


@dataclass(frozen=True, slots=True)
class MigrateSettings:
    """The migrate tool's settings, from the environment."""

    database_url: str
    lock_timeout: str = "5s"
    statement_timeout: str = "60s"
    batch_size: int = 200
    batch_pause: float = 0.0

    @classmethod
    def from_env(cls) -> MigrateSettings:
        """Read and check the environment; ConfigurationError on a bad value."""
        from ledger.db import database_url

        batch_size = _number(int, "LEDGER_BACKFILL_BATCH_SIZE", "200", minimum=1)
        batch_pause = _number(float, "LEDGER_BACKFILL_PAUSE", "0", minimum=0)
        return cls(
            database_url=database_url(),
            lock_timeout=os.environ.get("MIGRATE_LOCK_TIMEOUT", "5s"),
            statement_timeout=os.environ.get("MIGRATE_STATEMENT_TIMEOUT", "60s"),
            batch_size=int(batch_size),
            batch_pause=float(batch_pause),
        )


def _number(kind: type[int] | type[float], name: str, default: str, *, minimum: float) -> float:
    raw = os.environ.get(name, default)
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(name, raw, f"a number >= {minimum}") from None
    if value < minimum:
        raise ConfigurationError(name, raw, f"a number >= {minimum}")
    return value


def _say(message: str) -> None:
    print(message, flush=True)


def applied_migrations(conn: psycopg.Connection[Any]) -> tuple[str, ...]:
    """The applied ids, creating ``schema_migrations`` first when it does not exist."""
    conn.execute(CREATE_TABLE_SQL)
    return tuple(str(row[0]) for row in conn.execute(APPLIED_SQL).fetchall())


def _record(conn: psycopg.Connection[Any], migration: Migration, direction: Direction) -> None:
    import psycopg

    try:
        if direction is Direction.UP:
            conn.execute("INSERT INTO schema_migrations (id) VALUES (%s)", (migration.id,))
        else:
            conn.execute("DELETE FROM schema_migrations WHERE id = %s", (migration.id,))
    except psycopg.Error as exc:
        cause = exc.diag.message_primary or str(exc).strip()
        raise MigrationFailed(
            migration.id, direction.value, f"recording it failed: {cause}"
        ) from exc


#: How often an atomic migration is tried when it deadlocks or hits its lock timeout.
ATOMIC_ATTEMPTS = 5


def _apply(
    conn: psycopg.Connection[Any],
    migration: Migration,
    direction: Direction,
    settings: MigrateSettings,
) -> None:
    ctx = StepContext(
        conn=conn,
        progress=lambda message: _say(f"  {migration.id} {direction}: {message}"),
        batch_size=settings.batch_size,
        batch_pause=settings.batch_pause,
    )
    kind = "atomic" if migration.atomic else "not atomic"
    _say(f"{migration.id} {direction}: {migration.name} ({kind})")
    started = time.monotonic()
    step = migration.step(direction)
    if migration.atomic:
        import psycopg.errors

        retryable = (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable)
        # All or nothing, so it can be tried again: under live traffic its table locks can
        # deadlock with a transfer (no lock order avoids every cycle) or time out.
        for attempt in range(1, ATOMIC_ATTEMPTS + 1):
            try:
                with conn.transaction():
                    step(ctx)
                    _record(conn, migration, direction)
                break
            except MigrationFailed as exc:
                cause = exc.__cause__
                if attempt == ATOMIC_ATTEMPTS or not isinstance(cause, retryable):
                    raise
                _say(
                    f"{migration.id} {direction}: attempt {attempt} of {ATOMIC_ATTEMPTS}:"
                    f" {type(cause).__name__}, nothing of it was applied; retrying"
                )
                time.sleep(0.05 * attempt)
    else:
        step(ctx)
        _record(conn, migration, direction)
    _say(f"{migration.id} {direction}: applied in {time.monotonic() - started:.2f}s")


def run(release: ReleaseName, target: str, settings: MigrateSettings, *, dry_run: bool) -> int:
    """Migrate to ``target``; prints what it does, returns the exit status."""
    import psycopg

    from ledger.db import connect_for_migrate

    registry = {m.id: m for m in migrations_for(release)}
    try:
        conn = connect_for_migrate(
            settings.database_url,
            lock_timeout=settings.lock_timeout,
            statement_timeout=settings.statement_timeout,
        )
    except psycopg.Error as exc:
        _error(f"cannot connect to the database: {str(exc).strip()}")
        return 1
    with conn:
        try:
            applied = applied_migrations(conn)
            plan = plan_migrations(tuple(registry), applied, target)
        except PlanError as exc:
            _error(str(exc))
            return 2
        except psycopg.Error as exc:
            _error(f"cannot read the migration state: {str(exc).strip()}")
            return 1
        _say(_describe_plan(release, plan))
        if dry_run or plan.direction is None:
            return 0
        for migration_id in plan.steps:
            migration = registry[migration_id]
            try:
                _apply(conn, migration, plan.direction, settings)
            except MigrationFailed as exc:
                consequence = (
                    "rolled back: nothing of it was applied"
                    if migration.atomic
                    else "not atomic: what ran before the failure stays applied, and"
                    f" {migration.id} is not recorded"
                )
                _error(f"{exc} ({consequence})")
                return 1
            except psycopg.Error as exc:
                _error(f"migration {migration.id} {plan.direction} failed: {str(exc).strip()}")
                return 1
        _say(f"database at {target}")
    return 0


def _describe_plan(release: ReleaseName, plan: MigrationPlan) -> str:
    head = f"ledger-migrate (release {release}): database at {plan.current}, target {plan.target}"
    if plan.direction is None:
        return f"{head}: nothing to do"
    return f"{head}: {plan.direction} {', '.join(plan.steps)}"


def _error(message: str) -> None:
    print(f"ledger.migrate: error: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and the environment, then migrate; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m ledger.migrate",
        description="Migrate the ledger database up or down to exactly one migration id.",
    )
    parser.add_argument("--release", required=True, choices=[r.value for r in ReleaseName])
    parser.add_argument(
        "--to", required=True, metavar="ID", help="a migration id of the release, or 'base'"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan only")
    args = parser.parse_args(argv)
    try:
        settings = MigrateSettings.from_env()
    except ConfigurationError as exc:
        _error(str(exc))
        return 2
    return run(ReleaseName(args.release), args.to, settings, dry_run=args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
