"""Backends: what runs a stack (``local`` processes or ``docker`` containers)."""

from __future__ import annotations

import enum

from harness.backends.base import Backend
from harness.errors import ConfigError

__all__ = ["BackendName", "open_backend"]


class BackendName(enum.Enum):
    """The backends a user can choose; ``auto`` picks docker when an engine answers."""

    AUTO = "auto"
    LOCAL = "local"
    DOCKER = "docker"

    @classmethod
    def parse(cls, value: str) -> BackendName:
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(
                "backend", value, "one of " + ", ".join(m.value for m in cls)
            ) from None


def open_backend(
    name: BackendName | str = BackendName.LOCAL, *, pg_bindir: str | None = None
) -> Backend:
    """Open a backend session (a context manager: close it to tear everything down)."""
    choice = BackendName.parse(name) if isinstance(name, str) else name
    if choice in (BackendName.AUTO, BackendName.LOCAL):
        # The docker backend is not built yet: auto means local for now.
        from harness.backends.local import LocalBackend

        return LocalBackend(pg_bindir=pg_bindir)
    raise ConfigError("backend", choice.value, "local (the docker backend is not available yet)")
