"""Scenarios: a YAML file naming a target, an upgrade and a matrix of runs.

A scenario file is validated completely before anything starts: the target is imported, the
releases and the plan are built, every fault expression is parsed, every fault point is
checked against the plan and every (fault, point) combination against the fault's own
rules. Errors carry the file, the line (from the YAML node marks), what was expected and the
valid choices::

    scenario: ledger_currency
    description: v1 -> v2 adds currencies by expand/backfill/contract
    target: ../examples/ledger/target.py      # FILE.py[:NAME] (relative) or MODULE[:NAME]
    upgrade: {from: v1, to: v2, fix: v2.1}    # fix: the release roll_forward deploys
    instances: 2
    seed: 7                                   # optional; --chaos-seed overrides
    faults: [db_crash, "kill_app(1, duration=none)"]
    points:
      - before:migrate:0003
      - {point: during:migrate:0004, statement: "UPDATE"}
    strategies: [rollback, roll_forward, halt]
    invariants: [recovery, durable_acknowledged_writes]   # optional: judge only these
    workload: {rate: 20, clients: 4, timeout: 2}          # optional: overrides the target's
    exclude:
      - {fault: kill_migration, point: "after:*"}
    expect:
      - point: after:rollout:0
        strategy: rollback
        violates: [readable_by_running_release]
        reason: v2's 0003 down drops the currency columns; EUR balances read as USD

:meth:`Scenario.runs` expands the matrix into :class:`RunCase` objects, one per run, in a
stable order; :func:`shard` splits them deterministically for CI.
"""

from __future__ import annotations

import fnmatch
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from harness import scenario_schema as schema
from harness._loader import load_target
from harness.deploy.canary import CANARY_SETTINGS, Canary
from harness.deploy.plan import canary_weights
from harness.deploy.points import NO_POINT, FaultPoint, When, parse_point
from harness.deploy.runner import RunSpec
from harness.deploy.strategies import StrategyName
from harness.errors import ChaosError, SpecError
from harness.faults.base import Fault, FaultKind, Named
from harness.faults.registry import FaultRegistry, default_registry, parse_duration
from harness.flags import FLAG_SETTINGS, FlagRollout
from harness.invariants.builtin import Availability
from harness.spec import Target
from harness.workload.model import ErrorBudget
from harness.workload.phases import PHASE_SETTINGS, Phases

__all__ = [
    "BUILTIN_INVARIANTS",
    "RECOVERY_VERDICT",
    "Expectation",
    "RunCase",
    "Scenario",
    "ScenarioContext",
    "Selector",
    "Upgrade",
    "load_scenario",
    "parse_rate",
    "parse_shard",
    "run_seed",
    "shard",
]

#: The verdict every run has, and the built-in verdict names (declared with the schema).
RECOVERY_VERDICT = schema.RECOVERY_VERDICT
BUILTIN_INVARIANTS = schema.BUILTIN_INVARIANTS

#: What a scenario's ``workload:`` may tune in its target's workload, and the types.
WORKLOAD_SETTINGS: dict[str, type] = {"clients": int, "rate": float, "timeout": float}


# The keys of each mapping come from the declared models that also make the published JSON
# Schema (harness/scenario_schema.py): a key is accepted here exactly when the schema has it.
_TOP_KEYS = schema.SCENARIO.names
_REQUIRED = schema.SCENARIO.required
_SELECTOR_KEYS = schema.EXCLUDE.names
_EXPECT_KEYS = schema.EXPECT.names
_POINT_KEYS = schema.POINT.names
_UPGRADE_KEYS = schema.UPGRADE.names
_AVAILABILITY_KEYS = schema.AVAILABILITY.names


@dataclass(frozen=True, slots=True)
class ScenarioContext:
    """What validating a scenario needs to know beyond the file: the fault names and the
    invariant names this session knows (built-ins plus what plugins registered)."""

    faults: FaultRegistry = field(default_factory=default_registry)
    invariants: tuple[str, ...] = BUILTIN_INVARIANTS


@dataclass(frozen=True, slots=True)
class Upgrade:
    source: str
    dest: str
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class Selector:
    """Glob patterns over fault name, fault point and strategy (any of each list matches)."""

    faults: tuple[str, ...] = ("*",)
    points: tuple[str, ...] = ("*",)
    strategies: tuple[str, ...] = ("*",)
    line: int = 0

    def matches(self, fault: str, point: str, strategy: str) -> bool:
        return (
            _any_match(fault, self.faults)
            and _any_match(point, self.points)
            and _any_match(strategy, self.strategies)
        )

    def describe(self) -> str:
        parts = []
        for label, globs in (
            ("fault", self.faults),
            ("point", self.points),
            ("strategy", self.strategies),
        ):
            if globs != ("*",):
                parts.append(f"{label} {'|'.join(globs)}")
        return ", ".join(parts) or "every run"


