"""Tiny apps the backend tests run as real processes."""

from __future__ import annotations

from pathlib import Path

from harness.spec import Release, Target

HERE = Path(__file__).parent


def tiny_release(name: str, migrations: tuple[str, ...] = ("1",), **kw: object) -> Release:
    return Release(
        name=name,
        command=("{python}", str(HERE / "tiny_app.py"), name),
        migrate_command=(
            "{python}",
            str(HERE / "tiny_migrate.py"),
            ",".join(migrations),
            "{target}",
        ),
        migrations=migrations,
        startup_timeout=10,
        **kw,  # type: ignore[arg-type]
    )


def tiny_target() -> Target:
    return Target(
        name="tiny",
        releases=(tiny_release("r1", ("1",)), tiny_release("r2", ("1", "2"))),
        applied_migrations_sql="SELECT id FROM schema_migrations ORDER BY id",
    )
