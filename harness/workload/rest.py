"""A workload without a Model class: a REST app's resources, declared; the harness derives
the clients (a :class:`~harness.workload.model.Model`) and the invariants that judge them.

A resource says how to create one (``POST /books`` with generated fields), how to read it
back (``GET /books/{id}``), where it lives (``table``), which fields reference another
resource (:func:`ref`), and the transitions that change it later (``POST
/orders/{id}/pay``, allowed from some states)::

    shop = RestWorkload(
        (
            Resource("author", "POST /authors", "GET /authors/{id}", table="authors",
                     fields={"name": fake("name")}),
            Resource("book", "POST /books", "GET /books/{id}", table="books",
                     fields={"title": fake("sentence"), "author_id": ref("author"),
                             "price": decimal("1.00", "90.00")},
                     types={"created_at": "timestamp"}),
        )
    )
    Target(..., workload=shop.spec(), invariants=shop.invariants())

Operations are ``create_<resource>``, ``read_<resource>`` and ``<transition>_<resource>``.
An answer 2xx is ``ok`` and its top-level scalar fields are what the client was told; a 4xx
is ``fail`` (rejected); a 5xx or no answer to a write is ``info`` (it may have been applied),
to a read ``fail``.

The invariants (each only where the resource declares what it needs):

- ``durable_acknowledged_writes``: every acknowledged create is a row of ``table`` whose
  ``id_column`` is the id the client was told;
- ``row_counts``: each table's rows grew by the acknowledged creates, plus at most the
  unknown ones (a :class:`~harness.invariants.Conservation` of ``count(*)``);
- ``referential_integrity``: every reference column names an existing row of the resource
  it references;
- ``readable_by_running_release``: every acknowledged entity reads back through each
  running instance with what the client was last told (transitions included; one of unknown
  outcome makes the entity unjudged), decimals and declared ``types`` compared by meaning.
"""

from __future__ import annotations

import functools
import string
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from harness.errors import SpecError
from harness.workload.history import ErrorKind, JsonValue, OpType, Scalar
from harness.workload.model import (
    Answer,
    Call,
    Completion,
    Draw,
    HttpMethod,
    WorkloadSpec,
    fill_path,
)
from harness.workload.phases import Phases

if TYPE_CHECKING:
    from harness.invariants.base import Invariant

__all__ = [
    "FieldGen",
    "Resource",
    "RestModel",
    "RestWorkload",
    "Transition",
    "boolean",
    "choice",
    "const",
    "decimal",
    "fake",
    "integer",
    "ref",
]


@dataclass(frozen=True, slots=True)
class FieldGen:
    """How one field of a request body is drawn: ``kind`` with its ``args``."""

    kind: str
    args: tuple[Any, ...] = ()

    def draw(self, draw: Draw, known: Callable[[str], list[Scalar]]) -> Scalar | _Missing:
        rng = draw.rng
        if self.kind == "fake":
            value: object = getattr(draw.fake, self.args[0])()
            return value if isinstance(value, str | int | float | bool) else str(value)
        if self.kind == "integer":
            return rng.randint(int(self.args[0]), int(self.args[1]))
        if self.kind == "decimal":
            low, high, places = self.args
            scale = 10**places
            units = rng.randint(int(low * scale), int(high * scale))
            return str(Decimal(units).scaleb(-places))
        if self.kind == "choice":
            picked: Scalar = rng.choice(self.args)
            return picked
        if self.kind == "boolean":
            return rng.random() < 0.5
        if self.kind == "const":
            constant: Scalar = self.args[0]
            return constant
        ids = known(self.args[0])  # ref
        return rng.choice(ids) if ids else MISSING


class _Missing:
    """A reference to a resource none of which exists yet: the call cannot be made."""


MISSING = _Missing()


@functools.cache
def _providers() -> Any:
    """One Faker to check provider names against (made once: it takes a few ms)."""
    from faker import Faker

    return Faker()


def fake(provider: str) -> FieldGen:
    """A value from Faker's ``provider`` (``name``, ``sentence``, ``email``, ...), seeded."""
    if not isinstance(provider, str) or not callable(getattr(_providers(), provider, None)):
        raise SpecError(f"fake({provider!r})", expected="a Faker provider: name, email, word")
    return FieldGen("fake", (provider,))


