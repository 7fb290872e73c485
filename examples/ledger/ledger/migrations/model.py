"""What a migration is: an id, a name, an up and a down step, and how it is applied."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg

__all__ = ["Direction", "Migration", "Step", "StepContext"]


class Direction(StrEnum):
    """Which way a migration is applied."""

    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a step gets: an autocommit connection, a way to report progress, tunables."""

    conn: psycopg.Connection[Any]
    progress: Callable[[str], None]
    batch_size: int = 200
    batch_pause: float = 0.0


#: A step of a migration: SQL from a file, or a Python function where batching needs code.
Step = Callable[[StepContext], None]


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration of a release's registry.

    ``atomic``: the step and its schema_migrations record run in one transaction, so the
    migration is applied entirely or not at all. Otherwise each statement commits on its
    own (autocommit) and the record is written only at the end: a failure in between leaves
    the migration half-applied and unrecorded.
    """

    id: str
    name: str
    up: Step
    down: Step
    atomic: bool

    def step(self, direction: Direction) -> Step:
        """The up or the down step."""
        return self.up if direction is Direction.UP else self.down
