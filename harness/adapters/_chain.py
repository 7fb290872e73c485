"""What the adapters share: a linear chain of migration ids, and SQL that lists the applied
ones in chain order from a tool's table."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import SpecError
from harness.spec import BASE_MIGRATION, Release

__all__ = [
    "Chain",
    "ToolProject",
    "linear_chain",
    "release_up_to",
    "sql_literal",
    "values_table",
]

#: An id the harness can carry (and embed in SQL): what the tools themselves allow.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def sql_literal(text: str) -> str:
    """``text`` as a SQL string literal (quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def values_table(ids: Sequence[str]) -> str:
    """``(VALUES ('a', 1), ('b', 2))``: each id with its place in the chain."""
    rows = ", ".join(f"({sql_literal(m)}, {n})" for n, m in enumerate(ids, start=1))
    return f"(VALUES {rows})" if rows else "(SELECT NULL::text, NULL::int WHERE false)"


def linear_chain(where: str, parents: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The ids of ``parents`` (id -> the ids it follows) as one line, first to last.

    A tool's graph may branch (two heads) or merge; the harness upgrades along a line, so
    either is refused, naming the ids."""
    for name in parents:
        if not _ID.match(name):
            raise SpecError(
                f"{where}: migration id {name!r} is not one the harness can carry",
                expected="letters, digits, '.', '_' or '-'",
            )
    merges = sorted(n for n, ps in parents.items() if len(ps) > 1)
    if merges:
        raise SpecError(
            f"{where}: migration {merges[0]} merges {sorted(parents[merges[0]])}",
            expected="one line of migrations (no branches, no merges)",
        )
    missing = sorted({p for ps in parents.values() for p in ps if p not in parents})
    if missing:
        raise SpecError(f"{where}: migrations follow {missing}, which do not exist")
    roots = sorted(n for n, ps in parents.items() if not ps)
    children: dict[str, list[str]] = {}
    for child, ps in parents.items():
        for p in ps:
            children.setdefault(p, []).append(child)
    forks = sorted(p for p, cs in children.items() if len(cs) > 1)
    if len(roots) > 1 or forks:
        what = f"roots {roots}" if len(roots) > 1 else f"{forks[0]} is followed by "
        if forks and len(roots) <= 1:
            what += str(sorted(children[forks[0]]))
        raise SpecError(
            f"{where}: the migrations branch ({what})",
            expected="one line of migrations (no branches, no merges)",
        )
    chain: list[str] = []
    node: str | None = roots[0] if roots else None
    while node is not None:
        chain.append(node)
        nxt = children.get(node, [])
        node = nxt[0] if nxt else None
    if len(chain) != len(parents):
        raise SpecError(f"{where}: the migrations form a cycle")
    return tuple(chain)


@dataclass(frozen=True, slots=True)
class Chain:
    """A tool's migrations as one ordered line."""

    where: str
    ids: tuple[str, ...]

    def up_to(self, last: str | None) -> tuple[str, ...]:
        """The ids from the first to ``last`` (None: all of them; ``base``: none)."""
        if last is None:
            return self.ids
        if last == BASE_MIGRATION:
            return ()
        if last not in self.ids:
            raise SpecError(f"{self.where}: no migration {last!r}", choices=self.ids)
        return self.ids[: self.ids.index(last) + 1]


def release_up_to(
    chain: Chain,
    name: str,
    up_to: str | None,
    migrate_command: Sequence[str],
    options: Mapping[str, Any],
) -> Release:
    """A Release knowing ``chain`` up to ``up_to``; ``options`` are more Release fields."""
    if "migrations" in options or "migrate_command" in options:
        raise SpecError(
            f"{chain.where}: release {name!r}: the adapter fills migrations and"
            " migrate_command (give up_to= and command= instead)"
        )
    if "cwd" in options and options["cwd"] is not None:
        options = {**options, "cwd": Path(options["cwd"])}
    return Release(
        name=name,
        migrations=chain.up_to(up_to),
        migrate_command=tuple(migrate_command),
        **options,
    )


class ToolProject:
    """What a tool's project adapter shares (Alembic, Django): the chain it read, the
    directory its releases run in, and how a release is made from them. A subclass gives
    :meth:`migrate_command` and any Release defaults of its own (:attr:`release_defaults`)."""

    root: Path
    chain: Chain
    #: Release fields the tool implies (Django: ``migrate_base="zero"``).
    release_defaults: Mapping[str, Any] = {}

    @property
    def ids(self) -> tuple[str, ...]:
        return self.chain.ids

    def migrate_command(self, cwd: Path | None = None) -> tuple[str, ...]:
        raise NotImplementedError

    @staticmethod
    def relative(path: Path, cwd: Path) -> Path:
        """``path`` relative to ``cwd`` when it lies below it (commands run in ``cwd``)."""
        base = cwd.resolve()
        return path.relative_to(base) if path.is_relative_to(base) else path

    def release(
        self, name: str, *, up_to: str | None = None, command: Sequence[str] = (), **options: Any
    ) -> Release:
        """A release knowing the migrations up to ``up_to`` (None: all; ``base``: none), run
        by ``command`` in the project's directory unless ``cwd=`` says otherwise;
        ``options`` are more :class:`Release` fields (``env``, ``image``, ...)."""
        options = {**self.release_defaults, "cwd": self.root, **options}
        return release_up_to(
            self.chain,
            name,
            up_to,
            self.migrate_command(Path(options["cwd"])),
            {"command": tuple(command), **options},
        )
