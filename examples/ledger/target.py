"""The ledger described to deploy-chaos through the public Target/Release API.

Load it like any user's target: ``examples/ledger/target.py:target``. Nothing in the
harness knows the ledger; this file is all it gets.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType, ModuleType

from harness.spec import Release, Target

__all__ = ["APPLIED_MIGRATIONS_SQL", "APP_DIR", "RELEASE_MIGRATIONS", "target"]

#: The directory holding the ``ledger`` package: the working directory of every command.
APP_DIR = Path(__file__).resolve().parent

#: How the harness reads the migration state. Before 0001 the table may not exist yet; the
#: harness treats an undefined table as "none applied" (the migrate command creates it).
APPLIED_MIGRATIONS_SQL = "SELECT id FROM schema_migrations ORDER BY id"

#: The migration ids of each release (they match ``ledger.migrations.migrations_for``).
RELEASE_MIGRATIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "v1": ("0001", "0002"),
        "v2": ("0001", "0002", "0003", "0004", "0005"),
        "v2.1": ("0001", "0002", "0003", "0004", "0005"),
    }
)

#: The image repository of the docker backend's releases; each code release is a tag of it
#: (``docker/build-images.sh`` builds them and writes this variable to local-images.env).
IMAGE_ENV = "DEPLOY_CHAOS_LEDGER_IMAGE"
DEFAULT_IMAGE = "deploy-chaos/ledger"

#: v2 and v2.1 set ``currency`` NOT NULL in 0005: only once no v1 instance runs.
_CONTRACT = ("0005",)
#: 0003 adds a nullable column and 0004 backfills it: v1 works on both (expand/contract).
_COMPATIBLE = ("0003", "0004")


#: Backfills are throttled the way a team throttles them in production (a pause between
#: batches): with the seed data (3,000 accounts, 6,000 transfers: 18 batches), 0004's
#: UPDATEs run for about a third of a second, long enough to be caught half-way (a fault
#: point that watches for the UPDATE fires within 10 ms of the first batch).
_MIGRATE_ENV = {"LEDGER_BACKFILL_BATCH_SIZE": "500", "LEDGER_BACKFILL_PAUSE": "0.01"}


def _release(
    name: str,
    *,
    runs: str | None = None,
    bug: str | None = None,
    flagged: str | None = None,
    own_name: bool = False,
) -> Release:
    """Release ``name``; ``runs`` is the code release it runs (for a variant), ``bug`` a
    deliberate bug switch (``LEDGER_BUG``), ``flagged`` one behind the flag
    ``new-transfers`` (``LEDGER_FLAGGED_BUG``, read from the harness's flag file).
    ``own_name``: it reports ``name`` as its release (a release in its own right); a bad
    variant reports the code release it passes itself off as."""
    code = runs or name
    migrations = RELEASE_MIGRATIONS[code]
    env = dict(_MIGRATE_ENV)
    if bug is not None:
        env["LEDGER_BUG"] = bug
    if flagged is not None:
        env["LEDGER_FLAGGED_BUG"] = flagged
    serve = (
        *("{python}", "-m", "ledger.app", "--release", code),
        *("--host", "{host}", "--port", "{port}"),
        *(("--name", name) if own_name else ()),
    )
    return Release(
        name=name,
        env=env,
        command=serve,
        image=f"{os.environ.get(IMAGE_ENV, '').strip() or DEFAULT_IMAGE}:{code}",
        image_command=serve,
        migrate_command=("{python}", "-m", "ledger.migrate", "--release", code, "--to", "{target}"),
        migrations=migrations,
        contract_migrations=_CONTRACT if "0005" in migrations else (),
        compatible_migrations=_COMPATIBLE if "0005" in migrations else (),
        health_path="/healthz",
        version_path="/version",
        cwd=APP_DIR,
        startup_timeout=10.0,
    )


def _workload_module() -> ModuleType:
    """``workload.py`` beside this file (which is itself loaded by path, not as a package)."""
    name = "_deploy_chaos_ledger_workload"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, APP_DIR / "workload.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def target() -> Target:
    """The ledger: v1 (cents), v2 (multi-currency, hurried migrations), v2.1 (fix-forward)."""
    return Target(
        name="ledger",
        releases=(
            _release("v1"),
            _release("v2"),
            _release("v2.1"),
            # Bad releases, for the release faults: v2 code with a deliberate bug.
            _release("v2-unhealthy", runs="v2", bug="unhealthy"),
            _release("v2-lose-cent", runs="v2", bug="lose_cent"),
            _release("v2-no-reconnect", runs="v2", bug="no_reconnect"),
            _release("v2-fail-transfers", runs="v2", bug="fail_transfers"),
            # The delivery comparison (scenarios/ledger_delivery*.yaml): v1's code with a bad
            # change to transfers, shipped big-bang / as a canary, or dark behind a flag; and
            # v1.0.1, the same code without it (what roll_forward deploys).
            _release("v1-fail-transfers", runs="v1", bug="fail_transfers", own_name=True),
            _release("v1-flagged", runs="v1", flagged="fail_transfers", own_name=True),
            _release("v1.0.1", runs="v1", own_name=True),
        ),
        seed_command=("{python}", "-m", "ledger.seed", "--seed", "{seed}"),
        applied_migrations_sql=APPLIED_MIGRATIONS_SQL,
        database="ledger",
        workload=_workload_module().workload(),
        invariants=_workload_module().invariants(),
        description=(
            "Reference stateful app: accounts and transfers with idempotency keys over"
            " PostgreSQL. v1 -> v2 adds currencies by expand/backfill/contract; v2's"
            " rollback drops the currency columns; v2.1 fixes a half-applied v2 forward."
        ),
    )
