"""Release faults: a migration that fails at its n-th statement, a bad release.

``MigrationFailsAt`` works for any migration tool: an event trigger counts the DDL statements
other sessions run from the moment it is injected and raises at the n-th, so the migration
fails exactly there (half-applied, when its statements are not in one transaction).
``BadRelease`` deploys a variant release the target declares (one that fails its health
check, one with a data bug) instead of the planned one, from the fault point on.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from harness.deploy.plan import Plan
from harness.deploy.points import FaultPoint, When
from harness.errors import ChaosError, SpecError
from harness.faults.base import FaultContext, FaultKind, Injected

__all__ = ["BadRelease", "MigrationFailsAt"]


@dataclass(frozen=True, slots=True)
class MigrationFailsAt:
    """The n-th DDL statement run after injection fails with an error."""

    statement: int = 1
    duration: float | None = None
    kind = FaultKind.RELEASE

    def __post_init__(self) -> None:
        if not isinstance(self.statement, int) or self.statement < 1:
            raise SpecError(
                f"fault migration_fails_at: statement {self.statement!r}",
                expected="an integer >= 1",
            )

    @property
    def name(self) -> str:
        return f"migration_fails_at({self.statement})"

    def validate(self, plan: Plan, point_step: str | None) -> None:
        return None

    def inject(self, ctx: FaultContext) -> Injected:
        tag = "chaos_fail_" + secrets.token_hex(4)
        db = ctx.stack.database
        db.sql(f"CREATE SEQUENCE {tag}_n")
        db.sql(
            f"""
            CREATE FUNCTION {tag}() RETURNS event_trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF current_setting('application_name') LIKE 'deploy-chaos%' THEN
                RETURN;
              END IF;
              IF nextval('{tag}_n') = {self.statement} THEN
                RAISE EXCEPTION 'deploy-chaos fault: statement {self.statement} (%) fails',
                  tg_tag;
              END IF;
            END $$
            """
        )
        db.sql(f"CREATE EVENT TRIGGER {tag} ON ddl_command_start EXECUTE FUNCTION {tag}()")
        return Injected({"event_trigger": tag, "fails_at_statement": self.statement}, tag)

    def missed(self, ctx: FaultContext, handle: Any) -> str | None:
        """Why it never fired: fewer than ``statement`` DDL statements ran after it was
        armed (None when it fired, or when the count cannot be read)."""
        tag = str(handle)
        try:
            rows = ctx.stack.database.sql(f"SELECT last_value, is_called FROM {tag}_n")
        except (psycopg.Error, ChaosError, OSError):
            return None
        seen = int(rows[0][0]) if rows and rows[0][1] else 0
        if seen >= self.statement:
            return None
        return (
            f"armed, but only {seen} DDL statement(s) ran after it: statement "
            f"{self.statement} never came"
        )

    def heal(self, ctx: FaultContext, handle: Any) -> None:
        tag = str(handle)
        db = ctx.stack.database
        if not db.running:
            return
        db.sql(f"DROP EVENT TRIGGER IF EXISTS {tag}")
        db.sql(f"DROP FUNCTION IF EXISTS {tag}()")
        db.sql(f"DROP SEQUENCE IF EXISTS {tag}_n")


@dataclass(frozen=True, slots=True)
class BadRelease:
    """Roll out ``variant`` (a release of the target) instead of the planned release."""

    variant: str
    duration: float | None = None
    kind = FaultKind.RELEASE

    @property
    def name(self) -> str:
        return f"bad_release({self.variant})"

    def validate_point(self, plan: Plan, point: FaultPoint) -> None:
        """After the last rollout, no rollout follows: nothing would ever deploy it."""
        rollouts = [s for s in plan.step_names if s.startswith("rollout:")]
        if point.when is When.AFTER and point.step == rollouts[-1]:
            raise SpecError(
                f"fault {self.name} at {point.name}: no rollout follows",
                expected="a point at or before the last rollout step (not after it)",
                choices=plan.step_names,
            )

    def validate(self, plan: Plan, point_step: str | None) -> None:
        plan.target.release(self.variant)
        rollouts = [s for s in plan.step_names if s.startswith("rollout:")]
        if (
            point_step is None
            or point_step not in plan.step_names
            or plan.step_names.index(point_step) > plan.step_names.index(rollouts[-1])
        ):
            raise SpecError(
                f"fault {self.name} at {point_step!r}: no rollout follows",
                expected="a point at or before the last rollout step",
                choices=plan.step_names,
            )

    def inject(self, ctx: FaultContext) -> Injected:
        ctx.release_override = ctx.plan.target.release(self.variant)
        return Injected({"variant": self.variant})

    def missed(self, ctx: FaultContext, handle: Any) -> str | None:
        if ctx.overridden:
            return None
        return f"no rollout deployed {self.variant} after the fault point"

    def heal(self, ctx: FaultContext, handle: Any) -> None:
        ctx.release_override = None
