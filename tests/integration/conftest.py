"""Fixtures for integration tests: a real PostgreSQL server and the local backend."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from psycopg import sql

from harness.backends.local import LocalBackend
from harness.backends.postgres import PgCluster

pytestmark = pytest.mark.integration

_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def local_backend() -> Iterator[LocalBackend]:
    """One local backend (run directory, PostgreSQL template) for the whole session."""
    with LocalBackend() as backend:
        yield backend


@pytest.fixture(scope="session")
def pg_server(local_backend: LocalBackend) -> Iterator[PgCluster]:
    """One PostgreSQL server shared by the tests that only need an empty database."""
    cluster = PgCluster(
        name="shared.db",
        binaries=local_backend.binaries,
        run=local_backend.run,
        directory=local_backend.run.subdir("shared-pg"),
        database="app",
    )
    cluster.create_from(local_backend.template("app"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def pg_url(pg_server: PgCluster) -> Iterator[str]:
    """A fresh, empty database on a real server, as a postgresql:// URL over TCP."""
    name = f"t{next(_db_numbers)}"
    pg_server.sql(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)).as_string())
    try:
        yield pg_server.url.rsplit("/", 1)[0] + "/" + name
    finally:
        pg_server.sql(
            sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)).as_string()
        )
