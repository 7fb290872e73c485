"""Alembic: the revision chain from the script directory, the state from ``alembic_version``.

The migrate command runs Alembic itself (``{python} -c <goto> alembic.ini {target}``): it
reads the current revision the way ``alembic current`` does (through the project's own
``env.py``), then runs ``alembic upgrade <target>`` or ``alembic downgrade <target>``,
whichever way the target lies, as one process. So the image of a docker release needs only
Alembic and the project's migrations, not the harness.

``alembic_version`` holds only the current revision; the applied-migrations query expands it
to the chain up to it (a revision the chain does not know is listed last, as it is, so the
harness sees a state no release knows).
"""

from __future__ import annotations

import ast
import configparser
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.adapters._chain import Chain, ToolProject, linear_chain, values_table
from harness.errors import SpecError

__all__ = ["GOTO_SCRIPT", "AlembicMigrations", "read_revisions"]

#: Run by ``{python} -c``: argv is (config, target); upgrade or downgrade to the target.
#: No braces in it: the command's arguments are placeholder templates.
GOTO_SCRIPT = """\
import sys
from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory

config, target = Config(sys.argv[1]), sys.argv[2]
script = ScriptDirectory.from_config(config)
heads = []

def read(rev, context):
    heads.extend(r.revision for r in script.get_all_current(rev))
    return []

with EnvironmentContext(config, script, fn=read, dont_mutate=True):
    script.run_env()
below = set(r.revision for h in heads for r in script.walk_revisions('base', h))
if target == 'base':
    if heads:
        command.downgrade(config, 'base')
elif target in heads:
    pass
elif target in below:
    command.downgrade(config, target)
else:
    command.upgrade(config, target)
"""


def _assigned(tree: ast.Module, name: str) -> tuple[bool, Any]:
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            try:
                return True, ast.literal_eval(value)
            except ValueError:
                return True, None
    return False, None


def read_revisions(versions: Sequence[Path]) -> dict[str, tuple[str, ...]]:
    """revision -> the revisions it follows (``down_revision``), from the version files."""
    parents: dict[str, tuple[str, ...]] = {}
    for directory in versions:
        for path in sorted(directory.glob("*.py")):
            if path.name.startswith("__"):
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            except SyntaxError as exc:
                raise SpecError(f"{path}:{exc.lineno}: not Python: {exc.msg}") from None
            found, revision = _assigned(tree, "revision")
            if not found:
                continue  # a helper module beside the revisions
            if not isinstance(revision, str):
                raise SpecError(f"{path}: revision is not a plain string", expected='"abc123"')
            _, down = _assigned(tree, "down_revision")
            if down is None:
                follows: tuple[str, ...] = ()
            elif isinstance(down, str):
                follows = (down,)
            elif isinstance(down, tuple | list) and all(isinstance(d, str) for d in down):
                follows = tuple(down)
            else:
                raise SpecError(f"{path}: down_revision {down!r}", expected="a string or None")
            if revision in parents:
                raise SpecError(f"{path}: revision {revision!r} is declared twice")
            parents[revision] = follows
    return parents


class AlembicMigrations(ToolProject):
    """The Alembic project configured by ``config`` (an ``alembic.ini``).

    Releases run their commands in the ini's directory unless told otherwise (``cwd=``);
    the migrate command names the ini relative to it.
    """

    def __init__(self, config: str | Path = "alembic.ini") -> None:
        path = Path(config).resolve()
        if not path.is_file():
            raise SpecError(f"alembic: no config file {path}", expected="an alembic.ini")
        self.config = path
        self.root = path.parent
        parser = configparser.ConfigParser(defaults={"here": str(self.root)})
        try:
            parser.read(path, encoding="utf-8")
            location = parser.get("alembic", "script_location")
            more = parser.get("alembic", "version_locations", fallback="")
        except (configparser.Error, KeyError) as exc:
            raise SpecError(
                f"{path}: {exc}", expected="an [alembic] section with script_location"
            ) from None
        script = (self.root / location).resolve()
        versions = [Path(v) for v in more.replace(",", " ").split()] or [script / "versions"]
        versions = [(self.root / v).resolve() for v in versions]
        for directory in versions:
            if not directory.is_dir():
                raise SpecError(f"{path}: no versions directory {directory}")
        self.versions = tuple(versions)
        where = f"alembic ({path})"
        self.chain = Chain(where, linear_chain(where, read_revisions(self.versions)))
        if not self.chain.ids:
            raise SpecError(f"{where}: no revisions in {[str(v) for v in versions]}")

    def migrate_command(self, cwd: Path | None = None) -> tuple[str, ...]:
        """``{python} -c GOTO_SCRIPT <ini> {target}``, the ini relative to ``cwd``."""
        config = self.relative(self.config, cwd or self.root)
        return ("{python}", "-c", GOTO_SCRIPT, str(config), "{target}")

    @property
    def applied_migrations_sql(self) -> str:
        chain = values_table(self.ids)
        return (
            f"WITH chain(id, n) AS {chain},"
            " cur AS (SELECT v.version_num AS id, c.n FROM alembic_version v"
            " LEFT JOIN chain c ON c.id = v.version_num)"
            " SELECT id FROM (SELECT c.id, c.n FROM chain c"
            " WHERE c.n <= (SELECT max(n) FROM cur)"
            " UNION ALL SELECT id, 2147483647 FROM cur WHERE n IS NULL) s ORDER BY n, id"
        )
