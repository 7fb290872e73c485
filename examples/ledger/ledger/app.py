"""The ledger's HTTP JSON API, on the standard library's threading HTTP server.

Run as ``python -m ledger.app --release v2 --host 127.0.0.1 --port 8000`` with
``DATABASE_URL`` in the environment (and optionally ``LEDGER_BUG``). SIGTERM and SIGINT shut
it down cleanly. Routes are listed in :data:`ROUTES` and in the README.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from ledger.errors import ApiError, BadRequest, ConfigurationError, NotFound
from ledger.flags import FLAGGED_BUG_ENV, Flags
from ledger.releases import BUG_ENV, ReleaseName, parse_bug
from ledger.validation import (
    parse_body,
    parse_id,
    parse_new_account,
    parse_new_deposit,
    parse_new_transfer,
)

if TYPE_CHECKING:
    from ledger.service import Ledger

__all__ = ["ROUTES", "LedgerServer", "main"]

#: Largest request body accepted, in bytes.
MAX_BODY = 64 * 1024

_log = logging.getLogger("ledger.app")


@dataclass(frozen=True, slots=True)
class Response:
    """An answer: an HTTP status and a JSON body."""

    status: HTTPStatus
    body: dict[str, object]


@dataclass(frozen=True, slots=True)
class Request:
    """What a route handler gets: the path's captured groups, the query and the body."""

    groups: tuple[str, ...]
    query: dict[str, list[str]]
    body: bytes


Handler = Callable[["Ledger", Request], Response]


def _healthz(ledger: Ledger, _: Request) -> Response:
    try:
        ledger.check_health()
    except ApiError as exc:
        return Response(exc.status, {"status": "unavailable", "error": exc.message})
    return Response(HTTPStatus.OK, {"status": "ok"})


def _version(ledger: Ledger, _: Request) -> Response:
    return Response(
        HTTPStatus.OK,
        {
            "release": ledger.name,
            "migrations": ledger.applied_migrations(),
            **({"flags": ledger.flags.report()} if ledger.flags.enabled else {}),
        },
    )


def _create_account(ledger: Ledger, request: Request) -> Response:
    data = parse_body(request.body)
    new = parse_new_account(data, multi_currency=ledger.release.multi_currency)
    return Response(HTTPStatus.CREATED, ledger.create_account(new).to_json())


def _get_account(ledger: Ledger, request: Request) -> Response:
    account_id = parse_id(request.groups[0], "account id")
    return Response(HTTPStatus.OK, ledger.get_account(account_id).to_json())


def _deposit(ledger: Ledger, request: Request) -> Response:
    data = parse_body(request.body)
    new = parse_new_deposit(data, multi_currency=ledger.release.multi_currency)
    transfer, created = ledger.deposit(new)
    return Response(HTTPStatus.CREATED if created else HTTPStatus.OK, transfer.to_json())


def _transfer(ledger: Ledger, request: Request) -> Response:
    new = parse_new_transfer(parse_body(request.body))
    transfer, created = ledger.transfer(new)
    return Response(HTTPStatus.CREATED if created else HTTPStatus.OK, transfer.to_json())


def _get_transfer(ledger: Ledger, request: Request) -> Response:
    transfer_id = parse_id(request.groups[0], "transfer id")
    return Response(HTTPStatus.OK, ledger.get_transfer(transfer_id).to_json())


def _find_transfer(ledger: Ledger, request: Request) -> Response:
    keys = request.query.get("idempotency_key", [])
    if len(keys) != 1 or not keys[0]:
        raise BadRequest("query parameter idempotency_key is required, exactly once")
    return Response(HTTPStatus.OK, ledger.find_transfer(keys[0]).to_json())


#: (method, path pattern, handler). Patterns are anchored; groups go to the handler.
ROUTES: tuple[tuple[str, re.Pattern[str], Handler], ...] = (
    ("GET", re.compile(r"/healthz"), _healthz),
    ("GET", re.compile(r"/version"), _version),
    ("POST", re.compile(r"/accounts"), _create_account),
    ("GET", re.compile(r"/accounts/([^/]+)"), _get_account),
    ("POST", re.compile(r"/deposits"), _deposit),
    ("POST", re.compile(r"/transfers"), _transfer),
    ("GET", re.compile(r"/transfers"), _find_transfer),
    ("GET", re.compile(r"/transfers/([^/]+)"), _get_transfer),
)