def _any_match(value: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, g) for g in globs)


@dataclass(frozen=True, slots=True)
class Expectation:
    """A known hazard: runs matching ``selector`` violate ``violates``, because ``reason``.

    How often: ``rate`` (min, max), the share of a cell's runs that show it (``rate: ">=
    80%"`` in a scenario); else ``strict`` (default): in every run (1, 1), the suite guards
    its own truth; ``strict: false``: it may happen (0, 1). A cell's counts are judged
    against the bounds as evidence, not as exact shares (see :func:`harness.expect.judge_runs`).
    """

    selector: Selector
    violates: tuple[str, ...]
    reason: str
    strict: bool = True
    line: int = 0
    rate: tuple[float, float] | None = None

    @property
    def bounds(self) -> tuple[float, float]:
        """(min, max) share of runs that show the hazard."""
        if self.rate is not None:
            return self.rate
        return (1.0, 1.0) if self.strict else (0.0, 1.0)


@dataclass(frozen=True, slots=True)
class FaultEntrySpec:
    text: str
    fault: Fault
    line: int


@dataclass(frozen=True, slots=True)
class PointSpec:
    point: FaultPoint
    line: int


@dataclass(frozen=True, slots=True)
class RunCase:
    """One run of the matrix: (scenario, fault, point, strategy) and what is expected of it."""

    scenario: Scenario
    fault: Fault
    point: FaultPoint
    strategy: StrategyName
    expectations: tuple[Expectation, ...]
    line: int
    order: tuple[int, int, int] = (0, 0, 0)

    @property
    def params(self) -> str:
        """``db_crash-during:migrate:0004-rollback``: the part of the test id in brackets."""
        return f"{self.fault.name}-{self.point.name}-{self.strategy.value}"

    @property
    def key(self) -> str:
        """``ledger_currency[db_crash-during:migrate:0004-rollback]`` (also RunOutcome.run_key)."""
        return f"{self.scenario.name}[{self.params}]"

    def run_spec(self, seed: int, data_seed: int | None = None) -> RunSpec:
        """The engine's spec for this run, with ``seed`` as the run's seed (its workload's
        draw) and ``data_seed`` as its seed data's (the scenario's base seed: the same data
        in every cell of the matrix)."""
        sc = self.scenario
        kwargs: dict[str, Any] = {
            "fix": sc.upgrade.fix,
            "instances": sc.instances,
            "seed": seed,
            "data_seed": data_seed,
            "scenario": sc.name,
            "recover_after": sc.recover_after,
        }
        if sc.step_timeout is not None:
            kwargs["step_timeout"] = sc.step_timeout
        if sc.health_grace is not None:
            kwargs["health_grace"] = sc.health_grace
        if sc.workload:
            kwargs["workload_settings"] = dict(sc.workload)
        if sc.phases is not None:
            kwargs["phases"] = sc.phases
        if sc.availability is not None:
            kwargs["availability"] = sc.availability
        for key, setting in (("canary", sc.canary), ("flag", sc.flag), ("budget", sc.budget)):
            if setting is not None:
                kwargs[key] = setting
        return RunSpec(
            sc.target,
            sc.upgrade.source,
            sc.upgrade.dest,
            self.fault,
            self.point,
            self.strategy,
            **kwargs,
        )


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario file."""

    name: str
    source: Path
    line: int
    target_ref: str
    target: Target
    upgrade: Upgrade
    faults: tuple[FaultEntrySpec, ...]
    points: tuple[PointSpec, ...]
    strategies: tuple[StrategyName, ...]
    expect: tuple[Expectation, ...] = ()
    exclude: tuple[Selector, ...] = ()
    invariants: tuple[str, ...] | None = None
    workload: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    description: str = ""
    instances: int = 2
    seed: int | None = None
    recover_after: str | None = None
    step_timeout: float | None = None
    health_grace: float | None = None
    #: The phases' quotas (None: the target workload's).
    phases: Phases | None = None
    #: The availability budget (None: measured, not judged).
    availability: Availability | None = None
    #: A weighted canary (weight steps after the first rollout, each analysed).
    canary: Canary | None = None
    #: A flag rollout (flag steps after verify, each analysed; kill_switch turns it off).
    flag: FlagRollout | None = None
    #: Detection by the clients' error rate (replaces the target workload's budget).
    budget: ErrorBudget | None = None
    #: The comparison group: scenarios with the same one are compared by the
    #: recommendation (their runs side by side per fault point); default: the name.
    compare: str = ""

    def runs(self) -> tuple[RunCase, ...]:
        """Every run of the matrix, faults x points x strategies minus ``exclude``; the
        control (``no_fault``) once per strategy, at the point ``none``."""
        out = []
        for fi, f in enumerate(self.faults):
            points = (
                (PointSpec(NO_POINT, f.line),) if f.fault.kind is FaultKind.CONTROL else self.points
            )
            for pi, p in enumerate(points):
                for si, s in enumerate(self.strategies):
                    args = (f.fault.name, p.point.name, s.value)
                    if any(x.matches(*args) for x in self.exclude):
                        continue
                    expected = tuple(e for e in self.expect if e.selector.matches(*args))
                    out.append(RunCase(self, f.fault, p.point, s, expected, f.line, (fi, pi, si)))
        return tuple(out)

    def judged(self, verdict: str) -> bool:
        """Whether the verdict ``verdict`` counts for this scenario's judgement."""
        return self.invariants is None or verdict in self.invariants


