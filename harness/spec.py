"""Target and Release: how a user describes their app to the harness.

A :class:`Target` is the system under test: its database and its ordered releases. A
:class:`Release` says how to run one version of the app (a command for the local backend, an
image for the docker backend), which migration ids it knows, how to apply its migrations up
or down to an id, and where its health check answers.

Commands are argument vectors (never a shell string). They may contain these placeholders,
filled in by the backend: ``{python}`` (the interpreter running the harness), ``{port}``,
``{host}``, ``{instance}``, ``{release}``, ``{database_url}`` and, in a migrate command,
``{target}`` (a migration id, or ``base`` for "no migration applied"). The same values are
also in the environment: ``DATABASE_URL``, ``PORT``, ``HOST``, ``APP_INSTANCE``,
``APP_RELEASE`` and ``MIGRATION_TARGET``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness.errors import SpecError

if TYPE_CHECKING:
    from harness.workload.model import WorkloadSpec

__all__ = [
    "BASE_MIGRATION",
    "PLACEHOLDERS",
    "Release",
    "Target",
    "TargetInvariant",
    "fill_placeholders",
]

#: The migration "id" that means: no migration applied (used as a down target).
BASE_MIGRATION = "base"

#: Placeholders a command may use.
PLACEHOLDERS = frozenset(
    {
        "python",
        "port",
        "host",
        "instance",
        "release",
        "database_url",
        "target",
        "seed",
        "flags_file",
    }
)


class TargetInvariant(Protocol):
    """What a Target holds as an invariant: a name and a check. The checking machinery
    (:class:`harness.invariants.Invariant`, whose ``check`` takes a ``CheckContext`` and
    returns a ``Verdict``) sits above the spec, which does not need it to exist."""

    @property
    def name(self) -> str: ...

    def check(self, ctx: Any, /) -> Any: ...


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_command(owner: str, what: str, argv: Sequence[str]) -> tuple[str, ...]:
    if isinstance(argv, str):
        raise SpecError(
            f"{owner}: {what} is a string", expected="a list of arguments (no shell string)"
        )
    argv = tuple(argv)
    for arg in argv:
        if not isinstance(arg, str):
            raise SpecError(f"{owner}: {what} has a non-string argument {arg!r}")
        for _, name, _, _ in string.Formatter().parse(arg):
            if name is not None and name not in PLACEHOLDERS:
                raise SpecError(
                    f"{owner}: {what} uses unknown placeholder {{{name}}}",
                    choices=sorted(PLACEHOLDERS),
                )
    return argv


def fill_placeholders(argv: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Fill the ``{name}`` placeholders of a command; unknown ones were rejected earlier."""
    return [arg.format_map(dict(values)) for arg in argv]


@dataclass(frozen=True, slots=True)
class Release:
    """One version of the app.

    ``migrations`` are the ordered ids this release knows; after a full upgrade to it the
    database has exactly these applied. ``contract_migrations`` are the ids among them that
    must run only after every instance runs this release (the contract phase of an
    expand/contract change); a plan runs them as ``contract:<id>`` steps after ``verify``.

    Which schema states a release works on (see
    :class:`~harness.invariants.SchemaCompatible`): its own migrations (or its expand
    migrations while its contract waits), followed by any later migrations that their own
    release declares ``compatible_migrations`` (expand steps that releases before it still
    work with: a nullable column, an index, a backfill), plus the migration lists in
    ``accepts`` (stated explicitly).
    """

    name: str
    command: tuple[str, ...]
    migrate_command: tuple[str, ...]
    migrations: tuple[str, ...] = ()
    contract_migrations: tuple[str, ...] = ()
    health_path: str = "/healthz"
    version_path: str = "/version"
    image: str | None = None
    image_command: tuple[str, ...] = ()
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout: float = 15.0
    #: Migrations of this release that releases before it still work with (additive expand
    #: steps), so an older release running on them is on a schema it accepts.
    compatible_migrations: tuple[str, ...] = ()
    #: More schema states (lists of applied migration ids) this release works on.
    accepts: tuple[tuple[str, ...], ...] = ()
    #: What the migrate command is given as ``{target}`` for "no migration applied" (the
    #: harness's ``base``): Django's ``migrate <app> zero`` says ``zero``.
    migrate_base: str = BASE_MIGRATION

    def __post_init__(self) -> None:
        owner = f"release {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise SpecError(
                f"release name {self.name!r} is not valid",
                expected="letters, digits, '.', '_' or '-', starting with a letter or digit",
            )
        object.__setattr__(self, "command", _check_command(owner, "command", self.command))
        object.__setattr__(
            self,
            "migrate_command",
            _check_command(owner, "migrate_command", self.migrate_command),
        )
        object.__setattr__(
            self, "image_command", _check_command(owner, "image_command", self.image_command)
        )
        if not self.command and self.image is None:
            raise SpecError(f"{owner}: needs a command (local backend) or an image (docker)")
        migrations = tuple(self.migrations)
        if len(set(migrations)) != len(migrations):
            raise SpecError(f"{owner}: migration ids repeat: {list(migrations)}")
        if BASE_MIGRATION in migrations:
            raise SpecError(f"{owner}: {BASE_MIGRATION!r} is reserved, not a migration id")
        object.__setattr__(self, "migrations", migrations)
        contract = tuple(self.contract_migrations)
        unknown = [m for m in contract if m not in migrations]
        if unknown:
            raise SpecError(
                f"{owner}: contract migrations {unknown} are not among its migrations",
                choices=migrations,
            )
        # Contract migrations are the tail of the list: they run after the rollout.
        if contract and migrations[len(migrations) - len(contract) :] != contract:
            raise SpecError(
                f"{owner}: contract migrations {list(contract)} must be the last ones of "
                f"{list(migrations)}, in order"
            )
        object.__setattr__(self, "contract_migrations", contract)
        compatible = tuple(self.compatible_migrations)
        wrong = [m for m in compatible if m not in self.expand_migrations]
        if wrong:
            raise SpecError(
                f"{owner}: compatible migrations {wrong} are not among its expand migrations "
                "(a contract migration is never compatible with the releases before it)",
                choices=self.expand_migrations,
            )
        object.__setattr__(self, "compatible_migrations", compatible)
        for state in self.accepts:
            if isinstance(state, str) or not all(isinstance(m, str) for m in state):
                raise SpecError(f"{owner}: accepts {state!r}", expected="lists of migration ids")
        object.__setattr__(self, "accepts", tuple(tuple(state) for state in self.accepts))
        for path_name in ("health_path", "version_path"):
            value = getattr(self, path_name)
            if not isinstance(value, str) or not value.startswith("/"):
                raise SpecError(f"{owner}: {path_name} {value!r}", expected="a path like /healthz")
        if self.startup_timeout <= 0:
            raise SpecError(f"{owner}: startup_timeout {self.startup_timeout}", expected="> 0")
        object.__setattr__(self, "env", dict(self.env))
        if not isinstance(self.migrate_base, str) or not _NAME.match(self.migrate_base):
            raise SpecError(f"{owner}: migrate_base {self.migrate_base!r}", expected="a name")

    def migrate_target(self, to: str) -> str:
        """The ``{target}`` its migrate command is given to reach migration ``to``."""
        return self.migrate_base if to == BASE_MIGRATION else to

    @property
    def last_migration(self) -> str:
        """The id the database is at after a full upgrade to this release (or ``base``)."""
        return self.migrations[-1] if self.migrations else BASE_MIGRATION

    @property
    def expand_migrations(self) -> tuple[str, ...]:
        """The migrations that run before the rollout."""
        return self.migrations[: len(self.migrations) - len(self.contract_migrations)]