def route(method: str, path: str) -> tuple[Handler, tuple[str, ...]]:
    """The handler for a request, or NotFound (unknown path) / BadRequest (wrong method)."""
    allowed = []
    for route_method, pattern, handler in ROUTES:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        if route_method == method:
            return handler, match.groups()
        allowed.append(route_method)
    if allowed:
        raise _MethodNotAllowed(f"{method} is not allowed on {path}; use {', '.join(allowed)}")
    raise NotFound(f"no route for {method} {path}")


class _MethodNotAllowed(ApiError):
    """The path exists, the method does not."""

    status = HTTPStatus.METHOD_NOT_ALLOWED


class LedgerServer(ThreadingHTTPServer):
    """The HTTP server; carries the :class:`Ledger` its handlers use."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], ledger: Ledger) -> None:
        self.ledger = ledger
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    server: LedgerServer
    protocol_version = "HTTP/1.1"
    server_version = "ledger"
    #: Seconds an idle keep-alive connection may hold its thread.
    timeout = 60

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        try:
            body = self._read_body() if method == "POST" else b""
            handler, groups = route(method, url.path)
            request = Request(groups=groups, query=parse_qs(url.query), body=body)
            response = handler(self.server.ledger, request)
        except ApiError as exc:
            response = Response(exc.status, exc.to_json(with_outcome=method == "POST"))
        except Exception:
            _log.exception("unexpected error on %s %s", method, self.path)
            response = Response(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": "internal error (see the app's log)", "outcome": "unknown"},
            )
        self._send(response)

    def _read_body(self) -> bytes:
        length_header = self.headers.get("Content-Length", "0")
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            raise BadRequest(f"Content-Length {length_header!r} is not a number") from None
        if length > MAX_BODY or length < 0:
            self.close_connection = True
            raise BadRequest(f"request body of {length} bytes: at most {MAX_BODY} accepted")
        return self.rfile.read(length)

    def _send(self, response: Response) -> None:
        payload = json.dumps(response.body).encode()
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        _log.info("%s %s", self.address_string(), format % args)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ledger.app",
        description=f"Serve the ledger HTTP API. Needs DATABASE_URL; optional {BUG_ENV}.",
    )
    parser.add_argument(
        "--release", required=True, choices=[r.value for r in ReleaseName], help="behaviour"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, required=True, help="port to bind")
    parser.add_argument(
        "--name", default=None, help="the release name /version reports (default: --release)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit status."""
    args = _parse_args(argv)
    release = ReleaseName(args.release)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s ledger-app[{release.value} pid={os.getpid()}] %(levelname)s"
        " %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("psycopg").setLevel(logging.WARNING)
    try:
        bug = parse_bug(os.environ.get(BUG_ENV))
        flagged_bug = parse_bug(os.environ.get(FLAGGED_BUG_ENV))
        from ledger.db import database_url

        url = database_url()
    except ConfigurationError as exc:
        print(f"ledger.app: error: {exc}", file=sys.stderr)
        return 2

    # The heavy imports (psycopg and its pool) happen here, after the arguments are checked.
    from ledger.db import open_pool
    from ledger.service import Ledger

    pool = open_pool(url)
    try:
        try:
            flags = Flags.from_env(flagged_bug is not None)
            ledger = Ledger(pool, release, bug, flagged_bug, flags, name=args.name)
            server = LedgerServer((args.host, args.port), ledger)
        except OSError as exc:
            print(
                f"ledger.app: error: cannot listen on {args.host}:{args.port}: {exc}",
                file=sys.stderr,
            )
            return 1
        with server:

            def stop(signum: int, _frame: FrameType | None) -> None:
                _log.info("received %s: shutting down", signal.Signals(signum).name)
                # shutdown() waits for serve_forever() to return: not from its own thread.
                threading.Thread(target=server.shutdown, daemon=True).start()

            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
            _log.info(
                "serving release %s on http://%s:%d%s",
                release.value,
                args.host,
                server.server_address[1],
                f" with deliberate bug {bug.value}" if bug else "",
            )
            server.serve_forever(poll_interval=0.02)
    finally:
        pool.close(timeout=1.0)
    _log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
