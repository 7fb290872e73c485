"""Fault names -> fault classes, with parameter parsing.

A fault is written the way it appears in test ids and reports: a name, optionally followed
by arguments in parentheses, positional first, then ``key=value``::

    db_crash
    db_crash(duration=0.5s)
    kill_app(1)
    kill_app(1, duration=none)
    lock(accounts, mode=access exclusive)
    latency(800ms, downstream)

Arguments are converted by the type of the fault dataclass's field they land in: ``int``,
``float`` (durations accept ``800ms``, ``2s`` or a bare number of seconds), ``str``, ``bool``,
an ``Enum`` (by value, case-insensitive) and ``X | None`` (``none``). An ``int`` field whose
name ends in ``_ms`` takes ``800ms``/``2s`` too.

Families plug in by name:

- the built-in database, process and release faults are registered here;
- :mod:`harness.faults.network` (when present) contributes through a ``FAULT_TYPES`` mapping
  ``{name: class}``; else its toxics are registered under their Toxiproxy type names
  (``latency(800ms, downstream)``, ``bandwidth(64)``, ``reset_peer``, ..., built with
  ``ToxicSpec.<type>`` into ``NetworkToxic``), its ``Partition`` as ``down``, and any other
  class whose ``kind`` is ``FaultKind.NETWORK`` under its snake_case class name;
- users add their own through :meth:`FaultRegistry.register` or the pytest hook
  ``pytest_deploy_chaos_register_faults`` (see :mod:`harness.hooks`).

A class may also define a classmethod ``from_args(args, kwargs)`` (strings in, a fault out)
when the generic conversion does not fit.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import ChaosError, ConfigError, SpecError
from harness.faults.base import Fault, FaultKind

__all__ = [
    "FaultCall",
    "FaultEntry",
    "FaultRegistry",
    "default_registry",
    "parse_duration",
    "parse_fault_call",
]

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_DURATION = re.compile(r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m)?")
_NONE = frozenset({"none", "null", "~"})
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def parse_bool(text: str) -> bool:
    """``true``/``yes``/``on``/``1`` -> True, ``false``/``no``/``off``/``0`` -> False."""
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def parse_duration(text: str) -> float:
    """``800ms`` -> 0.8, ``2s`` -> 2.0, ``1m`` -> 60.0, ``1.5`` -> 1.5 (seconds)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration (e.g. 800ms, 2s, 1.5)")
    value = float(match["num"])
    unit = match["unit"] or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


@dataclass(frozen=True, slots=True)
class FaultCall:
    """A parsed fault expression: ``kill_app(1, duration=none)``."""

    name: str
    args: tuple[str, ...] = ()
    kwargs: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        parts = [*self.args, *(f"{k}={v}" for k, v in self.kwargs)]
        return f"{self.name}({', '.join(parts)})" if parts else self.name


def parse_fault_call(text: str) -> FaultCall:
    """Split ``name(a, b, k=v)`` into its parts (values stay strings)."""
    text = text.strip()
    head, paren, rest = text.partition("(")
    name = head.strip()
    if not _NAME.fullmatch(name):
        raise SpecError(
            f"fault {text!r}: {name!r} is not a fault name",
            expected="name or name(arg, key=value), e.g. kill_app(1)",
        )
    if not paren:
        return FaultCall(name)
    if not rest.endswith(")"):
        raise SpecError(f"fault {text!r}: missing ')'", expected="name(arg, key=value)")
    inner = rest[:-1].strip()
    args: list[str] = []
    kwargs: list[tuple[str, str]] = []
    if inner:
        for raw in inner.split(","):
            part = raw.strip()
            if not part:
                raise SpecError(f"fault {text!r}: empty argument", expected="name(arg, ...)")
            key, eq, value = part.partition("=")
            if eq:
                key = key.strip()
                if not _NAME.fullmatch(key):
                    raise SpecError(f"fault {text!r}: {key!r} is not a parameter name")
                if key in dict(kwargs):
                    raise SpecError(f"fault {text!r}: parameter {key!r} given twice")
                kwargs.append((key, value.strip()))
            elif kwargs:
                raise SpecError(
                    f"fault {text!r}: positional argument {part!r} after key=value ones"
                )
            else:
                args.append(part)
    return FaultCall(name, tuple(args), tuple(kwargs))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            return "|".join(str(m.value) for m in hint)
        return hint.__name__
    return str(hint).replace("typing.", "")