@dataclass(frozen=True, slots=True)
class Target:
    """The system under test: a PostgreSQL database and the app's ordered releases.

    ``applied_migrations_sql`` returns one row per applied migration id (first column), in
    order; it is how the harness reads the migration state from the database itself.
    ``database`` is the database name the app uses. ``seed_command``, when given, runs once
    in the first release's environment after its migrations, before the plan: the data a
    realistic upgrade has to carry (placeholders as in a release's commands).
    ``workload`` (a :class:`harness.workload.WorkloadSpec`) is the live traffic a run sends
    through the app; ``invariants`` (see :mod:`harness.invariants`) are checked after
    recovery, each under its own name.
    """

    name: str
    releases: tuple[Release, ...]
    applied_migrations_sql: str
    database: str = "app"
    description: str = ""
    seed_command: tuple[str, ...] = ()
    workload: WorkloadSpec | None = None
    invariants: tuple[TargetInvariant, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise SpecError(f"target name {self.name!r} is not valid")
        invariants = tuple(self.invariants)
        names = [getattr(inv, "name", None) for inv in invariants]
        if any(
            not isinstance(n, str) or not callable(getattr(inv, "check", None))
            for n, inv in zip(names, invariants, strict=True)
        ):
            raise SpecError(f"target {self.name!r}: an invariant has no name or no check()")
        if len(set(names)) != len(names):
            raise SpecError(f"target {self.name!r}: invariant names repeat: {names}")
        object.__setattr__(self, "invariants", invariants)
        if self.workload is not None:
            from harness.workload.model import WorkloadSpec

            if not isinstance(self.workload, WorkloadSpec):
                raise SpecError(f"target {self.name!r}: workload", expected="a WorkloadSpec")
        releases = tuple(self.releases)
        if not releases:
            raise SpecError(f"target {self.name!r} has no releases")
        names = [r.name for r in releases]
        if len(set(names)) != len(names):
            raise SpecError(f"target {self.name!r}: release names repeat: {names}")
        object.__setattr__(self, "releases", releases)
        object.__setattr__(
            self,
            "seed_command",
            _check_command(f"target {self.name!r}", "seed_command", self.seed_command),
        )
        if not _NAME.match(self.database):
            raise SpecError(f"target {self.name!r}: database name {self.database!r}")

    def accepts(self, release: Release, applied: Sequence[str]) -> bool:
        """Whether ``release`` works on a database with ``applied`` migrations: its own
        migrations (or its expand migrations, while its contract waits) or a state it
        ``accepts``, followed only by later migrations their release declares compatible."""
        later_compatible = {m for r in self.releases for m in r.compatible_migrations} - set(
            release.migrations
        )
        bases = (release.migrations, release.expand_migrations, *release.accepts)
        applied = tuple(applied)
        return any(
            applied[: len(base)] == base
            and all(m in later_compatible for m in applied[len(base) :])
            for base in bases
        )

    def release(self, name: str) -> Release:
        """The release called ``name``; a :class:`SpecError` listing the choices otherwise."""
        for release in self.releases:
            if release.name == name:
                return release
        raise SpecError(
            f"target {self.name!r} has no release {name!r}",
            choices=[r.name for r in self.releases],
        )