# -- YAML reading with line numbers ---------------------------------------------------------


class _Reader:
    """Typed access to YAML nodes; every error names the file and the node's line."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def error(
        self, node: Node | None, message: str, *, expected: str | None = None, choices: Any = ()
    ) -> SpecError:
        line = node.start_mark.line + 1 if node is not None else None
        return SpecError(
            message, source=self.source, line=line, expected=expected, choices=tuple(choices)
        )

    def mapping(
        self, node: Node, what: str, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            raise self.error(node, f"{what} is a {_kind(node)}", expected="a mapping")
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                raise self.error(key_node, f"{what}: a key is not a name", choices=allowed)
            if key not in allowed:
                raise self.error(key_node, f"{what}: unknown key {key!r}", choices=allowed)
            if key in out:
                raise self.error(key_node, f"{what}: key {key!r} repeats")
            out[key] = (key_node, value_node)
        missing = [k for k in required if k not in out]
        if missing:
            raise self.error(
                node, f"{what}: missing {', '.join(missing)}", expected=", ".join(required)
            )
        return out

    def string(self, node: Node, what: str) -> str:
        if not isinstance(node, ScalarNode) or node.tag.endswith(":null"):
            raise self.error(node, f"{what} is a {_kind(node)}", expected="a string")
        value = str(node.value).strip()
        if not value:
            raise self.error(node, f"{what} is empty", expected="a non-empty string")
        return value

    def integer(self, node: Node, what: str, minimum: int) -> int:
        text = self.string(node, what)
        try:
            value = int(text)
        except ValueError:
            raise self.error(node, f"{what} {text!r}", expected="an integer") from None
        if value < minimum:
            raise self.error(node, f"{what} {value}", expected=f"an integer >= {minimum}")
        return value

    def duration(self, node: Node, what: str) -> float:
        text = self.string(node, what)
        try:
            return parse_duration(text)
        except ValueError:
            raise self.error(
                node, f"{what} {text!r}", expected="a duration: 800ms, 2s, 1.5"
            ) from None

    def boolean(self, node: Node, what: str) -> bool:
        text = self.string(node, what).lower()
        if text in ("true", "yes", "on"):
            return True
        if text in ("false", "no", "off"):
            return False
        raise self.error(node, f"{what} {text!r}", expected="true or false")

    def seq(self, node: Node, what: str, *, allow_scalar: bool = False) -> list[Node]:
        if isinstance(node, SequenceNode):
            if not node.value:
                raise self.error(node, f"{what} is empty", expected="at least one entry")
            return list(node.value)
        if allow_scalar and isinstance(node, ScalarNode):
            return [node]
        raise self.error(node, f"{what} is a {_kind(node)}", expected="a list")

    def strings(self, node: Node, what: str) -> tuple[tuple[str, Node], ...]:
        return tuple(
            (self.string(n, f"{what} entry"), n) for n in self.seq(node, what, allow_scalar=True)
        )


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    if isinstance(node, ScalarNode) and node.tag.endswith(":null"):
        return "null value"
    return f"scalar {node.value!r}" if isinstance(node, ScalarNode) else "value"


_T = TypeVar("_T")


def _catch(reader: _Reader, node: Node, what: str, make: Callable[[], _T]) -> _T:
    """Run ``make``; re-raise its SpecError at ``node``'s line."""
    try:
        return make()
    except SpecError as exc:
        raise reader.error(
            node, f"{what}: {exc.message}", expected=exc.expected, choices=exc.choices
        ) from None
    except ChaosError as exc:
        raise reader.error(node, f"{what}: {exc}") from None


