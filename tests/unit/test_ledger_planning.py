"""The ledger's migration planning, SQL files and registries (no database)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

LEDGER_DIR = Path(__file__).resolve().parents[2] / "examples" / "ledger"
if str(LEDGER_DIR) not in sys.path:
    sys.path.insert(0, str(LEDGER_DIR))

from ledger.errors import PlanError  # noqa: E402
from ledger.migrations import (  # noqa: E402
    BASE,
    Direction,
    migrations_for,
    plan_migrations,
)
from ledger.migrations.sql import SQL_DIR, SqlFile, split_statements  # noqa: E402
from ledger.releases import ReleaseName  # noqa: E402

KNOWN = ("0001", "0002", "0003", "0004", "0005")


def _load_target_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ledger_target", LEDGER_DIR / "target.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("applied", "target", "direction", "steps"),
    [
        ((), "0005", Direction.UP, KNOWN),
        ((), "0002", Direction.UP, ("0001", "0002")),
        (("0001", "0002"), "0005", Direction.UP, ("0003", "0004", "0005")),
        (("0001", "0002", "0003"), "0004", Direction.UP, ("0004",)),
        (KNOWN, "0002", Direction.DOWN, ("0005", "0004", "0003")),
        (KNOWN, BASE, Direction.DOWN, ("0005", "0004", "0003", "0002", "0001")),
        (("0001",), BASE, Direction.DOWN, ("0001",)),
        (KNOWN, "0005", None, ()),
        ((), BASE, None, ()),
    ],
)
def test_plan_goes_up_or_down_to_exactly_the_target(
    applied: tuple[str, ...], target: str, direction: Direction | None, steps: tuple[str, ...]
) -> None:
    plan = plan_migrations(KNOWN, applied, target)
    assert plan.direction == direction
    assert plan.steps == steps
    assert plan.current == (applied[-1] if applied else BASE)
    assert plan.target == target


def test_plan_rejects_an_unknown_target_listing_the_choices() -> None:
    with pytest.raises(PlanError, match=r"unknown target '0009'.*'0005', 'base'") as info:
        plan_migrations(KNOWN, (), "0009")
    assert info.value.target == "0009"


def test_plan_refuses_migrations_the_release_does_not_know() -> None:
    # v1's migrate on a v2 database cannot undo 0003-0005.
    with pytest.raises(PlanError, match=r"does not know: \['0003', '0004', '0005'\]") as info:
        plan_migrations(("0001", "0002"), KNOWN, "0001")
    assert info.value.applied == KNOWN


def test_plan_refuses_a_gap() -> None:
    with pytest.raises(PlanError, match="not a prefix"):
        plan_migrations(KNOWN, ("0001", "0003"), "0005")


def test_split_statements_one_per_semicolon_terminated_block() -> None:
    text = """
    -- a comment; with a semicolon
    CREATE TABLE t (
        id int
    );

    ALTER TABLE t ADD COLUMN c text;
    """
    assert split_statements(text) == (
        "CREATE TABLE t (\n        id int\n    )",
        "ALTER TABLE t ADD COLUMN c text",
    )
    assert split_statements("-- only comments\n\n") == ()


def test_split_statements_rejects_an_unterminated_statement() -> None:
    with pytest.raises(ValueError, match="does not end with ';'"):
        split_statements("ALTER TABLE t ADD COLUMN c text")


def test_every_sql_file_is_used_and_parses() -> None:
    used = {
        step.relative_path
        for release in ReleaseName
        for migration in migrations_for(release)
        for step in (migration.up, migration.down)
        if isinstance(step, SqlFile)
    }
    on_disk = {str(p.relative_to(SQL_DIR)) for p in SQL_DIR.rglob("*.sql")}
    assert used == on_disk
    for relative in sorted(used):
        assert SqlFile(relative).statements(), relative


def test_registries_share_0001_0002_and_differ_where_v2_1_fixes_v2() -> None:
    v1, v2, v21 = (migrations_for(r) for r in ReleaseName)
    assert [m.id for m in v1] == ["0001", "0002"]
    assert [m.id for m in v2] == [m.id for m in v21] == list(KNOWN)
    assert v2[:2] == v21[:2] == v1
    by_id_v2 = {m.id: m for m in v2}
    by_id_v21 = {m.id: m for m in v21}
    # v2 was written in a hurry: its schema changes are not atomic; v2.1's are.
    assert not by_id_v2["0003"].atomic
    assert not by_id_v2["0005"].atomic
    assert by_id_v21["0003"].atomic
    assert by_id_v21["0005"].atomic
    assert by_id_v2["0003"].up != by_id_v21["0003"].up
    assert by_id_v2["0004"].up != by_id_v21["0004"].up


def test_v2_expand_is_not_rerunnable_and_v2_1_expand_is() -> None:
    v2 = {m.id: m for m in migrations_for(ReleaseName.V2)}["0003"].up
    v21 = {m.id: m for m in migrations_for(ReleaseName.V2_1)}["0003"].up
    assert isinstance(v2, SqlFile)
    assert isinstance(v21, SqlFile)
    assert len(v2.statements()) == 2
    assert not any("IF NOT EXISTS" in s for s in v2.statements())
    assert all("IF NOT EXISTS" in s for s in v21.statements())


def test_target_matches_the_registries() -> None:
    module = _load_target_module()
    target = module.target()
    code_releases = [r.value for r in ReleaseName]
    assert [r.name for r in target.releases][:3] == code_releases
    for release in target.releases:
        code = release.command[4]  # the code release it runs ("v2" for a bad variant of v2)
        assert code in code_releases
        # A variant has a bug (maybe behind a flag), or names itself (v1.0.1 runs v1).
        assert (
            release.name == code
            or release.env.get("LEDGER_BUG")
            or release.env.get("LEDGER_FLAGGED_BUG")
            or release.command[-2:] == ("--name", release.name)
        )
        assert release.migrations == tuple(m.id for m in migrations_for(ReleaseName(code)))
        assert release.cwd == LEDGER_DIR
        assert release.command[:4] == ("{python}", "-m", "ledger.app", "--release")
        assert release.migrate_command[-4:] == ("--release", code, "--to", "{target}")
    assert target.release("v1").contract_migrations == ()
    assert target.release("v2").contract_migrations == ("0005",)
    assert target.release("v2.1").contract_migrations == ("0005",)
    assert target.applied_migrations_sql == "SELECT id FROM schema_migrations ORDER BY id"