def integer(low: int, high: int) -> FieldGen:
    """An integer in ``low..high``."""
    if isinstance(low, bool) or not isinstance(low, int) or not isinstance(high, int):
        raise SpecError(f"integer({low!r}, {high!r})", expected="two integers")
    if high < low:
        raise SpecError(f"integer({low}, {high})", expected="low <= high")
    return FieldGen("integer", (low, high))


def decimal(low: str | int, high: str | int, places: int = 2) -> FieldGen:
    """A decimal in ``low..high`` with ``places`` digits after the point, sent as a string
    (``"12.50"``) and compared by meaning when read back."""
    try:
        lo, hi = Decimal(str(low)), Decimal(str(high))
    except ArithmeticError:
        raise SpecError(f"decimal({low!r}, {high!r})", expected="two numbers") from None
    if hi < lo or not 0 <= places <= 6:
        raise SpecError(f"decimal({low}, {high}, {places})", expected="low <= high, 0..6 places")
    return FieldGen("decimal", (lo, hi, places))


def choice(options: Sequence[Scalar]) -> FieldGen:
    """One of ``options``."""
    if isinstance(options, str) or not options:
        raise SpecError(f"choice({options!r})", expected="a non-empty list of values")
    return FieldGen("choice", tuple(options))


def boolean() -> FieldGen:
    """True or false."""
    return FieldGen("boolean")


def const(value: Scalar) -> FieldGen:
    """Always ``value``."""
    return FieldGen("const", (value,))


def ref(resource: str) -> FieldGen:
    """The id of an acknowledged ``resource`` (one must exist before the call is made);
    also a reference the data must keep (``referential_integrity``)."""
    if not isinstance(resource, str) or not resource:
        raise SpecError(f"ref({resource!r})", expected="a resource name")
    return FieldGen("ref", (resource,))


def _route(text: str, what: str, methods: Sequence[str]) -> tuple[HttpMethod, str]:
    parts = text.split() if isinstance(text, str) else []
    if parts and parts[0].upper() == "DELETE" and "DELETE" not in methods:
        raise SpecError(
            f"{what} {text!r}: deletes are not modelled by a RestWorkload (the durability,"
            " row-count and read-back checks would count a deleted entity as lost)",
            expected=f"'<{'|'.join(methods)}> /path', or a hand-written Model for deletes",
        )
    if len(parts) != 2 or parts[0].upper() not in methods or not parts[1].startswith("/"):
        raise SpecError(f"{what} {text!r}", expected=f"'<{'|'.join(methods)}> /path'")
    return HttpMethod(parts[0].upper()), parts[1]


@dataclass(frozen=True, slots=True)
class Transition:
    """A call that changes an entity: ``call`` (``"POST /orders/{id}/pay"``, the path
    filled from the entity's told values), sent only while its state (the resource's
    ``state`` field) is one of ``from_states`` (empty: any), with a ``body`` drawn like a
    create's fields."""

    name: str
    call: str
    from_states: tuple[Scalar, ...] = ()
    body: Mapping[str, FieldGen] = field(default_factory=dict)
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise SpecError(f"transition {self.name!r}", expected="a name like pay")
        _route(self.call, f"transition {self.name}", ("POST", "PUT", "PATCH"))
        if isinstance(self.from_states, str):
            raise SpecError(
                f"transition {self.name}: from_states {self.from_states!r}",
                expected=f"a list of states, e.g. ({self.from_states!r},)",
            )
        object.__setattr__(self, "from_states", tuple(self.from_states))
        object.__setattr__(self, "body", dict(self.body))
        if self.weight < 0:
            raise SpecError(f"transition {self.name}: weight {self.weight}", expected=">= 0")


