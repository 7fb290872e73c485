"""bookshop: a small example app for deploy-chaos.

Authors, books and orders over PostgreSQL (SQLAlchemy 2 Core, Alembic migrations), with two
releases that render the same data differently. See ``examples/bookshop/README.md``.
"""

from __future__ import annotations

__all__: list[str] = []
