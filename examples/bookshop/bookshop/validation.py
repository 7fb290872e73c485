"""Request validation (pure): JSON bodies and path ids into typed values, or BadRequest."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal

from bookshop.errors import BadRequest, NotFound

__all__ = [
    "MAX_ID",
    "MAX_PRICE",
    "MAX_TEXT",
    "NewAuthor",
    "NewBook",
    "NewOrder",
    "parse_body",
    "parse_new_author",
    "parse_new_book",
    "parse_new_order",
    "parse_path_id",
]

#: Largest id or quantity (PostgreSQL's ``integer``).
MAX_ID = 2**31 - 1
#: Longest name, title or ISBN, in characters.
MAX_TEXT = 200
#: Largest price ``numeric(10,2)`` holds.
MAX_PRICE = Decimal("99999999.99")
_CENT = Decimal("0.01")
_DECIMAL_TEXT = re.compile(r"\d+(\.\d+)?", re.ASCII)


@dataclass(frozen=True, slots=True)
class NewAuthor:
    """A valid ``POST /authors`` body."""

    name: str


@dataclass(frozen=True, slots=True)
class NewBook:
    """A valid ``POST /books`` body; ``isbn`` is None when absent or not known."""

    title: str
    author_id: int
    price: Decimal
    isbn: str | None


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A valid ``POST /orders`` body."""

    book_id: int
    quantity: int


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_body(body: bytes) -> dict[str, object]:
    """The request body as a JSON object; numbers with a fraction become Decimals."""
    if not body.strip():
        raise BadRequest("the request body is empty: a JSON object is expected")
    try:
        data = json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the request body must be a JSON object, not {type(data).__name__}")
    return data


def parse_path_id(text: str, what: str) -> int:
    """An id from the path (digits only, by the route); too large to exist: NotFound."""
    value = int(text)
    if not 1 <= value <= MAX_ID:
        raise NotFound(f"{what} {text} not found")
    return value


def _field(data: dict[str, object], name: str) -> object:
    if name not in data:
        raise BadRequest(f"field {name!r} is required")
    return data[name]


def _text(data: dict[str, object], name: str) -> str:
    value = _field(data, name)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"field {name!r} must be a non-empty string")
    if len(value) > MAX_TEXT or "\x00" in value:
        raise BadRequest(f"field {name!r} must be at most {MAX_TEXT} characters, without NUL")
    return value


def _positive_int(data: dict[str, object], name: str) -> int:
    value = _field(data, name)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise BadRequest(f"field {name!r} must be an integer from 1 to {MAX_ID}")
    return value


def _price(data: dict[str, object], name: str) -> Decimal:
    value = _field(data, name)
    expected = (
        f"field {name!r} must be a decimal string or number from 0 to {MAX_PRICE},"
        " with at most 2 decimal places"
    )
    if isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value.strip()):
        amount = Decimal(value.strip())
    elif isinstance(value, Decimal | int) and not isinstance(value, bool):
        amount = Decimal(value)
    else:
        raise BadRequest(expected)
    if not amount.is_finite() or not 0 <= amount <= MAX_PRICE:
        raise BadRequest(expected)
    cents = amount.quantize(_CENT)
    if cents != amount:
        raise BadRequest(expected)
    return abs(cents)  # abs: -0.00 is 0.00


def _optional_isbn(data: dict[str, object]) -> str | None:
    if data.get("isbn") is None:
        return None
    return _text(data, "isbn")


def parse_new_author(data: dict[str, object]) -> NewAuthor:
    """``{"name": str}``."""
    return NewAuthor(name=_text(data, "name"))


def parse_new_book(data: dict[str, object], *, with_isbn: bool) -> NewBook:
    """``{"title", "author_id", "price", "isbn"?}``; ``isbn`` only ``with_isbn``."""
    return NewBook(
        title=_text(data, "title"),
        author_id=_positive_int(data, "author_id"),
        price=_price(data, "price"),
        isbn=_optional_isbn(data) if with_isbn else None,
    )


def parse_new_order(data: dict[str, object]) -> NewOrder:
    """``{"book_id": int, "quantity": int >= 1}``."""
    return NewOrder(
        book_id=_positive_int(data, "book_id"), quantity=_positive_int(data, "quantity")
    )