@dataclass(frozen=True, slots=True)
class Resource:
    """One kind of entity of a REST app (see the module doc).

    ``create``/``read``: ``"POST /books"`` / ``"GET /books/{id}"``; ``fields``: the create's
    body, drawn; ``id``: the answer's field naming the entity; ``table`` and ``id_column``:
    where it is stored (None: no data invariants); ``columns``: a field's column when its
    name differs (for references); ``compare``: the fields read back (default: the body's
    fields, the id, the state and the ``types``' fields); ``types``: field -> ``timestamp``,
    ``decimal`` or ``text``; ``state``: the field that holds its state; ``transitions``;
    ``weight``/``read_weight``: how often it is created / read.
    """

    name: str
    create: str
    read: str | None = None
    fields: Mapping[str, FieldGen] = field(default_factory=dict)
    id: str = "id"
    table: str | None = None
    id_column: str = "id"
    columns: Mapping[str, str] = field(default_factory=dict)
    compare: tuple[str, ...] | None = None
    types: Mapping[str, str] = field(default_factory=dict)
    state: str | None = None
    transitions: tuple[Transition, ...] = ()
    weight: float = 2.0
    read_weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise SpecError(f"resource {self.name!r}", expected="a name like book")
        _route(self.create, f"resource {self.name}: create", ("POST", "PUT"))
        if self.read is not None:
            _route(self.read, f"resource {self.name}: read", ("GET",))
        for key, gen in self.fields.items():
            if not isinstance(gen, FieldGen):
                raise SpecError(
                    f"resource {self.name}: field {key!r} is {gen!r}",
                    expected="fake(), integer(), decimal(), choice(), boolean(), const(), ref()",
                )
        from harness.invariants.builtin import VALUE_TYPES

        for key, kind in self.types.items():
            if kind not in VALUE_TYPES:
                raise SpecError(
                    f"resource {self.name}: type of {key!r} is {kind!r}", choices=VALUE_TYPES
                )
        object.__setattr__(self, "fields", dict(self.fields))
        object.__setattr__(self, "columns", dict(self.columns))
        object.__setattr__(self, "types", dict(self.types))
        object.__setattr__(self, "transitions", tuple(self.transitions))
        names = [t.name for t in self.transitions]
        if len(set(names)) != len(names):
            raise SpecError(f"resource {self.name}: transition names repeat: {names}")
        if any(t.from_states for t in self.transitions) and self.state is None:
            raise SpecError(
                f"resource {self.name}: transitions name from_states but no state field",
                expected="state: the field holding the state (e.g. status)",
            )
        if self.weight < 0 or self.read_weight < 0:
            raise SpecError(f"resource {self.name}: weights", expected=">= 0")
        # A transition's path is filled from what the client knows of the entity: its id,
        # its read path's fields, what it sent when it created it.
        known = {self.id, *self.fields, *self.key_fields, *([self.state] if self.state else [])}
        for t in self.transitions:
            _, template = _route(t.call, f"transition {t.name}", ("POST", "PUT", "PATCH"))
            unknown = [
                n for _, n, _, _ in string.Formatter().parse(template) if n and n not in known
            ]
            if unknown:
                raise SpecError(
                    f"resource {self.name}: transition {t.name} path {template!r} names"
                    f" {unknown}, which the client does not know of the entity",
                    choices=sorted(known),
                )

    @property
    def create_op(self) -> str:
        return f"create_{self.name}"

    @property
    def read_op(self) -> str:
        return f"read_{self.name}"

    def transition_op(self, transition: Transition) -> str:
        return f"{transition.name}_{self.name}"

    @property
    def key_fields(self) -> tuple[str, ...]:
        """The fields its read path is filled from, besides the id."""
        if self.read is None:
            return ()
        _, template = _route(self.read, "read", ("GET",))
        names = [n for _, n, _, _ in string.Formatter().parse(template) if n]
        return tuple(n for n in dict.fromkeys(names) if n != self.id)

    @property
    def refs(self) -> dict[str, str]:
        """Body field -> the resource it references."""
        return {k: g.args[0] for k, g in self.fields.items() if g.kind == "ref"}

    @property
    def value_types(self) -> dict[str, str]:
        """How each compared field is compared: declared, or decimal for decimal fields."""
        derived = {k: "decimal" for k, g in self.fields.items() if g.kind == "decimal"}
        return {**derived, **self.types}

    @property
    def compared(self) -> tuple[str, ...]:
        if self.compare is not None:
            return tuple(self.compare)
        names = [self.id, *self.fields, *([self.state] if self.state else []), *self.types]
        return tuple(dict.fromkeys(names))


@dataclass(slots=True)
class _Entity:
    told: dict[str, Scalar]
    #: A transition of unknown outcome was sent: its state is not known.
    unsure: bool = False


def _told(body: Mapping[str, JsonValue]) -> dict[str, Scalar]:
    return {k: v for k, v in body.items() if isinstance(v, str | int | float | bool)}


