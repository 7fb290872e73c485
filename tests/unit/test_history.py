"""The history recorder, pairing, statistics and the JSON lines format (no I/O but tmp files)."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.workload.history import (
    ErrorKind,
    History,
    Op,
    Operation,
    OpType,
    history_stats,
    pair_operations,
    read_jsonl,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_invoke_then_completion_is_recorded_with_index_process_and_time() -> None:
    clock = FakeClock()
    history = History(origin=100.0, clock=clock)
    invoke = history.invoke(3, "deposit", {"key": "k1", "amount": 5})
    clock.now = 100.25
    done = history.complete(invoke, OpType.OK, {"key": "k1", "amount": 5, "id": 9})
    assert done is not None
    assert [(o.index, o.process, o.type, o.f, o.time) for o in history.ops] == [
        (0, 3, OpType.INVOKE, "deposit", 0.0),
        (1, 3, OpType.OK, "deposit", 0.25),
    ]
    [operation] = history.operations()
    assert operation == Operation(
        0, 3, "deposit", OpType.OK, {"key": "k1", "amount": 5, "id": 9}, 0.0, 0.25
    )


def test_operations_in_flight_at_close_become_info_and_late_completions_are_dropped() -> None:
    history = History()
    a = history.invoke(0, "write", {"k": "a"})
    b = history.invoke(1, "write", {"k": "b"})
    assert history.complete(a, OpType.FAIL, error="HTTP 409", error_kind=ErrorKind.REJECTED)
    assert history.close() == 1
    assert history.complete(b, OpType.OK) is None, "closed as info: the late answer is dropped"
    last = history.ops[-1]
    assert (last.type, last.process, last.error_kind) == (
        OpType.INFO,
        1,
        ErrorKind.STOPPED,
    )
    # Unknown, but cut off by the harness: not an error of the app's, and no outage.
    stats = history_stats(history.operations())
    assert (stats.operations, stats.errors, stats.longest_unavailable) == (2, 0, None)
    with pytest.raises(ValueError, match="closed"):
        history.invoke(2, "write", {})


def test_a_process_has_one_operation_in_flight() -> None:
    history = History()
    history.invoke(0, "write", {})
    with pytest.raises(ValueError, match="in flight"):
        history.invoke(0, "write", {})


def test_completion_value_updates_the_invoke_value() -> None:
    ops = [
        Op(0, 1, OpType.INVOKE, "open", {"owner": "x", "currency": "EUR"}, 0.0),
        Op(1, 1, OpType.OK, "open", {"id": 7, "currency": "USD"}, 0.1),
    ]
    [operation] = pair_operations(ops)
    assert operation.value == {"owner": "x", "currency": "USD", "id": 7}


def test_pairing_rejects_a_completion_without_invoke_and_closes_dangling_invokes() -> None:
    with pytest.raises(ValueError, match="without an invoke"):
        pair_operations([Op(0, 1, OpType.OK, "w", {}, 0.0)])
    [dangling] = pair_operations([Op(0, 1, OpType.INVOKE, "w", {"k": 1}, 0.0)])
    assert dangling.type is OpType.INFO


def test_jsonl_round_trip(tmp_path: Path) -> None:
    history = History()
    a = history.invoke(0, "deposit", {"key": "k\\1\t", "amount": 5, "ok": True, "none": None})
    history.complete(a, OpType.INFO, error="timeout", error_kind=ErrorKind.INDETERMINATE)
    history.invoke(1, "read", {"id": 3})
    history.close()
    path = tmp_path / "history.jsonl"
    history.write_jsonl(path)
    assert len(path.read_text().splitlines()) == 4
    again = read_jsonl(path)
    assert [o.to_json() for o in again.ops] == [o.to_json() for o in history.ops]


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"index": 0, "process": 0, "type": "nope", "f": "x", "time": 0}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1"):
        read_jsonl(path)


def _op(index: int, f: str, kind: OpType, t0: float, t1: float, err: ErrorKind | None = None):
    return Operation(index, index, f, kind, {}, t0, t1, None, err)


def test_stats_count_by_operation_and_type_and_error_rate() -> None:
    ops = [
        _op(0, "w", OpType.OK, 0.0, 0.1),
        _op(1, "w", OpType.FAIL, 0.2, 0.3, ErrorKind.REJECTED),
        _op(2, "w", OpType.FAIL, 0.4, 0.5, ErrorKind.UNAVAILABLE),
        _op(3, "r", OpType.INFO, 0.6, 2.6, ErrorKind.INDETERMINATE),
    ]
    stats = history_stats(ops)
    data = stats.to_json()
    assert data["by_f"] == {"r": {"info": 1}, "w": {"fail": 2, "ok": 1}}
    assert data["by_type"] == {"ok": 1, "fail": 2, "info": 1}
    assert stats.errors == 2, "a rejection is a served request, not an error"
    assert stats.error_rate == 0.5


def test_longest_unavailable_window_runs_from_first_failure_to_next_served() -> None:
    ops = [
        _op(0, "w", OpType.OK, 0.0, 0.1),
        _op(1, "w", OpType.FAIL, 1.0, 1.1, ErrorKind.UNAVAILABLE),
        _op(2, "w", OpType.INFO, 1.2, 2.0, ErrorKind.INDETERMINATE),
        _op(3, "w", OpType.FAIL, 2.0, 2.5, ErrorKind.REJECTED),  # served: ends the window
        _op(4, "w", OpType.FAIL, 4.0, 4.1, ErrorKind.UNAVAILABLE),
        _op(5, "w", OpType.OK, 4.2, 4.3),
    ]
    stats = history_stats(ops)
    window = stats.longest_unavailable
    assert window is not None
    assert (window.start, window.end) == (1.0, 2.5)
    # The window never starts before the last served completion.
    ops = [
        _op(0, "w", OpType.INFO, 0.0, 5.0, ErrorKind.INDETERMINATE),
        _op(1, "w", OpType.OK, 0.5, 1.0),
    ]
    window = history_stats(ops).longest_unavailable
    assert window is not None
    assert (window.start, window.end) == (1.0, 5.0)


def test_no_operations_no_window() -> None:
    stats = history_stats([])
    assert (stats.operations, stats.error_rate, stats.longest_unavailable) == (0, 0.0, None)


# -- properties ----------------------------------------------------------------------------

_kinds = st.sampled_from(
    [
        (OpType.OK, None),
        (OpType.FAIL, ErrorKind.REJECTED),
        (OpType.FAIL, ErrorKind.UNAVAILABLE),
        (OpType.INFO, ErrorKind.INDETERMINATE),
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), _kinds, st.booleans()), max_size=60))
def test_recorded_histories_pair_back_to_every_operation(
    steps: list[tuple[int, tuple[OpType, ErrorKind | None], bool]],
) -> None:
    """Whatever the interleaving, every invoke pairs with exactly one completion of its
    process, and statistics count each operation once."""
    times = itertools.count()
    history = History(origin=0.0, clock=lambda: float(next(times)))
    pending: dict[int, Op] = {}
    for process, (kind, err), finish in steps:
        if process in pending and finish:
            history.complete(pending.pop(process), kind, error_kind=err)
        elif process not in pending:
            pending[process] = history.invoke(process, "w", {"p": process})
    history.close()
    ops = history.ops
    operations = pair_operations(ops)
    invokes = [o for o in ops if o.type is OpType.INVOKE]
    assert [o.index for o in operations] == [o.index for o in invokes]
    for operation in operations:
        assert operation.invoke_time <= operation.complete_time
        assert operation.value == {"p": operation.process}
    stats = history_stats(operations)
    assert stats.operations == len(invokes)
    assert 0.0 <= stats.error_rate <= 1.0
    assert 0.0 <= stats.longest_unavailable_s <= max(stats.duration_s, 0.0) + 1e-9


def test_history_is_thread_safe() -> None:
    history = History()

    def work(process: int) -> None:
        for i in range(200):
            invoke = history.invoke(process, "w", {"i": i})
            history.complete(invoke, OpType.OK)

    threads = [threading.Thread(target=work, args=(p,)) for p in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ops = history.ops
    assert [o.index for o in ops] == list(range(len(ops))) == list(range(3200))
    assert len(pair_operations(ops)) == 1600
