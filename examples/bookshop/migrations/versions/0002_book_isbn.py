"""Add the nullable column books.isbn (used by release v2).

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``books.isbn``: nullable, so v1 (which never writes it) keeps working."""
    op.add_column("books", sa.Column("isbn", sa.Text, nullable=True))


def downgrade() -> None:
    """Drop ``books.isbn`` (the ISBNs written by v2 are lost)."""
    op.drop_column("books", "isbn")