def compose_file(source: Path, what: str, expected: str, empty: str) -> Node:
    """The YAML node tree of ``source`` (a ``what`` file), with line marks; a
    :class:`SpecError` naming the file (and the line) when it cannot be read, is not YAML,
    or is empty (``expected``, ``empty``: what it should hold)."""
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read the {what} file: {exc}", source=source) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SpecError(
            f"not valid YAML: {exc.problem or exc}",
            source=source,
            line=mark.line + 1 if mark is not None else None,
            expected=expected,
        ) from None
    if root is None:
        raise SpecError("the file is empty", source=source, line=1, expected=empty)
    return root


def load_scenario(path: str | Path, context: ScenarioContext | None = None) -> Scenario:
    """Read and validate a scenario file; a :class:`SpecError` with file and line otherwise."""
    source = Path(path)
    ctx = context or ScenarioContext()
    reader = _Reader(source)
    root = compose_file(
        source,
        "scenario",
        "a YAML mapping (see harness/scenario.py for the format)",
        "a scenario mapping",
    )
    top = reader.mapping(root, "scenario file", _TOP_KEYS, _REQUIRED)

    def value(key: str) -> Node:
        return top[key][1]

    name = reader.string(value("scenario"), "scenario")
    if not all(c.isalnum() or c in "_-." for c in name):
        raise reader.error(
            value("scenario"), f"scenario name {name!r}", expected="letters, digits, _ - ."
        )
    target_ref = reader.string(value("target"), "target")
    target = _catch(reader, value("target"), "target", lambda: _load_target(source, target_ref))

    up = reader.mapping(value("upgrade"), "upgrade", _UPGRADE_KEYS, ("from", "to"))
    releases = [r.name for r in target.releases]

    def release(key: str) -> str:
        node = up[key][1]
        rel = reader.string(node, f"upgrade.{key}")
        if rel not in releases:
            raise reader.error(
                node,
                f"upgrade.{key}: target {target.name!r} has no release {rel!r}",
                choices=releases,
            )
        return rel

    upgrade = Upgrade(release("from"), release("to"), release("fix") if "fix" in up else None)

    instances = reader.integer(value("instances"), "instances", 1) if "instances" in top else 2
    seed = reader.integer(value("seed"), "seed", 0) if "seed" in top else None
    step_timeout = (
        reader.duration(value("step_timeout"), "step_timeout") if "step_timeout" in top else None
    )
    health_grace = (
        reader.duration(value("health_grace"), "health_grace") if "health_grace" in top else None
    )
    description = reader.string(value("description"), "description") if "description" in top else ""
    phases = _phases(reader, value("phases"), target) if "phases" in top else None
    availability = _availability(reader, value("availability")) if "availability" in top else None
    canary = _canary(reader, value("canary"), instances) if "canary" in top else None
    flag = _flag(reader, value("flag")) if "flag" in top else None
    budget = _budget(reader, value("error_budget"), target) if "error_budget" in top else None
    compare = reader.string(value("compare"), "compare") if "compare" in top else name

    # The plan, for checking points and faults against it.
    from harness.deploy.plan import build_plan

    plan_node = value("upgrade")
    plan = _catch(
        reader,
        plan_node,
        "upgrade",
        lambda: build_plan(
            target,
            target.release(upgrade.source),
            target.release(upgrade.dest),
            instances=instances,
            canary=canary.weights if canary is not None else (),
            flag=flag,
        ),
    )
    recover_after = None
    if "recover_after" in top:
        node = value("recover_after")
        recover_after = reader.string(node, "recover_after")
        if recover_after not in plan.step_names:
            raise reader.error(
                node,
                f"recover_after {recover_after!r} names no step of the plan",
                choices=plan.step_names,
            )

    faults: list[FaultEntrySpec] = []
    seen_faults: dict[str, int] = {}
    for text, node in reader.strings(value("faults"), "faults"):
        if text.count("(") != text.count(")") and isinstance(value("faults"), SequenceNode):
            # [kill_app(1, duration=none)] in a flow list splits at the comma: say so.
            raise reader.error(
                node,
                f"fault {text!r} is cut at a comma",
                expected='a quoted entry in a [...] list: "kill_app(1, duration=none)",'
                " or one fault per line (- kill_app(1, duration=none))",
            )
        fault = _catch(reader, node, "faults", lambda t=text: ctx.faults.parse(t))  # type: ignore[misc]
        line = node.start_mark.line + 1
        label = "".join(text.split())  # the entry's own text, without blanks
        if fault.name in seen_faults or any(f.fault.name == label for f in faults):
            # One fault twice with other parameters: each is named by its text.
            first = next((i for i, f in enumerate(faults) if f.fault.name == fault.name), None)
            if first is not None:
                earlier = faults[first]
                faults[first] = FaultEntrySpec(
                    earlier.text, Named(earlier.fault, "".join(earlier.text.split())), earlier.line
                )
            if label in {f.fault.name for f in faults}:
                again = next(f.line for f in faults if f.fault.name == label)
                raise reader.error(
                    node,
                    f"fault {text!r} repeats the one on line {again}",
                    expected="each fault (with its parameters) once",
                )
            fault = Named(fault, label)
        seen_faults[fault.name] = line
        faults.append(FaultEntrySpec(text, fault, line))

    points = []
    seen_points: set[str] = set()
    for node in reader.seq(value("points"), "points", allow_scalar=True):
        point = _point(reader, node, plan.step_names)
        if point.name in seen_points:
            raise reader.error(node, f"fault point {point.name!r} repeats")
        seen_points.add(point.name)
        points.append(PointSpec(point, node.start_mark.line + 1))

    strategies = []
    choices = [s.value for s in StrategyName]
    for text, node in reader.strings(value("strategies"), "strategies"):
        try:
            strategy = StrategyName(text)
        except ValueError:
            raise reader.error(node, f"unknown strategy {text!r}", choices=choices) from None
        if strategy in strategies:
            raise reader.error(node, f"strategy {text!r} repeats")
        if strategy is StrategyName.KILL_SWITCH and flag is None:
            raise reader.error(
                node,
                "strategy kill_switch without a flag rollout: there is no flag to turn off",
                expected="a flag: {name: ..., steps: [10, 100]} entry, or another strategy",
            )
        if strategy is StrategyName.ROLL_FORWARD and upgrade.fix is None:
            pass  # roll_forward re-deploys the target release: allowed.
        strategies.append(strategy)

    invariants: tuple[str, ...] | None = None
    if "invariants" in top:
        names = []
        for text, node in reader.strings(value("invariants"), "invariants"):
            if text not in ctx.invariants:
                raise reader.error(node, f"unknown invariant {text!r}", choices=ctx.invariants)
            names.append(text)
        if RECOVERY_VERDICT not in names:
            names.insert(0, RECOVERY_VERDICT)
        invariants = tuple(names)

    workload: dict[str, str | int | float | bool] = {}
    if "workload" in top:
        node = value("workload")
        if not isinstance(node, MappingNode):
            raise reader.error(node, f"workload is a {_kind(node)}", expected="a mapping")
        loaded = yaml.safe_load(yaml.serialize(node))
        for (key_node, value_node), (key, item) in zip(node.value, loaded.items(), strict=True):
            if key not in WORKLOAD_SETTINGS:
                raise reader.error(
                    key_node, f"unknown workload setting {key!r}", choices=list(WORKLOAD_SETTINGS)
                )
            kind = WORKLOAD_SETTINGS[key]
            if (
                isinstance(item, bool)
                or not isinstance(item, (int, float))
                or (kind is int and not isinstance(item, int))
            ):
                raise reader.error(
                    value_node,
                    f"workload.{key} is {item!r}",
                    expected=f"a number ({kind.__name__})",
                )
            workload[key] = item
        if workload and target.workload is None:
            raise reader.error(node, f"target {target.name!r} declares no workload to tune")
        try:
            if target.workload is not None:
                replace(target.workload, **workload)  # type: ignore[arg-type]
        except SpecError as exc:
            raise reader.error(node, f"workload: {exc}") from None

    fault_names = [f.fault.name for f in faults]
    point_names = [p.point.name for p in points]
    if any(f.fault.kind is FaultKind.CONTROL for f in faults):
        point_names.append(NO_POINT.name)
    strategy_names = [s.value for s in strategies]
    exclude = tuple(
        _selector(reader, n, "exclude entry", _SELECTOR_KEYS)[0]
        for n in (reader.seq(value("exclude"), "exclude") if "exclude" in top else [])
    )
    expect = []
    judged = invariants if invariants is not None else ctx.invariants
    for node in reader.seq(value("expect"), "expect") if "expect" in top else []:
        selector, entry = _selector(reader, node, "expect entry", _EXPECT_KEYS)
        _check_globs(reader, entry, "fault", selector.faults, fault_names)
        _check_globs(reader, entry, "point", selector.points, point_names)
        _check_globs(reader, entry, "strategy", selector.strategies, strategy_names)
        if "violates" not in entry or "reason" not in entry:
            raise reader.error(
                node,
                "expect entry: needs violates and reason",
                expected="violates: [invariant, ...] and reason: why this hazard happens",
            )
        violates = []
        for text, vnode in reader.strings(entry["violates"][1], "expect.violates"):
            if text not in judged:
                raise reader.error(
                    vnode, f"expect.violates: {text!r} is not a judged invariant", choices=judged
                )
            violates.append(text)
        reason = reader.string(entry["reason"][1], "expect.reason")
        strict = reader.boolean(entry["strict"][1], "expect.strict") if "strict" in entry else True
        rate = None
        if "rate" in entry:
            if "strict" in entry:
                raise reader.error(
                    entry["rate"][0],
                    "expect entry: rate and strict both say how often",
                    expected="one of them (rate replaces strict)",
                )
            rate = _rate(reader, entry["rate"][1])
        expect.append(
            Expectation(selector, tuple(violates), reason, strict, node.start_mark.line + 1, rate)
        )

    scenario = Scenario(
        name=name,
        source=source,
        line=root.start_mark.line + 1,
        target_ref=target_ref,
        target=target,
        upgrade=upgrade,
        faults=tuple(faults),
        points=tuple(points),
        strategies=tuple(strategies),
        expect=tuple(expect),
        exclude=exclude,
        invariants=invariants,
        workload=workload,
        description=description,
        instances=instances,
        seed=seed,
        recover_after=recover_after,
        step_timeout=step_timeout,
        health_grace=health_grace,
        phases=phases,
        availability=availability,
        canary=canary,
        flag=flag,
        budget=budget,
        compare=compare,
    )
    runs = scenario.runs()
    if not runs:
        raise reader.error(root, "the matrix is empty (exclude removes every run)")
    # Every run must be valid for the engine: a bad (fault, point) pair fails here.
    for case in runs:
        node_line = case.line
        try:
            case.run_spec(0).plan()
        except SpecError as exc:
            raise SpecError(
                f"run {case.key}: {exc.message} (add an exclude entry to skip this combination)",
                source=source,
                line=node_line,
                expected=exc.expected,
                choices=exc.choices,
            ) from None
    return scenario


