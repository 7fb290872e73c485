"""Migration-tool adapters: a Release's migrate command and migration ids, and the Target's
applied-migrations query, read from the tool's own files and tables.

- :class:`AlembicMigrations`: an Alembic script directory (``alembic.ini``), the revision
  chain read from its version files, the state from ``alembic_version``;
- :class:`DjangoMigrations`: one Django app's migrations (``manage.py migrate <app>
  <name>``), the state from ``django_migrations``;
- :class:`SqlDirMigrations`: a directory of plain SQL files in the golang-migrate
  (``1_init.up.sql`` / ``1_init.down.sql``) or dbmate (``20240101120000_init.sql`` with
  ``-- migrate:up`` / ``-- migrate:down``) layout, applied by :mod:`harness.adapters.sqldir`
  with the tool's own bookkeeping table.

Each one gives ``.ids`` (the chain, in order), ``.release(name, up_to=..., command=...,
**release_options)`` (a :class:`~harness.spec.Release` knowing the chain up to one id) and
``.applied_migrations_sql`` (for :class:`~harness.spec.Target`)::

    migrations = AlembicMigrations("alembic.ini")
    target = Target(
        name="bookshop",
        releases=(migrations.release("v1", up_to="0001", command=...), ...),
        applied_migrations_sql=migrations.applied_migrations_sql,
    )
"""

from __future__ import annotations

from harness.adapters.alembic import AlembicMigrations
from harness.adapters.django import DjangoMigrations
from harness.adapters.sqldir import SqlDirMigrations

__all__ = ["AlembicMigrations", "DjangoMigrations", "SqlDirMigrations"]
