"""Seed data: the accounts and transfers a realistic upgrade has to carry.

``python -m ledger.seed [--accounts N] [--transfers M] [--seed S]`` (``DATABASE_URL`` from the
environment). Every account gets a deposit; transfers move small amounts between random
accounts; balances are computed from the transfers, so the books balance. Deterministic for
a given seed. Works on any schema from 0002 on (writes ``currency`` USD when the column
exists: from 0004 on it is NOT NULL).
"""

from __future__ import annotations

import argparse
import sys

from ledger.db import database_url
from ledger.errors import ConfigurationError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ledger.seed", description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--transfers", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.accounts < 2 or args.transfers < 0:
        parser.error("--accounts must be >= 2 and --transfers >= 0")
    try:
        url = database_url()
    except ConfigurationError as exc:
        print(f"ledger.seed: error: {exc}", file=sys.stderr)
        return 2
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, application_name="ledger-seed") as conn, conn.transaction():
        has_currency = conn.execute(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_name = 'accounts' AND column_name = 'currency'"
        ).fetchone() == (1,)
        conn.execute("SELECT setseed(%s)", ((args.seed % 1000) / 1000.0,))
        # From 0003 on every row carries its currency (from 0004 on it must).
        column = sql.SQL(", currency" if has_currency else "")
        usd = sql.SQL(", 'USD'" if has_currency else "")
        first = conn.execute(
            sql.SQL(
                "INSERT INTO accounts (owner{column}) SELECT 'seed-' || g{usd}"
                " FROM generate_series(1, %s) g RETURNING id"
            ).format(column=column, usd=usd),
            (args.accounts,),
        ).fetchall()
        low = min(r[0] for r in first)
        high = max(r[0] for r in first)
        conn.execute(
            sql.SQL(
                "INSERT INTO transfers"
                " (idempotency_key, from_account, to_account, amount_cents{column})"
                " SELECT 'seed-deposit-' || id, NULL, id,"
                " 10000 + floor(random() * 90000)::bigint{usd}"
                " FROM accounts WHERE id BETWEEN %s AND %s ORDER BY id"
            ).format(column=column, usd=usd),
            (low, high),
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO transfers"
                " (idempotency_key, from_account, to_account, amount_cents{column})"
                " SELECT 'seed-transfer-' || g, a, CASE WHEN b = a"
                "   THEN %(low)s + (a - %(low)s + 1) %% (%(high)s - %(low)s + 1) ELSE b END,"
                " 1 + floor(random() * 100)::bigint{usd}"
                " FROM (SELECT g,"
                "   %(low)s + floor(random() * (%(high)s - %(low)s + 1))::bigint AS a,"
                "   %(low)s + floor(random() * (%(high)s - %(low)s + 1))::bigint AS b"
                "   FROM generate_series(1, %(n)s) g) pairs ORDER BY g"
            ).format(column=column, usd=usd),
            {"low": low, "high": high, "n": args.transfers},
        )
        conn.execute(
            "UPDATE accounts a SET balance_cents = coalesce(i.total, 0) - coalesce(o.total, 0)"
            " FROM accounts x"
            " LEFT JOIN (SELECT to_account, sum(amount_cents) total FROM transfers"
            "            GROUP BY to_account) i ON i.to_account = x.id"
            " LEFT JOIN (SELECT from_account, sum(amount_cents) total FROM transfers"
            "            WHERE from_account IS NOT NULL GROUP BY from_account) o"
            "   ON o.from_account = x.id"
            " WHERE a.id = x.id AND x.id BETWEEN %s AND %s",
            (low, high),
        )
    print(f"ledger.seed: {args.accounts} accounts, {args.transfers} transfers (seed {args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