def parse_rate(text: str) -> tuple[float, float]:
    """``>= 80%``, ``<= 0.3``, ``20%..60%``, ``100%``: (min, max) shares in [0, 1]."""

    def share(part: str) -> float:
        part = part.strip()
        value = float(part[:-1]) / 100 if part.endswith("%") else float(part)
        if not 0.0 <= value <= 1.0:
            raise ValueError(part)
        return value

    text = text.strip()
    if text.startswith(">="):
        low, high = share(text[2:]), 1.0
    elif text.startswith("<="):
        low, high = 0.0, share(text[2:])
    elif ".." in text:
        first, _, second = text.partition("..")
        low, high = share(first), share(second)
    else:
        low = high = share(text)
    if low > high:
        raise ValueError(text)
    return low, high


def _rate(reader: _Reader, node: Node) -> tuple[float, float]:
    text = reader.string(node, "expect.rate")
    try:
        return parse_rate(text)
    except ValueError:
        raise reader.error(
            node,
            f"expect.rate {text!r}",
            expected='a share of the runs: ">= 80%", "<= 30%", "20%..60%" or "100%"',
        ) from None


def _phases(reader: _Reader, node: Node, target: Target) -> Phases:
    """``phases: {warmup: 3, bake: 3, soak: 3, timeout: 15s}`` over the target's."""
    entry = reader.mapping(node, "phases", tuple(PHASE_SETTINGS))
    base = target.workload.phases if target.workload is not None else Phases()
    values: dict[str, Any] = {}
    for key, (_, value_node) in entry.items():
        if PHASE_SETTINGS[key] is int:
            values[key] = reader.integer(value_node, f"phases.{key}", 0)
        else:
            values[key] = reader.duration(value_node, f"phases.{key}")
    return _catch(reader, node, "phases", lambda: replace(base, **values))


