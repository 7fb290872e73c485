"""What a PostgreSQL server is to the harness, whoever runs it: one layer both backends use.

A :class:`PgServer` has a database, a superuser with a password generated per run, and a
port; the harness queries it, waits for it, dumps and restores its database the same way
whether it is a local cluster (:class:`harness.backends.postgres.PgCluster`) or a container
(:class:`harness.backends.docker.stack.DockerDatabase`). A subclass says only what is
its own: how to reach the server for the harness's own connections (a Unix socket, a
published port), whether the server has died, and how ``pg_dump``/``pg_restore`` run (the
local binaries, or inside the container). Both start servers with :data:`SERVER_SETTINGS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql

from harness._wait import wait_for
from harness.errors import ServiceError

__all__ = ["SERVER_SETTINGS", "SUPERUSER", "PgServer"]

#: The superuser every server of a run has (its password is generated per run).
SUPERUSER = "chaos"

#: Settings every server starts with, local or in a container. fsync is off: the faults
#: simulate process crashes, and the kernel keeps written WAL across a SIGKILL of
#: PostgreSQL, so crash recovery is exercised for real while a stack starts several times
#: faster (docs/decisions.md).
SERVER_SETTINGS = (
    "fsync=off",
    "full_page_writes=off",
    "shared_buffers=16MB",
    "max_connections=60",
    "max_wal_senders=0",
    "wal_level=minimal",
    "jit=off",
    "log_min_messages=warning",
    "log_line_prefix=%m [%p] ",
)


class PgServer:
    """The part of a PostgreSQL server that does not depend on what runs it.

    Subclasses set ``name``, ``database``, ``password`` and ``port``, and give
    :attr:`host` (where a TCP client reaches the server), :meth:`_connect_host` (where the
    harness's own connections go), :meth:`_died` (a :class:`ServiceError` when the server
    is gone), :meth:`log_tail`, :meth:`backup` and :meth:`_pg_restore`.
    """

    name: str
    database: str
    password: str
    port: int
    #: How often :meth:`wait_ready` polls at most, in seconds.
    ready_interval: float = 0.1

    # -- what a subclass gives ----------------------------------------------------------

    @property
    def host(self) -> str:
        raise NotImplementedError

    def _connect_host(self) -> str:
        """Where the harness's own connections go (a socket directory or the host)."""
        return self.host

    def _died(self, action: str) -> ServiceError | None:
        """The error to raise when the server is no longer there to wait for."""
        return None

    def log_tail(self, lines: int = 30) -> str:
        return ""

    def backup(self, path: Path) -> None:
        """``pg_dump -Fc`` the database to ``path``."""
        raise NotImplementedError

    def _pg_restore(self, path: Path) -> None:
        """``pg_restore`` a :meth:`backup` into the (empty) database."""
        raise NotImplementedError

    # -- the same for every server ---------------------------------------------------------

    @property
    def user(self) -> str:
        return SUPERUSER

    @property
    def url(self) -> str:
        """A TCP URL straight to the server (not through the fault proxy)."""
        return self.url_via(self.host, self.port)

    def url_via(self, host: str, port: int) -> str:
        """The same credentials, reaching the server through ``host:port`` (the proxy)."""
        return f"postgresql://{SUPERUSER}:{self.password}@{host}:{port}/{self.database}"

    def connect(
        self, *, autocommit: bool = True, timeout: float = 5.0, dbname: str | None = None
    ) -> psycopg.Connection[Any]:
        """A superuser connection of the harness's own (never through the proxy)."""
        return psycopg.connect(
            host=self._connect_host(),
            port=self.port,
            user=SUPERUSER,
            password=self.password,
            dbname=dbname or self.database,
            autocommit=autocommit,
            connect_timeout=max(1, int(timeout)),
            application_name="deploy-chaos",
        )

    def sql(self, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement and return its rows (empty when it returns none)."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall()) if cur.description else []

    def applied(self, query: str) -> list[str]:
        """A Target's applied-migrations query: its first column, in order; none applied
        while the tool's table does not exist yet."""
        try:
            rows = self.sql(query)
        except psycopg.errors.UndefinedTable:
            return []
        return [str(row[0]) for row in rows]

    def wait_ready(self, *, timeout: float = 30.0) -> None:
        """Wait until the server accepts connections (a :class:`ServiceError` when it died
        meanwhile, a timeout with the log's tail when it never does)."""

        def ready() -> bool:
            if (error := self._died("start")) is not None:
                raise error
            with self.connect(timeout=2) as conn:
                conn.execute("SELECT 1")
            return True

        wait_for(
            ready,
            what=f"{self.name} to accept connections on port {self.port}",
            timeout=timeout,
            max_interval=self.ready_interval,
            transient=(psycopg.OperationalError,),
            log_tail=self.log_tail,
        )

    def restore(self, path: Path) -> None:
        """Recreate the database from a :meth:`backup` (connections to it are terminated)."""
        with self.connect(dbname="postgres") as conn:
            db = pgsql.Identifier(self.database)
            conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(db))
            conn.execute(pgsql.SQL("CREATE DATABASE {}").format(db))
        self._pg_restore(path)
