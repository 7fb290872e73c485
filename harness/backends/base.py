"""The backend contract: what runs a stack, whatever it runs on.

A :class:`Backend` starts :class:`Stack` objects. A stack has a database, (once the proxy is
wired) a fault proxy, and N app instances; each is a :class:`Service` with ``kill``,
``pause``/``resume`` and ``restart``. Migrations run as commands in a release's environment.
The local backend (processes) and the docker backend (containers) both implement this.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from harness.spec import Release, Target

if TYPE_CHECKING:
    from harness.backends.pgserver import PgServer
    from harness.flags import FlagFile
    from harness.proxy.client import ToxiproxyClient

__all__ = [
    "AppInstance",
    "Backend",
    "CommandResult",
    "Database",
    "MigratingStack",
    "ProxyRoute",
    "RunningCommand",
    "Service",
    "Stack",
    "harness_env",
    "launch_stack",
]


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How a command run in a release's environment ended."""

    argv: tuple[str, ...]
    returncode: int
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """A proxy of the stack's fault proxy: ``name`` on the Toxiproxy API behind ``client``."""

    client: ToxiproxyClient
    name: str
    listen_host: str
    listen_port: int


@runtime_checkable
class Service(Protocol):
    """One process (or container) of a stack."""

    @property
    def name(self) -> str: ...

    def kill(self) -> None:
        """SIGKILL (``docker kill``): no shutdown, no cleanup."""

    def pause(self) -> None:
        """SIGSTOP every process of the service (``docker pause``)."""

    def resume(self) -> None:
        """SIGCONT (``docker unpause``)."""

    def restart(self) -> None:
        """Stop if running (or after a kill), then start again and await readiness."""

    @property
    def running(self) -> bool: ...

    @property
    def paused(self) -> bool: ...

    def log_tail(self, lines: int = 30) -> str: ...


