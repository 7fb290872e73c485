"""Initial schema: authors, books, orders.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def upgrade() -> None:
    """Create the three tables."""
    op.create_table(
        "authors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        _created_at(),
    )
    op.create_table(
        "books",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("author_id", sa.Integer, sa.ForeignKey("authors.id"), nullable=False),
        sa.Column("price", sa.Numeric(10, 2), nullable=False),
        _created_at(),
        sa.CheckConstraint("price >= 0", name="books_price_not_negative"),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("book_id", sa.Integer, sa.ForeignKey("books.id"), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        _created_at(),
        sa.CheckConstraint("quantity >= 1", name="orders_quantity_positive"),
        sa.CheckConstraint(
            "status IN ('pending', 'paid', 'cancelled')", name="orders_status_known"
        ),
    )


def downgrade() -> None:
    """Drop the three tables (and their data)."""
    op.drop_table("orders")
    op.drop_table("books")
    op.drop_table("authors")
