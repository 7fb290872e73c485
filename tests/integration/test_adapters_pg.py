"""The migration-tool adapters on a real PostgreSQL: each release's migrate command (Alembic,
Django, the SQL-directory runner) goes up and down to every id, and the Target's
applied-migrations query reads the tool's own table as the harness expects it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from harness import AlembicMigrations, DjangoMigrations, Release, SqlDirMigrations
from harness.spec import BASE_MIGRATION, fill_placeholders

ROOT = Path(__file__).resolve().parents[2]


def _migrate(release: Release, url: str, to: str, *, expect: int = 0) -> str:
    argv = fill_placeholders(
        release.migrate_command, {"python": sys.executable, "target": release.migrate_target(to)}
    )
    result = subprocess.run(
        argv,
        cwd=release.cwd,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == expect, f"{argv[-3:]} exited {result.returncode}:\n{output}"
    return output


def _applied(url: str, query: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            return [str(row[0]) for row in conn.execute(query).fetchall()]
        except psycopg.errors.UndefinedTable:
            return []


def _tables(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {str(r[0]) for r in rows}


def _walk(release: Release, url: str, query: str, ids: tuple[str, ...]) -> None:
    """Up to each id, then down to each, then to base: the query follows every step."""
    for i, to in enumerate(ids):
        _migrate(release, url, to)
        assert _applied(url, query) == list(ids[: i + 1])
    for i in range(len(ids) - 2, -1, -1):
        _migrate(release, url, ids[i])
        assert _applied(url, query) == list(ids[: i + 1])
    _migrate(release, url, BASE_MIGRATION)
    assert _applied(url, query) == []
    _migrate(release, url, ids[-1])
    _migrate(release, url, ids[-1])  # already there: nothing to do, not an error
    assert _applied(url, query) == list(ids)


def test_alembic_goes_both_ways_through_its_own_env(pg_url: str) -> None:
    migrations = AlembicMigrations(ROOT / "examples" / "bookshop" / "alembic.ini")
    release = migrations.release("all", command=("true",))
    query = migrations.applied_migrations_sql
    _walk(release, pg_url, query, migrations.ids)
    assert {"authors", "books", "orders"} <= _tables(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'zz99'")
    assert _applied(pg_url, query) == ["zz99"]  # a revision no release knows, as it is


def test_django_goes_both_ways_with_zero_for_base(pg_url: str) -> None:
    migrations = DjangoMigrations("notes", ROOT / "examples" / "notes" / "manage.py")
    release = migrations.release("all", command=("true",))
    _walk(release, pg_url, migrations.applied_migrations_sql, migrations.ids)
    assert {"notes_notebook", "notes_note"} <= _tables(pg_url)


def _golang(directory: Path, fail_at_3: bool = False) -> None:
    directory.mkdir(exist_ok=True)
    files = {
        "000001_items": ("CREATE TABLE items (id serial PRIMARY KEY);", "DROP TABLE items;"),
        "000002_price": (
            "ALTER TABLE items ADD COLUMN price numeric; ALTER TABLE items ADD COLUMN qty int;",
            "ALTER TABLE items DROP COLUMN qty; ALTER TABLE items DROP COLUMN price;",
        ),
        "000003_orders": (
            "CREATE TABLE orders (id int); SELECT 1/0;"
            if fail_at_3
            else "CREATE TABLE orders (id int);",
            "DROP TABLE orders;",
        ),
    }
    for name, (up, down) in files.items():
        (directory / f"{name}.up.sql").write_text(up, encoding="utf-8")
        (directory / f"{name}.down.sql").write_text(down, encoding="utf-8")


def test_golang_migrate_layout_up_down_and_a_dirty_failure(pg_url: str, tmp_path: Path) -> None:
    _golang(tmp_path / "ok")
    migrations = SqlDirMigrations(tmp_path / "ok")
    release = migrations.release("all", command=("true",))
    _walk(release, pg_url, migrations.applied_migrations_sql, migrations.ids)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT version, dirty FROM schema_migrations").fetchall() == [
            (3, False)
        ]
    _migrate(release, pg_url, "2")
    _golang(tmp_path / "bad", fail_at_3=True)
    bad = SqlDirMigrations(tmp_path / "bad").release("bad", command=("true",))
    output = _migrate(bad, pg_url, "3", expect=1)
    assert "division by zero" in output
    # As golang-migrate leaves it: version 3, dirty; the failed file's statements rolled back.
    assert _applied(pg_url, migrations.applied_migrations_sql) == ["1", "2", "3:dirty"]
    assert "orders" not in _tables(pg_url)
    assert "dirty at version 3" in _migrate(bad, pg_url, "2", expect=1)


def test_dbmate_layout_up_down_and_outside_a_transaction(pg_url: str, tmp_path: Path) -> None:
    (tmp_path / "20240101000000_items.sql").write_text(
        "-- migrate:up\nCREATE TABLE items (id int, sku text);\n\n"
        "-- migrate:down\nDROP TABLE items;\n",
        encoding="utf-8",
    )
    (tmp_path / "20240102000000_sku_index.sql").write_text(
        "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY items_sku ON items (sku);\n"
        "-- migrate:down\nDROP INDEX items_sku;\n",
        encoding="utf-8",
    )
    migrations = SqlDirMigrations(tmp_path, "dbmate")
    release = migrations.release("all", command=("true",))
    _walk(release, pg_url, migrations.applied_migrations_sql, migrations.ids)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'items'"
        ).fetchall()
    assert ("items_sku",) in indexes
    output = _migrate(release, pg_url, "19990101000000", expect=2)
    assert "no migration '19990101000000'" in output


pytestmark = pytest.mark.integration
