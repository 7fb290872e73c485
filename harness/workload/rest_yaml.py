"""A :class:`~harness.workload.rest.RestWorkload` from a YAML file, every error with the
file, the line, what was expected and the choices::

    clients: 4              # optional knobs: clients, rate, timeout, sample
    resources:
      author:
        create: POST /authors
        read: GET /authors/{id}
        table: authors
        fields:
          name: {fake: name}
        types: {created_at: timestamp}
      order:
        create: POST /orders
        read: GET /orders/{id}
        table: orders
        fields:
          book_id: {ref: book}
          quantity: {integer: [1, 3]}
        state: status
        transitions:
          pay: {call: POST /orders/{id}/pay, from: [pending]}

A field is ``{fake: provider}``, ``{integer: [lo, hi]}``, ``{decimal: [lo, hi]}`` (and
``places: n``), ``{choice: [a, b]}``, ``{boolean: true}``, ``{ref: resource}``, or a plain
value (sent as it is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from harness.workload.history import Scalar
from harness.workload.rest import (
    FieldGen,
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

__all__ = ["load_rest_workload"]

_TOP = ("resources", "clients", "rate", "timeout", "sample")
_RESOURCE = (
    "create",
    "read",
    "fields",
    "id",
    "table",
    "id_column",
    "columns",
    "compare",
    "types",
    "state",
    "transitions",
    "weight",
    "read_weight",
)
_TRANSITION = ("call", "from", "body", "weight")
_FIELD_KINDS = ("fake", "integer", "decimal", "choice", "boolean", "ref")


def _scalar(node: ScalarNode) -> Scalar:
    value: Scalar = yaml.safe_load(node.value) if node.style is None else node.value
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(node.value)


def load_rest_workload(path: str | Path) -> RestWorkload:
    """Read ``path`` (see the module doc)."""
    from harness.scenario import _catch, _Reader, compose_file

    source = Path(path)
    reader = _Reader(source)
    root = compose_file(
        source,
        "workload",
        'a YAML mapping (quote a value with braces inside {...}: {call: "POST /orders/{id}/pay"})',
        "resources: ...",
    )
    top = reader.mapping(root, "workload file", _TOP, ("resources",))

    def number(node: Node, what: str) -> float:
        text = reader.string(node, what)
        try:
            return float(text.removesuffix("s")) if what == "timeout" else float(text)
        except ValueError:
            raise reader.error(node, f"{what} {text!r}", expected="a number") from None

    refs: list[tuple[str, Node]] = []

    def gen(node: Node, what: str) -> FieldGen:
        if isinstance(node, ScalarNode):
            return const(_scalar(node))
        entry = reader.mapping(node, what, (*_FIELD_KINDS, "places"))
        kinds = [k for k in entry if k != "places"]
        if len(kinds) != 1:
            raise reader.error(node, f"{what}: one kind of value", choices=_FIELD_KINDS)
        kind = kinds[0]
        value = entry[kind][1]
        if kind in ("integer", "decimal"):
            bounds = reader.seq(value, f"{what}.{kind}")
            if len(bounds) != 2:
                raise reader.error(value, f"{what}.{kind}", expected="[low, high]")
            lo, hi = (reader.string(b, f"{what}.{kind}") for b in bounds)
            if kind == "integer":
                try:
                    low, high = int(lo), int(hi)
                except ValueError:
                    raise reader.error(
                        value, f"{what}.integer [{lo}, {hi}]", expected="integers"
                    ) from None
                return _catch(reader, value, what, lambda: integer(low, high))
            places = (
                reader.integer(entry["places"][1], f"{what}.places", 0) if "places" in entry else 2
            )
            return _catch(reader, value, what, lambda: decimal(lo, hi, places))
        if "places" in entry:
            raise reader.error(entry["places"][0], f"{what}: places is for decimal fields")
        if kind == "choice":
            options = [
                _scalar(n) if isinstance(n, ScalarNode) else None
                for n in reader.seq(value, f"{what}.choice")
            ]
            return _catch(reader, value, what, lambda: choice(options))
        if kind == "boolean":
            return boolean()
        text = reader.string(value, f"{what}.{kind}")
        if kind == "ref":
            refs.append((text, value))
        return _catch(reader, value, what, lambda: fake(text) if kind == "fake" else ref(text))

    def gens(node: Node, what: str) -> dict[str, FieldGen]:
        if not isinstance(node, MappingNode):
            raise reader.error(node, f"{what} is not a mapping", expected="field: value")
        return {reader.string(k, f"{what} key"): gen(v, f"{what}.{k.value}") for k, v in node.value}

    def names(node: Node, what: str) -> dict[str, str]:
        if not isinstance(node, MappingNode):
            raise reader.error(node, f"{what} is not a mapping", expected="field: name")
        return {reader.string(k, what): reader.string(v, what) for k, v in node.value}

    def transition(name: str, node: Node, where: str) -> Transition:
        if isinstance(node, ScalarNode):
            return _catch(reader, node, where, lambda: Transition(name, reader.string(node, where)))
        entry = reader.mapping(node, where, _TRANSITION, ("call",))
        settings: dict[str, Any] = {"call": reader.string(entry["call"][1], f"{where}.call")}
        if "from" in entry:
            from_node = entry["from"][1]
            nodes = reader.seq(from_node, f"{where}.from", allow_scalar=True)
            settings["from_states"] = tuple(
                _scalar(n) if isinstance(n, ScalarNode) else reader.string(n, f"{where}.from")
                for n in nodes
            )
        if "body" in entry:
            settings["body"] = gens(entry["body"][1], f"{where}.body")
        if "weight" in entry:
            settings["weight"] = number(entry["weight"][1], f"{where}.weight")
        return _catch(reader, node, where, lambda: Transition(name, **settings))

    def resource(name: str, node: Node) -> Resource:
        where = f"resources.{name}"
        entry = reader.mapping(node, where, _RESOURCE, ("create",))
        settings: dict[str, Any] = {}
        for key in ("create", "read", "id", "table", "id_column", "state"):
            if key in entry:
                settings[key] = reader.string(entry[key][1], f"{where}.{key}")
        if "fields" in entry:
            settings["fields"] = gens(entry["fields"][1], f"{where}.fields")
        for key in ("columns", "types"):
            if key in entry:
                settings[key] = names(entry[key][1], f"{where}.{key}")
        if "compare" in entry:
            settings["compare"] = tuple(
                s for s, _ in reader.strings(entry["compare"][1], f"{where}.compare")
            )
        for key in ("weight", "read_weight"):
            if key in entry:
                settings[key] = number(entry[key][1], f"{where}.{key}")
        if "transitions" in entry:
            node_t = entry["transitions"][1]
            if not isinstance(node_t, MappingNode):
                raise reader.error(node_t, f"{where}.transitions", expected="name: call")
            settings["transitions"] = tuple(
                transition(
                    reader.string(k, f"{where}.transitions"), v, f"{where}.transitions.{k.value}"
                )
                for k, v in node_t.value
            )
        return _catch(reader, node, where, lambda: Resource(name, **settings))

    resources_node = top["resources"][1]
    if not isinstance(resources_node, MappingNode) or not resources_node.value:
        raise reader.error(resources_node, "resources", expected="name: {create: ..., ...}")
    resources = tuple(
        resource(reader.string(k, "resource name"), v) for k, v in resources_node.value
    )
    known = [r.name for r in resources]
    for name, node in refs:
        if name not in known:
            raise reader.error(node, f"ref: no resource {name!r}", choices=known)
    knobs: dict[str, Any] = {}
    for key in ("clients", "sample"):
        if key in top:
            knobs[key] = reader.integer(top[key][1], key, 1)
    for key in ("rate", "timeout"):
        if key in top:
            knobs[key] = number(top[key][1], key)
    return _catch(reader, resources_node, "workload", lambda: RestWorkload(resources, **knobs))
