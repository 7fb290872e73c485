"""The embedded Toxiproxy-compatible proxy server (see docs/proxy.md).

Run it as its own process: ``deploy-chaos proxy --host 127.0.0.1 --port 8474`` or
``python -m harness.proxy``; from Python, :func:`start_proxy_server` starts one on a free
port and returns a handle with ``api_url`` and ``stop()``. Drive it with
:class:`harness.faults.network.ToxiproxyClient`, like a real Toxiproxy.
"""

from __future__ import annotations

from harness.proxy.process import (
    ProxyServerProcess,
    ProxyStartError,
    ProxyStartTimeout,
    start_proxy_server,
)
from harness.proxy.schema import Stream, ToxicType
from harness.proxy.server import main, run_server

__all__ = [
    "ProxyServerProcess",
    "ProxyStartError",
    "ProxyStartTimeout",
    "Stream",
    "ToxicType",
    "main",
    "run_server",
    "start_proxy_server",
]
