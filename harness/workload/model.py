"""How a Target describes its workload: a :class:`Model` of its clients, and the knobs.

The harness runs N client threads, paces them to a target rate, picks an operation from the
model's mix, asks the model for the HTTP call, sends it to one of the app's instances (with a
client-side timeout), records ``invoke`` then the completion in the history, and tells the
model what happened. The model knows the app's API; the harness knows nothing about it::

    WorkloadSpec(model=MyModel, clients=4, rate=40.0, timeout=2.0)

A request that never left the client is recorded ``fail`` (not applied); one that got no
answer after it was sent is ``info`` (unknown). Answers are for the model to interpret
(:func:`default_completion` is the conservative reading: 2xx ok, 4xx fail, 5xx info).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from harness.errors import SpecError
from harness.workload.history import ErrorKind, JsonValue, OpType, Value
from harness.workload.phases import Phases

if TYPE_CHECKING:
    from faker import Faker

__all__ = [
    "Answer",
    "Call",
    "Completion",
    "Draw",
    "ErrorBudget",
    "HttpMethod",
    "Model",
    "WorkloadSpec",
    "default_completion",
    "fill_path",
]


class HttpMethod(enum.Enum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Call:
    """One operation as an HTTP request; ``value`` is what the history records at invoke."""

    f: str
    method: HttpMethod
    path: str
    value: Value
    body: Mapping[str, JsonValue] | None = None

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise SpecError(f"call {self.f!r}: path {self.path!r}", expected="a path like /x")


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: the status and the JSON object it carried (empty when it was not one)."""

    status: int
    body: Mapping[str, JsonValue]
    text: str = ""


@dataclass(frozen=True, slots=True)
class Completion:
    """How an operation ended, as the model reads the answer."""

    type: OpType
    value: Value = field(default_factory=dict)
    error: str | None = None
    error_kind: ErrorKind | None = None

    def __post_init__(self) -> None:
        if not self.type.is_completion:
            raise ValueError("a completion is ok, fail or info")


@dataclass(frozen=True, slots=True)
class Draw:
    """What a model draws from when it builds a call: seeded per client thread.

    ``client`` is the thread's number (stable); ``process`` the Jepsen process id, which
    changes after an ``info`` (the old process may still have its operation in flight).
    """

    rng: random.Random
    fake: Faker
    client: int
    process: int


class Model(Protocol):
    """A target's clients: one instance per run, shared by every client thread (thread-safe)."""

    def mix(self) -> Mapping[str, float]:
        """Operation name -> relative weight."""

    def call(self, f: str, draw: Draw) -> Call | None:
        """The request for operation ``f`` now; None when it cannot be issued yet (e.g. no
        account exists to deposit into): the client then tries the other operations."""

    def interpret(self, call: Call, answer: Answer) -> Completion:
        """What an answer means: ok, fail (not applied) or info (unknown)."""

    def completed(self, call: Call, completion: Completion, draw: Draw) -> None:
        """Every completion, including ones with no answer (to learn ids, queue retries)."""


@dataclass(frozen=True, slots=True)
class ErrorBudget:
    """Detection through the workload: exceeded when, over the last ``window_s`` seconds and
    at least ``min_operations`` completions, more than ``max_error_rate`` were errors."""

    max_error_rate: float
    window_s: float = 5.0
    min_operations: int = 10

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_error_rate <= 1.0:
            raise SpecError(f"error budget {self.max_error_rate}", expected="a rate in [0, 1]")
        if self.window_s <= 0 or self.min_operations < 1:
            raise SpecError("error budget: window_s must be > 0 and min_operations >= 1")


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """A target's workload: ``model`` builds a fresh :class:`Model` per run.

    ``rate`` is the total target rate in operations per second of the free traffic (0: as
    fast as the clients go); ``timeout`` the client-side timeout of each request in seconds;
    ``phases`` the quotas of the warm-up, the bakes and the soak (see
    :mod:`harness.workload.phases`).
    """

    model: Callable[[], Model]
    clients: int = 4
    rate: float = 40.0
    timeout: float = 2.0
    budget: ErrorBudget | None = None
    phases: Phases = field(default_factory=Phases)

    def __post_init__(self) -> None:
        if not callable(self.model):
            raise SpecError("workload model", expected="a callable returning a Model")
        if not isinstance(self.clients, int) or not 1 <= self.clients <= 256:
            raise SpecError(f"workload clients {self.clients!r}", expected="1..256")
        if self.rate < 0:
            raise SpecError(f"workload rate {self.rate}", expected=">= 0 operations/s")
        if not 0 < self.timeout <= 60:
            raise SpecError(f"workload timeout {self.timeout}", expected="0 < seconds <= 60")
        if not isinstance(self.phases, Phases):
            raise SpecError(f"workload phases {self.phases!r}", expected="a Phases")


def default_completion(answer: Answer, value: Value) -> Completion:
    """The conservative reading: 2xx ok, 4xx fail (rejected), anything else info."""
    if 200 <= answer.status < 300:
        return Completion(OpType.OK, value)
    error = _error_text(answer)
    if 400 <= answer.status < 500:
        return Completion(OpType.FAIL, value, error, ErrorKind.REJECTED)
    return Completion(OpType.INFO, value, error, ErrorKind.INDETERMINATE)


def _error_text(answer: Answer) -> str:
    message = answer.body.get("error")
    detail = message if isinstance(message, str) else answer.text[:200]
    return f"HTTP {answer.status}: {detail}"


def fill_path(template: str, value: Value) -> str:
    """``/accounts/{id}`` filled from a value's fields, each URL-quoted."""
    try:
        return template.format_map({k: quote(str(v), safe="") for k, v in value.items()})
    except KeyError as exc:
        raise SpecError(f"path {template!r} names field {exc} the value lacks") from None
