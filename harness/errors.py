"""Every error the harness raises.

One root (:class:`ChaosError`); one class per kind of failure; each carries the data that
explains it as attributes, and renders a message a user can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "AppNotHealthy",
    "BackendError",
    "ChaosError",
    "CommandFailed",
    "ConfigError",
    "MigrationFailed",
    "NothingToActOn",
    "PostgresNotFound",
    "ProxyApiError",
    "ProxyError",
    "ServiceError",
    "SpecError",
    "WaitTimeout",
    "WorkloadError",
    "WorkloadRequestFailed",
    "WorkloadStuck",
    "clip",
]


def clip(text: str, limit: int) -> str:
    """``text`` in at most about ``limit`` characters, keeping its start and its end (a
    command's error is usually its last line)."""
    if len(text) <= limit:
        return text
    half = max(1, (limit - 5) // 2)
    return f"{text[:half]} ... {text[-half:]}"


class ChaosError(Exception):
    """Root of every error raised by deploy-chaos."""


class ConfigError(ChaosError):
    """A setting (option, ini key, environment variable) has a value that cannot work."""

    def __init__(self, setting: str, value: object, expected: str) -> None:
        self.setting = setting
        self.value = value
        self.expected = expected
        super().__init__(f"{setting}={value!r}: expected {expected}")


class SpecError(ChaosError):
    """A target, release or scenario definition is invalid.

    ``source`` is the file (or the Python object) it came from and ``line`` the 1-based line
    when known; ``choices`` lists the valid values where the set is closed.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | Path | None = None,
        line: int | None = None,
        expected: str | None = None,
        choices: Sequence[str] = (),
    ) -> None:
        self.message = message
        self.source = str(source) if source is not None else None
        self.line = line
        self.expected = expected
        self.choices = tuple(choices)
        where = ""
        if self.source is not None:
            where = f"{self.source}:{line}: " if line is not None else f"{self.source}: "
        text = f"{where}{message}"
        if expected:
            text += f"; expected {expected}"
        if self.choices:
            text += f" (choices: {', '.join(self.choices)})"
        super().__init__(text)


class PostgresNotFound(ChaosError):
    """No PostgreSQL server binaries (initdb, postgres) could be found."""

    def __init__(self, looked: Sequence[str]) -> None:
        self.looked = tuple(looked)
        places = "\n".join(f"  - {p}" for p in self.looked)
        super().__init__(
            "PostgreSQL server binaries (initdb, postgres, pg_ctl) not found. Looked in:\n"
            f"{places}\n"
            "Fix: install them (Debian/Ubuntu: apt-get install -y postgresql), or point "
            "DEPLOY_CHAOS_PG_BINDIR / --chaos-pg-bindir at the directory holding them, "
            "or use the docker backend (--chaos-backend docker)."
        )


class BackendError(ChaosError):
    """A backend could not create, start or stop part of a stack."""


class ServiceError(BackendError):
    """An operation on one service of a stack (database, proxy, app instance) failed."""

    def __init__(self, service: str, action: str, detail: str, log_tail: str = "") -> None:
        self.service = service
        self.action = action
        self.detail = detail
        self.log_tail = log_tail
        text = f"{service}: {action} failed: {detail}"
        if log_tail:
            text += f"\n--- last lines of {service}'s log ---\n{log_tail}"
        super().__init__(text)


class CommandFailed(ServiceError):
    """A command run in a service's environment (e.g. a migration) exited non-zero."""

    def __init__(self, service: str, argv: Sequence[str], returncode: int, output: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.output = output
        super().__init__(
            service,
            f"command {' '.join(self.argv)!r}",
            f"exit status {returncode}",
            log_tail=output[-4000:],
        )


class MigrationFailed(CommandFailed):
    """A release's migrate command failed to reach its target migration id."""


class WaitTimeout(ChaosError):
    """A condition awaited through the polling helper did not hold in time."""

    def __init__(
        self, what: str, timeout: float, last_error: BaseException | None, log_tail: str = ""
    ) -> None:
        self.what = what
        self.timeout = timeout
        self.last_error = last_error
        self.log_tail = log_tail
        text = f"timed out after {timeout:.1f}s waiting for {what}"
        if last_error is not None:
            text += f" (last error: {type(last_error).__name__}: {last_error})"
        if log_tail:
            text += f"\n--- log tail ---\n{log_tail}"
        super().__init__(text)


class AppNotHealthy(WaitTimeout):
    """An app instance did not answer its health check in time."""


class NothingToActOn(ChaosError):
    """A fault fired but found nothing to act on (no migration running to kill, no
    connection to terminate): the run did not test what its cell says."""

    def __init__(self, fault: str, detail: str) -> None:
        self.fault = fault
        self.detail = detail
        super().__init__(f"fault {fault} found nothing to act on: {detail}")


class ProxyError(ChaosError):
    """The fault proxy (embedded or Toxiproxy) could not be started or reached."""


class ProxyApiError(ProxyError):
    """The fault proxy's HTTP API answered an error or did not answer.

    ``proxy`` and ``toxic`` name what the request was about (None when not applicable);
    ``status`` is the HTTP status (None when no answer came).
    """

    def __init__(
        self,
        action: str,
        detail: str,
        *,
        proxy: str | None = None,
        toxic: str | None = None,
        status: int | None = None,
    ) -> None:
        self.action = action
        self.detail = detail
        self.proxy = proxy
        self.toxic = toxic
        self.status = status
        about = ""
        if proxy is not None:
            about += f" proxy {proxy!r}"
        if toxic is not None:
            about += f" toxic {toxic!r}"
        code = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{action}{about}{code}: {detail}")


class WorkloadError(ChaosError):
    """The workload could not start, run or stop as asked (not a failure of the app)."""


class WorkloadRequestFailed(WorkloadError):
    """A workload request got no HTTP answer.

    ``sent`` says whether the request may have reached the app: False when the connection
    could not even be opened (the operation was definitely not applied), True when it failed
    after the request was sent (timeout, reset: the outcome is unknown).
    """

    def __init__(self, method: str, url: str, *, sent: bool, detail: str) -> None:
        self.method = method
        self.url = url
        self.sent = sent
        self.detail = detail
        when = "after sending" if sent else "before sending"
        super().__init__(f"{method} {url}: failed {when}: {detail}")


class WorkloadStuck(WorkloadError):
    """Client threads of the workload were still alive after stop's deadline."""

    def __init__(self, threads: Sequence[str], waited: float) -> None:
        self.threads = tuple(threads)
        self.waited = waited
        super().__init__(
            f"{len(self.threads)} workload thread(s) still running after {waited:.1f}s: "
            + ", ".join(self.threads)
        )
