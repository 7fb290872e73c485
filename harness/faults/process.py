"""Process faults: kill, pause or restart an app instance; kill the running migration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.deploy.plan import Plan
from harness.errors import NothingToActOn, SpecError
from harness.faults.base import FaultContext, FaultKind, Injected

__all__ = ["KillApp", "KillMigration", "PauseApp", "RestartApp"]


def _running_app(ctx: FaultContext, fault: str, instance: int) -> Injected:
    """What an instance fault acts on; NothingToActOn when the instance is not running."""
    app = ctx.stack.apps[instance]
    if not app.running or app.paused:
        state = "paused" if app.paused else "not running"
        raise NothingToActOn(fault, f"instance {instance} ({app.release.name}) is {state}")
    return Injected({"instance": instance, "release": app.release.name})


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

    def inject(self, ctx: FaultContext) -> Injected:
        acted = _running_app(ctx, self.name, self.instance)
        ctx.stack.apps[self.instance].kill()
        return acted

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

    def inject(self, ctx: FaultContext) -> Injected:
        acted = _running_app(ctx, self.name, self.instance)
        ctx.stack.apps[self.instance].pause()
        return acted

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

    def inject(self, ctx: FaultContext) -> Injected:
        acted = _running_app(ctx, self.name, self.instance)
        ctx.stack.apps[self.instance].restart()
        return acted

    def heal(self, ctx: FaultContext, handle: Any) -> None:
        return None


@dataclass(frozen=True, slots=True)
class KillMigration:
    """SIGKILL the migrate command while it runs (only at ``during:migrate:*``/``contract:*``)."""

    duration: float | None = 0.0
    kind = FaultKind.PROCESS
    #: The moments of a fault point it can fire at (checked when the run is built).
    moments = ("during",)

    @property
    def name(self) -> str:
        return "kill_migration"

    def validate(self, plan: Plan, point_step: str | None) -> None:
        if point_step is None or not point_step.startswith(("migrate:", "contract:")):
            raise SpecError(
                f"fault kill_migration at {point_step!r}: it needs a running migration",
                expected="a during:migrate:<id> or during:contract:<id> point",
            )

    def inject(self, ctx: FaultContext) -> Injected:
        command = ctx.command
        if command is None:
            raise NothingToActOn(self.name, "no migration is running")
        if command.poll() is not None:
            raise NothingToActOn(self.name, "the migration had already exited")
        command.kill()
        return Injected({"pid": command.pid, "argv": " ".join(command.argv)[:300]})

    def heal(self, ctx: FaultContext, handle: Any) -> None:
        return None