def _convert(field: str, hint: Any, text: str) -> Any:
    """Convert ``text`` for a field annotated ``hint`` (a resolved type)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) < len(typing.get_args(hint)) and text.strip().lower() in _NONE:
            return None
        errors = []
        for member in members:
            try:
                return _convert(field, member, text)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if hint is bool:
        return parse_bool(text)
    if hint is int:
        stripped = text.strip()
        if field.endswith("_ms") and not stripped.lstrip("-").isdigit():
            return round(parse_duration(stripped) * 1000)
        try:
            return int(stripped)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
    if hint is float:
        return parse_duration(text)
    if hint is str:
        return text.strip()
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        low = text.strip().lower()
        for member in hint:
            if str(member.value).lower() == low or member.name.lower() == low:
                return member
        raise ValueError(f"{text!r} is not one of {', '.join(str(m.value) for m in hint)}")
    raise ValueError(f"cannot convert {text!r} to {_type_name(hint)}")


@dataclass(frozen=True, slots=True)
class FaultEntry:
    """One registered fault: its name, its class and what the class says about itself."""

    name: str
    factory: type[Any] | Callable[..., Fault]
    summary: str = ""

    def params(self) -> tuple[tuple[str, str], ...]:
        """``(parameter, type)`` pairs, in positional order (for help and errors)."""
        if not (isinstance(self.factory, type) and dataclasses.is_dataclass(self.factory)):
            return ()
        hints = typing.get_type_hints(self.factory)
        return tuple(
            (f.name, _type_name(hints.get(f.name, str)))
            for f in dataclasses.fields(self.factory)
            if f.init
        )

    def signature(self) -> str:
        params = self.params()
        if not params:
            return self.name
        return f"{self.name}({', '.join(f'{n}: {t}' for n, t in params)})"

    def build(self, call: FaultCall) -> Fault:
        """A fault from ``call``; a :class:`SpecError` naming the parameter when a value is bad."""
        from_args = getattr(self.factory, "from_args", None)
        if callable(from_args):
            fault = from_args(call.args, dict(call.kwargs))
        elif isinstance(self.factory, type) and dataclasses.is_dataclass(self.factory):
            fault = self.factory(**self._kwargs(call))
        else:
            fault = self.factory(*call.args, **dict(call.kwargs))
        if not isinstance(fault, Fault):
            raise SpecError(f"fault {call}: {self.name} built {type(fault).__name__}, not a Fault")
        return fault

    def _kwargs(self, call: FaultCall) -> dict[str, Any]:
        assert isinstance(self.factory, type)
        hints = typing.get_type_hints(self.factory)
        fields = [f for f in dataclasses.fields(self.factory) if f.init]
        names = [f.name for f in fields]
        if len(call.args) > len(fields):
            raise SpecError(
                f"fault {call}: {len(call.args)} arguments, {self.name} takes at most "
                f"{len(fields)}",
                expected=self.signature(),
            )
        given: dict[str, str] = dict(zip(names, call.args, strict=False))
        for key, value in call.kwargs:
            if key not in names:
                raise SpecError(f"fault {call}: unknown parameter {key!r}", choices=names)
            if key in given:
                raise SpecError(f"fault {call}: parameter {key!r} given twice")
            given[key] = value
        missing = [
            f.name
            for f in fields
            if f.name not in given
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise SpecError(
                f"fault {call}: missing {', '.join(missing)}", expected=self.signature()
            )
        out: dict[str, Any] = {}
        for key, text in given.items():
            hint = hints.get(key, str)
            try:
                out[key] = _convert(key, hint, text)
            except ValueError as exc:
                raise SpecError(
                    f"fault {call}: {key}={text!r}: {exc}", expected=_type_name(hint)
                ) from None
        return out


class FaultRegistry:
    """Fault names to their classes. Not global: each session builds its own."""

    def __init__(self) -> None:
        self._entries: dict[str, FaultEntry] = {}

    def register(
        self,
        name: str,
        factory: type[Any] | Callable[..., Fault],
        *,
        summary: str = "",
        replace: bool = False,
    ) -> None:
        """Register ``factory`` (a fault dataclass, or a callable returning a Fault) as ``name``."""
        if not _NAME.fullmatch(name):
            raise ConfigError("fault name", name, "lower-case letters, digits and '_'")
        if name in self._entries and not replace:
            raise ConfigError("fault name", name, "a name not registered yet")
        doc = summary or (getattr(factory, "__doc__", None) or "").strip().split("\n")[0]
        self._entries[name] = FaultEntry(name, factory, doc)

    def register_module(self, module: types.ModuleType) -> int:
        """Register a module's faults (``FAULT_TYPES`` or its network classes); return how many."""
        explicit = getattr(module, "FAULT_TYPES", None)
        count = 0
        if isinstance(explicit, Mapping):
            for name, factory in explicit.items():
                self.register(str(name), factory, replace=True)
                count += 1
            return count
        count += _register_toxics(self, module)
        taken = {e.factory for e in self._entries.values()}
        toxic_cls = getattr(module, "NetworkToxic", None)
        for attr in (*getattr(module, "__all__", ()), "NetworkToxic", "Partition"):
            obj = getattr(module, attr, None)
            if (
                isinstance(obj, type)
                and getattr(obj, "kind", None) is FaultKind.NETWORK
                and obj not in taken
                and obj is not toxic_cls
            ):
                name = "down" if obj.__name__ == "Partition" else _snake(obj.__name__)
                self.register(name, obj, replace=True)
                taken.add(obj)
                count += 1
        return count

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[FaultEntry]:
        return iter(self._entries[n] for n in self.names)

    def entry(self, name: str) -> FaultEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise SpecError(f"unknown fault {name!r}", choices=self.names) from None

    def parse(self, text: str) -> Fault:
        """Build the fault ``text`` describes (``kill_app(1)``); SpecError when it can't."""
        call = parse_fault_call(text)
        entry = self.entry(call.name)
        try:
            return entry.build(call)
        except SpecError:
            raise
        except (ChaosError, TypeError, ValueError) as exc:
            raise SpecError(f"fault {call}: {exc}", expected=entry.signature()) from None


