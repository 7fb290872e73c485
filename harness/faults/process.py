"""Process faults: kill, pause or restart an app instance; kill the running migration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.deploy.plan import Plan
from harness.errors import SpecError
from harness.faults.base import FaultContext, FaultKind

__all__ = ["KillApp", "KillMigration", "PauseApp", "RestartApp"]


def _check_instance(name: str, plan: Plan, instance: int) -> None:
    if not 0 <= instance < plan.instances:
        raise SpecError(
            f"fault {name}: instance {instance}",
            choices=[str(i) for i in range(plan.instances)],
        )


@dataclass(frozen=True, slots=True)
class KillApp:
    """SIGKILL one app instance; heal starts it again (same release) if it is still down."""

    instance: int = 0
    duration: float | None = 1.0
    kind = FaultKind.PROCESS

    @property
    def name(self) -> str:
        return f"kill_app({self.instance})"

    def validate(self, plan: Plan, point_step: str | None) -> None:
        _check_instance(self.name, plan, self.instance)

    def inject(self, ctx: FaultContext) -> None:
        ctx.stack.apps[self.instance].kill()

    def heal(self, ctx: FaultContext, handle: Any) -> None:
        app = ctx.stack.apps[self.instance]
        if not app.running:
            app.restart()


@dataclass(frozen=True, slots=True)
class PauseApp:
    """SIGSTOP one app instance (a hung process); heal sends SIGCONT."""

    instance: int = 0
    duration: float | None = 2.0
    kind = FaultKind.PROCESS

    @property
    def name(self) -> str:
        return f"pause_app({self.instance})"

    def validate(self, plan: Plan, point_step: str | None) -> None:
        _check_instance(self.name, plan, self.instance)

    def inject(self, ctx: FaultContext) -> None:
        ctx.stack.apps[self.instance].pause()

    def heal(self, ctx: FaultContext, handle: Any) -> None:
        app = ctx.stack.apps[self.instance]
        if app.paused:
            app.resume()


@dataclass(frozen=True, slots=True)
class RestartApp:
    """Restart one app instance (stop, start, await health)."""

    instance: int = 0
    duration: float | None = 0.0
    kind = FaultKind.PROCESS

    @property
    def name(self) -> str:
        return f"restart_app({self.instance})"

    def validate(self, plan: Plan, point_step: str | None) -> None:
        _check_instance(self.name, plan, self.instance)

    def inject(self, ctx: FaultContext) -> None:
        ctx.stack.apps[self.instance].restart()

    def heal(self, ctx: FaultContext, handle: Any) -> None:
        return None


@dataclass(frozen=True, slots=True)
class KillMigration:
    """SIGKILL the migrate command while it runs (only at ``during:migrate:*``/``contract:*``)."""

    duration: float | None = 0.0
    kind = FaultKind.PROCESS

    @property
    def name(self) -> str:
        return "kill_migration"

    def validate(self, plan: Plan, point_step: str | None) -> None:
        if point_step is None or not point_step.startswith(("migrate:", "contract:")):
            raise SpecError(
                f"fault kill_migration at {point_step!r}: it needs a running migration",
                expected="a during:migrate:<id> or during:contract:<id> point",
            )

    def inject(self, ctx: FaultContext) -> bool:
        command = ctx.command
        if command is None or command.poll() is not None:
            return False  # the migration already finished: nothing to kill (recorded)
        command.kill()
        return True

    def heal(self, ctx: FaultContext, handle: Any) -> None:
        return None
