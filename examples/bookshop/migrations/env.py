"""Alembic's environment for the bookshop: online mode, URL from ``DATABASE_URL``.

``DATABASE_URL`` is ``postgresql://user:pw@host:port/db``; the psycopg 3 driver is used. Each
migration runs in its own transaction, so ``alembic_version`` always names the last migration
that was fully applied.
"""

from __future__ import annotations

import sys
from logging.config import fileConfig

from alembic import context
from bookshop.db import database_url
from bookshop.errors import ConfigurationError
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

#: ``application_name`` of the migration's session.
MIGRATE_NAME = "bookshop-migrate"

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)


def run_migrations_online() -> None:
    """Run the migrations over one connection to ``DATABASE_URL``."""
    try:
        url = database_url()
    except ConfigurationError as exc:
        sys.exit(f"alembic (bookshop): {exc}")
    engine = create_engine(
        url,
        poolclass=NullPool,
        connect_args={"connect_timeout": 10, "application_name": MIGRATE_NAME},
    )
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=None,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("alembic (bookshop): offline mode (--sql) is not supported; run online")
run_migrations_online()
