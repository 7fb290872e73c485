"""The deploy-chaos pytest plugin (entry point ``pytest11: deploy_chaos``).

Thin on purpose: options, the marker and fixtures that wrap the core API. Heavy modules are
imported inside the fixtures, so loading the plugin costs nothing for tests that don't use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from harness.backends import BackendName
from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.backends.base import Backend

__all__ = ["MARKER", "OPT_BACKEND", "OPT_PG_BINDIR", "OPT_SEED"]

MARKER = "deploy_chaos"
OPT_BACKEND = "chaos_backend"
OPT_PG_BINDIR = "chaos_pg_bindir"
OPT_SEED = "chaos_seed"

_CHAOS_FIXTURES = frozenset({"chaos_backend"})


def _backend_value(value: str) -> str:
    try:
        return BackendName.parse(value).value
    except ConfigError as exc:
        raise pytest.UsageError(f"--chaos-backend: {exc}") from None


def _seed_value(value: str) -> int:
    try:
        seed = int(value)
    except ValueError:
        raise pytest.UsageError(f"--chaos-seed={value!r}: expected an integer") from None
    if seed < 0:
        raise pytest.UsageError(f"--chaos-seed={value!r}: expected a non-negative integer")
    return seed


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("deploy-chaos", "deploy-chaos: rehearse deployments under failure")
    group.addoption(
        "--chaos-backend",
        dest=OPT_BACKEND,
        default=None,
        help="what runs the stacks: auto, local or docker (ini: chaos_backend; default auto)",
    )
    group.addoption(
        "--chaos-pg-bindir",
        dest=OPT_PG_BINDIR,
        default=None,
        help="directory of the PostgreSQL server binaries (ini: chaos_pg_bindir; "
        "env DEPLOY_CHAOS_PG_BINDIR)",
    )
    group.addoption(
        "--chaos-seed",
        dest=OPT_SEED,
        default=None,
        help="seed for every random choice of the run (ini: chaos_seed; default: random, printed)",
    )
    parser.addini("chaos_backend", "default for --chaos-backend", default="auto")
    parser.addini("chaos_pg_bindir", "default for --chaos-pg-bindir", default="")
    parser.addini("chaos_seed", "default for --chaos-seed", default="")


def _option(config: pytest.Config, dest: str) -> str | None:
    value = config.getoption(dest)
    if value is None:
        ini = config.getini(dest)
        value = ini if ini else None
    return None if value is None else str(value)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: a deploy-chaos run (select with -m {MARKER}); added automatically to "
        "tests that use the harness's fixtures",
    )
    backend = _option(config, OPT_BACKEND)
    if backend is not None:
        _backend_value(backend)
    seed = _option(config, OPT_SEED)
    if seed is not None:
        _seed_value(seed)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if _CHAOS_FIXTURES.intersection(fixtures):
            item.add_marker(MARKER)


@pytest.fixture(scope="session")
def chaos_backend(pytestconfig: pytest.Config) -> Iterator[Backend]:
    """The session's backend: every stack started through it is torn down at the end."""
    from harness.backends import open_backend

    name = _backend_value(_option(pytestconfig, OPT_BACKEND) or "auto")
    with open_backend(name, pg_bindir=_option(pytestconfig, OPT_PG_BINDIR)) as backend:
        yield backend
