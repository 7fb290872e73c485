"""What the built-in invariants share: identifiers and values as the checks read them, and
the settle window (how long a check may look again after the run's traffic stopped)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from psycopg import sql

from harness.errors import SpecError
from harness.invariants.base import CheckContext
from harness.workload.history import JsonValue

if TYPE_CHECKING:
    pass


__all__: list[str] = []  # helpers of the invariants package, not an API


def _identifier(name: str, what: str) -> sql.Identifier:
    """``table`` or ``schema.table`` as a quoted identifier."""
    parts = name.split(".")
    if not name or len(parts) > 2 or not all(parts):
        raise SpecError(f"{what} {name!r}", expected="a name like table or schema.table")
    return sql.Identifier(*parts)


def _require(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{what} {value!r}", expected="a non-empty string")


def _json_number(value: Any) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, int | float):
        return value
    return float(value)


def _fields(pairs: Iterable[tuple[str, tuple[str, ...]]]) -> dict[str, set[str]]:
    merged: dict[str, set[str]] = {}
    for op, names in pairs:
        merged.setdefault(op, set()).update(names)
    return merged


def _unique(ctx: CheckContext, table: str, column: str) -> bool:
    """Whether ``table.column`` alone has a unique index (no partial one)."""
    name = _identifier(table, "table").as_string(ctx.connection())
    rows = ctx.query(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a"
        " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        " WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indnkeyatts = 1"
        " AND i.indpred IS NULL AND a.attname = %s)",
        (name, column),
    )
    return bool(rows[0][0])


def _error(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return f"{type(exc).__name__}: {primary or str(exc).strip()}"[:500]


#: Nobody but the checker is connected to the database, and no prepared transaction waits:
#: nothing can still commit a missing write, so the settle window ends at once.
_QUIET = (
    "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
    " AND backend_type = 'client backend' AND pid <> pg_backend_pid())"
    " AND NOT EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE database = current_database())"
)


def _settle_window(value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 600:
        raise SpecError(f"{what} settle_s {value!r}", expected="seconds in 0..600")


def _window(ctx: CheckContext, settle_s: float) -> float:
    """The settle window left: ``settle_s`` counts from when the run's traffic stopped (the
    checks before took part of it); a little is always left for one more look."""
    left = ctx.run.settle_left(settle_s) if ctx.run is not None else settle_s
    return max(left, 0.01)


def _count(entry: Mapping[str, JsonValue], key: str) -> int:
    value = entry.get(key)
    return int(value) if isinstance(value, int | float) else 0
