"""Database access: the URL, the app's engine and the tables.

The schema belongs to the Alembic migrations (``migrations/``); nothing here creates tables.
The :class:`~sqlalchemy.Table` objects describe the newest schema (0002); each release selects
and inserts only the columns it knows, so v1 works with or without 0002 applied.

The engine never lets a request hang on a database that misbehaves: new connections give up
after ``connect_timeout``, a request waits at most :data:`POOL_TIMEOUT` for a pooled
connection, the server cancels statements after ``statement_timeout`` and lock waits after
``lock_timeout``, TCP keepalives plus ``tcp_user_timeout`` drop a connection whose server
vanished without closing it, and a client-side deadline (:mod:`bookshop.watchdog`) severs the
connections of a transaction that overran :data:`TRANSACTION_DEADLINE` (a paused server).
``pool_pre_ping`` replaces connections that died while pooled (e.g. across a database
restart), so the app reconnects on its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    create_engine,
    event,
    func,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry

from bookshop import watchdog
from bookshop.errors import ConfigurationError

__all__ = [
    "APP_NAME",
    "DATABASE_URL_ENV",
    "TRANSACTION_DEADLINE",
    "authors",
    "books",
    "create_app_engine",
    "database_url",
    "metadata",
    "orders",
    "sqlalchemy_url",
]

DATABASE_URL_ENV = "DATABASE_URL"
#: SQLAlchemy's dialect and driver: PostgreSQL through psycopg 3.
DRIVER = "postgresql+psycopg"
#: ``application_name`` of the app's sessions (how faults find them in pg_stat_activity).
APP_NAME = "bookshop-app"

#: Seconds to wait for a new connection (libpq's ``connect_timeout``).
CONNECT_TIMEOUT = 3
#: Seconds a request waits for a pooled connection when all are in use.
POOL_TIMEOUT = 2.0
POOL_SIZE = 5
MAX_OVERFLOW = 5
#: Server-side limits of the app's sessions, in milliseconds.
STATEMENT_TIMEOUT_MS = 5000
LOCK_TIMEOUT_MS = 3000
IDLE_IN_TRANSACTION_TIMEOUT_MS = 10_000
#: Milliseconds sent data may stay unacknowledged before the kernel drops the connection.
TCP_USER_TIMEOUT_MS = 8000
#: Seconds a transaction (pre-ping and commit included) may take before its connection is
#: severed; longer than ``statement_timeout``, so a slow statement fails on the server first.
TRANSACTION_DEADLINE = 6.0


def sqlalchemy_url(raw: str) -> URL:
    """``postgresql://user:pw@host:port/db`` as a SQLAlchemy URL for the psycopg 3 driver."""
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise ConfigurationError(f"{DATABASE_URL_ENV} is not a URL: {exc}") from None
    if url.drivername not in ("postgresql", "postgres", DRIVER):
        raise ConfigurationError(
            f"{DATABASE_URL_ENV} has scheme {url.drivername!r}: expected postgresql://"
        )
    return url.set(drivername=DRIVER)


def database_url(environ: Mapping[str, str] | None = None) -> URL:
    """``DATABASE_URL`` from the environment, for the psycopg 3 driver."""
    raw = (os.environ if environ is None else environ).get(DATABASE_URL_ENV, "").strip()
    if not raw:
        raise ConfigurationError(
            f"{DATABASE_URL_ENV} is not set: expected a URL like "
            "postgresql://user:password@127.0.0.1:5432/bookshop"
        )
    return sqlalchemy_url(raw)


def create_app_engine(url: URL) -> Engine:
    """The app's engine: a small pool, short timeouts, connections checked before use."""
    options = (
        f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
        f" -c lock_timeout={LOCK_TIMEOUT_MS}"
        f" -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}"
    )
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        pool_timeout=POOL_TIMEOUT,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT,
            "application_name": APP_NAME,
            "options": options,
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
            "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
            "cursor_factory": watchdog.WatchedCursor,
        },
    )
    event.listen(engine, "checkin", _release_on_checkin)
    return engine


def _release_on_checkin(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    """A connection going back to the pool is no longer the request's to sever."""
    if dbapi_connection is not None:
        watchdog.release(dbapi_connection)


metadata = MetaData()

authors = Table(
    "authors",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

books = Table(
    "books",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("title", Text, nullable=False),
    Column("author_id", Integer, ForeignKey("authors.id"), nullable=False),
    Column("price", Numeric(10, 2, asdecimal=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Migration 0002; only v2 reads or writes it.
    Column("isbn", Text, nullable=True),
)

orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("book_id", Integer, ForeignKey("books.id"), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