def _percent(reader: _Reader, node: Node, what: str) -> float:
    """``5%`` or ``0.05`` as a fraction in [0, 1)."""
    text = reader.string(node, what)
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise reader.error(node, f"{what} {text!r}", expected="a percentage such as 5% (< 100%)")
    return value


#: The settings of an analysis (a canary's weights, a flag's steps), as scenario keys.
ANALYSIS_SETTINGS = ("samples", "window", "max_excess", "min_errors")


def _percents(reader: _Reader, node: Node, what: str, each: str) -> list[int]:
    """A list of whole percents in 1..100 (a canary's weights, a flag's steps)."""
    out = []
    for item in reader.seq(node, what):
        value = reader.integer(item, each, 1)
        if value > 100:
            raise reader.error(item, f"{each} {value}", expected="a percent <= 100")
        out.append(value)
    return out


def _analysis_setting(reader: _Reader, node: Node, what: str, key: str) -> Any:
    """One of :data:`ANALYSIS_SETTINGS` under ``what`` (``canary``, ``flag``)."""
    if key == "window":
        return reader.duration(node, f"{what}.window")
    if key == "max_excess":
        return _percent(reader, node, f"{what}.max_excess")
    return reader.integer(node, f"{what}.{key}", 1)


def _canary(reader: _Reader, node: Node, instances: int) -> Canary:
    """``canary: [10, 50, 100]`` or ``canary: {weights: [10, 50], samples: 10, window: 10s,
    max_excess: 5%, min_errors: 2}`` (see harness.deploy.canary)."""
    settings: dict[str, Any] = {}
    weights_node = node
    if isinstance(node, MappingNode):
        entry = reader.mapping(node, "canary", CANARY_SETTINGS, ("weights",))
        weights_node = entry["weights"][1]
        for key, (_, value_node) in entry.items():
            if key != "weights":
                settings[key] = _analysis_setting(reader, value_node, "canary", key)
    weights = _percents(reader, weights_node, "canary weights", "canary weight")
    _catch(reader, weights_node, "canary", lambda: canary_weights(weights, instances))
    return _catch(reader, node, "canary", lambda: Canary(tuple(weights), **settings))


