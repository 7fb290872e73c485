"""Planning: which migrations to apply, and which way, to go from the database's state to a
target id. Pure functions, no database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.errors import PlanError
from ledger.migrations.model import Direction

__all__ = ["BASE", "MigrationPlan", "plan_migrations"]

#: The target that means "no migration applied".
BASE = "base"


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """The ids to apply, in order, and the direction (None: already at the target)."""

    direction: Direction | None
    steps: tuple[str, ...]
    current: str
    target: str


def plan_migrations(known: Sequence[str], applied: Sequence[str], target: str) -> MigrationPlan:
    """Plan the way from ``applied`` to exactly ``target`` over the release's ``known`` ids.

    The database's state must be a prefix of what the release knows: a release cannot undo
    migrations it does not know, and a gap means the state was changed by hand.
    """
    known_t, applied_t = tuple(known), tuple(applied)

    def fail(message: str) -> PlanError:
        return PlanError(message, applied=applied_t, known=known_t, target=target)

    if target != BASE and target not in known_t:
        raise fail(f"unknown target {target!r}: expected one of {[*known_t, BASE]}")
    unknown = [m for m in applied_t if m not in known_t]
    if unknown:
        raise fail(
            f"the database has migrations this release does not know: {unknown};"
            " run the migrate command of a release that knows them"
        )
    if known_t[: len(applied_t)] != applied_t:
        raise fail("the applied migrations are not a prefix of this release's migrations")
    current = applied_t[-1] if applied_t else BASE
    wanted = 0 if target == BASE else known_t.index(target) + 1
    have = len(applied_t)
    if wanted > have:
        return MigrationPlan(Direction.UP, known_t[have:wanted], current, target)
    if wanted < have:
        return MigrationPlan(Direction.DOWN, known_t[wanted:have][::-1], current, target)
    return MigrationPlan(None, (), current, target)
