"""The proxy dials loopback upstreams only, unless a network is explicitly allowed."""

from __future__ import annotations

import asyncio
import ipaddress
import random

import pytest

from harness.proxy.proxy import Proxy
from harness.proxy.server import ALLOW_UPSTREAM_ENV, _parser, main, parse_networks


def _resolve(upstream: str, *allowed: str) -> tuple[str, int]:
    networks = tuple(ipaddress.ip_network(a) for a in allowed)
    proxy = Proxy("p", "127.0.0.1:0", upstream, random.Random(1), networks)
    return asyncio.run(proxy.resolve_upstream())


def test_loopback_is_the_default() -> None:
    assert _resolve("127.0.0.1:5432") == ("127.0.0.1", 5432)
    with pytest.raises(ValueError, match="not a loopback address"):
        _resolve("10.1.2.3:5432")


def test_an_allowed_network_is_dialled_and_nothing_else() -> None:
    assert _resolve("172.18.0.5:5432", "172.18.0.0/16") == ("172.18.0.5", 5432)
    with pytest.raises(ValueError, match=r"nor in an allowed network \(172\.18\.0\.0/16\)"):
        _resolve("172.19.0.5:5432", "172.18.0.0/16")
    assert _resolve("127.0.0.1:1", "172.18.0.0/16") == ("127.0.0.1", 1)


def test_option_is_repeatable_and_checked() -> None:
    args = _parser().parse_args(["--allow-upstream", "10.0.0.0/8", "--allow-upstream", "fd00::/8"])
    assert [str(n) for n in args.allow_upstream] == ["10.0.0.0/8", "fd00::/8"]
    assert _parser().parse_args([]).allow_upstream is None
    with pytest.raises(SystemExit):
        _parser().parse_args(["--allow-upstream", "not-a-cidr"])


def test_environment_lists_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [str(n) for n in parse_networks(" 172.18.0.0/16, 10.1.0.0/24 ,")] == [
        "172.18.0.0/16",
        "10.1.0.0/24",
    ]
    with pytest.raises(ValueError, match="not a network"):
        parse_networks("172.18.0.0/16,bogus")
    monkeypatch.setenv(ALLOW_UPSTREAM_ENV, "bogus")
    with pytest.raises(SystemExit):
        main(["--port", "0"])
