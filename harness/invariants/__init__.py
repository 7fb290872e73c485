"""Invariants checked after recovery: the built-in catalogue and what a Target declares.

:func:`invariants_for` is what the runner checks for a target: the target's own
``invariants``, plus ``schema_compatible`` and ``end_state_serves`` (they need no
declaration) and, when the target has a workload, ``availability`` (no budget) and
``no_regression``, unless the target declares an invariant of the same name itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.invariants.base import (
    AppEndpoint,
    Baselined,
    CheckContext,
    Invariant,
    Status,
    Verdict,
    capture_baselines,
    check_all,
    load_history,
    open_check_context,
)
from harness.invariants.builtin import (
    Availability,
    CallableInvariant,
    Conservation,
    DurableAcknowledgedWrites,
    Flow,
    IdempotentWrite,
    MigrationProbe,
    NoDuplicateEffects,
    ReadableByRunningRelease,
    ReadBack,
    ReferentialIntegrity,
    Relation,
    SchemaCompatible,
    SqlInvariant,
    Write,
    row_counts,
    same_value,
)
from harness.invariants.serving import EndStateServes, NoRegression

if TYPE_CHECKING:
    from harness.spec import Target

__all__ = [
    "AppEndpoint",
    "Availability",
    "Baselined",
    "CallableInvariant",
    "CheckContext",
    "Conservation",
    "DurableAcknowledgedWrites",
    "EndStateServes",
    "Flow",
    "IdempotentWrite",
    "Invariant",
    "MigrationProbe",
    "NoDuplicateEffects",
    "NoRegression",
    "ReadBack",
    "ReadableByRunningRelease",
    "ReferentialIntegrity",
    "Relation",
    "SchemaCompatible",
    "SqlInvariant",
    "Status",
    "Verdict",
    "Write",
    "capture_baselines",
    "check_all",
    "invariants_for",
    "load_history",
    "open_check_context",
    "row_counts",
    "same_value",
]


def invariants_for(target: Target) -> tuple[Invariant, ...]:
    """The invariants a run checks for ``target`` (see the module doc)."""
    chosen: list[Invariant] = list(target.invariants)
    names = {inv.name for inv in chosen}
    if "schema_compatible" not in names:
        chosen.append(SchemaCompatible())
    if target.workload is not None and "availability" not in names:
        chosen.append(Availability())
    if "end_state_serves" not in names:
        chosen.append(EndStateServes())
    if target.workload is not None and "no_regression" not in names:
        chosen.append(NoRegression())
    return tuple(chosen)
