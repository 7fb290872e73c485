"""Feature flags the harness owns, in flagd's flag-definition format.

Every stack has one flag file, written by the harness and read by the app: its path is in
the app's environment as ``DEPLOY_CHAOS_FLAGS_FILE`` (and the ``{flags_file}`` placeholder).
The file is flagd's JSON (https://flagd.dev/reference/flag-definitions/), so an app reads it
with the OpenFeature SDK and the flagd provider in its file mode
(``FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=...)``), or with
any reader of that format. Each flag is boolean, variants ``on``/``off``:

- 0 %: ``defaultVariant: off``; 100 %: ``defaultVariant: on``;
- in between: flagd's ``fractional`` targeting (by the evaluation's targeting key), so a
  given key stays on the same side while the percentage holds;
- ``metadata.percent`` says the percentage, so an app can report what it loaded.

The file is replaced atomically (written beside it, then renamed), so a reader never sees
half of it. A plan's ``flag:<name>:<percent>`` step writes it; the ``kill_switch`` strategy
sets every flag the plan turned on back to 0 %. When an app reports ``"flags": {name:
percent}`` in its version document, the step waits until every running instance reports the
new percentage (evidence that the switch took effect); otherwise the step says it could not
confirm it.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import SpecError

__all__ = [
    "FLAGS_ENV",
    "FlagFile",
    "FlagRollout",
    "confirm_flag",
    "flag_definition",
    "reported_flags",
    "switch_flag",
    "valid_flag_name",
]

#: The environment variable an app finds its flag file under.
FLAGS_ENV = "DEPLOY_CHAOS_FLAGS_FILE"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")

#: What a scenario's ``flag:`` mapping may set.
FLAG_SETTINGS = ("name", "steps", "samples", "window", "max_excess", "min_errors")


def valid_flag_name(name: str) -> str:
    """``name`` when it may name a flag (and a plan step): letters, digits, ``_ . -``."""
    if not _NAME.match(name):
        raise SpecError(f"flag name {name!r}", expected="letters, digits, _ . - (at most 100)")
    return name


@dataclass(frozen=True, slots=True)
class FlagRollout:
    """A flag the plan turns on step by step (``flag:<name>:<percent>`` after ``verify``),
    each step judged like a canary weight: the error rate of the operations after the flip
    against the operations just before it (see :mod:`harness.deploy.canary`)."""

    name: str
    steps: tuple[int, ...] = (100,)
    samples: int = 20
    window: float = 10.0
    max_excess: float = 0.05
    min_errors: int = 2

    def __post_init__(self) -> None:
        valid_flag_name(self.name)
        if not self.steps:
            raise SpecError(f"flag {self.name}: no steps", expected="percentages such as [10, 100]")
        previous = 0
        for step in self.steps:
            if isinstance(step, bool) or not isinstance(step, int) or not 0 < step <= 100:
                raise SpecError(f"flag {self.name}: step {step!r}", expected="a percent in 1..100")
            if step <= previous:
                raise SpecError(
                    f"flag {self.name}: steps {list(self.steps)}", expected="rising percentages"
                )
            previous = step
        from harness.deploy.canary import check_analysis_settings

        check_analysis_settings("flag", self)


def flag_definition(percent: int) -> dict[str, Any]:
    """One boolean flag at ``percent`` % in flagd's format (see the module doc)."""
    flag: dict[str, Any] = {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "on" if percent >= 100 else "off",
        "metadata": {"percent": percent},
    }
    if 0 < percent < 100:
        flag["targeting"] = {"fractional": [["on", percent], ["off", 100 - percent]]}
    return flag


class FlagFile:
    """A stack's flag file (see the module doc). Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._percent: dict[str, int] = {}
        self._write()

    def set(self, name: str, percent: int) -> None:
        """Turn flag ``name`` to ``percent`` (0 is off, 100 is on for everyone)."""
        valid_flag_name(name)
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise SpecError(f"flag {name} at {percent!r}", expected="a percent in 0..100")
        with self._lock:
            self._percent[name] = percent
            self._write()

    def state(self) -> dict[str, int]:
        """Every flag written so far, and its percentage."""
        with self._lock:
            return dict(self._percent)

    def on(self) -> list[str]:
        """The flags above 0 %."""
        with self._lock:
            return [n for n, p in self._percent.items() if p > 0]

    def document(self) -> dict[str, Any]:
        with self._lock:
            return self._document()

    def _document(self) -> dict[str, Any]:
        return {
            "$schema": "https://flagd.dev/schema/v0/flags.json",
            "flags": {n: flag_definition(p) for n, p in sorted(self._percent.items())},
        }

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self._document(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)


def reported_flags(document: object) -> Mapping[str, object] | None:
    """The ``flags`` an app's version document reports, or None when it reports none."""
    if isinstance(document, Mapping):
        flags = document.get("flags")
        if isinstance(flags, Mapping):
            return flags
    return None


def _version_document(url: str, timeout: float) -> object:
    import urllib.request

    from harness._net import check_loopback

    check_loopback(url)
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
        return json.loads(response.read() or b"{}")


def confirm_flag(
    apps: Sequence[Any], name: str, percent: int, timeout: float = 5.0
) -> tuple[str, str]:
    """Wait (at most ``timeout`` s) until every running instance that reports flags in its
    version document reports ``name`` at ``percent``; (status, what was seen): ``confirmed``;
    ``unconfirmed`` when no instance reports flags (nobody can tell); ``stale`` when one
    still reports another value at the deadline (an instance that does not answer is named,
    not counted: when none answers, nobody can tell)."""
    import http.client
    import time

    deadline = time.monotonic() + timeout
    while True:
        seen: dict[str, object] = {}  # what each reporting instance says
        silent: dict[str, str] = {}  # instances that did not answer
        for app in apps:
            if not getattr(app, "running", True) or getattr(app, "paused", False):
                continue
            url = app.base_url + app.release.version_path
            try:
                flags = reported_flags(_version_document(url, 1.0))
            except (OSError, ValueError, http.client.HTTPException) as exc:
                silent[app.name] = f"no answer ({type(exc).__name__})"
                continue
            if flags is not None:
                seen[app.name] = flags.get(name)
        unheard = "; " + ", ".join(f"{k}: {v}" for k, v in silent.items()) if silent else ""
        if seen and all(v == percent for v in seen.values()):
            return "confirmed", f"{len(seen)} instance(s) report {name} at {percent}%{unheard}"
        if not seen and not silent:
            return "unconfirmed", "no instance reports its flags in its version document"
        if time.monotonic() >= deadline:
            if not seen:  # nobody answered: nobody can tell
                return "unconfirmed", f"no instance answered its version document{unheard}"
            detail = ", ".join(f"{k}: {v}" for k, v in seen.items())
            return (
                "stale",
                f"after {timeout:g}s, expected {name} at {percent}%: {detail}{unheard}",
            )
        time.sleep(0.05)  # the apps re-read the file on their own schedule: poll them


def switch_flag(stack: Any, name: str, percent: int, where: str) -> str:
    """Set flag ``name`` of ``stack`` to ``percent`` and wait for the apps to confirm it
    (:func:`confirm_flag`); what was seen. A :class:`~harness.errors.ServiceError` naming
    ``where`` when an instance still reports another value."""
    from harness.errors import ServiceError

    stack.flags.set(name, percent)
    status, detail = confirm_flag(stack.apps, name, percent)
    if status == "stale":
        raise ServiceError(stack.name, where, f"the flag did not take effect: {detail}")
    return f"{status}: {detail}"
