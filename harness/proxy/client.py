"""The harness's Toxiproxy client: proxies and toxics over the HTTP API.

It lives with the proxy it talks to; the network faults (:mod:`harness.faults.network`) and
the backends use it.

It drives the real Toxiproxy (docker backend) and the embedded server (local backend,
:mod:`harness.proxy`) alike. Unlike toxiproxy-python (see docs/decisions.md): each client
holds its own server address (no module-level state), every request has a timeout, toxics
can be updated, and every failure is a :class:`harness.errors.ProxyApiError` naming the
proxy and the toxic concerned.

Toxics are described by :class:`ToxicSpec`, a frozen value with a readable ``name`` such as
``latency(800ms,downstream)``, built with the class methods (``ToxicSpec.latency(800)``).
"""

from __future__ import annotations

import http.client
import json
import math
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from harness.errors import ConfigError, ProxyApiError
from harness.proxy.schema import ATTRIBUTE_NAMES, Stream, ToxicType

__all__ = [
    "DEFAULT_TIMEOUT",
    "ProxyConfig",
    "ProxyInfo",
    "Stream",
    "ToxicInfo",
    "ToxicSpec",
    "ToxicType",
    "ToxiproxyClient",
]

DEFAULT_TIMEOUT = 5.0
_USER_AGENT = "deploy-chaos-toxiproxy-client"


