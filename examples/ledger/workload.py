"""The ledger's clients and what its data must satisfy, declared through the public API.

The model opens accounts (EUR, GBP or USD), deposits, transfers between accounts of one
currency, reads accounts, and replays idempotency keys: a key whose answer was lost
(``info``) is retried with the same key, as a careful client does, and now and then an
acknowledged one is replayed (a client that did not see the answer). What the client asked
is in the invoke value; what it was told (ids, ``created``, ``currency`` when the answer has
one) in the completion.

The invariants say what the writes mean: an account is a row of ``accounts`` with the id the
client was told, a deposit or transfer a row of ``transfers`` with its idempotency key; money
per currency is what the books held before plus the acknowledged deposits (a v1 schema has
no currency: everything it holds reads as USD); every transfer references existing accounts;
the books balance (each balance equals its transfers); an acknowledged account or transfer
reads back through the running release as the client was told (a release whose answer has no
``currency`` means USD).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from harness.invariants import (
    Conservation,
    DurableAcknowledgedWrites,
    Flow,
    IdempotentWrite,
    Invariant,
    MigrationProbe,
    NoDuplicateEffects,
    ReadableByRunningRelease,
    ReadBack,
    ReferentialIntegrity,
    Relation,
    SchemaCompatible,
    SqlInvariant,
    Write,
)
from harness.workload import (
    Answer,
    Call,
    Completion,
    Draw,
    ErrorKind,
    HttpMethod,
    OpType,
    Scalar,
    WorkloadSpec,
    default_completion,
)

__all__ = ["CURRENCIES", "MIX", "LedgerModel", "invariants", "workload"]

#: Currencies the model opens accounts in, with their weights.
CURRENCIES: Mapping[str, float] = {"USD": 0.5, "EUR": 0.3, "GBP": 0.2}
#: The operations and their weights.
MIX: Mapping[str, float] = {"open_account": 2, "deposit": 4, "transfer": 4, "read": 2, "replay": 1}
#: What v1 means by an amount: there is no currency column, everything is USD.
IMPLICIT_CURRENCY = "USD"
#: Acknowledged writes kept for replays.
_REPLAY_POOL = 500


class LedgerModel:
    """The ledger's clients (one per run, shared by the client threads).

    ``currencies`` weighs the currencies accounts are opened in; ``mix`` the operations.
    """

    def __init__(
        self,
        currencies: Mapping[str, float] = CURRENCIES,
        mix: Mapping[str, float] | None = None,
    ) -> None:
        self._currencies = dict(currencies)
        self._weights = dict(mix or MIX)
        self._lock = threading.Lock()
        self._accounts: list[tuple[int, str]] = []
        self._by_currency: dict[str, list[int]] = {}
        self._acknowledged: list[Call] = []
        self._retries: dict[int, list[Call]] = {}

    def mix(self) -> Mapping[str, float]:
        return self._weights

    def call(self, f: str, draw: Draw) -> Call | None:
        with self._lock:
            queued = self._retries.get(draw.client)
            if queued:
                return queued.pop(0)
        rng = draw.rng
        if f == "open_account":
            currencies = self._currencies
            currency = rng.choices(list(currencies), weights=list(currencies.values()))[0]
            owner = draw.fake.name()
            return Call(
                f,
                HttpMethod.POST,
                "/accounts",
                {"owner": owner, "requested_currency": currency},
                {"owner": owner, "currency": currency},
            )
        with self._lock:
            accounts = list(self._accounts)
            groups = {c: list(ids) for c, ids in self._by_currency.items() if len(ids) >= 2}
            acknowledged = list(self._acknowledged)
        key = f"wl-{rng.getrandbits(64):016x}"
        if f == "deposit" and accounts:
            account, currency = rng.choice(accounts)
            amount = rng.randint(100, 50_000)
            body: dict[str, Scalar] = {
                "account_id": account,
                "amount_cents": amount,
                "idempotency_key": key,
                "currency": currency,
            }
            return Call(f, HttpMethod.POST, "/deposits", body, body)
        if f == "transfer" and groups:
            currency = rng.choice(sorted(groups))
            source, dest = rng.sample(groups[currency], 2)
            value: dict[str, Scalar] = {
                "from_account": source,
                "to_account": dest,
                "amount_cents": rng.randint(1, 500),
                "idempotency_key": key,
            }
            return Call(
                f,
                HttpMethod.POST,
                "/transfers",
                {**value, "account_currency": currency},
                value,
            )
        if f == "read" and accounts:
            account, _ = rng.choice(accounts)
            return Call(f, HttpMethod.GET, f"/accounts/{account}", {"id": account})
        if f == "replay" and acknowledged:
            return rng.choice(acknowledged)
        return None

    def interpret(self, call: Call, answer: Answer) -> Completion:
        body = answer.body
        if 200 <= answer.status < 300:
            told: dict[str, Scalar] = {}
            for name in ("id", "owner", "currency", "balance_cents"):
                item = body.get(name)
                if isinstance(item, str | int) and not isinstance(item, bool):
                    told[name] = item
            if call.f in ("deposit", "transfer"):
                told["created"] = answer.status == 201
            return Completion(OpType.OK, told)
        error = f"HTTP {answer.status}: {body.get('error', answer.text[:200])}"
        if call.method is HttpMethod.GET:
            # A read changes nothing: whatever went wrong, it was not applied.
            kind = ErrorKind.REJECTED if answer.status < 500 else ErrorKind.UNAVAILABLE
            return Completion(OpType.FAIL, {}, error, kind)
        if answer.status >= 500:
            # Every error answer to a write says what happened to it.
            if body.get("outcome") == "not_applied":
                return Completion(OpType.FAIL, {}, error, ErrorKind.UNAVAILABLE)
            return Completion(OpType.INFO, {}, error, ErrorKind.INDETERMINATE)
        return default_completion(answer, {})

    def completed(self, call: Call, completion: Completion, draw: Draw) -> None:
        with self._lock:
            if call.f == "open_account" and completion.type is OpType.OK:
                account = completion.value.get("id")
                currency = completion.value.get("currency") or IMPLICIT_CURRENCY
                if isinstance(account, int):
                    self._accounts.append((account, str(currency)))
                    self._by_currency.setdefault(str(currency), []).append(account)
            elif call.f in ("deposit", "transfer"):
                if completion.type is OpType.OK:
                    self._acknowledged.append(call)
                    del self._acknowledged[:-_REPLAY_POOL]
                elif completion.type is OpType.INFO:
                    # Unknown outcome: replay the key to find out (at most once applied).
                    self._retries.setdefault(draw.client, []).append(call)


def workload() -> WorkloadSpec:
    """Four clients, 30 operations a second in total, 2 s client timeout."""
    return WorkloadSpec(model=LedgerModel, clients=4, rate=30.0, timeout=2.0)


#: Columns holding currency, and the same NOT NULL: the effects of v2's 0003 and 0005.
_CURRENCY_COLUMNS = (
    "SELECT count(*)::float8 / 2 FROM information_schema.columns"
    " WHERE table_schema = current_schema() AND table_name IN ('accounts', 'transfers')"
    " AND column_name = 'currency'"
)

#: Balances per currency; a schema without currency (v1, or after v2's 0003 down) holds USD.
_TOTALS = (
    "SELECT coalesce(to_jsonb(a) ->> 'currency', 'USD') AS currency, sum(balance_cents)"
    " FROM accounts a GROUP BY 1"
)

#: Accounts whose balance is not what their transfers add up to.
_BOOKS = """
SELECT a.id, a.balance_cents, coalesce(i.total, 0) - coalesce(o.total, 0) AS from_transfers
FROM accounts a
LEFT JOIN (SELECT to_account, sum(amount_cents) AS total FROM transfers GROUP BY 1) i
  ON i.to_account = a.id
