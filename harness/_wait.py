"""The one polling helper every wait in the harness goes through (built on tenacity)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import tenacity

from harness.errors import WaitTimeout

__all__ = ["wait_for"]

T = TypeVar("T")


class _NotYet(Exception):
    """Raised inside the poll when the check answered falsy."""


def wait_for(
    check: Callable[[], T],
    *,
    what: str,
    timeout: float,
    interval: float = 0.02,
    max_interval: float = 0.2,
    transient: tuple[type[BaseException], ...] = (),
    log_tail: Callable[[], str] | None = None,
    error: type[WaitTimeout] = WaitTimeout,
) -> T:
    """Call ``check`` until it returns a truthy value and return that value.

    Exceptions listed in ``transient`` count as "not yet"; any other exception propagates at
    once. The interval starts at ``interval`` and grows exponentially to ``max_interval``.
    On timeout, raise ``error`` (a :class:`WaitTimeout`) naming ``what``, with the last
    transient error and, when given, the tail of the service's log.
    """

    def attempt() -> T:
        value = check()
        if not value:
            raise _NotYet(what)
        return value

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_exponential(multiplier=interval, min=interval, max=max_interval),
        retry=tenacity.retry_if_exception_type((_NotYet, *transient)),
        reraise=False,
    )
    try:
        return retrying(attempt)
    except tenacity.RetryError as exc:
        last = exc.last_attempt.exception()
        raise error(
            what,
            timeout,
            None if isinstance(last, _NotYet) else last,
            log_tail() if log_tail is not None else "",
        ) from None