def _budget(reader: _Reader, node: Node, target: Target) -> ErrorBudget:
    """``error_budget: {max_error_rate: 5%, window: 5s, min_operations: 10}``: detection by
    the clients' error rate over the last ``window`` (see harness.workload.ErrorBudget)."""
    entry = reader.mapping(
        node, "error_budget", ("max_error_rate", "window", "min_operations"), ("max_error_rate",)
    )
    if target.workload is None:
        raise reader.error(node, f"target {target.name!r} declares no workload to watch")
    settings: dict[str, Any] = {
        "max_error_rate": _percent(
            reader, entry["max_error_rate"][1], "error_budget.max_error_rate"
        )
    }
    if "window" in entry:
        settings["window_s"] = reader.duration(entry["window"][1], "error_budget.window")
    if "min_operations" in entry:
        settings["min_operations"] = reader.integer(
            entry["min_operations"][1], "error_budget.min_operations", 1
        )
    return _catch(reader, node, "error_budget", lambda: ErrorBudget(**settings))


def _flag(reader: _Reader, node: Node) -> FlagRollout:
    """``flag: {name: new-transfers, steps: [10, 100], samples: 20, window: 10s,
    max_excess: 5%, min_errors: 2}`` (see harness.flags)."""
    entry = reader.mapping(node, "flag", FLAG_SETTINGS, ("name",))
    settings: dict[str, Any] = {"name": reader.string(entry["name"][1], "flag.name")}
    for key, (_, value_node) in entry.items():
        if key in ANALYSIS_SETTINGS:
            settings[key] = _analysis_setting(reader, value_node, "flag", key)
        elif key == "steps":
            settings["steps"] = tuple(_percents(reader, value_node, "flag.steps", "flag step"))
    return _catch(reader, node, "flag", lambda: FlagRollout(**settings))


