"""The bookshop's HTTP JSON API, on the standard library's threading HTTP server.

Run as ``python -m bookshop.app --release v1 --host 127.0.0.1 --port 8000`` with
``DATABASE_URL`` in the environment. SIGTERM and SIGINT shut it down cleanly. Routes are
listed in :data:`ROUTES` and in the README. Quiet by default: no line per request.
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
from urllib.parse import urlsplit

from bookshop.db import create_app_engine, database_url
from bookshop.errors import ApiError, BadRequest, ConfigurationError, MethodNotAllowed, NotFound
from bookshop.release import RELEASES
from bookshop.render import render_author, render_book, render_order
from bookshop.service import Bookshop
from bookshop.validation import (
    parse_body,
    parse_new_author,
    parse_new_book,
    parse_new_order,
    parse_path_id,
)

__all__ = ["MAX_BODY", "ROUTES", "BookshopServer", "main", "route"]

#: Largest request body accepted, in bytes.
MAX_BODY = 64 * 1024

_log = logging.getLogger("bookshop.app")


@dataclass(frozen=True, slots=True)
class Response:
    """An answer: an HTTP status and a JSON body."""

    status: HTTPStatus
    body: dict[str, object]


@dataclass(frozen=True, slots=True)
class Request:
    """What a route handler gets: the path's captured groups and the body."""

    groups: tuple[str, ...]
    body: bytes


Handler = Callable[[Bookshop, Request], Response]


def _healthz(shop: Bookshop, _: Request) -> Response:
    shop.check_health()
    return Response(HTTPStatus.OK, {"ok": True})


def _version(shop: Bookshop, _: Request) -> Response:
    return Response(HTTPStatus.OK, {"release": shop.release.name})


def _create_author(shop: Bookshop, request: Request) -> Response:
    new = parse_new_author(parse_body(request.body))
    return Response(HTTPStatus.CREATED, render_author(shop.release, shop.create_author(new)))


def _get_author(shop: Bookshop, request: Request) -> Response:
    row = shop.get_author(parse_path_id(request.groups[0], "author"))
    return Response(HTTPStatus.OK, render_author(shop.release, row))


def _create_book(shop: Bookshop, request: Request) -> Response:
    new = parse_new_book(parse_body(request.body), with_isbn=shop.release.knows_isbn)
    return Response(HTTPStatus.CREATED, render_book(shop.release, shop.create_book(new)))


def _get_book(shop: Bookshop, request: Request) -> Response:
    row = shop.get_book(parse_path_id(request.groups[0], "book"))
    return Response(HTTPStatus.OK, render_book(shop.release, row))


def _create_order(shop: Bookshop, request: Request) -> Response:
    new = parse_new_order(parse_body(request.body))
    return Response(HTTPStatus.CREATED, render_order(shop.release, shop.create_order(new)))


def _get_order(shop: Bookshop, request: Request) -> Response:
    row = shop.get_order(parse_path_id(request.groups[0], "order"))
    return Response(HTTPStatus.OK, render_order(shop.release, row))


def _pay_order(shop: Bookshop, request: Request) -> Response:
    row = shop.pay_order(parse_path_id(request.groups[0], "order"))
    return Response(HTTPStatus.OK, render_order(shop.release, row))


def _cancel_order(shop: Bookshop, request: Request) -> Response:
    row = shop.cancel_order(parse_path_id(request.groups[0], "order"))
    return Response(HTTPStatus.OK, render_order(shop.release, row))


#: (method, path pattern, handler). Patterns are anchored; groups go to the handler.
ROUTES: tuple[tuple[str, re.Pattern[str], Handler], ...] = (
    ("GET", re.compile(r"/healthz"), _healthz),
    ("GET", re.compile(r"/version"), _version),
    ("POST", re.compile(r"/authors"), _create_author),
    ("GET", re.compile(r"/authors/(\d+)", re.ASCII), _get_author),
    ("POST", re.compile(r"/books"), _create_book),
    ("GET", re.compile(r"/books/(\d+)", re.ASCII), _get_book),
    ("POST", re.compile(r"/orders"), _create_order),
    ("GET", re.compile(r"/orders/(\d+)", re.ASCII), _get_order),
    ("POST", re.compile(r"/orders/(\d+)/pay", re.ASCII), _pay_order),
    ("POST", re.compile(r"/orders/(\d+)/cancel", re.ASCII), _cancel_order),
)


def route(method: str, path: str) -> tuple[Handler, tuple[str, ...]]:
    """The handler for a request, or NotFound (unknown path) / MethodNotAllowed."""
    allowed = []
    for route_method, pattern, handler in ROUTES:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        if route_method == method:
            return handler, match.groups()
        allowed.append(route_method)
    if allowed:
        raise MethodNotAllowed(f"{method} is not allowed on {path}; use {', '.join(allowed)}")
    raise NotFound(f"no route for {method} {path}")


class BookshopServer(ThreadingHTTPServer):
    """The HTTP server; carries the :class:`Bookshop` its handlers use."""

    daemon_threads = True
    allow_reuse_address = True
    #: listen() backlog: room for a burst of connections from a load generator.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], shop: Bookshop) -> None:
        self.shop = shop
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    server: BookshopServer
    protocol_version = "HTTP/1.1"
    server_version = "bookshop"
    #: Seconds an idle keep-alive connection may hold its thread.
    timeout = 60

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body()
            handler, groups = route(method, urlsplit(self.path).path)
            response = handler(self.server.shop, Request(groups=groups, body=body))
        except ApiError as exc:
            response = Response(exc.status, exc.to_json())
        except Exception:
            _log.exception("unexpected error on %s %s", method, self.path)
            response = Response(
                HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error (see the app's log)"}
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

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The server's own errors (a malformed request line, HEAD...) as JSON, too."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # an unreadable request line: answer HTTP/1.1
            self.request_version = "HTTP/1.1"
        status = HTTPStatus(code)
        self._send(Response(status, {"error": message or status.phrase}))

    def log_message(self, format: str, *args: object) -> None:
        _log.debug("%s %s", self.address_string(), format % args)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bookshop.app",
        description="Serve the bookshop HTTP API. Needs DATABASE_URL.",
    )
    parser.add_argument("--release", required=True, choices=sorted(RELEASES), help="behaviour")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, required=True, help="port to bind (0: any free)")
    parser.add_argument("--verbose", action="store_true", help="log one line per request")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit status."""
    args = _parse_args(argv)
    release = RELEASES[args.release]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s bookshop[{release.name} pid={os.getpid()}] %(levelname)s"
        " %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("sqlalchemy", "psycopg"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        url = database_url()
    except ConfigurationError as exc:
        print(f"bookshop.app: error: {exc}", file=sys.stderr)
        return 2

    engine = create_app_engine(url)
    try:
        try:
            server = BookshopServer((args.host, args.port), Bookshop(engine, release))
        except OSError as exc:
            print(
                f"bookshop.app: error: cannot listen on {args.host}:{args.port}: {exc}",
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
                "serving release %s on http://%s:%d",
                release.name,
                args.host,
                server.server_address[1],
            )
            server.serve_forever(poll_interval=0.05)
    finally:
        engine.dispose()
    _log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