@runtime_checkable
class Database(Service, Protocol):
    """The stack's PostgreSQL server."""

    @property
    def url(self) -> str:
        """A URL straight to the server (the harness's view, never through the proxy)."""

    def sql(self, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement as superuser and return its rows."""

    def connect(
        self, *, autocommit: bool = True, timeout: float = 5.0, dbname: str | None = None
    ) -> Any:
        """A superuser psycopg connection (for callers that run many statements)."""

    def stop(self) -> None: ...

    def backup(self, path: Path) -> None:
        """Dump the target's database to ``path``."""

    def restore(self, path: Path) -> None:
        """Recreate the target's database from a :meth:`backup`."""


@runtime_checkable
class AppInstance(Service, Protocol):
    """One instance of the app."""

    @property
    def index(self) -> int: ...

    @property
    def release(self) -> Release: ...

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` where the instance answers."""

    def deploy(self, release: Release) -> None:
        """Replace the running release with ``release`` and await its health check."""


class RunningCommand(Protocol):
    """A command started in a release's environment (e.g. a migration)."""

    @property
    def argv(self) -> tuple[str, ...]: ...

    @property
    def pid(self) -> int: ...

    def wait(self, timeout: float | None = None) -> CommandResult: ...

    def kill(self) -> None: ...

    def poll(self) -> int | None: ...


def harness_env(release: Release, values: dict[str, str], run_id: str) -> dict[str, str]:
    """The variables every backend gives a release's processes (the contract in
    harness/spec.py), from its placeholder ``values``."""
    from harness.flags import FLAGS_ENV

    return {
        "DATABASE_URL": values["database_url"],
        "HOST": values["host"],
        "PORT": values["port"],
        "APP_INSTANCE": values["instance"],
        "APP_RELEASE": release.name,
        "MIGRATION_TARGET": values["target"],
        "DEPLOY_CHAOS_RUN_ID": run_id,
        FLAGS_ENV: values["flags_file"],
        "PYTHONUNBUFFERED": "1",
    }


#: The server class of a stack's database (a :class:`harness.backends.pgserver.PgServer`).
_DB = TypeVar("_DB", bound="PgServer")


class MigratingStack(Generic[_DB]):
    """What every backend's stack does the same with its release's migrate command and the
    target's applied-migrations query (a base class; a stack gives ``start_command``)."""

    name: str
    target: Target
    database: _DB

    def start_command(
        self, release: Release, argv: Sequence[str], values: dict[str, str] | None = None
    ) -> RunningCommand:
        raise NotImplementedError

    def start_migrate(self, release: Release, to: str) -> RunningCommand:
        """Start ``release``'s migrate command towards ``to`` (an id, or ``base``)."""
        from harness.errors import SpecError
        from harness.spec import BASE_MIGRATION

        if to != BASE_MIGRATION and to not in release.migrations:
            raise SpecError(
                f"release {release.name!r} has no migration {to!r}",
                choices=[BASE_MIGRATION, *release.migrations],
            )
        return self.start_command(
            release, release.migrate_command, {"target": release.migrate_target(to)}
        )

    def migrate(self, release: Release, to: str, *, timeout: float = 300.0) -> CommandResult:
        """Run the migrate command to ``to``; :class:`MigrationFailed` unless it succeeds."""
        from harness.errors import MigrationFailed

        result = self.start_migrate(release, to).wait(timeout=timeout)
        if not result.ok:
            raise MigrationFailed(
                f"{self.name}.migrate", result.argv, result.returncode, result.output
            )
        return result

    def applied_migrations(self) -> list[str]:
        """The migration ids the database says are applied, in order."""
        return list(self.database.applied(self.target.applied_migrations_sql))


@runtime_checkable
class Stack(Protocol):
    """One running instance of a target."""

    @property
    def name(self) -> str: ...

    @property
    def run_id(self) -> str: ...

    @property
    def target(self) -> Target: ...

    @property
    def database(self) -> Database: ...

    @property
    def apps(self) -> Sequence[AppInstance]: ...

    @property
    def app_database_url(self) -> str:
        """The URL the app instances and migrations use (through the proxy when there is one)."""

    @property
    def db_proxy(self) -> ProxyRoute | None:
        """The proxy between the app (and migrations) and the database."""

    @property
    def flags(self) -> FlagFile:
        """The stack's feature flags (harness.flags): the file its apps read."""

    def start_command(
        self, release: Release, argv: Sequence[str], values: dict[str, str] | None = None
    ) -> RunningCommand:
        """Start ``argv`` (placeholders filled) in ``release``'s environment."""

    def migrate(self, release: Release, to: str, *, timeout: float = 300.0) -> CommandResult:
        """Run ``release``'s migrate command to migration id ``to``; raise on failure."""

    def applied_migrations(self) -> list[str]:
        """The migration ids applied, read from the database."""

    def close(self) -> None:
        """Tear everything down; tolerate a half-built stack."""

    def __enter__(self) -> Stack: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class Backend(Protocol):
    """What runs stacks: ``local`` or ``docker``."""

    @property
    def name(self) -> str: ...

    @property
    def run_id(self) -> str: ...

    def start_stack(
        self,
        target: Target,
        release: Release,
        *,
        instances: int = 2,
        name: str | None = None,
        seed: int | None = None,
    ) -> Stack:
        """Database up (from a template), release's migrations applied, the target's seed
        data loaded with ``seed`` (when given and the target has a seed command), instances
        healthy."""

    def keep(self, stack: Stack) -> list[str]:
        """Leave ``stack`` running after the session (``--chaos-keep``): closing it, the
        backend and session-start reaping spare it; ``deploy-chaos reap`` removes it.
        Returns how to reach it (lines for a person: addresses, commands)."""

    def close(self) -> None:
        """Tear down every stack still open and remove the run's resources."""

    def __enter__(self) -> Backend: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _Launchable(Protocol):
    def start(self, release: Release, instances: int, seed: int | None = None) -> None: ...

    def close(self) -> None: ...


_S = TypeVar("_S", bound=_Launchable)


def launch_stack(
    stacks: list[_S], stack: _S, release: Release, instances: int, seed: int | None = None
) -> _S:
    """What every backend's ``start_stack`` does once it has built ``stack``: track it (so
    the backend's close tears it down), start it, and close it when starting fails half-way."""
    from harness.errors import SpecError

    if instances < 1:
        raise SpecError(f"instances={instances}", expected="at least 1")
    stacks.append(stack)
    try:
        stack.start(release, instances, seed)
    except BaseException:
        with contextlib.suppress(Exception):
            stack.close()
        raise
    return stack


def migrate_and_seed(stack: Stack, release: Release, seed: int | None) -> None:
    """Bring a fresh stack's database to ``release``'s last migration with the release's own
    migrate command, then load the target's seed data for ``seed`` (when both are given)."""
    from harness.errors import ServiceError

    if release.migrations:
        stack.migrate(release, release.last_migration)
    if seed is None or not stack.target.seed_command:
        return
    seeded = stack.start_command(release, stack.target.seed_command, {"seed": str(seed)}).wait(
        timeout=300
    )
    if not seeded.ok:
        raise ServiceError(
            f"{stack.name}.seed",
            f"seed data (seed {seed})",
            f"exit status {seeded.returncode}",
            seeded.output[-3000:],
        )
