"""A client-side deadline on each transaction: overrun, and its connections are severed.

Server-side timeouts (``statement_timeout``) cannot help when the server stops answering
altogether: a paused database process, or a black-holed network behind a proxy that keeps
TCP alive. psycopg has no client-side query timeout, so a request would wait forever, and so
would ``pool_pre_ping``'s ping.

Inside :func:`deadline`, every connection the thread uses is watched: :class:`WatchedCursor`
(the engine's ``cursor_factory``; the pre-ping uses a cursor too) registers its connection,
and the pool's checkin releases it before the connection goes back to the pool. When time is
up, the watched connections' sockets are shut down: the pending call fails at once with an
OperationalError, SQLAlchemy invalidates the connection, and the request answers 503.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg.rows import RowFactory

__all__ = ["WatchedCursor", "deadline", "expired", "release", "watch"]

_local = threading.local()


class _Deadline:
    """The connections one block uses, and whether its time ran out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[psycopg.Connection[Any]] = []
        self._finished = False
        self.expired = False

    def watch(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            if self._finished or any(c is conn for c in self._connections):
                return
            self._connections.append(conn)
            if self.expired:
                _sever(conn)

    def release(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            self._connections = [c for c in self._connections if c is not conn]

    def expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            for conn in self._connections:
                _sever(conn)

    def finish(self) -> None:
        with self._lock:
            self._finished = True
            self._connections.clear()


def _sever(conn: psycopg.Connection[Any]) -> None:
    """Shut the connection's socket down, so a call blocked on it fails at once."""
    try:
        fd = conn.pgconn.socket
    except psycopg.Error:
        return  # closed already
    with suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


def _current() -> _Deadline | None:
    current: _Deadline | None = getattr(_local, "current", None)
    return current


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Sever the connections this thread uses in the block if it lasts over ``seconds``."""
    current = _Deadline()
    outer = _current()
    _local.current = current
    timer = threading.Timer(seconds, current.expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        current.finish()
        timer.cancel()
        _local.current = outer


def expired() -> bool:
    """True inside a :func:`deadline` block whose time ran out."""
    current = _current()
    return current is not None and current.expired


def watch(conn: psycopg.Connection[Any]) -> None:
    """Put ``conn`` under the thread's current deadline, if any."""
    current = _current()
    if current is not None:
        current.watch(conn)


def release(conn: psycopg.Connection[Any]) -> None:
    """Take ``conn`` out of the thread's current deadline (it goes back to the pool)."""
    current = _current()
    if current is not None:
        current.release(conn)


class WatchedCursor(psycopg.Cursor[Any]):
    """A psycopg cursor that puts its connection under the thread's current deadline."""

    __slots__ = ()

    def __init__(
        self, connection: psycopg.Connection[Any], *, row_factory: RowFactory[Any] | None = None
    ) -> None:
        watch(connection)
        if row_factory is None:
            super().__init__(connection)
        else:
            super().__init__(connection, row_factory=row_factory)
