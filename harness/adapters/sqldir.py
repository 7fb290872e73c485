"""Plain SQL migration directories, in the golang-migrate or the dbmate layout.

- ``golang-migrate``: ``<version>_<title>.up.sql`` and ``<version>_<title>.down.sql``;
  the state is one row of ``schema_migrations(version bigint, dirty boolean)``: the
  current version, ``dirty`` while (or after a failure during) a migration. Ids are the
  versions as numbers (``000002_x.up.sql`` is ``2``); a dirty state reads ``2:dirty``, a
  state no release knows, as a half-applied migration is.
- ``dbmate``: ``<version>_<name>.sql`` with ``-- migrate:up`` and ``-- migrate:down``
  sections (``transaction:false`` after either runs it outside a transaction); the state is
  one row per applied version in ``schema_migrations(version varchar)``.

The migrate command is this module (``{python} -m harness.adapters.sqldir --layout ...
--dir ... --to {target}``), which applies the files the way the tool does, in the tool's own
table, so a project keeps using the tool outside the harness. It needs the harness where it
runs: the local backend; for a docker release give ``command=`` with the tool's own CLI.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.adapters._chain import Chain, linear_chain, release_up_to, values_table
from harness.errors import SpecError
from harness.spec import BASE_MIGRATION, Release

__all__ = ["LAYOUTS", "Migration", "SqlDirMigrations", "main", "read_directory"]

Layout = Literal["golang-migrate", "dbmate"]
LAYOUTS: tuple[Layout, ...] = ("golang-migrate", "dbmate")

_GOLANG = re.compile(r"^(?P<version>\d+)_(?P<title>.+)\.(?P<way>up|down)\.sql$")
_DBMATE = re.compile(r"^(?P<version>\d+)_(?P<title>.+)\.sql$")
_SECTION = re.compile(r"^--\s*migrate:(?P<way>up|down)\b(?P<options>.*)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration: its id, and the SQL of each way (with whether it runs in a
    transaction of its own)."""

    id: str
    name: str
    up: str
    down: str | None
    transaction_up: bool = True
    transaction_down: bool = True


def _dbmate_sections(path: Path) -> tuple[str, str | None, bool, bool]:
    text = path.read_text(encoding="utf-8")
    marks = list(_SECTION.finditer(text))
    ways = [m["way"] for m in marks]
    if "up" not in ways:
        raise SpecError(f"{path}: no '-- migrate:up' section", expected="dbmate's layout")
    if ways.count("up") > 1 or ways.count("down") > 1:
        raise SpecError(f"{path}: a section repeats: {ways}")
    body: dict[str, str] = {}
    transaction: dict[str, bool] = {"up": True, "down": True}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body[mark["way"]] = text[mark.end() : end].strip()
        transaction[mark["way"]] = "transaction:false" not in mark["options"]
    return body["up"], body.get("down"), transaction["up"], transaction["down"]


def read_directory(directory: Path, layout: Layout) -> list[Migration]:
    """The migrations of ``directory``, ordered by version."""
    if layout not in LAYOUTS:
        raise SpecError(f"sql migrations layout {layout!r}", choices=LAYOUTS)
    if not directory.is_dir():
        raise SpecError(f"sql migrations: no directory {directory}")
    found: dict[int, dict[str, Any]] = {}
    for path in sorted(directory.iterdir()):
        if not path.name.endswith(".sql"):
            continue
        match = (_GOLANG if layout == "golang-migrate" else _DBMATE).match(path.name)
        if match is None:
            expected = (
                "<version>_<title>.up.sql / .down.sql"
                if layout == "golang-migrate"
                else "<version>_<name>.sql"
            )
            raise SpecError(f"{path}: not a {layout} migration file name", expected=expected)
        version = int(match["version"])
        entry = found.setdefault(version, {"name": match["title"], "text": match["version"]})
        if layout == "golang-migrate":
            if match["way"] in entry:
                raise SpecError(f"{path}: version {version} has two {match['way']} files")
            entry[match["way"]] = path.read_text(encoding="utf-8")
        else:
            if "up" in entry:
                raise SpecError(f"{path}: version {match['version']} is declared twice")
            entry["up"], entry["down"], entry["t_up"], entry["t_down"] = _dbmate_sections(path)
    migrations = []
    for version in sorted(found):
        entry = found[version]
        if "up" not in entry:
            raise SpecError(f"{directory}: version {version} has a down file but no up file")
        migrations.append(
            Migration(
                id=str(version) if layout == "golang-migrate" else entry["text"],
                name=entry["name"],
                up=entry["up"],
                down=entry.get("down"),
                transaction_up=entry.get("t_up", True),
                transaction_down=entry.get("t_down", True),
            )
        )
    return migrations


