"""Request validation of the embedded proxy's API (pure functions, no sockets)."""

from __future__ import annotations

import pytest

from harness.proxy.proxy import AddressError, format_address, split_address
from harness.proxy.schema import (
    ApiError,
    ProxyInput,
    Stream,
    ToxicConfig,
    ToxicType,
    parse_body,
    parse_populate,
    parse_proxy_create,
    parse_proxy_update,
    parse_toxic_create,
    parse_toxic_update,
)


def _error(exc: pytest.ExceptionInfo[ApiError]) -> tuple[int, str]:
    return exc.value.status, exc.value.message


def test_parse_body_first_value_only() -> None:
    assert parse_body(b' {"a": 1} trailing') == {"a": 1}
    for raw in (b"", b"  ", b"{", b"NaN", b'{"a": Infinity}', b"[" * 5000):
        with pytest.raises(ApiError) as info:
            parse_body(raw)
        assert info.value.status == 400
        assert info.value.message.startswith("bad request body: ")


def test_proxy_create_defaults_and_required_fields() -> None:
    assert parse_proxy_create({"name": "p", "upstream": "h:1"}) == ProxyInput(
        "p", "127.0.0.1:0", "h:1", True
    )
    assert parse_proxy_create({"name": "p", "upstream": "h:1", "listen": None}).listen == (
        "127.0.0.1:0"
    )
    with pytest.raises(ApiError) as info:
        parse_proxy_create({"upstream": "h:1"})
    assert _error(info) == (400, "missing required field: name")
    with pytest.raises(ApiError) as info:
        parse_proxy_create({"name": "p"})
    assert _error(info) == (400, "missing required field: upstream")
    for bad in ([], {"name": 1, "upstream": "h:1"}, {"name": "p", "upstream": "h:1", "enabled": 1}):
        with pytest.raises(ApiError) as info:
            parse_proxy_create(bad)
        assert info.value.status == 400


def test_proxy_update_keeps_omitted_and_name() -> None:
    current = ProxyInput("p", "127.0.0.1:5", "h:1", True)
    assert parse_proxy_update({"name": "q", "enabled": False}, current) == ProxyInput(
        "p", "127.0.0.1:5", "h:1", False
    )
    assert parse_proxy_update({}, current) == current


def test_populate_validates_all_first() -> None:
    with pytest.raises(ApiError) as info:
        parse_populate([{"name": "a", "upstream": "h:1"}, {"name": "b"}])
    assert _error(info) == (400, "missing required field: upstream at proxy 2")
    assert [p.name for p in parse_populate([{"name": "a", "upstream": "h:1"}])] == ["a"]
    with pytest.raises(ApiError):
        parse_populate({"name": "a"})


def test_toxic_create_defaults() -> None:
    toxic = parse_toxic_create({"type": "latency", "attributes": {"latency": 5, "x": 1}}, set())
    assert toxic == ToxicConfig(
        "latency_downstream",
        ToxicType.LATENCY,
        Stream.DOWNSTREAM,
        1.0,
        (("latency", 5), ("jitter", 0)),
    )
    assert toxic.to_json()["toxicity"] == 1
    assert parse_toxic_create({"type": "noop", "stream": "UPSTREAM"}, set()).stream is (
        Stream.UPSTREAM
    )


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"type": "latency", "stream": "x"},
            400,
            "stream was invalid, can be either upstream or downstream",
        ),
        ({"type": "wat"}, 400, "invalid toxic type"),
        ({"type": "noop", "name": "taken"}, 409, "toxic already exists"),
    ],
)
def test_toxic_create_errors(body: object, status: int, message: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_toxic_create(body, {"taken"})
    assert _error(info) == (status, message)


@pytest.mark.parametrize(
    "attributes",
    [
        {"latency": -1},
        {"latency": 1.5},
        {"latency": 1.0},
        {"latency": "1"},
        {"latency": True},
        {"latency": 2**63},
        [],
    ],
)
def test_bad_attributes(attributes: object) -> None:
    with pytest.raises(ApiError) as info:
        parse_toxic_create({"type": "latency", "attributes": attributes}, set())
    assert info.value.status == 400
    assert info.value.message.startswith("bad request body: ")


def test_slicer_zero_average_refused() -> None:
    for attributes in ({}, {"average_size": 0, "size_variation": 0}):
        with pytest.raises(ApiError):
            parse_toxic_create({"type": "slicer", "attributes": attributes}, set())
    toxic = parse_toxic_create({"type": "slicer", "attributes": {"average_size": 1}}, set())
    with pytest.raises(ApiError):
        parse_toxic_update({"attributes": {"average_size": 0}}, toxic)


def test_toxic_update_partial() -> None:
    toxic = parse_toxic_create(
        {"type": "latency", "toxicity": 0.5, "attributes": {"latency": 9, "jitter": 2}}, set()
    )
    updated = parse_toxic_update({"attributes": {"jitter": 3}, "type": "noop"}, toxic)
    assert updated.attributes == (("latency", 9), ("jitter", 3))
    assert updated.toxicity == 0.5
    assert updated.type is ToxicType.LATENCY
    assert parse_toxic_update({"toxicity": 0}, toxic).toxicity == 0.0
    with pytest.raises(ApiError):
        parse_toxic_update({"toxicity": "x"}, toxic)


def test_addresses() -> None:
    assert split_address("127.0.0.1:80") == ("127.0.0.1", "80")
    assert split_address("[::1]:80") == ("::1", "80")
    assert split_address(":80") == ("", "80")
    for bad in ("nohost", "::1:80"):
        with pytest.raises(AddressError):
            split_address(bad)
    assert format_address("::1", 5) == "[::1]:5"
    assert format_address("127.0.0.1", 5) == "127.0.0.1:5"
