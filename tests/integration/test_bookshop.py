"""The bookshop (an app written for the public API only) through its derived workload: the
data invariants judge real writes, and the typed read-back is what keeps a harmless change
of rendering from being reported as damage (the same run without the timestamp type is
invalid: the check can fail)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from harness import RunSpec, StrategyName, Target, default_registry, parse_point, run_chaos
from harness.backends.local import LocalBackend

ROOT = Path(__file__).resolve().parents[2]
SEED = 7


@pytest.fixture(scope="module")
def bookshop() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location(
        "_bookshop_target_test", ROOT / "examples" / "bookshop" / "target.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "examples" / "bookshop"))
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(ROOT / "examples" / "bookshop"))


def _upgrade(backend: LocalBackend, target: Target) -> dict[str, dict[str, object]]:
    print(f"seed {SEED}")
    outcome = run_chaos(
        backend,
        RunSpec(
            target,
            "v1",
            "v2",
            default_registry().parse("no_fault"),
            parse_point("none"),
            StrategyName.ROLL_FORWARD,
            seed=SEED,
        ),
        progress=print,
    )
    return dict(outcome.verdicts)  # type: ignore[arg-type]


def test_the_derived_invariants_judge_real_writes_by_meaning(
    local_backend: LocalBackend, bookshop: ModuleType
) -> None:
    verdicts = _upgrade(local_backend, bookshop.target())
    for name in (
        "durable_acknowledged_writes",
        "row_counts",
        "referential_integrity",
        "readable_by_running_release",
    ):
        assert verdicts[name]["status"] == "valid", (name, verdicts[name])
    reads = verdicts["readable_by_running_release"]["evidence"]
    assert isinstance(reads, dict)
    assert isinstance(reads["entities"], int)
    assert reads["entities"] >= 30
    counts = verdicts["row_counts"]["evidence"]
    assert isinstance(counts, dict)
    groups = {g["group"]: g for g in counts["groups"]}  # type: ignore[union-attr, index]
    assert set(groups) == {"authors", "books", "orders"}
    assert all(g["acknowledged"] > 0 for g in groups.values())  # type: ignore[operator]


def test_without_the_timestamp_type_the_new_rendering_reads_as_damage(
    local_backend: LocalBackend, bookshop: ModuleType
) -> None:
    raw = dataclasses.replace(
        bookshop.shop,
        resources=tuple(
            dataclasses.replace(r, types={}, compare=r.compared) for r in bookshop.shop.resources
        ),
    )
    target = dataclasses.replace(bookshop.target(), invariants=raw.invariants())
    verdict = _upgrade(local_backend, target)["readable_by_running_release"]
    assert verdict["status"] == "invalid", verdict
    evidence = verdict["evidence"]
    assert isinstance(evidence, dict)
    assert set(evidence["by_field"]) == {"created_at"}  # type: ignore[arg-type]
