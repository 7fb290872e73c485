"""The scenario file, declared: every key, what it holds and what it means, as models the
validator (:func:`harness.scenario.load_scenario`) takes its keys from, and from which the
published JSON Schema (``deploy-chaos schema``, ``scenario.schema.json``) is made.

The validator keeps the checks a schema cannot say (a fault's own rules, a point against the
plan, a release the target has) and its errors (file, line, what was expected, the choices);
the schema gives an editor completion and the first red underline. One declaration feeds
both, so they cannot drift: a key added here is a key the validator accepts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BUILTIN_INVARIANTS",
    "RECOVERY_VERDICT",
    "SCENARIO",
    "SCHEMA_FILE",
    "Key",
    "Model",
    "json_schema",
    "schema_text",
]

#: Where the repository keeps the published schema (``deploy-chaos schema`` writes it).
SCHEMA_FILE = "scenario.schema.json"

#: The verdict every run has: ``invalid`` when the recovery strategy itself failed.
RECOVERY_VERDICT = "recovery"

#: The invariants the harness checks after every run (see harness.invariants).
BUILTIN_INVARIANTS = (
    RECOVERY_VERDICT,
    "durable_acknowledged_writes",
    "no_duplicate_effects",
    "conservation",
    "referential_integrity",
    "schema_compatible",
    "readable_by_running_release",
    "availability",
    "end_state_serves",
    "no_regression",
)

_DURATION = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m)?$"},
    ],
    "description": "a duration: 800ms, 2s, 1.5 (seconds)",
}
_PERCENT = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": 1},
        {"type": "string", "pattern": r"^\d+(\.\d+)?%$"},
    ],
    "description": "a share: 5% or 0.05",
}
_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"}


def _strings(description: str, item: Mapping[str, Any] | None = None) -> dict[str, Any]:
    one = dict(item or {"type": "string"})
    return {
        "anyOf": [one, {"type": "array", "items": one, "minItems": 1}],
        "description": description,
    }


@dataclass(frozen=True, slots=True)
class Key:
    """One key of a mapping: its JSON Schema and what it means."""

    name: str
    schema: Mapping[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Model:
    """A mapping of the scenario file: its keys, in the order the README lists them."""

    name: str
    description: str
    keys: tuple[Key, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys if k.required)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "description": self.description,
            "properties": {
                k.name: {**k.schema, "description": k.description}
                if "description" not in k.schema
                else {**k.schema, "description": f"{k.description} ({k.schema['description']})"}
                for k in self.keys
            },
            "additionalProperties": False,
        }
        if self.required:
            out["required"] = list(self.required)
        out.update(self.extra)
        return out


def _selector(extra: Sequence[Key] = ()) -> tuple[Key, ...]:
    return (
        Key("fault", _strings("glob over fault names"), "the faults it applies to"),
        Key("point", _strings("glob over point names"), "the fault points it applies to"),
        Key("strategy", _strings("glob over strategies"), "the strategies it applies to"),
        *extra,
    )


UPGRADE = Model(
    "upgrade",
    "the upgrade every run rehearses",
    (
        Key("from", _NAME, "the release the stack starts on", required=True),
        Key("to", _NAME, "the release it upgrades to", required=True),
        Key("fix", _NAME, "the release roll_forward deploys (default: the 'to' release)"),
    ),
)
POINT = Model(
    "point",
    "a fault point with a trigger",
    (
        Key("point", {"type": "string"}, "before:/during:/after: a step, or none", True),
        Key("delay", _DURATION, "during: fire this long after the step starts"),
        Key("statement", {"type": "string"}, "during: fire when this regex runs in the database"),
    ),
)
EXPECT = Model(
    "expectation",
    "a known hazard: what the selected cells are expected to violate",
    _selector(
        (
            Key("violates", _strings("verdict names"), "the verdicts expected invalid"),
            Key("reason", {"type": "string"}, "why: the evidence a reader checks"),
            Key("strict", {"type": "boolean"}, "false: the hazard may not happen every run"),
            Key(
                "rate",
                {"type": "string", "pattern": r"^(>=|<=)?\s*\d+(\.\d+)?%(\.\.\d+(\.\d+)?%)?$"},
                "how often it happens over repeats: '>= 70%', '<= 60%', '20%..60%'",
            ),
        )
    ),
)
EXCLUDE = Model("exclude", "cells of the matrix not to run", _selector())
WORKLOAD = Model(
    "workload",
    "overrides of the target's workload",
    (
        Key("clients", {"type": "integer", "minimum": 1}, "client threads"),
        Key("rate", {"type": "number", "minimum": 0}, "operations per second (0: flat out)"),
        Key("timeout", {"type": "number", "exclusiveMinimum": 0}, "client timeout, seconds"),
    ),
)
PHASES = Model(
    "phases",
    "the quotas of the run's phases",
    (
        Key("warmup", {"type": "integer", "minimum": 0}, "operations before the plan"),
        Key("bake", {"type": "integer", "minimum": 0}, "operations after each step"),
        Key("soak", {"type": "integer", "minimum": 0}, "operations after recovery"),
        Key("timeout", {"type": "number", "exclusiveMinimum": 0}, "seconds a phase may take"),
        Key("clients", {"type": "integer", "minimum": 1}, "clients sending a phase's entries"),
    ),
)
AVAILABILITY = Model(
    "availability",
    "what the clients may see go wrong and the availability verdict still hold",
    (
        Key("max_error_rate", _PERCENT, "largest share of operations that errs"),
        Key("max_unavailable", _DURATION, "longest time with no operation served"),
    ),
)
_ANALYSIS = (
    Key(
        "samples", {"type": "integer", "minimum": 1}, "completed operations the analysis waits for"
    ),
    Key("window", _DURATION, "longest wait for the samples"),
    Key("max_excess", _PERCENT, "error rate above the stable side that counts as a detection"),
    Key("min_errors", {"type": "integer", "minimum": 1}, "errors needed for a detection"),
)
_WEIGHTS = {
    "type": "array",
    "items": {"type": "integer", "minimum": 1, "maximum": 100},
    "minItems": 1,
}
CANARY = Model(
    "canary",
    "a weighted canary and its analysis",
    (Key("weights", _WEIGHTS, "percent of traffic to the canary, rising", True), *_ANALYSIS),
)
FLAG = Model(
    "flag",
    "a feature flag turned on step by step after verify",
    (
        Key("name", _NAME, "the flag's name in the flag file", True),
        Key("steps", _WEIGHTS, "percentages, rising (default: 100)"),
        *_ANALYSIS,
    ),
)
ERROR_BUDGET = Model(
    "error_budget",
    "detection by the clients' error rate",
    (
        Key("max_error_rate", _PERCENT, "share of errors that exceeds the budget", True),
        Key("window", _DURATION, "over the last this long"),
        Key("min_operations", {"type": "integer", "minimum": 1}, "at least this many"),
    ),
)


def _ref(model: Model) -> dict[str, str]:
    return {"$ref": f"#/$defs/{model.name}"}


def _scenario(strategies: Sequence[str], invariants: Sequence[str], faults: Sequence[str]) -> Model:
    fault = {
        "type": "string",
        "pattern": rf"^({'|'.join(faults)})(\(.*\))?$",
        "examples": list(faults),
    }
    invariant = {"anyOf": [{"enum": list(invariants)}, {"type": "string"}]}
    return Model(
        "scenario",
        "a deploy-chaos scenario: a target, an upgrade and a matrix of runs",
        (
            Key("scenario", _NAME, "the scenario's name", True),
            Key("description", {"type": "string"}, "one line for the scorecard"),
            Key("target", {"type": "string"}, "FILE.py[:NAME] (relative) or MODULE[:NAME]", True),
            Key("upgrade", _ref(UPGRADE), "the upgrade", True),
            Key("instances", {"type": "integer", "minimum": 1}, "app instances (default 2)"),
            Key("seed", {"type": "integer"}, "the session seed (--chaos-seed overrides)"),
            Key("faults", _strings("fault expressions", fault), "the faults of the matrix", True),
            Key(
                "points",
                {
                    "anyOf": [
                        {"type": "string"},
                        {
                            "type": "array",
                            "items": {"anyOf": [{"type": "string"}, _ref(POINT)]},
                            "minItems": 1,
                        },
                    ]
                },
                "the fault points: before:/during:/after: a step",
                True,
            ),
            Key(
                "strategies",
                _strings("recovery strategies", {"enum": list(strategies)}),
                "the recovery strategies of the matrix",
                True,
            ),
            Key("invariants", _strings("verdict names", invariant), "judge only these"),
            Key("workload", _ref(WORKLOAD), "overrides of the target's workload"),
            Key("expect", {"type": "array", "items": _ref(EXPECT)}, "the known hazards"),
            Key("exclude", {"type": "array", "items": _ref(EXCLUDE)}, "cells not to run"),
            Key("recover_after", {"type": "string"}, "a step to run before recovering"),
            Key("step_timeout", _DURATION, "longest a plan step may take"),
            Key("health_grace", _DURATION, "how long a failing health check is tolerated"),
            Key("phases", _ref(PHASES), "the phases' quotas"),
            Key("availability", _ref(AVAILABILITY), "the availability verdict's budget"),
            Key(
                "canary",
                {"anyOf": [_WEIGHTS, _ref(CANARY)]},
                "a weighted canary: [10, 50] or {weights: [...], samples: ...}",
            ),
            Key("flag", _ref(FLAG), "a feature flag rollout"),
            Key("error_budget", _ref(ERROR_BUDGET), "detection by the clients' error rate"),
            Key("compare", _NAME, "the comparison group of the recommendation"),
        ),
    )


#: The models below the top level, by name (the ``$defs`` of the schema).
MODELS: tuple[Model, ...] = (
    UPGRADE,
    POINT,
    EXPECT,
    EXCLUDE,
    WORKLOAD,
    PHASES,
    AVAILABILITY,
    CANARY,
    FLAG,
    ERROR_BUDGET,
)

#: The top level's keys (the validator's); :func:`json_schema` fills in the strategies,
#: verdicts and faults a build knows.
SCENARIO = _scenario(strategies=(), invariants=(), faults=())


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a scenario file, with the strategies, verdicts and
    faults this build knows."""
    from harness.deploy.strategies import StrategyName
    from harness.faults.registry import default_registry

    top = _scenario(
        [s.value for s in StrategyName],
        BUILTIN_INVARIANTS,
        default_registry().names,
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "deploy-chaos scenario",
        **top.schema(),
        "$defs": {m.name: m.schema() for m in MODELS},
    }


def schema_text() -> str:
    """The schema as the repository's ``scenario.schema.json`` holds it."""
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"
