"""Where the harness's own HTTP clients may send: loopback only (the workload, the
read-backs, the flag confirmations). At the bottom of the package: it needs nothing else."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from harness.errors import SpecError

__all__ = ["check_loopback"]


def check_loopback(base_url: str) -> tuple[str, int]:
    """``(host, port)`` of an ``http://`` URL on a loopback address; SpecError otherwise."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.scheme != "http" or not host:
        raise SpecError(f"app URL {base_url!r}", expected="http://<loopback address>:<port>")
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise SpecError(
            f"app URL {base_url!r} is not on a loopback address",
            expected="127.0.0.0/8, ::1 or localhost (the workload sends only loopback traffic)",
        )
    return host, parts.port or 80
