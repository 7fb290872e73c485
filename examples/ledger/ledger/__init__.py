"""ledger: the reference stateful app of deploy-chaos.

A small money ledger (accounts, transfers with idempotency keys) over PostgreSQL, with three
releases whose migrations carry real deployment hazards. See ``examples/ledger/README.md``.
"""

from __future__ import annotations

__all__: list[str] = []