@dataclass(frozen=True, slots=True)
class _Op:
    """One operation of the derived model, resolved once: its resource, kind (create, read,
    transition), route, and the fields that name the entity (its id and its read path's)."""

    resource: Resource
    kind: str
    transition: Transition | None
    method: HttpMethod
    template: str
    keys: tuple[str, ...]


class RestModel:
    """The clients :class:`RestWorkload` derives (one per run, thread-safe)."""

    def __init__(self, resources: Sequence[Resource]) -> None:
        self._resources = {r.name: r for r in resources}
        self._lock = threading.Lock()
        self._entities: dict[str, list[_Entity]] = {r.name: [] for r in resources}
        #: resource -> id -> entity (the updates find theirs without a scan).
        self._by_id: dict[str, dict[Scalar, _Entity]] = {r.name: {} for r in resources}
        self._ops: dict[str, _Op] = {}
        self._mix: dict[str, float] = {}
        for r in resources:
            keys = (r.id, *r.key_fields)
            self._ops[r.create_op] = _Op(
                r, "create", None, *_route(r.create, "create", ("POST", "PUT")), keys
            )
            self._mix[r.create_op] = r.weight
            if r.read is not None:
                self._ops[r.read_op] = _Op(r, "read", None, *_route(r.read, "read", ("GET",)), keys)
                self._mix[r.read_op] = r.read_weight
            for t in r.transitions:
                route = _route(t.call, "transition", ("POST", "PUT", "PATCH"))
                self._ops[r.transition_op(t)] = _Op(r, "transition", t, *route, keys)
                self._mix[r.transition_op(t)] = t.weight

    def mix(self) -> Mapping[str, float]:
        return self._mix

    def _ids(self, resource: str) -> list[Scalar]:
        return list(self._by_id[resource])

    def _body(self, gens: Mapping[str, FieldGen], draw: Draw) -> dict[str, Scalar] | None:
        body: dict[str, Scalar] = {}
        with self._lock:
            for key, gen in gens.items():
                value = gen.draw(draw, self._ids)
                if isinstance(value, _Missing):
                    return None
                body[key] = value
        return body

    def call(self, f: str, draw: Draw) -> Call | None:
        op = self._ops[f]
        resource, transition = op.resource, op.transition
        if op.kind == "create":
            body = self._body(resource.fields, draw)
            if body is None:
                return None
            return Call(f, op.method, fill_path(op.template, body), body, body)
        with self._lock:
            entities = [
                e
                for e in self._entities[resource.name]
                if resource.id in e.told
                and (
                    transition is None
                    or not transition.from_states
                    or (not e.unsure and e.told.get(resource.state or "") in transition.from_states)
                )
            ]
            if not entities:
                self._check_state(resource, transition)
                return None
            told = dict(draw.rng.choice(entities).told)
        # What names the entity: its id, and whatever else its read path is filled from.
        key = {name: told[name] for name in op.keys if name in told}
        if transition is None:  # a read
            return Call(f, HttpMethod.GET, fill_path(op.template, told), key)
        body = self._body(transition.body, draw)
        if body is None:
            return None
        return Call(f, op.method, fill_path(op.template, told), {**key, **body}, body or None)

    def _check_state(self, resource: Resource, transition: Transition | None) -> None:
        """A transition that waits for a state no answer has ever carried would never be
        sent, silently: once entities exist and none was told that field, say so."""
        if transition is None or not transition.from_states or resource.state is None:
            return
        told = self._entities[resource.name]
        if len(told) >= 5 and not any(resource.state in e.told for e in told):
            seen = sorted({k for e in told for k in e.told})
            raise SpecError(
                f"resource {resource.name}: no answer has its state field"
                f" {resource.state!r}, so transition {transition.name} is never sent",
                expected="state= the field the app's answers carry",
                choices=seen,
            )

    def interpret(self, call: Call, answer: Answer) -> Completion:
        if 200 <= answer.status < 300:
            told = _told(answer.body)
            op = self._ops[call.f]
            if op.kind != "create":
                # The entity is the one the client named: an answer's own "id" (an event's,
                # a payment's) must not re-key it.
                for name in op.keys:
                    told.pop(name, None)
            return Completion(OpType.OK, told)
        message = answer.body.get("error")
        error = (
            f"HTTP {answer.status}: {message if isinstance(message, str) else answer.text[:200]}"
        )
        if 400 <= answer.status < 500:
            return Completion(OpType.FAIL, {}, error, ErrorKind.REJECTED)
        if call.method is HttpMethod.GET:
            return Completion(OpType.FAIL, {}, error, ErrorKind.UNAVAILABLE)
        return Completion(OpType.INFO, {}, error, ErrorKind.INDETERMINATE)

    def completed(self, call: Call, completion: Completion, draw: Draw) -> None:
        op = self._ops[call.f]
        resource = op.resource
        with self._lock:
            if op.kind == "create":
                key = completion.value.get(resource.id)
                if completion.type is OpType.OK and key is not None:
                    entity = _Entity(dict(completion.value))
                    self._entities[resource.name].append(entity)
                    self._by_id[resource.name][key] = entity
                return
            known = self._by_id[resource.name].get(call.value.get(resource.id))
            if known is None:
                return
            if completion.type is OpType.OK:
                known.told.update(completion.value)  # its keys were left out by interpret
                known.unsure = False  # what it is now, as the app says
            elif completion.type is OpType.INFO and op.kind == "transition":
                known.unsure = True


