"""Toxiproxy's HTTP API over the embedded proxies (Toxiproxy's api.go, route by route)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from harness.errors import ProxyError
from harness.proxy.http import Request, Response
from harness.proxy.proxy import Network, Proxy
from harness.proxy.schema import (
    PROXY_EXISTS,
    PROXY_NOT_FOUND,
    ApiError,
    ProxyInput,
    parse_body,
    parse_populate,
    parse_proxy_create,
    parse_proxy_update,
    parse_toxic_create,
    parse_toxic_update,
)

__all__ = ["VERSION", "ApiServer"]

_log = logging.getLogger(__name__)

#: The Toxiproxy API version this server implements, tagged as the embedded server.
VERSION = "2.12.0+deploy-chaos-embedded"

Route = Callable[[Request, list[str]], Awaitable[Response]]


def _json(status: int, value: object) -> Response:
    return Response(status, json.dumps(value).encode())


def _error(exc: ApiError) -> Response:
    return _json(exc.status, exc.body())


class ApiServer:
    """Holds the proxies and answers API requests; one instance per server process.

    Requests that change state run one at a time (Toxiproxy serialises them with locks).
    ``allowed_upstreams`` are the networks, besides loopback, an upstream may be in.
    """

    def __init__(self, rng: random.Random, allowed_upstreams: tuple[Network, ...] = ()) -> None:
        self.rng = rng
        self.allowed_upstreams = allowed_upstreams
        self.proxies: dict[str, Proxy] = {}
        self._lock = asyncio.Lock()
        # (segment count, fixed segments by index) -> {method: handler}
        self._routes: list[tuple[tuple[str | None, ...], dict[str, Route]]] = [
            (("reset",), {"POST": self._reset}),
            (("proxies",), {"GET": self._proxy_index, "POST": self._proxy_create}),
            (("populate",), {"POST": self._populate}),
            (
                ("proxies", None),
                {
                    "GET": self._proxy_show,
                    "POST": self._proxy_update,
                    "PATCH": self._proxy_update,
                    "DELETE": self._proxy_delete,
                },
            ),
            (("proxies", None, "toxics"), {"GET": self._toxic_index, "POST": self._toxic_create}),
            (
                ("proxies", None, "toxics", None),
                {
                    "GET": self._toxic_show,
                    "POST": self._toxic_update,
                    "PATCH": self._toxic_update,
                    "DELETE": self._toxic_delete,
                },
            ),
            (("version",), {"GET": self._version}),
        ]

    async def handle(self, request: Request) -> Response:
        """Answer one request. Never raises: unexpected failures become a logged 500."""
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            return _error(exc)
        except ProxyError as exc:
            return _error(ApiError(500, str(exc)))
        except Exception as exc:
            _log.exception("API %s %s failed", request.method, request.target)
            return _error(ApiError(500, f"internal error: {type(exc).__name__}: {exc}"))

    async def _dispatch(self, request: Request) -> Response:
        if request.headers.get("user-agent", "").startswith("Mozilla/"):
            return Response(403, b"User agent not allowed\n", "text/plain; charset=utf-8")
        path = unquote(request.target.split("?", 1)[0].split("#", 1)[0], errors="replace")
        segments = path.split("/")
        if len(segments) < 2 or segments[0] != "" or any(not s for s in segments[1:]):
            return self._not_found()
        segments = segments[1:]
        for pattern, methods in self._routes:
            if len(pattern) != len(segments):
                continue
            if any(
                fixed is not None and fixed != seg
                for fixed, seg in zip(pattern, segments, strict=True)
            ):
                continue
            route = methods.get(request.method)
            if route is None:
                return Response(405, b"", None)
            variables = [seg for fixed, seg in zip(pattern, segments, strict=True) if fixed is None]
            if request.method == "GET":
                return await route(request, variables)
            async with self._lock:
                return await route(request, variables)
        return self._not_found()

    @staticmethod
    def _not_found() -> Response:
        return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def _get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError(404, PROXY_NOT_FOUND)
        return proxy

    # --- proxies --------------------------------------------------------------------------

    async def _proxy_index(self, request: Request, args: list[str]) -> Response:
        return _json(200, {name: proxy.to_json() for name, proxy in self.proxies.items()})

    async def _proxy_create(self, request: Request, args: list[str]) -> Response:
        spec = parse_proxy_create(parse_body(request.body))
        if spec.name in self.proxies:
            raise ApiError(409, PROXY_EXISTS)
        proxy = Proxy(spec.name, spec.listen, spec.upstream, self.rng, self.allowed_upstreams)
        if spec.enabled:
            await proxy.start()
        self.proxies[spec.name] = proxy
        return _json(201, proxy.to_json())

    async def _proxy_show(self, request: Request, args: list[str]) -> Response:
        return _json(200, self._get(args[0]).to_json())

    async def _differs(self, proxy: Proxy, spec: ProxyInput) -> bool:
        listen = await proxy.resolved_listen(spec.listen)
        return proxy.listen != listen or proxy.upstream != spec.upstream

    async def _proxy_update(self, request: Request, args: list[str]) -> Response:
        proxy = self._get(args[0])
        current = ProxyInput(proxy.name, proxy.listen, proxy.upstream, proxy.enabled)
        spec = parse_proxy_update(parse_body(request.body), current)
        if await self._differs(proxy, spec):
            proxy.stop()
            proxy.listen = spec.listen
            proxy.upstream = spec.upstream
        if spec.enabled != proxy.enabled:
            if spec.enabled:
                await proxy.start()
            else:
                proxy.stop()
        return _json(200, proxy.to_json())

    async def _proxy_delete(self, request: Request, args: list[str]) -> Response:
        proxy = self._get(args[0])
        proxy.stop()
        del self.proxies[proxy.name]
        return Response(204)

    async def _reset(self, request: Request, args: list[str]) -> Response:
        for proxy in list(self.proxies.values()):
            await proxy.start()
            proxy.toxics.reset()
        return Response(204)

    async def _populate(self, request: Request, args: list[str]) -> Response:
        done: list[Proxy] = []
        try:
            specs = parse_populate(parse_body(request.body))
            for spec in specs:
                existing = self.proxies.get(spec.name)
                if existing is not None:
                    if not await self._differs(existing, spec):
                        done.append(existing)
                        continue
                    existing.stop()
                proxy = Proxy(
                    spec.name, spec.listen, spec.upstream, self.rng, self.allowed_upstreams
                )
                if spec.enabled:
                    await proxy.start()
                self.proxies[spec.name] = proxy
                done.append(proxy)
        except ProxyError as exc:
            error = exc if isinstance(exc, ApiError) else ApiError(500, str(exc))
            body = {**error.body(), "proxies": [p.to_json() for p in done] or None}
            return _json(error.status, body)
        return _json(201, {"proxies": [p.to_json() for p in done] or None})

    # --- toxics ---------------------------------------------------------------------------

    async def _toxic_index(self, request: Request, args: list[str]) -> Response:
        return _json(200, [toxic.to_json() for toxic in self._get(args[0]).toxics])

    async def _toxic_create(self, request: Request, args: list[str]) -> Response:
        proxy = self._get(args[0])
        toxic = parse_toxic_create(parse_body(request.body), proxy.toxics.names())
        proxy.toxics.add(toxic)
        return _json(200, toxic.to_json())

    async def _toxic_show(self, request: Request, args: list[str]) -> Response:
        return _json(200, self._get(args[0]).toxics.get(args[1]).to_json())

    async def _toxic_update(self, request: Request, args: list[str]) -> Response:
        proxy = self._get(args[0])
        current = proxy.toxics.get(args[1])
        toxic = parse_toxic_update(parse_body(request.body), current)
        proxy.toxics.update(toxic)
        return _json(200, toxic.to_json())

    async def _toxic_delete(self, request: Request, args: list[str]) -> Response:
        self._get(args[0]).toxics.remove(args[1])
        return Response(204)

    async def _version(self, request: Request, args: list[str]) -> Response:
        body = json.dumps({"version": VERSION}) + "\n"
        return Response(200, body.encode(), "application/json;charset=utf-8")

    def stop_all(self) -> None:
        """Stop every proxy (server shutdown)."""
        for proxy in self.proxies.values():
            proxy.stop()
