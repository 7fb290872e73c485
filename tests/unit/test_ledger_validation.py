"""The ledger's request validation, routing and configuration (no database)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

LEDGER_DIR = Path(__file__).resolve().parents[2] / "examples" / "ledger"
if str(LEDGER_DIR) not in sys.path:
    sys.path.insert(0, str(LEDGER_DIR))

from ledger.app import route  # noqa: E402
from ledger.errors import (  # noqa: E402
    ApiError,
    BadRequest,
    ConfigurationError,
    NotFound,
    Unprocessable,
)
from ledger.models import Account, Transfer  # noqa: E402
from ledger.releases import Bug, parse_bug  # noqa: E402
from ledger.validation import (  # noqa: E402
    MAX_BIGINT,
    NewAccount,
    NewDeposit,
    NewTransfer,
    parse_body,
    parse_id,
    parse_new_account,
    parse_new_deposit,
    parse_new_transfer,
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"{", "not valid JSON"),
        (b"\xff", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
    ],
)
def test_parse_body_rejects(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_body(body)


def test_new_account_currency_by_release() -> None:
    assert parse_new_account({"owner": "ann"}, multi_currency=True) == NewAccount("ann", "USD")
    assert parse_new_account({"owner": "ann", "currency": "EUR"}, multi_currency=True) == (
        NewAccount("ann", "EUR")
    )
    # v1 does not know currencies and ignores the field, as most JSON APIs do.
    assert parse_new_account({"owner": "ann", "currency": "EUR"}, multi_currency=False) == (
        NewAccount("ann", None)
    )
    with pytest.raises(Unprocessable, match="'JPY' is not supported"):
        parse_new_account({"owner": "ann", "currency": "JPY"}, multi_currency=True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "missing field 'owner'"),
        ({"owner": None}, "missing field 'owner'"),
        ({"owner": 3}, "'owner' must be a string, got int"),
        ({"owner": "  "}, "'owner' must not be empty"),
        ({"owner": "x" * 201}, "longer than 200"),
    ],
)
def test_new_account_rejects(data: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_new_account(data, multi_currency=True)


def test_new_deposit_and_transfer() -> None:
    deposit = {"account_id": 1, "amount_cents": 250, "idempotency_key": "k1"}
    assert parse_new_deposit(deposit, multi_currency=False) == NewDeposit(1, 250, "k1")
    assert parse_new_deposit({**deposit, "currency": "GBP"}, multi_currency=True) == (
        NewDeposit(1, 250, "k1", "GBP")
    )
    transfer = {"from_account": 1, "to_account": 2, "amount_cents": 5, "idempotency_key": "k"}
    assert parse_new_transfer(transfer) == NewTransfer(1, 2, 5, "k")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"amount_cents": 0}, "between 1 and"),
        ({"amount_cents": -5}, "between 1 and"),
        ({"amount_cents": MAX_BIGINT + 1}, "between 1 and"),
        ({"amount_cents": 1.5}, "must be an integer, got float"),
        ({"amount_cents": True}, "must be an integer, got bool"),
        ({"amount_cents": "5"}, "must be an integer, got str"),
        ({"to_account": 1}, "must differ"),
        ({"idempotency_key": ""}, "must not be empty"),
        ({"from_account": None}, "missing field 'from_account'"),
    ],
)
def test_new_transfer_rejects(change: dict[str, object], message: str) -> None:
    transfer = {"from_account": 1, "to_account": 2, "amount_cents": 5, "idempotency_key": "k"}
    with pytest.raises(BadRequest, match=message):
        parse_new_transfer({**transfer, **change})


def test_parse_id() -> None:
    assert parse_id("42", "account id") == 42
    for bad in ("0", "-1", "x", "1.5", "", "٣", str(MAX_BIGINT + 1)):
        with pytest.raises(BadRequest, match="account id must be"):
            parse_id(bad, "account id")


def test_routes() -> None:
    handler, groups = route("GET", "/accounts/7")
    assert handler.__name__ == "_get_account"
    assert groups == ("7",)
    assert route("GET", "/transfers")[0].__name__ == "_find_transfer"
    assert route("POST", "/transfers")[0].__name__ == "_transfer"
    assert route("GET", "/transfers/3")[0].__name__ == "_get_transfer"
    with pytest.raises(NotFound, match="no route for GET /nope"):
        route("GET", "/nope")
    with pytest.raises(ApiError, match="POST is not allowed on /healthz; use GET") as info:
        route("POST", "/healthz")
    assert info.value.status == 405


def test_json_shapes_by_release() -> None:
    assert Account(1, "ann", 0).to_json() == {"id": 1, "owner": "ann", "balance_cents": 0}
    assert Account(1, "ann", 0, "EUR").to_json()["currency"] == "EUR"
    deposit = Transfer(3, "k", None, 1, 100).to_json()
    assert deposit["from_account"] is None
    assert "currency" not in deposit


def test_bug_switch() -> None:
    assert parse_bug(None) is None
    assert parse_bug("") is None
    assert parse_bug("double_apply") is Bug.DOUBLE_APPLY
    assert parse_bug(" ack_before_commit ") is Bug.ACK_BEFORE_COMMIT
    with pytest.raises(ConfigurationError, match="LEDGER_BUG='nope': expected one of"):
        parse_bug("nope")
