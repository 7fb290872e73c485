"""Migrations written as SQL files: ``sql/<set>/<id>_<name>.<up|down>.sql``.

A file holds one statement per block of lines; a statement ends on a line ending with ``;``.
Lines starting with ``--`` are comments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg

from ledger.errors import MigrationFailed
from ledger.migrations.model import StepContext

__all__ = ["SQL_DIR", "SqlFile", "split_statements"]

SQL_DIR = Path(__file__).resolve().parent / "sql"


def split_statements(text: str) -> tuple[str, ...]:
    """The statements of a migration file, each without its trailing ``;``."""
    statements: list[str] = []
    block: list[str] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("--"):
            continue
        block.append(line)
        if line.endswith(";"):
            statement = "\n".join(block)[:-1].strip()
            if statement:
                statements.append(statement)
            block = []
    if block:
        raise ValueError(f"the last statement does not end with ';': {' '.join(block)[:80]!r}")
    return tuple(statements)


@dataclass(frozen=True, slots=True)
class SqlFile:
    """A step that runs the statements of one SQL file, in order, on the step's connection.

    On an autocommit connection each statement commits on its own; inside a transaction
    (an atomic migration) they commit together.
    """

    relative_path: str

    @property
    def path(self) -> Path:
        """The file's absolute path."""
        return SQL_DIR / self.relative_path

    def statements(self) -> tuple[str, ...]:
        """The file's statements."""
        return split_statements(self.path.read_text(encoding="utf-8"))

    def __call__(self, ctx: StepContext) -> None:
        migration = self.path.name.split("_", 1)[0]
        direction = "down" if self.path.name.endswith(".down.sql") else "up"
        for statement in self.statements():
            one_line = " ".join(statement.split())
            ctx.progress(one_line if len(one_line) <= 120 else one_line[:117] + "...")
            try:
                ctx.conn.execute(statement.encode())
            except psycopg.Error as exc:
                raise MigrationFailed(
                    migration, direction, _describe(exc), statement=one_line
                ) from exc


def _describe(exc: psycopg.Error) -> str:
    primary = exc.diag.message_primary or str(exc).strip()
    return f"{primary} ({type(exc).__name__})"
