"""The migrations of each release, as a registry the migrate tool plans over.

0001 and 0002 are shared by every release. v2 adds 0003-0005 written in a hurry; v2.1 has
the same ids, made idempotent and resumable, to fix forward a half-applied v2 upgrade.
"""

from __future__ import annotations

from ledger.migrations.currency import (
    backfill_by_id_range,
    backfill_nulls,
    contract_with_validation,
    nothing,
)
from ledger.migrations.model import Direction, Migration, Step, StepContext
from ledger.migrations.plan import BASE, MigrationPlan, plan_migrations
from ledger.migrations.sql import SqlFile
from ledger.releases import ReleaseName

__all__ = [
    "BASE",
    "Direction",
    "Migration",
    "MigrationPlan",
    "Step",
    "StepContext",
    "migrations_for",
    "plan_migrations",
]


def _sql(migration_set: str, stem: str) -> tuple[SqlFile, SqlFile]:
    return (
        SqlFile(f"{migration_set}/{stem}.up.sql"),
        SqlFile(f"{migration_set}/{stem}.down.sql"),
    )


_ACCOUNTS_UP, _ACCOUNTS_DOWN = _sql("common", "0001_accounts")
_TRANSFERS_UP, _TRANSFERS_DOWN = _sql("common", "0002_transfers")
_V2_EXPAND_UP, _V2_EXPAND_DOWN = _sql("v2", "0003_currency_expand")
_V2_CONTRACT_UP, _V2_CONTRACT_DOWN = _sql("v2", "0005_currency_contract")
_V21_EXPAND_UP, _V21_EXPAND_DOWN = _sql("v2_1", "0003_currency_expand")

_COMMON = (
    Migration("0001", "accounts", _ACCOUNTS_UP, _ACCOUNTS_DOWN, atomic=True),
    Migration("0002", "transfers", _TRANSFERS_UP, _TRANSFERS_DOWN, atomic=True),
)

_V2 = (
    *_COMMON,
    Migration("0003", "currency_expand", _V2_EXPAND_UP, _V2_EXPAND_DOWN, atomic=False),
    Migration("0004", "currency_backfill", backfill_by_id_range, nothing, atomic=False),
    Migration("0005", "currency_contract", _V2_CONTRACT_UP, _V2_CONTRACT_DOWN, atomic=False),
)

_V2_1 = (
    *_COMMON,
    Migration("0003", "currency_expand", _V21_EXPAND_UP, _V21_EXPAND_DOWN, atomic=True),
    Migration("0004", "currency_backfill", backfill_nulls, nothing, atomic=False),
    # The down step is v2's (dropping NOT NULL is already idempotent), run atomically.
    Migration(
        "0005", "currency_contract", contract_with_validation, _V2_CONTRACT_DOWN, atomic=True
    ),
)


def migrations_for(release: ReleaseName) -> tuple[Migration, ...]:
    """The ordered migrations a release knows."""
    if release is ReleaseName.V1:
        return _COMMON
    if release is ReleaseName.V2:
        return _V2
    return _V2_1
