"""Run the embedded proxy server as a child process (what the local backend uses)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from harness._wait import wait_for
from harness.errors import ProxyError, WaitTimeout

__all__ = ["ProxyServerProcess", "ProxyStartError", "ProxyStartTimeout", "start_proxy_server"]

#: Attempts at a free port (another process may take the port between probe and bind).
_PORT_ATTEMPTS = 3


class ProxyStartTimeout(WaitTimeout, ProxyError):
    """The proxy server process ran but did not answer ``/version`` in time."""


class ProxyStartError(ProxyError):
    """The proxy server process exited before answering ``/version``.

    ``log_tail`` holds the last lines it wrote; ``returncode`` is None if it still ran.
    """

    def __init__(self, detail: str, *, returncode: int | None, log_tail: str) -> None:
        self.detail = detail
        self.returncode = returncode
        self.log_tail = log_tail
        text = f"embedded proxy server did not start: {detail}"
        if log_tail:
            text += f"\n--- last lines of its log ---\n{log_tail}"
        super().__init__(text)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class _Exited(Exception):
    """The child exited while we waited for it."""


class ProxyServerProcess:
    """A running ``python -m harness.proxy`` child. Use as a context manager or call stop()."""

    def __init__(self, process: subprocess.Popen[bytes], host: str, port: int, log: Path) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.log_path = log

    @property
    def api_url(self) -> str:
        """Base URL of the Toxiproxy API, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)

    def _version(self, timeout: float) -> str:
        if self.process.poll() is not None:
            raise _Exited(f"exited with status {self.process.returncode}")
        url = f"{self.api_url}/version"  # always http://<host>:<port>, built here
        request = urllib.request.Request(url, headers={"User-Agent": "deploy-chaos"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return str(json.loads(answer.read())["version"])

    def wait_ready(self, timeout: float) -> str:
        """Poll ``/version`` until it answers; returns the version."""
        try:
            return wait_for(
                lambda: self._version(min(1.0, timeout)),
                what=f"the embedded proxy server to answer {self.api_url}/version",
                timeout=timeout,
                interval=0.01,
                transient=(OSError, ValueError, KeyError),
                log_tail=self.log_tail,
                error=ProxyStartTimeout,
            )
        except _Exited as exc:
            raise ProxyStartError(
                str(exc), returncode=self.process.returncode, log_tail=self.log_tail()
            ) from None

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after ``timeout``). Idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def __enter__(self) -> ProxyServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_proxy_server(
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    seed: int | None = None,
    log_path: str | os.PathLike[str] | None = None,
    startup_timeout: float = 15.0,
    python: str = sys.executable,
    detached: bool = False,
) -> ProxyServerProcess:
    """Start the embedded proxy server in its own process and wait until ``/version`` answers.

    ``port`` None picks a free port. The child exits on its own if this process dies, unless
    ``detached``: then it runs in a session of its own and outlives this process (a kept
    stack's proxy; the reaper removes it). Its
    output goes to ``log_path`` (a temporary file by default), whose tail is attached to
    :class:`ProxyStartError` when it fails to start.
    """
    log = Path(log_path) if log_path is not None else None
    last: ProxyStartError | None = None  # the child exited (e.g. port taken): try another
    for _attempt in range(1 if port is not None else _PORT_ATTEMPTS):
        chosen = port if port is not None else _free_port(host)
        if log is None:
            fd, name = tempfile.mkstemp(prefix="deploy-chaos-proxy-", suffix=".log")
            os.close(fd)
            path = Path(name)
        else:
            path = log
        argv = [python, "-m", "harness.proxy", "--host", host, "--port", str(chosen)]
        if not detached:
            argv += ["--parent-pid", str(os.getpid())]
        if seed is not None:
            argv += ["--seed", str(seed)]
        with path.open("ab") as out:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=detached,
            )
        server = ProxyServerProcess(child, host, chosen, path)
        try:
            server.wait_ready(startup_timeout)
        except ProxyStartError as exc:
            server.stop()
            last = exc
            continue
        except BaseException:
            server.stop()
            raise
        return server
    assert last is not None
    raise last
