"""Recovery strategies: what happens after a failure is detected.

- ``rollback``: down-migrate to release A's last migration, redeploy A on every instance.
- ``roll_forward``: deploy the fix release (or B again): finish its migrations, roll it out on
  every instance, verify, run its contract migrations. They must be safe to re-run.
- ``halt``: freeze the rollout where it is; nothing is reversed, mixed versions stay.
- ``restore``: restore the backup taken before the plan started, redeploy A.
- ``kill_switch``: turn every flag the plan turned on back off (the stack's flag file, see
  :mod:`harness.flags`) and wait until the instances that report their flags say so:
  failing forward without a redeploy or a down migration. Needs a flag rollout.

Each recovery step is recorded in the run's timeline. A recovery step that fails ends the
recovery: the failure is the outcome (recorded), never a crash of the harness.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from harness.backends.base import AppInstance, Stack
from harness.deploy.plan import Plan
from harness.errors import ChaosError, ServiceError
from harness.report.outcome import EventKind, Timeline
from harness.spec import BASE_MIGRATION, Release

__all__ = ["Deploy", "RecoveryResult", "RecoveryStep", "StrategyName", "recover"]


class StrategyName(enum.Enum):
    ROLLBACK = "rollback"
    ROLL_FORWARD = "roll_forward"
    HALT = "halt"
    RESTORE = "restore"
    KILL_SWITCH = "kill_switch"

    @classmethod
    def parse(cls, value: str) -> StrategyName:
        from harness.errors import SpecError

        try:
            return cls(value)
        except ValueError:
            raise SpecError(f"unknown strategy {value!r}", choices=[s.value for s in cls]) from None


@dataclass(frozen=True, slots=True)
class RecoveryStep:
    name: str
    ok: bool
    error: str = ""


@dataclass(slots=True)
class RecoveryResult:
    strategy: StrategyName
    steps: list[RecoveryStep] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)


#: How a recovery replaces an instance's release (the runner's: drain, deploy, admit).
Deploy = Callable[[AppInstance, Release], None]


def _plain_deploy(app: AppInstance, release: Release) -> None:
    app.deploy(release)


class _Failed(Exception):
    """A recovery step failed; the recovery stops there."""


@dataclass(slots=True)
class _Recovery:
    stack: Stack
    plan: Plan
    timeline: Timeline
    result: RecoveryResult
    step_timeout: float
    deploy: Deploy

    def step(self, name: str, action: Callable[[], object]) -> None:
        self.timeline.add(EventKind.RECOVERY_STEP_START, name)
        try:
            action()
        except (ChaosError, OSError) as exc:
            message = f"{type(exc).__name__}: {exc}"
            self.timeline.add(EventKind.RECOVERY_STEP_FAILED, name, message[:2000])
            self.result.steps.append(RecoveryStep(name, False, message[:4000]))
            raise _Failed(name) from exc
        self.timeline.add(EventKind.RECOVERY_STEP_END, name)
        self.result.steps.append(RecoveryStep(name, True))

    def migrate(self, prefix: str, release: Release, to: str) -> None:
        applied = self._applied()
        wanted = (
            []
            if to == BASE_MIGRATION
            else list(release.migrations[: release.migrations.index(to) + 1])
        )
        if applied == wanted:
            return
        self.step(
            f"{prefix}:migrate:{to}",
            lambda: self.stack.migrate(release, to, timeout=self.step_timeout),
        )

    def rollout_all(self, prefix: str, release: Release, *, force: bool = False) -> None:
        for app in self.stack.apps:
            if (
                force
                or app.release.name != release.name
                or not app.running
                or app.paused
                or not _healthy(app.base_url + release.health_path)
            ):
                self.step(f"{prefix}:rollout:{app.index}", partial(self.deploy, app, release))

    def _applied(self) -> list[str] | None:
        try:
            return self.stack.applied_migrations()
        except Exception:
            return None


def _healthy(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 (loopback)
            return int(response.status) == 200
    except (OSError, urllib.error.URLError):
        return False


def recover(
    strategy: StrategyName,
    *,
    stack: Stack,
    plan: Plan,
    timeline: Timeline,
    fix: Release | None,
    backup: Path | None,
    step_timeout: float = 120.0,
    deploy: Deploy = _plain_deploy,
) -> RecoveryResult:
    """Run ``strategy`` on ``stack``; every step lands in ``timeline``. Instances are
    replaced with ``deploy`` (the runner drains them through its balancer first)."""
    result = RecoveryResult(strategy)
    rec = _Recovery(stack, plan, timeline, result, step_timeout, deploy)
    timeline.add(EventKind.RECOVERY_START, strategy.value)
    try:
        if strategy is StrategyName.ROLLBACK:
            _ensure_database(rec, strategy.value)
            rec.migrate("rollback", plan.dest, plan.source.last_migration)
            rec.rollout_all("rollback", plan.source)
        elif strategy is StrategyName.ROLL_FORWARD:
            release = fix or plan.dest
            _ensure_database(rec, strategy.value)
            expand = release.expand_migrations
            rec.migrate("roll_forward", release, expand[-1] if expand else BASE_MIGRATION)
            rec.rollout_all("roll_forward", release)
            rec.step("roll_forward:verify", lambda: _verify(stack, release))
            if release.contract_migrations:
                rec.migrate("roll_forward", release, release.last_migration)
        elif strategy is StrategyName.RESTORE:
            if backup is None:
                raise ServiceError(stack.name, "restore", "no backup was taken")
            _ensure_database(rec, strategy.value)
            rec.step("restore:database", lambda: stack.database.restore(backup))
            rec.rollout_all("restore", plan.source, force=True)
        elif strategy is StrategyName.KILL_SWITCH:
            on = stack.flags.on()
            if not on:
                # Detected before any flag step (a canary, a migration): there is nothing
                # to switch off, and the failure stays. Said, never a silent success.
                rec.step("kill_switch:no_flag_on", partial(_nothing_on, stack))
            for name in on:
                rec.step(f"kill_switch:flag:{name}", partial(_switch_off, stack, name))
        # HALT: nothing is reversed.
    except _Failed:
        pass
    timeline.add(EventKind.RECOVERY_END, strategy.value, "ok" if result.ok else "failed")
    return result


def _nothing_on(stack: Stack) -> None:
    raise ServiceError(
        stack.name, "kill_switch", "no flag was on: nothing to turn off (the failure came first)"
    )


def _switch_off(stack: Stack, name: str) -> None:
    from harness.flags import switch_flag

    switch_flag(stack, name, 0, where=f"kill_switch:flag:{name}")


def _ensure_database(rec: _Recovery, prefix: str) -> None:
    db = rec.stack.database
    if db.paused:
        rec.step(f"{prefix}:resume_database", db.resume)
    if not db.running:
        rec.step(f"{prefix}:restart_database", db.restart)


def _verify(stack: Stack, release: Release) -> None:
    from harness.deploy.plan import reported_release

    expected = list(release.expand_migrations)
    applied = stack.applied_migrations()
    if applied[: len(expected)] != expected:
        raise ServiceError(stack.name, "verify", f"migrations {applied}, expected {expected}")
    for app in stack.apps:
        said = reported_release(app.base_url, release)
        if said != release.name:
            raise ServiceError(app.name, "verify", f"reports {said!r}, expected {release.name!r}")