class SqlDirMigrations:
    """The SQL migrations in ``directory``, laid out as ``layout`` (golang-migrate or
    dbmate); ``table`` is the tool's bookkeeping table."""

    def __init__(
        self,
        directory: str | Path,
        layout: Layout = "golang-migrate",
        table: str = "schema_migrations",
    ) -> None:
        self.directory = Path(directory).resolve()
        self.layout = layout
        if not re.match(r"^[a-z_][a-z0-9_]*$", table):
            raise SpecError(f"sql migrations table {table!r}", expected="a lower-case name")
        self.table = table
        self.migrations = read_directory(self.directory, layout)
        where = f"{layout} migrations ({self.directory})"
        ids = [m.id for m in self.migrations]
        parents = {m: ((ids[i - 1],) if i else ()) for i, m in enumerate(ids)}
        self.chain = Chain(where, linear_chain(where, parents))
        if not self.chain.ids:
            raise SpecError(f"{where}: no migration files")

    @property
    def ids(self) -> tuple[str, ...]:
        return self.chain.ids

    def migrate_command(self) -> tuple[str, ...]:
        return (
            *("{python}", "-m", "harness.adapters.sqldir", "--layout", self.layout),
            *("--dir", str(self.directory), "--table", self.table, "--to", "{target}"),
        )

    def release(
        self,
        name: str,
        *,
        up_to: str | None = None,
        command: Sequence[str] = (),
        migrate_command: Sequence[str] | None = None,
        **options: Any,
    ) -> Release:
        """A release knowing the migrations up to ``up_to`` (None: all), run by
        ``command``; ``migrate_command`` replaces this module with the tool's own CLI."""
        return release_up_to(
            self.chain,
            name,
            up_to,
            tuple(migrate_command) if migrate_command else self.migrate_command(),
            {"command": tuple(command), **options},
        )

    @property
    def applied_migrations_sql(self) -> str:
        chain = values_table(self.ids)
        if self.layout == "dbmate":
            return (
                f"WITH chain(id, n) AS {chain} SELECT v.version FROM {self.table} v"
                " LEFT JOIN chain c ON c.id = v.version"
                " ORDER BY coalesce(c.n, 2147483647), v.version"
            )
        return (
            f"WITH chain(id, n) AS {chain},"
            f" cur AS (SELECT v.version::text AS id, v.dirty, c.n FROM {self.table} v"
            " LEFT JOIN chain c ON c.id = v.version::text)"
            " SELECT id FROM (SELECT c.id, c.n FROM chain c WHERE c.n < (SELECT max(n) FROM cur)"
            " UNION ALL SELECT CASE WHEN dirty THEN id || ':dirty' ELSE id END,"
            " coalesce(n, 2147483647) FROM cur) s ORDER BY n, id"
        )


# -- the runner -------------------------------------------------------------------------


def _run(conn: Any, sql_text: str, in_transaction: bool) -> None:
    if in_transaction:
        with conn.transaction():
            conn.execute(sql_text)
    else:
        conn.execute(sql_text)


