"""A small HTTP/1.1 server on asyncio streams, enough for Toxiproxy's JSON API.

Keep-alive, ``Content-Length`` and chunked bodies, ``Expect: 100-continue``; bounded header
and body sizes and read timeouts, so a misbehaving client can cost the server a connection
but never the process. Every response carries ``X-Toxiproxy-Request-Id``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

__all__ = ["REQUEST_ID_HEADER", "HttpError", "Request", "Response", "serve_connection"]

_log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Toxiproxy-Request-Id"
MAX_LINE = 8192
MAX_HEADERS = 100
MAX_BODY = 1 << 20
#: Seconds a started request may take to arrive, and an idle keep-alive connection may last.
READ_TIMEOUT = 15.0
IDLE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request; header names are lower-case."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Response:
    """What a handler answers."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = field(default=())


class HttpError(Exception):
    """The request is not valid HTTP; answered with ``status`` and the connection closed."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{status}: {detail}")


Handler = Callable[[Request], Awaitable[Response]]


async def _readline(reader: asyncio.StreamReader, timeout: float) -> bytes:
    try:
        return await asyncio.wait_for(reader.readuntil(b"\n"), timeout)
    except asyncio.LimitOverrunError as exc:
        raise HttpError(431, "line too long") from exc
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise HttpError(400, "truncated request") from exc
        raise


async def _read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts: list[bytes] = []
        total = 0
        while True:
            size_line = (await _readline(reader, READ_TIMEOUT)).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError as exc:
                raise HttpError(400, "bad chunk size") from exc
            if size < 0:
                raise HttpError(400, "bad chunk size")
            total += size
            if total > MAX_BODY:
                raise HttpError(413, "body too large")
            if size == 0:
                while (await _readline(reader, READ_TIMEOUT)).strip():
                    pass  # trailers
                return b"".join(parts)
            parts.append(await asyncio.wait_for(reader.readexactly(size), READ_TIMEOUT))
            await _readline(reader, READ_TIMEOUT)
    text = headers.get("content-length", "0").strip() or "0"
    if not text.isdigit():
        raise HttpError(400, "bad Content-Length")
    length = int(text)
    if length > MAX_BODY:
        raise HttpError(413, "body too large")
    if length == 0:
        return b""
    return await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT)


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[Request, bool] | None:
    """The next request and whether the connection stays open after it; None at EOF."""
    try:
        line = await _readline(reader, IDLE_TIMEOUT)
    except (asyncio.IncompleteReadError, TimeoutError):
        return None
    while line in (b"\r\n", b"\n"):  # tolerate blank lines between requests
        line = await _readline(reader, READ_TIMEOUT)
    parts = line.decode("latin-1").strip().split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        raw = await _readline(reader, READ_TIMEOUT)
        if raw in (b"\r\n", b"\n"):
            break
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep or not name.strip() or name != name.strip():
            raise HttpError(400, "malformed header")
        headers[name.lower()] = value.strip()
    else:
        raise HttpError(431, "too many headers")
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = await _read_body(reader, headers)
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return Request(method, target, headers, body), keep_alive


def _render(response: Response, *, head: bool, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        f"{REQUEST_ID_HEADER}: {uuid.uuid4().hex[:20]}",
    ]
    if response.status not in (204, 304):
        if response.content_type is not None:
            lines.append(f"Content-Type: {response.content_type}")
        lines.append(f"Content-Length: {len(response.body)}")
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    if not keep_alive:
        lines.append("Connection: close")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if head or response.status in (204, 304):
        return head_bytes
    return head_bytes + response.body


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler
) -> None:
    """Answer requests on one connection until it closes; never raises."""
    try:
        while True:
            try:
                parsed = await _read_request(reader, writer)
            except HttpError as exc:
                answer = Response(exc.status, f"{exc.detail}\n".encode(), "text/plain")
                writer.write(_render(answer, head=False, keep_alive=False))
                await writer.drain()
                return
            if parsed is None:
                return
            request, keep_alive = parsed
            response = await handler(request)
            writer.write(_render(response, head=request.method == "HEAD", keep_alive=keep_alive))
            await writer.drain()
            if not keep_alive:
                return
    except (ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
        _log.debug("API connection ended: %s", exc)
    except Exception:
        _log.exception("API connection failed")
    finally:
        writer.close()
