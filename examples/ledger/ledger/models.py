"""What the API returns: accounts and transfers, and their JSON shape per release."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Account", "Transfer"]


@dataclass(frozen=True, slots=True)
class Account:
    """An account. ``currency`` is None when read by v1 (it does not know the column)."""

    id: int
    owner: str
    balance_cents: int
    currency: str | None = None

    def to_json(self) -> dict[str, object]:
        """The JSON object; v1's has no ``currency`` key."""
        data: dict[str, object] = {
            "id": self.id,
            "owner": self.owner,
            "balance_cents": self.balance_cents,
        }
        if self.currency is not None:
            data["currency"] = self.currency
        return data


@dataclass(frozen=True, slots=True)
class Transfer:
    """A transfer; a deposit is a transfer whose ``from_account`` is None."""

    id: int
    idempotency_key: str
    from_account: int | None
    to_account: int
    amount_cents: int
    currency: str | None = None

    def to_json(self) -> dict[str, object]:
        """The JSON object; v1's has no ``currency`` key."""
        data: dict[str, object] = {
            "id": self.id,
            "idempotency_key": self.idempotency_key,
            "from_account": self.from_account,
            "to_account": self.to_account,
            "amount_cents": self.amount_cents,
        }
        if self.currency is not None:
            data["currency"] = self.currency
        return data