LEFT JOIN (SELECT from_account, sum(amount_cents) AS total FROM transfers
           WHERE from_account IS NOT NULL GROUP BY 1) o
  ON o.from_account = a.id
WHERE a.balance_cents <> coalesce(i.total, 0) - coalesce(o.total, 0)
ORDER BY a.id
"""


def invariants() -> tuple[Invariant, ...]:
    """What the ledger's data must satisfy after any recovery."""
    return (
        DurableAcknowledgedWrites(
            (
                Write("open_account", "accounts", "id", "id"),
                Write("deposit", "transfers", "idempotency_key", "idempotency_key"),
                Write("transfer", "transfers", "idempotency_key", "idempotency_key"),
            )
        ),
        NoDuplicateEffects(
            (
                IdempotentWrite(
                    ("deposit", "transfer"),
                    "idempotency_key",
                    table="transfers",
                    column="idempotency_key",
                    applied_field="created",
                ),
            )
        ),
        Conservation(
            _TOTALS,
            (Flow("deposit", "amount_cents", "currency", "idempotency_key"),),
        ),
        ReferentialIntegrity(
            (
                Relation("transfers", "to_account", "accounts", "id"),
                Relation("transfers", "from_account", "accounts", "id"),
            )
        ),
        SchemaCompatible(
            (
                MigrationProbe("0003", _CURRENCY_COLUMNS),
                MigrationProbe("0005", _CURRENCY_COLUMNS + " AND is_nullable = 'NO'"),
            )
        ),
        ReadableByRunningRelease(
            (
                ReadBack(
                    "open_account",
                    "/accounts/{id}",
                    ("id", "owner", "currency"),
                    {"currency": IMPLICIT_CURRENCY},
                ),
                ReadBack(
                    "deposit",
                    "/transfers?idempotency_key={idempotency_key}",
                    ("id", "to_account", "amount_cents", "currency"),
                    {"currency": IMPLICIT_CURRENCY},
                ),
                ReadBack(
                    "transfer",
                    "/transfers?idempotency_key={idempotency_key}",
                    ("id", "from_account", "to_account", "amount_cents", "currency"),
                    {"currency": IMPLICIT_CURRENCY},
                ),
            ),
            sample=60,
        ),
        SqlInvariant(
            "books_balance",
            _BOOKS,
            "every account's balance equals its incoming minus its outgoing transfers",
        ),
    )
