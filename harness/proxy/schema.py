"""The wire vocabulary of Toxiproxy's HTTP API and the validation of request bodies.

Pure functions and values only: nothing here touches a socket, so the rules can be unit
tested and shared by the server (:mod:`harness.proxy.api`) and the client
(:mod:`harness.faults.network`). Error messages follow Toxiproxy v2.12.0 (api.go).
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from harness.errors import ProxyError

__all__ = [
    "ATTRIBUTE_NAMES",
    "BAD_REQUEST_BODY",
    "INVALID_STREAM",
    "INVALID_TOXIC_TYPE",
    "MISSING_FIELD",
    "PROXY_EXISTS",
    "PROXY_NOT_FOUND",
    "TOXIC_EXISTS",
    "TOXIC_NOT_FOUND",
    "ApiError",
    "ProxyInput",
    "Stream",
    "ToxicConfig",
    "ToxicType",
    "parse_body",
    "parse_populate",
    "parse_proxy_create",
    "parse_proxy_update",
    "parse_toxic_create",
    "parse_toxic_update",
]

DEFAULT_LISTEN = "127.0.0.1:0"
INT64_MAX = 2**63 - 1

BAD_REQUEST_BODY = "bad request body"
MISSING_FIELD = "missing required field"
PROXY_NOT_FOUND = "proxy not found"
PROXY_EXISTS = "proxy already exists"
INVALID_STREAM = "stream was invalid, can be either upstream or downstream"
INVALID_TOXIC_TYPE = "invalid toxic type"
TOXIC_EXISTS = "toxic already exists"
TOXIC_NOT_FOUND = "toxic not found"


class Stream(enum.Enum):
    """Direction a toxic applies to: upstream is client to server, downstream the reverse."""

    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"


class ToxicType(enum.Enum):
    """The toxic types Toxiproxy ships (and nothing else)."""

    LATENCY = "latency"
    BANDWIDTH = "bandwidth"
    SLOW_CLOSE = "slow_close"
    TIMEOUT = "timeout"
    RESET_PEER = "reset_peer"
    SLICER = "slicer"
    LIMIT_DATA = "limit_data"
    NOOP = "noop"


#: Attribute names per toxic type, in the order Toxiproxy renders them. All are integers.
ATTRIBUTE_NAMES: Mapping[ToxicType, tuple[str, ...]] = MappingProxyType(
    {
        ToxicType.LATENCY: ("latency", "jitter"),
        ToxicType.BANDWIDTH: ("rate",),
        ToxicType.SLOW_CLOSE: ("delay",),
        ToxicType.TIMEOUT: ("timeout",),
        ToxicType.RESET_PEER: ("timeout",),
        ToxicType.SLICER: ("average_size", "size_variation", "delay"),
        ToxicType.LIMIT_DATA: ("bytes",),
        ToxicType.NOOP: (),
    }
)


class ApiError(ProxyError):
    """A request the embedded proxy server refuses; rendered as Toxiproxy's error body.

    ``status`` is the HTTP status and ``message`` the text put in ``{"error": ...}``.
    """

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"HTTP {status}: {message}")

    def body(self) -> dict[str, object]:
        """The JSON error body, as Toxiproxy writes it."""
        return {"error": self.message, "status": self.status}


def _bad_body(detail: str) -> ApiError:
    return ApiError(400, f"{BAD_REQUEST_BODY}: {detail}")


@dataclass(frozen=True, slots=True)
class ToxicConfig:
    """One toxic as configured through the API (what ``GET .../toxics/{name}`` shows)."""

    name: str
    type: ToxicType
    stream: Stream
    toxicity: float
    attributes: tuple[tuple[str, int], ...]

    def attr(self, key: str) -> int:
        """The value of one attribute (0 when the type has no such attribute)."""
        for name, value in self.attributes:
            if name == key:
                return value
        return 0

    def to_json(self) -> dict[str, object]:
        """The toxic's JSON object, keys in Toxiproxy's order."""
        toxicity: float | int = self.toxicity
        if math.isfinite(self.toxicity) and self.toxicity == int(self.toxicity):
            toxicity = int(self.toxicity)
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type.value,
            "stream": self.stream.value,
            "toxicity": toxicity,
        }


@dataclass(frozen=True, slots=True)
class ProxyInput:
    """A proxy as described in a create, update or populate request."""

    name: str
    listen: str
    upstream: str
    enabled: bool


def parse_body(raw: bytes) -> object:
    """Decode the first JSON value of a request body, as Go's ``json.Decoder`` does.

    Trailing data after the first value is ignored (Toxiproxy ignores it too); NaN and
    Infinity literals, which Go rejects, are rejected.
    """
    text = raw.decode("utf-8", errors="replace")
    start = len(text) - len(text.lstrip(" \t\r\n"))
    if start == len(text):
        raise _bad_body("EOF")

    def _reject_constant(name: str) -> object:
        raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")

    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    try:
        value, _end = decoder.raw_decode(text, start)
    except (ValueError, RecursionError) as exc:
        raise _bad_body(str(exc) or type(exc).__name__) from exc
    return value


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _wrong_type(field: str, value: object, expected: str) -> ApiError:
    return _bad_body(f"cannot unmarshal {_type_name(value)} into field {field} of type {expected}")


def _object(body: object, what: str) -> Mapping[str, object]:
    if not isinstance(body, dict):
        raise _bad_body(f"cannot unmarshal {_type_name(body)} into {what} (expected an object)")
    return body


def _opt_str(obj: Mapping[str, object], key: str, default: str) -> str:
    value = obj.get(key)
    if value is None:  # absent or JSON null: Go keeps the field as it was
        return default
    if not isinstance(value, str):
        raise _wrong_type(key, value, "string")
    return value


def _opt_bool(obj: Mapping[str, object], key: str, default: bool) -> bool:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _wrong_type(key, value, "bool")
    return value


def _opt_float(obj: Mapping[str, object], key: str, default: float) -> float:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong_type(key, value, "float32")
    number = float(value)
    if not math.isfinite(number) or abs(number) > 3.4e38:
        raise _bad_body(f"number {value} overflows float32 in field {key}")
    return number


def _proxy_fields(obj: Mapping[str, object], base: ProxyInput) -> ProxyInput:
    return ProxyInput(
        name=_opt_str(obj, "name", base.name),
        listen=_opt_str(obj, "listen", base.listen) or DEFAULT_LISTEN,
        upstream=_opt_str(obj, "upstream", base.upstream),
        enabled=_opt_bool(obj, "enabled", base.enabled),
    )


def _require(proxy: ProxyInput, suffix: str = "") -> None:
    if not proxy.name:
        raise ApiError(400, f"{MISSING_FIELD}: name{suffix}")
    if not proxy.upstream:
        raise ApiError(400, f"{MISSING_FIELD}: upstream{suffix}")


_EMPTY = ProxyInput(name="", listen=DEFAULT_LISTEN, upstream="", enabled=True)


def parse_proxy_create(body: object) -> ProxyInput:
    """``POST /proxies``: name and upstream required; listen defaults to 127.0.0.1:0.

    Toxiproxy's default listen is ``:0`` (every interface); the embedded server never binds
    an address it was not given, so its default is the loopback address.
    """
    proxy = _proxy_fields(_object(body, "proxy"), _EMPTY)
    _require(proxy)
    return proxy


def parse_proxy_update(body: object, current: ProxyInput) -> ProxyInput:
    """``POST|PATCH /proxies/{name}``: omitted fields keep their values; the name never changes."""
    updated = _proxy_fields(_object(body, "proxy"), current)
    return ProxyInput(current.name, updated.listen, updated.upstream, updated.enabled)


def parse_populate(body: object) -> list[ProxyInput]:
    """``POST /populate``: a list of proxies, every entry validated before any is created."""
    if not isinstance(body, list):
        raise _bad_body(f"cannot unmarshal {_type_name(body)} into a list of proxies")
    proxies = [_proxy_fields(_object(item, "proxy"), _EMPTY) for item in body]
    for index, proxy in enumerate(proxies, start=1):
        _require(proxy, f" at proxy {index}")
    return proxies


def _check_attribute(toxic_type: ToxicType, key: str, value: object) -> int:
    out_of_range = isinstance(value, int) and not -INT64_MAX - 1 <= value <= INT64_MAX
    if isinstance(value, float) or (out_of_range and not isinstance(value, bool)):
        raise _bad_body(f"cannot unmarshal number {value} into attribute {key} of type int64")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(f"attributes.{key}", value, "int64")
    # The checks below guard against values that hang or crash Toxiproxy itself.
    if value < 0:
        raise _bad_body(f"attribute {key} of a {toxic_type.value} toxic must be >= 0, got {value}")
    return value


def _attributes(
    toxic_type: ToxicType, raw: object, base: Mapping[str, int]
) -> tuple[tuple[str, int], ...]:
    values = dict(base)
    if raw is not None:
        if not isinstance(raw, dict):
            raise _wrong_type("attributes", raw, "object")
        for key in ATTRIBUTE_NAMES[toxic_type]:
            if key in raw and raw[key] is not None:
                values[key] = _check_attribute(toxic_type, key, raw[key])
    attributes = tuple((key, values.get(key, 0)) for key in ATTRIBUTE_NAMES[toxic_type])
    if toxic_type is ToxicType.SLICER and dict(attributes)["average_size"] <= 0:
        raise _bad_body(
            "attribute average_size of a slicer toxic must be > 0 "
            "(0 makes Toxiproxy split chunks forever)"
        )
    return attributes


def parse_toxic_create(body: object, exists: frozenset[str] | set[str]) -> ToxicConfig:
    """``POST /proxies/{p}/toxics``: checks in Toxiproxy's order (body, stream, type, name)."""
    obj = _object(body, "toxic")
    stream_text = _opt_str(obj, "stream", "downstream")
    type_text = _opt_str(obj, "type", "")
    name = _opt_str(obj, "name", "")
    toxicity = _opt_float(obj, "toxicity", 1.0)
    try:
        stream = Stream(stream_text.lower())
    except ValueError:
        raise ApiError(400, INVALID_STREAM) from None
    if not name:
        name = f"{type_text}_{stream_text}"
    try:
        toxic_type = ToxicType(type_text)
    except ValueError:
        raise ApiError(400, INVALID_TOXIC_TYPE) from None
    if name in exists:
        raise ApiError(409, TOXIC_EXISTS)
    attributes = _attributes(toxic_type, obj.get("attributes"), {})
    return ToxicConfig(name, toxic_type, stream, toxicity, attributes)


def parse_toxic_update(body: object, current: ToxicConfig) -> ToxicConfig:
    """``POST|PATCH .../toxics/{t}``: partial attributes and toxicity; the rest never changes."""
    obj = _object(body, "toxic")
    attributes = _attributes(current.type, obj.get("attributes"), dict(current.attributes))
    toxicity = _opt_float(obj, "toxicity", current.toxicity)
    return ToxicConfig(current.name, current.type, current.stream, toxicity, attributes)
