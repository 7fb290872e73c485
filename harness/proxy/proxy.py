"""One proxy: a listener, its open connections and its toxics (Toxiproxy's proxy.go)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from collections.abc import Iterator

from harness.errors import ProxyError
from harness.proxy.link import Connection, Endpoint, Link
from harness.proxy.schema import (
    TOXIC_NOT_FOUND,
    ApiError,
    Stream,
    ToxicConfig,
)
from harness.proxy.toxics import make_stage

__all__ = [
    "AddressError",
    "Network",
    "Proxy",
    "ToxicCollection",
    "format_address",
    "split_address",
]

_log = logging.getLogger(__name__)

#: How long resolving a listen or upstream host name may take.
RESOLVE_TIMEOUT = 5.0

#: A network an upstream may be in, besides loopback (``--allow-upstream CIDR``).
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressError(ProxyError):
    """A listen or upstream address cannot be used (bad syntax, bind failure, not loopback).

    Rendered by the API as a 500 carrying the OS error text, as Toxiproxy does.
    """

    def __init__(self, address: str, detail: str) -> None:
        self.address = address
        self.detail = detail
        super().__init__(detail)


def split_address(address: str) -> tuple[str, str]:
    """``"host:port"`` or ``"[v6]:port"`` -> ``(host, port)``, like Go's ``SplitHostPort``."""
    host, sep, port = address.rpartition(":")
    if not sep:
        raise AddressError(address, f"address {address}: missing port in address")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host or "[" in host or "]" in host:
        raise AddressError(address, f"address {address}: too many colons in address")
    return host, port


def format_address(host: str, port: int) -> str:
    """Render an address as Go does (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _resolve(address: str, *, passive: bool) -> tuple[socket.AddressFamily, str, int]:
    host, port = split_address(address)
    if not host:
        host = "127.0.0.1"  # never every interface unless told so
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(
                host,
                port,
                type=socket.SOCK_STREAM,
                flags=socket.AI_PASSIVE if passive else 0,
            ),
            RESOLVE_TIMEOUT,
        )
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise AddressError(address, f"address {address}: {exc}") from exc
    if not infos:
        raise AddressError(address, f"address {address}: no suitable address found")
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first, as Go resolves
    family, _type, _proto, _name, sockaddr = infos[0]
    return family, str(sockaddr[0]), int(sockaddr[1])


class ToxicCollection:
    """The toxics of one proxy, per stream, in insertion order; live links are told changes."""

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy
        self._chains: dict[Stream, list[tuple[int, ToxicConfig]]] = {s: [] for s in Stream}
        self._next_seq = 0

    def __iter__(self) -> Iterator[ToxicConfig]:
        """Upstream toxics first, then downstream, each in insertion order."""
        for stream in (Stream.UPSTREAM, Stream.DOWNSTREAM):
            for _seq, toxic in self._chains[stream]:
                yield toxic

    def names(self) -> set[str]:
        return {toxic.name for toxic in self}

    def get(self, name: str) -> ToxicConfig:
        for toxic in self:
            if toxic.name == name:
                return toxic
        raise ApiError(404, TOXIC_NOT_FOUND)

    def snapshot(self) -> dict[Stream, list[tuple[int, ToxicConfig]]]:
        return {stream: list(chain) for stream, chain in self._chains.items()}

    def add(self, toxic: ToxicConfig) -> None:
        self._next_seq += 1
        seq = self._next_seq
        self._chains[toxic.stream].append((seq, toxic))
        for link in self._proxy.links(toxic.stream):
            link.add_stage(make_stage(toxic, seq, self._proxy.rng))

    def update(self, toxic: ToxicConfig) -> None:
        chain = self._chains[toxic.stream]
        for index, (seq, current) in enumerate(chain):
            if current.name == toxic.name:
                chain[index] = (seq, toxic)
                for link in self._proxy.links(toxic.stream):
                    link.update_stage(toxic)
                return
        raise ApiError(404, TOXIC_NOT_FOUND)

    def remove(self, name: str) -> None:
        for stream, chain in self._chains.items():
            for index, (_seq, toxic) in enumerate(chain):
                if toxic.name == name:
                    del chain[index]
                    for link in self._proxy.links(stream):
                        link.remove_stage(name)
                    return
        raise ApiError(404, TOXIC_NOT_FOUND)

    def reset(self) -> None:
        for toxic in list(self):
            self.remove(toxic.name)


class _ClientEndpoint(Endpoint):
    def __init__(self, proxy: Proxy) -> None:
        super().__init__()
        self._proxy = proxy

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._proxy.accept(self)


class Proxy:
    """A named TCP proxy from ``listen`` to ``upstream`` with a chain of toxics per stream."""

    def __init__(
        self,
        name: str,
        listen: str,
        upstream: str,
        rng: random.Random,
        allowed_upstreams: tuple[Network, ...] = (),
    ) -> None:
        self.name = name
        self.allowed_upstreams = allowed_upstreams
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.rng = rng
        self.toxics = ToxicCollection(self)
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [toxic.to_json() for toxic in self.toxics],
        }

    async def resolved_listen(self, listen: str) -> str:
        """``listen`` as it compares with a running proxy's bound address."""
        _family, host, port = await _resolve(listen, passive=True)
        return format_address(host, port)

    async def start(self) -> None:
        """Bind and listen; the proxy's listen becomes the bound address."""
        if self.enabled:
            return
        family, host, port = await _resolve(self.listen, passive=True)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
            self._server = await asyncio.get_running_loop().create_server(
                lambda: _ClientEndpoint(self), sock=sock
            )
        except OSError as exc:
            sock.close()
            detail = exc.strerror or str(exc)
            detail = detail[:1].lower() + detail[1:]  # Go's errno texts are lower-case
            raise AddressError(
                self.listen, f"listen tcp {format_address(host, port)}: bind: {detail}"
            ) from exc
        bound = sock.getsockname()
        self.listen = format_address(str(bound[0]), int(bound[1]))
        self.enabled = True
        _log.info("proxy %s listening on %s, upstream %s", self.name, self.listen, self.upstream)

    def stop(self) -> None:
        """Close the listener and every open connection."""
        if not self.enabled:
            return
        self.enabled = False
        if self._server is not None:
            self._server.close()
            self._server = None
        for connection in list(self._connections):
            connection.abort()
        _log.info("proxy %s stopped", self.name)

    def accept(self, endpoint: Endpoint) -> None:
        if not self.enabled:
            endpoint.abort()
            return
        self._connections.add(Connection(self, endpoint))

    def connection_closed(self, connection: Connection) -> None:
        self._connections.discard(connection)

    def links(self, stream: Stream) -> Iterator[Link]:
        for connection in list(self._connections):
            link = connection.links.get(stream)
            if link is not None:
                yield link

    async def resolve_upstream(self) -> tuple[str, int]:
        """The upstream's address: loopback, or in a network the server was told to allow
        (``--allow-upstream``, e.g. a test's own Docker network); nothing else is dialled."""
        _family, host, port = await _resolve(self.upstream, passive=False)
        address = ipaddress.ip_address(host.split("%", 1)[0])
        if not address.is_loopback and not any(address in net for net in self.allowed_upstreams):
            allowed = ", ".join(str(net) for net in self.allowed_upstreams)
            raise ValueError(
                f"upstream {self.upstream} resolves to {host}, not a loopback address"
                + (f" nor in an allowed network ({allowed})" if allowed else "")
            )
        return host, port
