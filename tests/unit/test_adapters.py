"""The migration-tool adapters read a tool's own files: the chain, the release it builds,
and a clear error for what the harness cannot carry (a branch, a merge, a bad name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import AlembicMigrations, DjangoMigrations, SqlDirMigrations
from harness.errors import SpecError

ROOT = Path(__file__).resolve().parents[2]


def _alembic(tmp_path: Path, revisions: dict[str, object]) -> Path:
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "alembic.ini").write_text(
        "[alembic]\nscript_location = %(here)s/migrations\n", encoding="utf-8"
    )
    for i, (rev, down) in enumerate(revisions.items()):
        (versions / f"{i:02d}_{rev}.py").write_text(
            f'"""x"""\nrevision: str = {rev!r}\ndown_revision = {down!r}\n', encoding="utf-8"
        )
    return tmp_path / "alembic.ini"


def test_alembic_chain_in_order_whatever_the_file_names(tmp_path: Path) -> None:
    ini = _alembic(tmp_path, {"c3": "b2", "a1": None, "b2": "a1"})
    migrations = AlembicMigrations(ini)
    assert migrations.ids == ("a1", "b2", "c3")
    release = migrations.release("v1", up_to="b2", command=("{python}", "-m", "app"))
    assert release.migrations == ("a1", "b2")
    assert release.cwd == tmp_path.resolve()
    assert release.migrate_command[:2] == ("{python}", "-c")
    assert release.migrate_command[-2:] == ("alembic.ini", "{target}")
    assert "alembic_version" in migrations.applied_migrations_sql
    with pytest.raises(SpecError, match="no migration 'zz'") as info:
        migrations.release("v9", up_to="zz", command=("x",))
    assert info.value.choices == ("a1", "b2", "c3")


def test_alembic_branches_and_merges_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="branch"):
        AlembicMigrations(_alembic(tmp_path / "a", {"a1": None, "b2": "a1", "b3": "a1"}))
    with pytest.raises(SpecError, match="merges"):
        AlembicMigrations(
            _alembic(tmp_path / "b", {"a1": None, "b2": "a1", "b3": "a1", "m": ("b2", "b3")})
        )
    with pytest.raises(SpecError, match="do not exist"):
        AlembicMigrations(_alembic(tmp_path / "c", {"a1": "zz"}))
    with pytest.raises(SpecError, match="no config file"):
        AlembicMigrations(tmp_path / "nowhere.ini")


def test_adapters_fill_migrations_themselves(tmp_path: Path) -> None:
    migrations = AlembicMigrations(_alembic(tmp_path, {"a1": None}))
    with pytest.raises(SpecError, match="adapter fills migrations"):
        migrations.release("v1", command=("x",), migrations=("a1",))


def test_django_chain_from_dependencies(tmp_path: Path) -> None:
    (tmp_path / "manage.py").write_text("", encoding="utf-8")
    directory = tmp_path / "shop" / "migrations"
    directory.mkdir(parents=True)
    (directory / "__init__.py").write_text("", encoding="utf-8")
    files = {
        "0001_initial": "[migrations.swappable_dependency(settings.AUTH_USER_MODEL)]",
        "0002_price": "[('shop', '0001_initial'), ('auth', '0012_x')]",
        "0003_stock": "[('shop', '0002_price')]",
    }
    for name, deps in files.items():
        (directory / f"{name}.py").write_text(
            f"class Migration(migrations.Migration):\n    dependencies = {deps}\n",
            encoding="utf-8",
        )
    migrations = DjangoMigrations("shop", tmp_path / "manage.py")
    assert migrations.ids == ("0001_initial", "0002_price", "0003_stock")
    release = migrations.release("v1", up_to="0002_price", command=("{python}", "manage.py"))
    assert release.migrate_command == (
        *("{python}", "manage.py", "migrate", "shop", "{target}", "--noinput"),
    )
    assert release.migrate_target("base") == "zero"
    assert release.migrate_target("0001_initial") == "0001_initial"
    assert "'shop'" in migrations.applied_migrations_sql
    with pytest.raises(SpecError, match="no migrations directory") as info:
        DjangoMigrations("nope", tmp_path / "manage.py")
    assert info.value.choices == ("shop",)


def test_sql_directories_in_both_layouts(tmp_path: Path) -> None:
    golang = tmp_path / "golang"
    golang.mkdir()
    for name in ("000001_init", "000002_add", "000010_more"):
        (golang / f"{name}.up.sql").write_text("SELECT 1;", encoding="utf-8")
        (golang / f"{name}.down.sql").write_text("SELECT 1;", encoding="utf-8")
    assert SqlDirMigrations(golang).ids == ("1", "2", "10")
    dbmate = tmp_path / "dbmate"
    dbmate.mkdir()
    (dbmate / "20240102000000_b.sql").write_text(
        "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (x);\n"
        "-- migrate:down\nDROP INDEX i;\n",
        encoding="utf-8",
    )
    (dbmate / "20240101000000_a.sql").write_text(
        "-- migrate:up\nCREATE TABLE t (x int);\n", encoding="utf-8"
    )
    project = SqlDirMigrations(dbmate, "dbmate")
    assert project.ids == ("20240101000000", "20240102000000")
    first, second = project.migrations
    assert first.down is None
    assert first.transaction_up
    assert not second.transaction_up
    assert second.transaction_down
    release = project.release("v1", up_to="20240101000000", command=("x",))
    assert release.migrations == ("20240101000000",)
    assert "--layout" in release.migrate_command
    (golang / "7_bad.sql").write_text("", encoding="utf-8")
    with pytest.raises(SpecError, match="not a golang-migrate migration file name"):
        SqlDirMigrations(golang)
    with pytest.raises(SpecError, match="layout") as info:
        SqlDirMigrations(dbmate, "flyway")  # type: ignore[arg-type]
    assert "dbmate" in info.value.choices


def test_the_example_apps_read_as_their_tools_see_them() -> None:
    bookshop = AlembicMigrations(ROOT / "examples" / "bookshop" / "alembic.ini")
    assert bookshop.ids == ("0001", "0002")
    notes = DjangoMigrations("notes", ROOT / "examples" / "notes" / "manage.py")
    assert notes.ids == ("0001_initial", "0002_note_pinned")