@dataclass(frozen=True, slots=True)
class RestWorkload:
    """A REST app's ``resources``, and the workload knobs (see :class:`WorkloadSpec`);
    ``sample``: entities read back per resource; ``normalise``: a ``(field, value) ->
    value`` hook applied before read-backs compare."""

    resources: tuple[Resource, ...]
    clients: int = 4
    rate: float = 30.0
    timeout: float = 2.0
    phases: Phases = field(default_factory=Phases)
    sample: int = 60
    normalise: Callable[[str, JsonValue], JsonValue] | None = None

    def __post_init__(self) -> None:
        resources = tuple(self.resources)
        if not resources or not all(isinstance(r, Resource) for r in resources):
            raise SpecError("rest workload: resources", expected="one or more Resource")
        names = [r.name for r in resources]
        if len(set(names)) != len(names):
            raise SpecError(f"rest workload: resource names repeat: {names}")
        for r in resources:
            for key, other in r.refs.items():
                if other not in names:
                    raise SpecError(
                        f"resource {r.name}: field {key!r} references {other!r}", choices=names
                    )
        object.__setattr__(self, "resources", resources)
        self.spec()  # the knobs are checked where they are used

    def model(self) -> RestModel:
        return RestModel(self.resources)

    def spec(self) -> WorkloadSpec:
        """The :class:`WorkloadSpec` for a Target."""
        return WorkloadSpec(
            model=self.model,
            clients=self.clients,
            rate=self.rate,
            timeout=self.timeout,
            phases=self.phases,
        )

    def invariants(self) -> tuple[Invariant, ...]:
        """The invariants the resources declare enough for (see the module doc)."""
        from harness.invariants.builtin import (
            DurableAcknowledgedWrites,
            ReadableByRunningRelease,
            ReadBack,
            ReferentialIntegrity,
            Relation,
            Write,
            row_counts,
        )

        by_name = {r.name: r for r in self.resources}
        stored = [r for r in self.resources if r.table]
        out: list[Invariant] = []
        if stored:
            out.append(
                DurableAcknowledgedWrites(
                    tuple(Write(r.create_op, r.table or "", r.id_column, r.id) for r in stored)
                )
            )
            creates: dict[str, tuple[str, ...]] = {}
            for r in stored:  # two resources may live in one table
                creates[r.table or ""] = (*creates.get(r.table or "", ()), r.create_op)
            out.append(row_counts(creates))
        relations = tuple(
            Relation(
                r.table or "",
                r.columns.get(key, key),
                by_name[other].table or "",
                by_name[other].id_column,
            )
            for r in stored
            for key, other in r.refs.items()
            if by_name[other].table
        )
        if relations:
            out.append(ReferentialIntegrity(relations))
        reads = tuple(
            ReadBack(
                r.create_op,
                _route(r.read, "read", ("GET",))[1],
                r.compared,
                updates=tuple(r.transition_op(t) for t in r.transitions),
                types=r.value_types,
                normalise=self.normalise,
            )
            for r in self.resources
            if r.read is not None
        )
        if reads:
            out.append(ReadableByRunningRelease(reads, sample=self.sample))
        return tuple(out)