@dataclass(frozen=True, slots=True)
class _ToxicFactory:
    """``latency(800ms, downstream, duration=2s)``: a ToxicSpec class method, wrapped in the
    module's NetworkToxic fault. A positional argument naming a stream sets the stream;
    integer parameters take milliseconds as ``800ms`` or ``2s`` too."""

    type_name: str
    builder: Callable[..., Any]
    fault_cls: type[Any]
    stream_type: type[enum.Enum]

    def from_args(self, args: Sequence[str], kwargs: Mapping[str, str]) -> Fault:
        import inspect

        params = [
            p
            for p in inspect.signature(self.builder).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        hints = typing.get_type_hints(self.builder)
        values: dict[str, Any] = {}
        positional = []
        for text in args:
            try:
                values["stream"] = _convert("stream", self.stream_type, text)
            except ValueError:
                positional.append(text)
        if len(positional) > len(params):
            raise SpecError(
                f"fault {self.type_name}: {len(positional)} arguments",
                expected=", ".join(p.name for p in params),
            )
        named = dict(zip((p.name for p in params), positional, strict=False))
        extra = dict(kwargs)
        duration_text = extra.pop("duration", None)
        for key, text in extra.items():
            if key in named:
                raise SpecError(f"fault {self.type_name}: parameter {key!r} given twice")
            named[key] = text
        for key, text in named.items():
            hint = hints.get(key, str)
            try:
                if hint is int and text.strip().endswith("s"):
                    values[key] = round(parse_duration(text) * 1000)
                else:
                    values[key] = _convert(key, hint, text)
            except ValueError as exc:
                raise SpecError(
                    f"fault {self.type_name}: {key}={text!r}: {exc}", expected=_type_name(hint)
                ) from None
        try:
            spec = self.builder(**values)
        except TypeError as exc:
            raise SpecError(f"fault {self.type_name}: {exc}") from None
        duration = None
        if duration_text is not None and duration_text.strip().lower() not in _NONE:
            try:
                duration = parse_duration(duration_text)
            except ValueError as exc:
                raise SpecError(f"fault {self.type_name}: duration: {exc}") from None
        fault: Fault = self.fault_cls(spec, duration)
        return fault


def _register_toxics(registry: FaultRegistry, module: types.ModuleType) -> int:
    """Register ``ToxicSpec.<type>`` builders as faults named after the toxic type."""
    spec_cls = getattr(module, "ToxicSpec", None)
    toxic_cls = getattr(module, "NetworkToxic", None)
    type_enum = getattr(module, "ToxicType", None)
    stream_enum = getattr(module, "Stream", None)
    if spec_cls is None or toxic_cls is None or type_enum is None or stream_enum is None:
        return 0
    count = 0
    for member in type_enum:
        builder = getattr(spec_cls, str(member.value), None)
        if callable(builder) and str(member.value) != "noop":
            factory = _ToxicFactory(str(member.value), builder, toxic_cls, stream_enum)
            doc = (getattr(builder, "__doc__", None) or "").strip().split("\n")[0]
            registry.register(str(member.value), factory, summary=doc, replace=True)  # type: ignore[arg-type]
            count += 1
    return count


def _builtin(registry: FaultRegistry) -> None:
    from harness.faults import base, database, process, release

    table: Sequence[tuple[str, type[Any]]] = (
        ("no_fault", base.NoFault),
        ("db_crash", database.DbCrash),
        ("db_pause", database.DbPause),
        ("terminate_backends", database.TerminateBackends),
        ("lock", database.LockConflict),
        ("statement_timeout", database.StatementTimeout),
        ("kill_app", process.KillApp),
        ("pause_app", process.PauseApp),
        ("restart_app", process.RestartApp),
        ("kill_migration", process.KillMigration),
        ("migration_fails_at", release.MigrationFailsAt),
        ("bad_release", release.BadRelease),
    )
    for name, cls in table:
        registry.register(name, cls)


def default_registry() -> FaultRegistry:
    """A registry with the built-in faults and, when the module exists, the network ones."""
    registry = FaultRegistry()
    _builtin(registry)
    try:
        network = importlib.import_module("harness.faults.network")
    except ImportError:
        return registry
    registry.register_module(network)
    return registry
