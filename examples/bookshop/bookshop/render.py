"""JSON rendering of rows, per release: the same data, two spellings.

v1: timestamps ``2026-12-01T10:00:00.123456+00:00``, prices ``"12.50"``.
v2: timestamps ``2026-12-01T10:00:00.123456Z``, prices ``12.5``, and books carry ``isbn``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import RowMapping

from bookshop.release import Release

__all__ = ["render_author", "render_book", "render_order", "render_price", "render_timestamp"]

_CENT = Decimal("0.01")


def render_timestamp(release: Release, value: datetime) -> str:
    """ISO 8601 in UTC with microseconds; ``Z`` or ``+00:00`` as the release spells it."""
    if value.tzinfo is None:  # timestamptz always has one; a naive value is taken as UTC
        value = value.replace(tzinfo=UTC)
    text = value.astimezone(UTC).isoformat(timespec="microseconds")
    if release.timestamp_z:
        return text.removesuffix("+00:00") + "Z"
    return text


def render_price(release: Release, value: Decimal) -> str | float:
    """A JSON number (v2) or a string with 2 places (v1)."""
    cents = value.quantize(_CENT)
    return float(cents) if release.price_as_number else str(cents)


def render_author(release: Release, row: RowMapping) -> dict[str, object]:
    """``{"id", "name", "created_at"}``."""
    return {
        "id": row["id"],
        "name": row["name"],
        "created_at": render_timestamp(release, row["created_at"]),
    }


def render_book(release: Release, row: RowMapping) -> dict[str, object]:
    """``{"id", "title", "author_id", "price", "created_at"}``, and ``"isbn"`` in v2."""
    book: dict[str, object] = {
        "id": row["id"],
        "title": row["title"],
        "author_id": row["author_id"],
        "price": render_price(release, row["price"]),
        "created_at": render_timestamp(release, row["created_at"]),
    }
    if release.knows_isbn:
        book["isbn"] = row["isbn"]
    return book


def render_order(release: Release, row: RowMapping) -> dict[str, object]:
    """``{"id", "book_id", "quantity", "status", "created_at"}``."""
    return {
        "id": row["id"],
        "book_id": row["book_id"],
        "quantity": row["quantity"],
        "status": row["status"],
        "created_at": render_timestamp(release, row["created_at"]),
    }
