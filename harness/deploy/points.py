"""Fault points: where a fault fires. ``before:<step>``, ``during:<step>``, ``after:<step>``.

``during`` fires while the step runs: ``delay`` seconds after the step starts, or as soon as
a statement matching ``statement`` (a regular expression) is seen running in the database
(``pg_stat_activity``), which works for any migration tool. The step ``recovery`` names the
recovery itself: ``during:recovery`` fires while the strategy runs (a failed rollback is a
real outcome). The point ``none`` (:data:`NO_POINT`) never fires: the control run
(``no_fault``) uses it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from harness.deploy.plan import Plan
from harness.errors import SpecError

__all__ = ["NO_POINT", "RECOVERY_STEP", "FaultPoint", "When", "parse_point"]

RECOVERY_STEP = "recovery"
_DEFAULT_DURING_DELAY = 0.3


class When(enum.Enum):
    BEFORE = "before"
    DURING = "during"
    AFTER = "after"
    #: The point ``none``: nothing fires (the control run).
    NEVER = "none"


@dataclass(frozen=True, slots=True)
class FaultPoint:
    when: When
    step: str
    delay: float | None = None
    statement: str | None = None

    def __post_init__(self) -> None:
        if self.delay is not None and self.delay < 0:
            raise SpecError(f"fault point {self.name}: delay {self.delay}", expected=">= 0")
        if self.when is not When.DURING and (self.delay is not None or self.statement):
            raise SpecError(
                f"fault point {self.when.value}:{self.step}: delay and statement only apply "
                "to 'during' points"
            )
        if self.statement is not None:
            try:
                re.compile(self.statement)
            except re.error as exc:
                raise SpecError(
                    f"fault point {self.when.value}:{self.step}: statement pattern "
                    f"{self.statement!r} is not a regular expression ({exc})"
                ) from None

    @property
    def name(self) -> str:
        """The point as used in test ids: ``during:migrate:0004`` (``none``: never)."""
        if self.when is When.NEVER:
            return When.NEVER.value
        return f"{self.when.value}:{self.step}"

    @property
    def effective_delay(self) -> float:
        return _DEFAULT_DURING_DELAY if self.delay is None else self.delay

    @property
    def in_recovery(self) -> bool:
        return self.step == RECOVERY_STEP

    def check(self, plan: Plan) -> None:
        """Raise a SpecError listing the plan's steps when the point names none of them."""
        if self.when is When.NEVER:
            return
        if self.in_recovery:
            if self.when is not When.DURING:
                raise SpecError(f"fault point {self.name}", expected="during:recovery")
            return
        if self.step not in plan.step_names:
            raise SpecError(
                f"fault point {self.name!r} names no step of the plan "
                f"{plan.source.name} -> {plan.dest.name}",
                choices=plan.step_names,
            )


def parse_point(
    text: str, *, delay: float | None = None, statement: str | None = None
) -> FaultPoint:
    """Parse ``before:<step>`` / ``during:<step>`` / ``after:<step>`` (or ``none``)."""
    if text.strip() == When.NEVER.value and delay is None and statement is None:
        return NO_POINT
    when_text, sep, step = text.partition(":")
    if not sep or not step:
        raise SpecError(
            f"fault point {text!r}",
            expected="<when>:<step>, e.g. during:migrate:0004",
            choices=[w.value for w in When],
        )
    try:
        when = When(when_text)
    except ValueError:
        raise SpecError(
            f"fault point {text!r}: unknown moment {when_text!r}",
            choices=[w.value for w in When],
        ) from None
    return FaultPoint(when, step, delay, statement)


#: The point that never fires.
NO_POINT = FaultPoint(When.NEVER, "")