def _check_int(type_: ToxicType, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{type_.value}.{key}", value, "an integer >= 0")
    return value


@dataclass(frozen=True, slots=True)
class ToxicSpec:
    """What a toxic does: type, stream, toxicity and integer attributes.

    ``attributes`` holds every attribute of the type, in Toxiproxy's order (missing ones
    are 0). Build with the class methods; ``name`` is for reports, ``default_name`` is the
    name Toxiproxy gives the toxic (``<type>_<stream>``).
    """

    type: ToxicType
    stream: Stream = Stream.DOWNSTREAM
    toxicity: float = 1.0
    attributes: tuple[tuple[str, int], ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.type, ToxicType):
            raise ConfigError("toxic.type", self.type, f"one of {[t.value for t in ToxicType]}")
        if not isinstance(self.stream, Stream):
            raise ConfigError("toxic.stream", self.stream, "upstream or downstream")
        toxicity = self.toxicity
        if isinstance(toxicity, bool) or not isinstance(toxicity, (int, float)):
            raise ConfigError("toxic.toxicity", toxicity, "a number between 0 and 1")
        if not (math.isfinite(toxicity) and 0.0 <= toxicity <= 1.0):
            raise ConfigError("toxic.toxicity", toxicity, "a number between 0 and 1")
        given = dict(self.attributes)
        names = ATTRIBUTE_NAMES[self.type]
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ConfigError(
                f"{self.type.value}.attributes", unknown, f"only {', '.join(names) or 'none'}"
            )
        values = tuple((key, _check_int(self.type, key, given.get(key, 0))) for key in names)
        if self.type is ToxicType.SLICER and dict(values)["average_size"] < 1:
            raise ConfigError("slicer.average_size", 0, "an integer >= 1")
        object.__setattr__(self, "attributes", values)

    @classmethod
    def of(
        cls,
        type_: ToxicType | str,
        stream: Stream | str = Stream.DOWNSTREAM,
        toxicity: float = 1.0,
        **attributes: int,
    ) -> ToxicSpec:
        """Any toxic from plain values: ``ToxicSpec.of("latency", "upstream", latency=50)``."""
        try:
            kind = ToxicType(type_)
        except ValueError:
            choices = [t.value for t in ToxicType]
            raise ConfigError("toxic.type", type_, f"one of {choices}") from None
        try:
            direction = Stream(stream)
        except ValueError:
            raise ConfigError("toxic.stream", stream, "upstream or downstream") from None
        return cls(kind, direction, toxicity, tuple(attributes.items()))

    @classmethod
    def latency(
        cls, ms: int, jitter: int = 0, *, stream: Stream = Stream.DOWNSTREAM, toxicity: float = 1.0
    ) -> ToxicSpec:
        """Delay every chunk by ``ms`` (+/- ``jitter``) milliseconds."""
        return cls(ToxicType.LATENCY, stream, toxicity, (("latency", ms), ("jitter", jitter)))

    @classmethod
    def bandwidth(
        cls, rate_kb: int, *, stream: Stream = Stream.DOWNSTREAM, toxicity: float = 1.0
    ) -> ToxicSpec:
        """Limit to ``rate_kb`` KB/s (1 KB = 1000 bytes); 0 stalls the stream."""
        return cls(ToxicType.BANDWIDTH, stream, toxicity, (("rate", rate_kb),))

    @classmethod
    def slow_close(
        cls, delay_ms: int, *, stream: Stream = Stream.DOWNSTREAM, toxicity: float = 1.0
    ) -> ToxicSpec:
        """Delay the close of the connection by ``delay_ms`` after EOF."""
        return cls(ToxicType.SLOW_CLOSE, stream, toxicity, (("delay", delay_ms),))

    @classmethod
    def timeout(
        cls, ms: int, *, stream: Stream = Stream.DOWNSTREAM, toxicity: float = 1.0
    ) -> ToxicSpec:
        """Drop all data; close after ``ms`` (0: hold until the toxic is removed)."""
        return cls(ToxicType.TIMEOUT, stream, toxicity, (("timeout", ms),))

    @classmethod
    def reset_peer(
        cls, timeout_ms: int = 0, *, stream: Stream = Stream.DOWNSTREAM, toxicity: float = 1.0
    ) -> ToxicSpec:
        """Reset (TCP RST) new connections ``timeout_ms`` after their first data."""
        return cls(ToxicType.RESET_PEER, stream, toxicity, (("timeout", timeout_ms),))

    @classmethod
    def slicer(
        cls,
        average_size: int,
        size_variation: int = 0,
        delay_us: int = 0,
        *,
        stream: Stream = Stream.DOWNSTREAM,
        toxicity: float = 1.0,
    ) -> ToxicSpec:
        """Cut chunks into pieces near ``average_size`` bytes, ``delay_us`` apart."""
        attributes = (
            ("average_size", average_size),
            ("size_variation", size_variation),
            ("delay", delay_us),
        )
        return cls(ToxicType.SLICER, stream, toxicity, attributes)

    @classmethod
    def limit_data(
        cls, nbytes: int, *, stream: Stream = Stream.DOWNSTREAM, toxicity: float = 1.0
    ) -> ToxicSpec:
        """Close the connection once ``nbytes`` have passed."""
        return cls(ToxicType.LIMIT_DATA, stream, toxicity, (("bytes", nbytes),))

    @classmethod
    def noop(cls, *, stream: Stream = Stream.DOWNSTREAM, toxicity: float = 1.0) -> ToxicSpec:
        """A toxic that does nothing."""
        return cls(ToxicType.NOOP, stream, toxicity, ())

    def attr(self, key: str) -> int:
        """One attribute's value."""
        return dict(self.attributes)[key]

    @property
    def default_name(self) -> str:
        """The name Toxiproxy gives this toxic when none is given."""
        return f"{self.type.value}_{self.stream.value}"

    @property
    def name(self) -> str:
        """Readable, for test ids and reports: ``latency(800ms,downstream)``."""
        a = dict(self.attributes)
        parts: list[str] = []
        kind = self.type
        if kind is ToxicType.LATENCY:
            parts.append(f"{a['latency']}ms" + (f"+-{a['jitter']}ms" if a["jitter"] else ""))
        elif kind is ToxicType.BANDWIDTH:
            parts.append(f"{a['rate']}KB/s")
        elif kind is ToxicType.SLOW_CLOSE:
            parts.append(f"{a['delay']}ms")
        elif kind in (ToxicType.TIMEOUT, ToxicType.RESET_PEER):
            parts.append(f"{a['timeout']}ms")
        elif kind is ToxicType.SLICER:
            size = f"{a['average_size']}B" + (
                f"+-{a['size_variation']}B" if a["size_variation"] else ""
            )
            parts.append(size + (f"/{a['delay']}us" if a["delay"] else ""))
        elif kind is ToxicType.LIMIT_DATA:
            parts.append(f"{a['bytes']}B")
        parts.append(self.stream.value)
        if self.toxicity < 1.0:
            parts.append(f"p={self.toxicity:g}")
        return f"{kind.value}({','.join(parts)})"

    def to_json(self, name: str | None = None) -> dict[str, object]:
        """The body of ``POST /proxies/{p}/toxics``."""
        return {
            "name": name or self.default_name,
            "type": self.type.value,
            "stream": self.stream.value,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


@dataclass(frozen=True, slots=True)
class ToxicInfo:
    """A toxic as the server reports it."""

    name: str
    spec: ToxicSpec


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """A proxy to create (``POST /proxies``, ``POST /populate``)."""

    name: str
    upstream: str
    listen: str = "127.0.0.1:0"
    enabled: bool = True

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "upstream": self.upstream,
            "listen": self.listen,
            "enabled": self.enabled,
        }


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """A proxy as the server reports it; ``listen`` is the bound address once enabled."""

    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[ToxicInfo, ...] = ()

    @property
    def listen_host(self) -> str:
        host = self.listen.rpartition(":")[0]
        return host[1:-1] if host.startswith("[") else host or "127.0.0.1"

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class _BadAnswer(ValueError):
    """An answer that is not the JSON shape the API documents."""


def _toxic_from_json(value: object) -> ToxicInfo:
    if not isinstance(value, dict):
        raise _BadAnswer(f"toxic is not an object: {value!r}")
    try:
        kind = ToxicType(value["type"])
        attributes = value.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise _BadAnswer(f"attributes is not an object: {attributes!r}")
        known = {k: v for k, v in attributes.items() if k in ATTRIBUTE_NAMES[kind]}
        spec = ToxicSpec(
            kind,
            Stream(str(value["stream"]).lower()),
            float(value["toxicity"]),
            tuple(known.items()),
        )
        return ToxicInfo(str(value["name"]), spec)
    except (KeyError, ValueError, TypeError, ConfigError) as exc:
        raise _BadAnswer(f"unexpected toxic {value!r}: {exc}") from exc


def _proxy_from_json(value: object) -> ProxyInfo:
    if not isinstance(value, dict):
        raise _BadAnswer(f"proxy is not an object: {value!r}")
    try:
        toxics = tuple(_toxic_from_json(t) for t in value.get("toxics") or ())
        return ProxyInfo(
            name=str(value["name"]),
            listen=str(value["listen"]),
            upstream=str(value["upstream"]),
            enabled=bool(value["enabled"]),
            toxics=toxics,
        )
    except (KeyError, TypeError) as exc:
        raise _BadAnswer(f"unexpected proxy {value!r}: {exc}") from exc


class ToxiproxyClient:
    """A client for one Toxiproxy API (real or embedded) at ``api_url``.

    Every call makes one HTTP request with ``timeout`` seconds to connect and answer, and
    raises :class:`ProxyApiError` (with ``action``, ``proxy``, ``toxic``, ``status``) on any
    failure: error answer, no answer, or an answer that is not what the API documents.
    The client keeps no connection open; it is safe to share between threads.
    """

    def __init__(self, api_url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        parts = urlsplit(api_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError("toxiproxy api_url", api_url, "http://HOST:PORT")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigError("toxiproxy timeout", timeout, "a positive number of seconds")
        self._host = parts.hostname
        self._port = parts.port or 8474
        self._base = parts.path.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ToxiproxyClient({self.api_url!r}, timeout={self.timeout})"

    # --- transport --------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        action: str,
        proxy: str | None = None,
        toxic: str | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> object:
        data = None if body is None else json.dumps(body).encode()
        headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            conn.request(method, self._base + path, body=data, headers=headers)
            answer = conn.getresponse()
            status = answer.status
            raw = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            reason = "timed out" if isinstance(exc, socket.timeout) else str(exc)
            raise ProxyApiError(
                action,
                f"no answer from {self.api_url} ({method} {path}): {reason or type(exc).__name__}",
                proxy=proxy,
                toxic=toxic,
            ) from exc
        finally:
            conn.close()
        if status not in expect:
            detail = raw.decode("utf-8", errors="replace").strip()
            try:
                parsed = json.loads(raw)
                if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
                    detail = parsed["error"]
            except ValueError:
                pass  # not JSON (e.g. a 404 from an unknown path): keep the text
            raise ProxyApiError(
                action, detail or "(empty answer)", proxy=proxy, toxic=toxic, status=status
            )
        if status == 204 or not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ProxyApiError(
                action,
                f"answer is not JSON: {raw[:200]!r}",
                proxy=proxy,
                toxic=toxic,
                status=status,
            ) from exc

    def _proxy(self, value: object, *, action: str, proxy: str | None) -> ProxyInfo:
        try:
            return _proxy_from_json(value)
        except _BadAnswer as exc:
            raise ProxyApiError(action, str(exc), proxy=proxy) from exc

    def _toxic(self, value: object, *, action: str, proxy: str, toxic: str | None) -> ToxicInfo:
        try:
            return _toxic_from_json(value)
        except _BadAnswer as exc:
            raise ProxyApiError(action, str(exc), proxy=proxy, toxic=toxic) from exc

    @staticmethod
    def _p(name: str) -> str:
        return "/proxies/" + quote(name, safe="")

    # --- server -----------------------------------------------------------------------

    def version(self) -> str:
        """The server's version string."""
        answer = self._request("GET", "/version", action="get version")
        if not isinstance(answer, dict) or not isinstance(answer.get("version"), str):
            raise ProxyApiError("get version", f"unexpected answer {answer!r}")
        return str(answer["version"])

    def reset(self) -> None:
        """Enable every proxy and remove every toxic (no proxy is deleted)."""
        self._request("POST", "/reset", action="reset", expect=(204,))

    def populate(self, proxies: Sequence[ProxyConfig]) -> list[ProxyInfo]:
        """Create or replace these proxies in one request (server-side, atomic validation)."""
        body = [p.to_json() for p in proxies]
        answer = self._request("POST", "/populate", body, action="populate", expect=(201,))
        if not isinstance(answer, dict):
            raise ProxyApiError("populate", f"unexpected answer {answer!r}", status=201)
        items = answer.get("proxies") or []
        if not isinstance(items, list):
            raise ProxyApiError("populate", f"unexpected answer {answer!r}", status=201)
        return [self._proxy(item, action="populate", proxy=None) for item in items]

    # --- proxies ----------------------------------------------------------------------

    def list_proxies(self) -> dict[str, ProxyInfo]:
        """Every proxy, by name."""
        answer = self._request("GET", "/proxies", action="list proxies")
        if not isinstance(answer, dict):
            raise ProxyApiError("list proxies", f"unexpected answer {answer!r}", status=200)
        return {
            name: self._proxy(value, action="list proxies", proxy=name)
            for name, value in answer.items()
        }

    def get_proxy(self, name: str) -> ProxyInfo:
        answer = self._request("GET", self._p(name), action="get", proxy=name)
        return self._proxy(answer, action="get", proxy=name)

    def create_proxy(
        self,
        name: str,
        upstream: str,
        *,
        listen: str = "127.0.0.1:0",
        enabled: bool = True,
    ) -> ProxyInfo:
        """Create a proxy; with ``listen`` port 0 the server picks a free port."""
        body = ProxyConfig(name, upstream, listen, enabled).to_json()
        answer = self._request("POST", "/proxies", body, action="create", proxy=name, expect=(201,))
        return self._proxy(answer, action="create", proxy=name)

    def update_proxy(
        self,
        name: str,
        *,
        listen: str | None = None,
        upstream: str | None = None,
        enabled: bool | None = None,
    ) -> ProxyInfo:
        """Change some fields (omitted ones keep their values); listen/upstream restart it."""
        body: dict[str, object] = {}
        if listen is not None:
            body["listen"] = listen
        if upstream is not None:
            body["upstream"] = upstream
        if enabled is not None:
            body["enabled"] = enabled
        answer = self._request("PATCH", self._p(name), body, action="update", proxy=name)
        return self._proxy(answer, action="update", proxy=name)

    def enable(self, name: str) -> ProxyInfo:
        """Listen again (after :meth:`disable`)."""
        return self.update_proxy(name, enabled=True)

    def disable(self, name: str) -> ProxyInfo:
        """Close the listener and every connection: a network partition."""
        return self.update_proxy(name, enabled=False)

    def delete_proxy(self, name: str) -> None:
        self._request("DELETE", self._p(name), action="delete", proxy=name, expect=(204,))

    # --- toxics -----------------------------------------------------------------------

    def list_toxics(self, proxy: str) -> list[ToxicInfo]:
        """Upstream toxics first, then downstream, each in insertion order."""
        path = self._p(proxy) + "/toxics"
        answer = self._request("GET", path, action="list toxics", proxy=proxy)
        if not isinstance(answer, list):
            raise ProxyApiError("list toxics", f"unexpected answer {answer!r}", proxy=proxy)
        return [self._toxic(t, action="list toxics", proxy=proxy, toxic=None) for t in answer]

    def get_toxic(self, proxy: str, toxic: str) -> ToxicInfo:
        path = f"{self._p(proxy)}/toxics/{quote(toxic, safe='')}"
        answer = self._request("GET", path, action="get toxic", proxy=proxy, toxic=toxic)
        return self._toxic(answer, action="get toxic", proxy=proxy, toxic=toxic)

    def add_toxic(self, proxy: str, spec: ToxicSpec, *, name: str | None = None) -> ToxicInfo:
        """Add a toxic; it applies at once to open connections in its stream."""
        toxic = name or spec.default_name
        path = self._p(proxy) + "/toxics"
        answer = self._request(
            "POST", path, spec.to_json(toxic), action="add toxic", proxy=proxy, toxic=toxic
        )
        return self._toxic(answer, action="add toxic", proxy=proxy, toxic=toxic)

    def update_toxic(
        self,
        proxy: str,
        toxic: str,
        *,
        attributes: Mapping[str, int] | None = None,
        toxicity: float | None = None,
    ) -> ToxicInfo:
        """Change some attributes and/or the toxicity (the rest is kept), live."""
        body: dict[str, object] = {}
        if attributes is not None:
            body["attributes"] = dict(attributes)
        if toxicity is not None:
            body["toxicity"] = toxicity
        path = f"{self._p(proxy)}/toxics/{quote(toxic, safe='')}"
        answer = self._request("PATCH", path, body, action="update toxic", proxy=proxy, toxic=toxic)
        return self._toxic(answer, action="update toxic", proxy=proxy, toxic=toxic)

    def remove_toxic(self, proxy: str, toxic: str) -> None:
        path = f"{self._p(proxy)}/toxics/{quote(toxic, safe='')}"
        self._request(
            "DELETE", path, action="remove toxic", proxy=proxy, toxic=toxic, expect=(204,)
        )

    # --- scoped faults ----------------------------------------------------------------

    @contextmanager
    def toxic(self, proxy: str, spec: ToxicSpec, *, name: str | None = None) -> Iterator[ToxicInfo]:
        """Add a toxic for the duration of the block; it is removed in ``finally``."""
        info = self.add_toxic(proxy, spec, name=name)
        try:
            yield info
        finally:
            self.remove_toxic(proxy, info.name)

    @contextmanager
    def down(self, proxy: str) -> Iterator[ProxyInfo]:
        """Disable a proxy for the duration of the block (re-enabled in ``finally``)."""
        info = self.disable(proxy)
        try:
            yield info
        finally:
            self.enable(proxy)


# --- network faults (the nemesis side) -----------------------------------------------------
