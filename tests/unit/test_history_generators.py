"""Seeded generators, the operation mix, the pacer and the workload spec's validation."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest

from harness.errors import SpecError
from harness.workload.generators import Mix, Pacer, make_faker, make_rng
from harness.workload.history import ErrorKind, OpType
from harness.workload.model import (
    Answer,
    Call,
    ErrorBudget,
    HttpMethod,
    WorkloadSpec,
    default_completion,
    fill_path,
)


def test_faker_and_rng_are_seeded_per_client() -> None:
    assert make_faker(7, 0).name() == make_faker(7, 0).name()
    one, other = make_faker(7, 1), make_faker(8, 1)
    assert [one.name() for _ in range(5)] != [other.name() for _ in range(5)]
    a = [make_rng(7, 0).random() for _ in range(3)]
    assert a == [make_rng(7, 0).random() for _ in range(3)]
    assert make_rng(7, 0).random() != make_rng(7, 1).random()


def test_mix_follows_the_weights_and_lists_fallbacks() -> None:
    mix = Mix.of({"a": 3, "b": 1, "never": 0})
    rng = random.Random(1)
    counts = Counter(mix.choose(rng) for _ in range(8000))
    assert counts["never"] == 0
    assert 0.7 < counts["a"] / 8000 < 0.8
    order = mix.order(random.Random(2))
    assert sorted(order) == ["a", "b", "never"]
    with pytest.raises(SpecError):
        Mix.of({})
    with pytest.raises(SpecError):
        Mix.of({"a": -1})
    with pytest.raises(SpecError):
        Mix.of({"a": 0})


def test_pacer_keeps_the_rate_and_stops_at_once() -> None:
    stop = threading.Event()
    pacer = Pacer(50.0, stop)
    started = time.monotonic()
    for _ in range(10):
        assert pacer.wait()
    elapsed = time.monotonic() - started
    assert 0.15 <= elapsed < 1.0
    stop.set()
    before = time.monotonic()
    assert not Pacer(0.5, stop).wait()
    assert time.monotonic() - before < 0.5


def test_workload_spec_is_validated() -> None:
    class Nothing:
        pass

    with pytest.raises(SpecError, match="clients"):
        WorkloadSpec(model=Nothing, clients=0)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="timeout"):
        WorkloadSpec(model=Nothing, timeout=0)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="rate"):
        WorkloadSpec(model=Nothing, rate=-1)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="budget"):
        ErrorBudget(1.5)
    with pytest.raises(SpecError, match="path"):
        Call("x", HttpMethod.GET, "no-slash", {})


def test_default_completion_is_conservative() -> None:
    assert default_completion(Answer(201, {}), {}).type is OpType.OK
    rejected = default_completion(Answer(409, {"error": "no funds"}), {})
    assert (rejected.type, rejected.error_kind, rejected.error) == (
        OpType.FAIL,
        ErrorKind.REJECTED,
        "HTTP 409: no funds",
    )
    assert default_completion(Answer(503, {}), {}).type is OpType.INFO


def test_fill_path_quotes_values() -> None:
    assert fill_path("/t?k={key}", {"key": "a b/c"}) == "/t?k=a%20b%2Fc"
    with pytest.raises(SpecError, match="id"):
        fill_path("/accounts/{id}", {})
