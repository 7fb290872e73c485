"""deploy-chaos: rehearse deployments of stateful apps under failure.

The public API, importable from here (``from harness import Target, Release, run_chaos``);
every name below is documented in its module and in the README. Names load on first use,
so ``import harness`` stays cheap for the harness's own helper processes.

- describing an app: :class:`Target`, :class:`Release`, :data:`BASE_MIGRATION`,
  :func:`load_target` (a ``target.py`` by path, or ``module:name``);
- its workload: :class:`WorkloadSpec`, :class:`Model`, :class:`Call`, :class:`Answer`,
  :class:`Completion`, :class:`Draw`, :class:`HttpMethod`, :class:`ErrorBudget`,
  :class:`Phases`, :func:`default_completion`;
- its invariants: :class:`Invariant`, :class:`Verdict`, :class:`CheckContext` and the
  built-in ones (:class:`DurableAcknowledgedWrites`, :class:`Conservation`, ...);
- running: :func:`load_scenario`, :class:`ChaosOptions`, :func:`open_session` (scenarios,
  judged, with reports), or :func:`open_backend`, :class:`RunSpec`, :func:`run_chaos`,
  :func:`parse_point`, :func:`default_registry`, :class:`StrategyName` (one run by hand);
  :class:`Canary`, :class:`FlagRollout` (progressive delivery); :class:`RunOutcome`;
- without a Model class: :class:`RestWorkload` of :class:`Resource` and
  :class:`Transition` (fields drawn by :func:`fake`, :func:`integer`, :func:`decimal`,
  :func:`choice`, :func:`boolean`, :func:`const`, :func:`ref`), which derives the Model
  and the invariants (or :func:`load_rest_workload` from YAML); :func:`row_counts`,
  :func:`same_value`;
- migration tools: :class:`AlembicMigrations`, :class:`DjangoMigrations`,
  :class:`SqlDirMigrations` (golang-migrate and dbmate layouts);
- errors: :class:`ChaosError` and :class:`SpecError` (bad input, with file and line).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "Target": "harness.spec",
    "Release": "harness.spec",
    "BASE_MIGRATION": "harness.spec",
    "load_target": "harness._loader",
    "WorkloadSpec": "harness.workload",
    "Model": "harness.workload",
    "Call": "harness.workload",
    "Answer": "harness.workload",
    "Completion": "harness.workload",
    "Draw": "harness.workload",
    "HttpMethod": "harness.workload",
    "ErrorBudget": "harness.workload",
    "Phases": "harness.workload",
    "default_completion": "harness.workload",
    "Invariant": "harness.invariants",
    "Verdict": "harness.invariants",
    "CheckContext": "harness.invariants",
    "Status": "harness.invariants",
    "AppEndpoint": "harness.invariants",
    "Availability": "harness.invariants",
    "CallableInvariant": "harness.invariants",
    "Conservation": "harness.invariants",
    "DurableAcknowledgedWrites": "harness.invariants",
    "EndStateServes": "harness.invariants",
    "Flow": "harness.invariants",
    "IdempotentWrite": "harness.invariants",
    "MigrationProbe": "harness.invariants",
    "NoDuplicateEffects": "harness.invariants",
    "NoRegression": "harness.invariants",
    "ReadBack": "harness.invariants",
    "ReadableByRunningRelease": "harness.invariants",
    "ReferentialIntegrity": "harness.invariants",
    "Relation": "harness.invariants",
    "SchemaCompatible": "harness.invariants",
    "SqlInvariant": "harness.invariants",
    "Write": "harness.invariants",
    "load_scenario": "harness.scenario",
    "ChaosOptions": "harness.session",
    "open_session": "harness.session",
    "open_backend": "harness.backends",
    "RunSpec": "harness.deploy.runner",
    "run_chaos": "harness.deploy.runner",
    "parse_point": "harness.deploy.points",
    "StrategyName": "harness.deploy.strategies",
    "default_registry": "harness.faults.registry",
    "Canary": "harness.deploy.canary",
    "FlagRollout": "harness.flags",
    "RunOutcome": "harness.report.outcome",
    "AlembicMigrations": "harness.adapters",
    "DjangoMigrations": "harness.adapters",
    "SqlDirMigrations": "harness.adapters",
    "RestWorkload": "harness.workload.rest",
    "Resource": "harness.workload.rest",
    "Transition": "harness.workload.rest",
    "fake": "harness.workload.rest",
    "integer": "harness.workload.rest",
    "decimal": "harness.workload.rest",
    "choice": "harness.workload.rest",
    "boolean": "harness.workload.rest",
    "const": "harness.workload.rest",
    "ref": "harness.workload.rest",
    "load_rest_workload": "harness.workload.rest_yaml",
    "row_counts": "harness.invariants",
    "same_value": "harness.invariants",
    "ChaosError": "harness.errors",
    "SpecError": "harness.errors",
}

__all__ = [
    "BASE_MIGRATION",
    "AlembicMigrations",
    "Answer",
    "AppEndpoint",
    "Availability",
    "Call",
    "CallableInvariant",
    "Canary",
    "ChaosError",
    "ChaosOptions",
    "CheckContext",
    "Completion",
    "Conservation",
    "DjangoMigrations",
    "Draw",
    "DurableAcknowledgedWrites",
    "EndStateServes",
    "ErrorBudget",
    "FlagRollout",
    "Flow",
    "HttpMethod",
    "IdempotentWrite",
    "Invariant",
    "MigrationProbe",
    "Model",
    "NoDuplicateEffects",
    "NoRegression",
    "Phases",
    "ReadBack",
    "ReadableByRunningRelease",
    "ReferentialIntegrity",
    "Relation",
    "Release",
    "Resource",
    "RestWorkload",
    "RunOutcome",
    "RunSpec",
    "SchemaCompatible",
    "SpecError",
    "SqlDirMigrations",
    "SqlInvariant",
    "Status",
    "StrategyName",
    "Target",
    "Transition",
    "Verdict",
    "WorkloadSpec",
    "Write",
    "__version__",
    "boolean",
    "choice",
    "const",
    "decimal",
    "default_completion",
    "default_registry",
    "fake",
    "integer",
    "load_rest_workload",
    "load_scenario",
    "load_target",
    "open_backend",
    "open_session",
    "parse_point",
    "ref",
    "row_counts",
    "run_chaos",
    "same_value",
]

if TYPE_CHECKING:
    from harness._loader import load_target
    from harness.adapters import AlembicMigrations, DjangoMigrations, SqlDirMigrations
    from harness.backends import open_backend
    from harness.deploy.canary import Canary
    from harness.deploy.points import parse_point
    from harness.deploy.runner import RunSpec, run_chaos
    from harness.deploy.strategies import StrategyName
    from harness.errors import ChaosError, SpecError
    from harness.faults.registry import default_registry
    from harness.flags import FlagRollout
    from harness.invariants import (
        AppEndpoint,
        Availability,
        CallableInvariant,
        CheckContext,
        Conservation,
        DurableAcknowledgedWrites,
        EndStateServes,
        Flow,
        IdempotentWrite,
        Invariant,
        MigrationProbe,
        NoDuplicateEffects,
        NoRegression,
        ReadableByRunningRelease,
        ReadBack,
        ReferentialIntegrity,
        Relation,
        SchemaCompatible,
        SqlInvariant,
        Status,
        Verdict,
        Write,
        row_counts,
        same_value,
    )
    from harness.report.outcome import RunOutcome
    from harness.scenario import load_scenario
    from harness.session import ChaosOptions, open_session
    from harness.spec import BASE_MIGRATION, Release, Target
    from harness.workload import (
        Answer,
        Call,
        Completion,
        Draw,
        ErrorBudget,
        HttpMethod,
        Model,
        Phases,
        WorkloadSpec,
        default_completion,
    )
    from harness.workload.rest import (
        Resource,
        RestWorkload,
        Transition,
        boolean,
        choice,
        const,
        decimal,
        fake,
        integer,
        ref,
    )
    from harness.workload.rest_yaml import load_rest_workload


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
