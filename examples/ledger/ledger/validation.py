"""Request validation: pure functions from a JSON body to a typed request, or BadRequest.

v1 ignores fields it does not know (as most JSON APIs do): a ``currency`` sent to a v1
instance is silently dropped. That is a real mixed-version hazard, documented in the README.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from ledger.errors import BadRequest, Unprocessable
from ledger.releases import CURRENCIES, DEFAULT_CURRENCY

__all__ = [
    "MAX_BIGINT",
    "MAX_TEXT",
    "NewAccount",
    "NewDeposit",
    "NewTransfer",
    "parse_body",
    "parse_id",
    "parse_new_account",
    "parse_new_deposit",
    "parse_new_transfer",
]

#: Largest value of a PostgreSQL bigint: ids and amounts must fit.
MAX_BIGINT = 2**63 - 1
#: Longest owner name or idempotency key accepted.
MAX_TEXT = 200


@dataclass(frozen=True, slots=True)
class NewAccount:
    """POST /accounts. ``currency`` is None on v1 (no currency column is written)."""

    owner: str
    currency: str | None


@dataclass(frozen=True, slots=True)
class NewDeposit:
    """POST /deposits: money from outside into ``account_id``.

    ``currency`` (v2+, optional) must match the account's currency when given.
    """

    account_id: int
    amount_cents: int
    idempotency_key: str
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class NewTransfer:
    """POST /transfers: money from one account to another."""

    from_account: int
    to_account: int
    amount_cents: int
    idempotency_key: str


def parse_body(body: bytes) -> Mapping[str, object]:
    """The request body as a JSON object, or BadRequest saying what is wrong with it."""
    if not body.strip():
        raise BadRequest("request body is empty: expected a JSON object")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(data).__name__}")
    return data


def parse_id(text: str, what: str) -> int:
    """A path segment that must be a positive bigint id."""
    if not text.isascii() or not text.isdigit():
        raise BadRequest(f"{what} must be a positive integer, got {text!r}")
    value = int(text)
    if not 0 < value <= MAX_BIGINT:
        raise BadRequest(f"{what} must be between 1 and {MAX_BIGINT}, got {value}")
    return value


def _require(data: Mapping[str, object], name: str) -> object:
    if name not in data or data[name] is None:
        raise BadRequest(f"missing field {name!r}")
    return data[name]


def _positive_int(data: Mapping[str, object], name: str) -> int:
    value = _require(data, name)
    # bool is an int subclass; a float like 10.0 is not an amount in cents.
    if type(value) is not int:
        raise BadRequest(f"field {name!r} must be an integer, got {type(value).__name__}")
    if not 0 < value <= MAX_BIGINT:
        raise BadRequest(f"field {name!r} must be between 1 and {MAX_BIGINT}, got {value}")
    return value


def _text(data: Mapping[str, object], name: str) -> str:
    value = _require(data, name)
    if not isinstance(value, str):
        raise BadRequest(f"field {name!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise BadRequest(f"field {name!r} must not be empty")
    if len(value) > MAX_TEXT:
        raise BadRequest(f"field {name!r} is longer than {MAX_TEXT} characters")
    return value


def _currency(data: Mapping[str, object], default: str | None) -> str | None:
    value = data.get("currency")
    if value is None:
        return default
    if not isinstance(value, str) or value not in CURRENCIES:
        raise Unprocessable(f"currency {value!r} is not supported: expected one of {CURRENCIES}")
    return value


def parse_new_account(data: Mapping[str, object], *, multi_currency: bool) -> NewAccount:
    """Validate POST /accounts. v1 ignores ``currency``; v2+ defaults it to USD."""
    owner = _text(data, "owner")
    currency = _currency(data, DEFAULT_CURRENCY) if multi_currency else None
    return NewAccount(owner=owner, currency=currency)


def parse_new_deposit(data: Mapping[str, object], *, multi_currency: bool) -> NewDeposit:
    """Validate POST /deposits."""
    return NewDeposit(
        account_id=_positive_int(data, "account_id"),
        amount_cents=_positive_int(data, "amount_cents"),
        idempotency_key=_text(data, "idempotency_key"),
        currency=_currency(data, None) if multi_currency else None,
    )


def parse_new_transfer(data: Mapping[str, object]) -> NewTransfer:
    """Validate POST /transfers; the two accounts must differ."""
    transfer = NewTransfer(
        from_account=_positive_int(data, "from_account"),
        to_account=_positive_int(data, "to_account"),
        amount_cents=_positive_int(data, "amount_cents"),
        idempotency_key=_text(data, "idempotency_key"),
    )
    if transfer.from_account == transfer.to_account:
        raise BadRequest("from_account and to_account must differ")
    return transfer
