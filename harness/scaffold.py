"""``deploy-chaos init``: look at a project, find its migration tool, write a target and a
first scenario that run as they are.

Alembic (an ``alembic.ini``) or Django (a ``manage.py`` with an app that has migrations) is
found; the target gets two releases of the same code: ``previous`` (every migration but the
last) and ``current`` (all of them), so the first rehearsal is the newest migration under a
database crash and a killed instance, rolled back and rolled forward. Both files are a
starting point: give ``previous`` the code of the release before (an image tag, a checkout),
and describe the app's resources (a :class:`~harness.workload.rest.RestWorkload`) so the
data invariants have writes to judge.
"""

from __future__ import annotations

import random
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.errors import SpecError
from harness.spec import BASE_MIGRATION, PLACEHOLDERS

__all__ = ["Scaffold", "detect", "write"]

#: Where the files go (the plugin collects ``scenarios/*.yaml`` without any ini line).
TARGET_FILE = Path("scenarios") / "target.py"
DJANGO_COMMAND = "{python} manage.py runserver {host}:{port} --noreload"


@dataclass(frozen=True, slots=True)
class Scaffold:
    """What ``init`` found and will write."""

    root: Path
    tool: str  # alembic | django
    name: str
    ids: tuple[str, ...]
    adapter: str  # the adapter expression in target.py
    command: tuple[str, ...]
    health_path: str
    version_path: str
    seed: int

    @property
    def scenario_file(self) -> Path:
        return Path("scenarios") / f"{self.name.replace('-', '_')}_first_rehearsal.yaml"

    def target_text(self) -> str:
        previous = self.ids[-2] if len(self.ids) > 1 else BASE_MIGRATION
        paths = {"health_path": self.health_path, "version_path": self.version_path}
        return f'''"""deploy-chaos target for {self.name} ({self.tool}), by `deploy-chaos init`.

Two releases of the same code: "previous" knows every migration but the last, "current" all
of them. The app answers GET {self.health_path} (200 when healthy) and GET {self.version_path}
with {{"release": <APP_RELEASE from its environment>}}. Next steps: give "previous" the code
of the release before (its own command or image), and describe the app's resources with
harness.RestWorkload so the data invariants have writes to judge (see the README, "Your own
app").
"""

from pathlib import Path

import harness as dc

ROOT = Path(__file__).resolve().parent.parent
migrations = {self.adapter}
COMMAND = {self.command!r}
PATHS = {paths!r}


def target() -> dc.Target:
    return dc.Target(
        name={self.name!r},
        releases=(
            migrations.release("previous", up_to="{previous}", command=COMMAND, cwd=ROOT, **PATHS),
            migrations.release("current", command=COMMAND, cwd=ROOT, **PATHS),
        ),
        applied_migrations_sql=migrations.applied_migrations_sql,
        database="app",
        # workload=shop.spec(), invariants=shop.invariants(),  # a harness.RestWorkload
    )
'''

    def scenario_text(self) -> str:
        last = self.ids[-1]
        return f"""# yaml-language-server: $schema=scenario.schema.json
# The first rehearsal of {self.name}, written by `deploy-chaos init`: the newest
# migration ({last}) under a database crash and a killed instance, recovered by rollback
# and by rolling forward. Run it with `pytest -m deploy_chaos`
# (or `deploy-chaos run {self.scenario_file}`).
scenario: {self.name.replace("-", "_")}_first_rehearsal
description: {self.name}, previous -> current (migration {last})
target: target.py
upgrade: {{from: previous, to: current}}
instances: 2
seed: {self.seed}
faults:
  - no_fault                       # the control: the same upgrade, nothing injected
  - db_crash(duration=0.5s)        # SIGKILL the database server, crash recovery after 0.5 s
  - kill_app(1, duration=none)     # instance 1 dies and stays down until recovery
points: [before:migrate:{last}, after:rollout:0]
strategies: [rollback, roll_forward]
"""


def _command(text: str | None, default: str | None, tool: str) -> tuple[str, ...]:
    if text is None and default is None:
        raise SpecError(
            f"{tool} project: how is the app started?",
            expected='--command "{python} -m myapp --host {host} --port {port}"'
            " (an argument vector, no shell; placeholders: "
            + ", ".join(sorted(PLACEHOLDERS))
            + ")",
        )
    argv = tuple(shlex.split(text if text is not None else default or ""))
    if not argv:
        raise SpecError("--command is empty", expected="the command that starts one instance")
    if not any("{port}" in a for a in argv):
        raise SpecError(
            f"--command {text!r} does not use {{port}}",
            expected="an instance listening on the port the harness gives it",
        )
    return argv


def detect(
    root: Path,
    *,
    command: str | None = None,
    app: str | None = None,
    name: str | None = None,
    health_path: str = "/healthz",
    version_path: str = "/version",
    seed: int | None = None,
) -> Scaffold:
    """What ``init`` writes for the project in ``root`` (Alembic or Django)."""
    from harness.adapters import AlembicMigrations, DjangoMigrations

    root = root.resolve()
    if not root.is_dir():
        raise SpecError(f"init: no directory {root}")
    project = name or re.sub(r"[^A-Za-z0-9_.-]", "-", root.name).strip("-._") or "app"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", project):
        raise SpecError(
            f"init: target name {project!r}",
            expected="--name: letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    seed = random.SystemRandom().randrange(1, 10_000) if seed is None else seed
    common = {"health_path": health_path, "version_path": version_path, "seed": seed}
    if (root / "alembic.ini").is_file():
        migrations = AlembicMigrations(root / "alembic.ini")
        return Scaffold(
            root,
            "alembic",
            project,
            migrations.ids,
            'dc.AlembicMigrations(ROOT / "alembic.ini")',
            _command(command, None, "Alembic"),
            **common,  # type: ignore[arg-type]
        )
    if (root / "manage.py").is_file():
        apps = sorted(p.parent.parent.name for p in root.glob("*/migrations/__init__.py"))
        if app is None:
            if len(apps) != 1:
                raise SpecError(
                    f"init: Django project {root} has {len(apps)} apps with migrations",
                    expected="--app <one of them>",
                    choices=apps,
                )
            app = apps[0]
        migrations_ = DjangoMigrations(app, root / "manage.py")
        return Scaffold(
            root,
            "django",
            project,
            migrations_.ids,
            f'dc.DjangoMigrations("{app}", ROOT / "manage.py")',
            _command(command, DJANGO_COMMAND, "Django"),
            **common,  # type: ignore[arg-type]
        )
    raise SpecError(
        f"init: found no migration tool in {root}",
        expected="an alembic.ini (Alembic) or a manage.py with an app's migrations (Django)",
        choices=("alembic.ini", "manage.py"),
    )


def write(scaffold: Scaffold, *, force: bool = False) -> list[Path]:
    """Write the target and the scenario; refuse to overwrite (nothing written) unless
    ``force``."""
    from harness.scenario_schema import schema_text

    files = {
        scaffold.root / TARGET_FILE: scaffold.target_text(),
        scaffold.root / scaffold.scenario_file: scaffold.scenario_text(),
        # what the scenario's first line points an editor at (completion, red underlines)
        scaffold.root / "scenarios" / "scenario.schema.json": schema_text(),
    }
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        raise SpecError(
            f"init: {', '.join(existing)} already exist(s); nothing was written",
            expected="--force to overwrite",
        )
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)