def _availability(reader: _Reader, node: Node) -> Availability:
    """``availability: {max_error_rate: 0.01, max_unavailable: 1s}``: the budget."""
    entry = reader.mapping(node, "availability", _AVAILABILITY_KEYS)
    rate = None
    if "max_error_rate" in entry:
        rate_node = entry["max_error_rate"][1]
        text = reader.string(rate_node, "availability.max_error_rate")
        try:
            rate = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
        except ValueError:
            rate = -1.0
        if not 0.0 <= rate <= 1.0:
            raise reader.error(
                rate_node,
                f"availability.max_error_rate {text!r}",
                expected="a rate in [0, 1] or a percentage such as 2%",
            )
    window = None
    if "max_unavailable" in entry:
        window = reader.duration(entry["max_unavailable"][1], "availability.max_unavailable")
    if rate is None and window is None:
        raise reader.error(
            node, "availability sets no budget", expected=", ".join(_AVAILABILITY_KEYS)
        )
    return Availability(max_error_rate=rate, max_unavailable_s=window)


def _load_target(source: Path, ref: str) -> Target:
    module_ref, sep, attr = ref.partition(":")
    if module_ref.endswith(".py") and not Path(module_ref).is_absolute():
        module_ref = str((source.parent / module_ref).resolve())
    return load_target(module_ref + (sep + attr if sep else ""))


def _point(reader: _Reader, node: Node, steps: Sequence[str]) -> FaultPoint:
    choices = [f"{w.value}:{s}" for s in steps for w in When]
    if isinstance(node, MappingNode):
        entry = reader.mapping(node, "fault point", _POINT_KEYS, ("point",))
        text = reader.string(entry["point"][1], "fault point")
        delay = reader.duration(entry["delay"][1], "delay") if "delay" in entry else None
        statement = (
            reader.string(entry["statement"][1], "statement") if "statement" in entry else None
        )
    else:
        text = reader.string(node, "fault point")
        delay = statement = None
    point = _catch(
        reader,
        node,
        f"fault point {text!r}",
        lambda: parse_point(text, delay=delay, statement=statement),
    )
    if not point.in_recovery and point.step not in steps:
        raise reader.error(
            node,
            f"fault point {text!r} names no step of the plan",
            choices=[*choices, "during:recovery"],
        )
    _catch(reader, node, f"fault point {text!r}", lambda: _check_recovery(point))
    return point


def _check_recovery(point: FaultPoint) -> None:
    if point.in_recovery and point.when is not When.DURING:
        raise SpecError(f"fault point {point.name}", expected="during:recovery")


def _selector(
    reader: _Reader, node: Node, what: str, allowed: Sequence[str]
) -> tuple[Selector, dict[str, tuple[Node, Node]]]:
    entry = reader.mapping(node, what, allowed)

    def globs(key: str) -> tuple[str, ...]:
        if key not in entry:
            return ("*",)
        return tuple(t for t, _ in reader.strings(entry[key][1], f"{what}.{key}"))

    selector = Selector(globs("fault"), globs("point"), globs("strategy"), node.start_mark.line + 1)
    return selector, entry


def _check_globs(
    reader: _Reader,
    entry: Mapping[str, tuple[Node, Node]],
    key: str,
    globs: Sequence[str],
    names: Sequence[str],
) -> None:
    """A glob that matches nothing in the matrix is a typo: say so, with the choices."""
    if key not in entry:
        return
    for pattern in globs:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise reader.error(
                entry[key][1],
                f"expect.{key} {pattern!r} matches nothing in the matrix",
                choices=names,
            )


# -- seeds and shards -----------------------------------------------------------------------


def run_seed(base: int, key: str) -> int:
    """The seed of one run: stable for (base seed, run key), independent of run order."""
    return (base * 1_000_003 + zlib.crc32(key.encode())) % (2**31)


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` (1-based K) -> (K, N); a SpecError otherwise."""
    k_text, sep, n_text = text.partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        k = n = 0
    if not sep or n < 1 or not 1 <= k <= n:
        raise SpecError(f"shard {text!r}", expected="K/N with 1 <= K <= N, e.g. 2/4")
    return k, n


def shard(keys: Iterable[str], k: int, n: int) -> set[str]:
    """The keys shard ``k`` of ``n`` runs: sorted keys dealt round-robin (every key exactly
    once across the ``n`` shards, balanced to within one)."""
    ordered = sorted(set(keys))
    return {key for i, key in enumerate(ordered) if i % n == k - 1}
