"""The embedded proxy server process: ``deploy-chaos proxy`` / ``python -m harness.proxy``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import random
import signal
import sys
from collections.abc import Sequence

from harness.proxy.api import VERSION, ApiServer
from harness.proxy.http import serve_connection
from harness.proxy.proxy import Network

__all__ = [
    "ALLOW_UPSTREAM_ENV",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "main",
    "parse_networks",
    "run_server",
    "serve",
]

_log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8474
#: Comma-separated CIDRs an upstream may be in besides loopback, when ``--allow-upstream``
#: is not given (how the docker backend opts the proxy container into its own network).
ALLOW_UPSTREAM_ENV = "DEPLOY_CHAOS_PROXY_ALLOW_UPSTREAM"
#: How often the server checks that the process that asked for it is still alive.
PARENT_POLL_SECONDS = 1.0


def _parent_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    seed: int | None = None,
    parent_pid: int | None = None,
    stop: asyncio.Event | None = None,
    allowed_upstreams: tuple[Network, ...] = (),
) -> None:
    """Run the API on ``host:port`` until ``stop`` is set, SIGTERM/SIGINT, or the parent dies.

    Proxies dial only loopback upstreams, plus those in ``allowed_upstreams``.
    """
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    api = ApiServer(random.Random(seed), allowed_upstreams)
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_connection(reader, writer, api.handle)

    server = await asyncio.start_server(on_client, host, port, limit=8192)
    bound = ", ".join(str(sock.getsockname()[:2]) for sock in server.sockets)
    _log.info("toxiproxy-compatible API %s on %s (seed %d)", VERSION, bound, seed)
    if allowed_upstreams:
        _log.info("upstreams allowed besides loopback: %s", ", ".join(map(str, allowed_upstreams)))
    print(f"deploy-chaos proxy listening on {host}:{port} (seed {seed})", flush=True)
    watcher = None
    if parent_pid is not None:

        async def watch_parent() -> None:
            while _parent_alive(parent_pid):
                await asyncio.sleep(PARENT_POLL_SECONDS)
            _log.warning("parent process %d is gone; stopping", parent_pid)
            stop.set()

        watcher = loop.create_task(watch_parent())
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        server.close()
        api.stop_all()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)


def run_server(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    seed: int | None = None,
    parent_pid: int | None = None,
    allowed_upstreams: tuple[Network, ...] = (),
) -> None:
    """Serve Toxiproxy's API on ``host:port`` until SIGTERM or SIGINT (blocking)."""
    asyncio.run(
        serve(host, port, seed=seed, parent_pid=parent_pid, allowed_upstreams=allowed_upstreams)
    )


def _network(value: str) -> Network:
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a network (expected a CIDR like 172.18.0.0/16)"
        ) from None


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"172.18.0.0/16,10.1.0.0/24"`` -> networks; raises ValueError naming a bad one."""
    try:
        return tuple(_network(part) for part in text.split(",") if part.strip())
    except argparse.ArgumentTypeError as exc:
        raise ValueError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deploy-chaos proxy",
        description="Embedded Toxiproxy-compatible proxy server (HTTP API on HOST:PORT).",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="API address (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="API port (default %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for toxicity and jitter")
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="exit when this process is gone"
    )
    parser.add_argument(
        "--allow-upstream",
        metavar="CIDR",
        action="append",
        type=_network,
        default=None,
        help="also dial upstreams in this network (repeatable; default: loopback only; "
        f"when absent, ${ALLOW_UPSTREAM_ENV} may list CIDRs, comma-separated)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="(default %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    args = _parser().parse_args(list(argv) if argv is not None else sys.argv[1:])
    if not 0 <= args.port <= 65535:
        _parser().error(f"--port {args.port}: expected 0..65535")
    allowed: tuple[Network, ...] = tuple(args.allow_upstream or ())
    if args.allow_upstream is None and os.environ.get(ALLOW_UPSTREAM_ENV, "").strip():
        try:
            allowed = parse_networks(os.environ[ALLOW_UPSTREAM_ENV])
        except ValueError as exc:
            _parser().error(f"${ALLOW_UPSTREAM_ENV}: {exc}")
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        run_server(
            args.host,
            args.port,
            seed=args.seed,
            parent_pid=args.parent_pid,
            allowed_upstreams=allowed,
        )
    except OSError as exc:
        print(
            f"deploy-chaos proxy: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1
    return 0
