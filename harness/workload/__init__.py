"""Live traffic during a run: a target's clients, and the Jepsen-style history they record.

A target declares a :class:`WorkloadSpec` (its :class:`Model` of the clients, the number of
client threads, the target rate, the client timeout); the runner builds a
:class:`ClientWorkload` from it, seeded from the run's seed.
"""

from __future__ import annotations

from harness.workload.client import ClientWorkload, HttpClient, check_loopback
from harness.workload.history import (
    ErrorKind,
    History,
    HistoryStats,
    JsonValue,
    Op,
    Operation,
    OpType,
    Scalar,
    Value,
    history_stats,
    pair_operations,
    read_jsonl,
)
from harness.workload.model import (
    Answer,
    Call,
    Completion,
    Draw,
    ErrorBudget,
    HttpMethod,
    Model,
    WorkloadSpec,
    default_completion,
    fill_path,
)
from harness.workload.phases import Phases

__all__ = [
    "Answer",
    "Call",
    "ClientWorkload",
    "Completion",
    "Draw",
    "ErrorBudget",
    "ErrorKind",
    "History",
    "HistoryStats",
    "HttpClient",
    "HttpMethod",
    "JsonValue",
    "Model",
    "Op",
    "OpType",
    "Operation",
    "Phases",
    "Scalar",
    "Value",
    "WorkloadSpec",
    "check_loopback",
    "default_completion",
    "fill_path",
    "history_stats",
    "pair_operations",
    "read_jsonl",
]
