"""Django: one app's migrations, applied by ``manage.py migrate <app> <name>`` (``zero`` for
none), the state from ``django_migrations``.

The chain is read from the app's migration files (``dependencies`` within the app), without
importing Django or the project: ids are the migration names (``0001_initial``).
Dependencies on other apps are Django's to resolve when it migrates.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.adapters._chain import Chain, ToolProject, linear_chain, sql_literal, values_table
from harness.errors import SpecError

__all__ = ["DjangoMigrations", "read_migrations"]


def _dependencies(path: Path, tree: ast.Module, app: str) -> tuple[str, ...]:
    for node in tree.body:
        if not (isinstance(node, ast.ClassDef) and node.name == "Migration"):
            continue
        for item in node.body:
            if not isinstance(item, ast.Assign):
                continue
            if not any(isinstance(t, ast.Name) and t.id == "dependencies" for t in item.targets):
                continue
            if not isinstance(item.value, ast.List | ast.Tuple):
                raise SpecError(f"{path}:{item.lineno}: dependencies is not a list")
            follows: list[str] = []
            for element in item.value.elts:
                try:
                    dep = ast.literal_eval(element)
                except ValueError:
                    continue  # swappable_dependency(...): another app's, Django's concern
                if isinstance(dep, tuple) and len(dep) == 2 and dep[0] == app:
                    follows.append(str(dep[1]))
            return tuple(follows)
        return ()
    raise SpecError(f"{path}: no class Migration", expected="a Django migration module")


def read_migrations(directory: Path, app: str) -> dict[str, tuple[str, ...]]:
    """migration name -> the names (of the same app) it depends on."""
    parents: dict[str, tuple[str, ...]] = {}
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("__"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        except SyntaxError as exc:
            raise SpecError(f"{path}:{exc.lineno}: not Python: {exc.msg}") from None
        parents[path.stem] = _dependencies(path, tree, app)
    return parents


class DjangoMigrations(ToolProject):
    """The migrations of Django app ``app`` in the project whose ``manage.py`` is ``manage``.

    ``migrations_dir``: where the app's migration files are (default: ``<app>/migrations``
    beside ``manage.py``). Releases run in ``manage.py``'s directory unless told otherwise.
    """

    release_defaults: Mapping[str, Any] = MappingProxyType({"migrate_base": "zero"})

    def __init__(
        self, app: str, manage: str | Path = "manage.py", migrations_dir: str | Path | None = None
    ) -> None:
        path = Path(manage).resolve()
        if not path.is_file():
            raise SpecError(f"django: no {path}", expected="the project's manage.py")
        self.manage = path
        self.root = path.parent
        self.app = app
        directory = (
            Path(migrations_dir).resolve() if migrations_dir else self.root / app / "migrations"
        )
        if not directory.is_dir():
            found = sorted(p.parent.parent.name for p in self.root.glob("*/migrations/__init__.py"))
            raise SpecError(
                f"django: app {app!r} has no migrations directory {directory}", choices=found
            )
        self.migrations_dir = directory
        where = f"django app {app!r} ({directory})"
        self.chain = Chain(where, linear_chain(where, read_migrations(directory, app)))
        if not self.chain.ids:
            raise SpecError(f"{where}: no migrations")

    def migrate_command(self, cwd: Path | None = None) -> tuple[str, ...]:
        """``{python} manage.py migrate <app> {target} --noinput`` (run it with e.g.
        ``command=("{python}", "manage.py", "runserver", "{host}:{port}", "--noreload")``)."""
        manage = self.relative(self.manage, cwd or self.root)
        return ("{python}", str(manage), "migrate", self.app, "{target}", "--noinput")

    @property
    def applied_migrations_sql(self) -> str:
        return (
            f"WITH chain(id, n) AS {values_table(self.ids)}"
            " SELECT m.name FROM django_migrations m LEFT JOIN chain c ON c.id = m.name"
            f" WHERE m.app = {sql_literal(self.app)}"
            " ORDER BY coalesce(c.n, 2147483647), m.id"
        )
