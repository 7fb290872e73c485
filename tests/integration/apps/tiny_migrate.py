"""Migrations for the tiny app: table m<id> per id; schema_migrations records them."""

from __future__ import annotations

import os
import sys

import psycopg

KNOWN = sys.argv[1].split(",")
TARGET = sys.argv[2]

with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (id text PRIMARY KEY)")
    applied = [r[0] for r in conn.execute("SELECT id FROM schema_migrations ORDER BY id")]
    want = [] if TARGET == "base" else KNOWN[: KNOWN.index(TARGET) + 1]
    for mid in want:
        if mid not in applied:
            with conn.transaction():
                conn.execute(f"CREATE TABLE m{mid} (x int)")
                conn.execute("INSERT INTO schema_migrations VALUES (%s)", (mid,))
            print("up", mid)
    for mid in reversed(applied):
        if mid not in want:
            with conn.transaction():
                conn.execute(f"DROP TABLE m{mid}")
                conn.execute("DELETE FROM schema_migrations WHERE id = %s", (mid,))
            print("down", mid)
