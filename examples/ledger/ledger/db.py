"""Database access shared by the app and the migrate tool.

psycopg is imported lazily (it is the heaviest import of the app), so argument and
configuration errors are reported before paying for it.

The app's pool has short timeouts, so a partitioned or stalled database surfaces as an error
within about two seconds instead of a hang: ``connect_timeout`` for new connections, the
pool's wait timeout, a server-side ``statement_timeout`` and ``lock_timeout``, and a
client-side :func:`deadline` that severs the socket of a connection whose server stopped
answering (a black-holed network is invisible to server-side timeouts).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

from ledger.errors import ConfigurationError

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = [
    "APP_NAME",
    "DATABASE_URL_ENV",
    "MIGRATE_NAME",
    "POOL_MAX_SIZE",
    "POOL_WAIT",
    "REQUEST_DEADLINE",
    "connect_for_migrate",
    "database_url",
    "deadline",
    "open_pool",
]

DATABASE_URL_ENV = "DATABASE_URL"
#: ``application_name`` of the app's connections (how faults find them in pg_stat_activity).
APP_NAME = "ledger-app"
#: ``application_name`` of the migrate tool's connection.
MIGRATE_NAME = "ledger-migrate"

POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 4
#: Seconds a request waits for a pooled connection.
POOL_WAIT = 1.5
#: Seconds a request's database work may take before its connection is severed.
REQUEST_DEADLINE = 2.0
#: libpq's connect_timeout (seconds; libpq's minimum is 2).
CONNECT_TIMEOUT = 2
#: Server-side limits of the app's sessions (milliseconds).
STATEMENT_TIMEOUT_MS = 1500
LOCK_TIMEOUT_MS = 1000
IDLE_IN_TRANSACTION_TIMEOUT_MS = 10_000
#: Seconds the pool keeps retrying one failed connection before handing it back to requests.
RECONNECT_TIMEOUT = 4.0


def database_url() -> str:
    """``DATABASE_URL`` from the environment; a ConfigurationError when it is missing."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    if not url:
        raise ConfigurationError(
            DATABASE_URL_ENV, url, "a PostgreSQL URL like postgresql://user@127.0.0.1:5432/db"
        )
    return url


def open_pool(url: str) -> ConnectionPool:
    """A small connection pool, opened without waiting for its first connection."""
    from psycopg_pool import ConnectionPool

    options = (
        f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
        f" -c lock_timeout={LOCK_TIMEOUT_MS}"
        f" -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}"
    )
    pool: ConnectionPool = ConnectionPool(
        url,
        min_size=POOL_MIN_SIZE,
        max_size=POOL_MAX_SIZE,
        open=False,
        timeout=POOL_WAIT,
        # The pool retries a failed connection with an exponential backoff; giving up early
        # keeps the delay short, and the next request starts a fresh attempt at once, so
        # the app recovers within about a second of the database coming back.
        reconnect_timeout=RECONNECT_TIMEOUT,
        name=APP_NAME,
        kwargs={
            "application_name": APP_NAME,
            "connect_timeout": CONNECT_TIMEOUT,
            "options": options,
            "autocommit": True,
        },
    )
    pool.open(wait=False)
    return pool


def _sever(conn: psycopg.Connection[object]) -> None:
    """Shut the connection's socket down, so a read blocked on it fails at once."""
    try:
        fd = conn.pgconn.socket
    except Exception:
        return
    with socket.socket(fileno=os.dup(fd)) as sock, suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def deadline(conn: psycopg.Connection[object], seconds: float) -> Iterator[None]:
    """Sever ``conn`` if the block has not finished after ``seconds``.

    psycopg has no client-side query timeout; when the network silently drops packets (a
    partition behind a proxy), a query would wait forever. Severing the socket makes the
    pending operation fail with an OperationalError, and the pool then discards the
    connection. The lock makes sure a late timer never severs a connection that was already
    handed back to the pool.
    """
    lock = threading.Lock()
    finished = False

    def expire() -> None:
        with lock:
            if not finished:
                _sever(conn)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            finished = True
        timer.cancel()


def connect_for_migrate(
    url: str, *, lock_timeout: str, statement_timeout: str
) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection for the migrate tool, with its timeouts set."""
    import psycopg

    conn = psycopg.connect(url, application_name=MIGRATE_NAME, connect_timeout=10, autocommit=True)
    try:
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (lock_timeout,))
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (statement_timeout,))
    except BaseException:
        conn.close()
        raise
    return conn