def _goto_golang(conn: Any, table: str, migrations: list[Migration], to: int) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (version bigint NOT NULL PRIMARY KEY,"
        " dirty boolean NOT NULL)"
    )
    row = conn.execute(f"SELECT version, dirty FROM {table}").fetchone()
    if row is not None and row[1]:
        raise SystemExit(
            f"sqldir: the database is dirty at version {row[0]} (a migration failed half-way);"
            " fix it by hand, then force the version"
        )
    ids = [int(m.id) for m in migrations]
    current = -1 if row is None else ids.index(int(row[0])) if int(row[0]) in ids else None
    if current is None:
        raise SystemExit(f"sqldir: the database is at version {row[0]}, which no file has")

    def set_version(version: int | None, dirty: bool) -> None:
        with conn.transaction():
            conn.execute(f"DELETE FROM {table}")
            if version is not None:
                conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (version, dirty))

    while current < to:
        current += 1
        m = migrations[current]
        print(f"sqldir: up {m.id}_{m.name}", flush=True)
        set_version(int(m.id), True)
        conn.execute(m.up)  # one multi-statement exec, as golang-migrate sends it
        set_version(int(m.id), False)
    while current > to:
        m = migrations[current]
        if m.down is None:
            raise SystemExit(f"sqldir: {m.id}_{m.name} has no down file")
        print(f"sqldir: down {m.id}_{m.name}", flush=True)
        # As golang-migrate does: the version it goes to is set, dirty, before the file runs
        # (-1 when that is "no version"), then set clean after it.
        below = ids[current - 1] if current > 0 else -1
        set_version(below, True)
        conn.execute(m.down)
        current -= 1
        set_version(below if below >= 0 else None, False)


def _goto_dbmate(conn: Any, table: str, migrations: list[Migration], to: int) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (version varchar(128) PRIMARY KEY)")
    applied = {r[0] for r in conn.execute(f"SELECT version FROM {table}").fetchall()}
    for i, m in enumerate(migrations):
        if i <= to and m.id not in applied:
            print(f"sqldir: up {m.id}_{m.name}", flush=True)
            if m.transaction_up:
                with conn.transaction():
                    conn.execute(m.up)
                    conn.execute(f"INSERT INTO {table} (version) VALUES (%s)", (m.id,))
            else:
                conn.execute(m.up)
                conn.execute(f"INSERT INTO {table} (version) VALUES (%s)", (m.id,))
    for i, m in reversed(list(enumerate(migrations))):
        if i > to and m.id in applied:
            if not m.down:
                raise SystemExit(f"sqldir: {m.id}_{m.name} has no '-- migrate:down' section")
            print(f"sqldir: down {m.id}_{m.name}", flush=True)
            if m.transaction_down:
                with conn.transaction():
                    conn.execute(m.down)
                    conn.execute(f"DELETE FROM {table} WHERE version = %s", (m.id,))
            else:
                conn.execute(m.down)
                conn.execute(f"DELETE FROM {table} WHERE version = %s", (m.id,))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.adapters.sqldir",
        description="Apply a directory of SQL migrations up or down to one version"
        " (DATABASE_URL names the database).",
    )
    parser.add_argument("--layout", choices=LAYOUTS, required=True)
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--table", default="schema_migrations")
    parser.add_argument("--to", required=True, help=f"a version, or {BASE_MIGRATION!r}")
    args = parser.parse_args(argv)
    url = os.environ.get("DATABASE_URL")
    if not url:
        parser.error("DATABASE_URL is not set")
    try:
        project = SqlDirMigrations(args.dir, args.layout, args.table)
    except SpecError as exc:
        parser.error(str(exc))
    ids = list(project.ids)
    if args.to != BASE_MIGRATION and args.to not in ids:
        parser.error(f"no migration {args.to!r}; choices: {[BASE_MIGRATION, *ids]}")
    to = -1 if args.to == BASE_MIGRATION else ids.index(args.to)
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        if args.layout == "dbmate":
            _goto_dbmate(conn, project.table, project.migrations, to)
        else:
            _goto_golang(conn, project.table, project.migrations, to)
    return 0


if __name__ == "__main__":
    sys.exit(main())
