"""Network faults through a Toxiproxy API (the real one or the embedded server): toxics on
a stack's proxy routes, and partitions. The client itself is :mod:`harness.proxy.client`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from harness.backends.base import ProxyRoute
from harness.deploy.plan import Plan
from harness.errors import ProxyApiError, ProxyError, SpecError
from harness.faults.base import FaultContext, FaultKind, Injected
from harness.proxy.client import (
    DEFAULT_TIMEOUT,
    ProxyConfig,
    ProxyInfo,
    ToxicInfo,
    ToxicSpec,
    ToxiproxyClient,
)
from harness.proxy.schema import Stream, ToxicType

__all__ = [
    "DEFAULT_TIMEOUT",
    "NetworkToxic",
    "Partition",
    "ProxyConfig",
    "ProxyInfo",
    "Stream",
    "ToxicInfo",
    "ToxicSpec",
    "ToxicType",
    "ToxiproxyClient",
    "leftover_network_faults",
]


def _route(ctx: FaultContext) -> ProxyRoute:
    route = ctx.stack.db_proxy
    if route is None:
        raise ProxyError(f"stack {ctx.stack.name} has no proxy between the app and the database")
    return route


@dataclass(frozen=True, slots=True)
class NetworkToxic:
    """A Toxiproxy toxic on the app<->database proxy (every app instance and migration)."""

    spec: ToxicSpec
    duration: float | None = None
    kind = FaultKind.NETWORK

    def __post_init__(self) -> None:
        if self.duration is not None and self.duration < 0:
            raise SpecError(f"fault {self.name}: duration {self.duration}", expected=">= 0")

    @property
    def name(self) -> str:
        return self.spec.name

    def validate(self, plan: Plan, point_step: str | None) -> None:
        return None

    def inject(self, ctx: FaultContext) -> Injected:
        route = _route(ctx)
        info = route.client.add_toxic(route.name, self.spec, name=f"chaos-{secrets.token_hex(4)}")
        return Injected(
            {"proxy": route.name, "toxic": info.name, "stream": self.spec.stream.value},
            info.name,
        )

    def heal(self, ctx: FaultContext, handle: object) -> None:
        if handle is None:
            return
        route = _route(ctx)
        try:
            route.client.remove_toxic(route.name, str(handle))
        except ProxyApiError as exc:
            if exc.status != 404:  # already gone is healed
                raise


@dataclass(frozen=True, slots=True)
class Partition:
    """The app<->database proxy disabled: every connection cut, new ones refused."""

    duration: float | None = 2.0
    kind = FaultKind.NETWORK

    def __post_init__(self) -> None:
        if self.duration is not None and self.duration < 0:
            raise SpecError(f"fault down: duration {self.duration}", expected=">= 0")

    @property
    def name(self) -> str:
        return "down"

    def validate(self, plan: Plan, point_step: str | None) -> None:
        return None

    def inject(self, ctx: FaultContext) -> Injected:
        route = _route(ctx)
        route.client.disable(route.name)
        return Injected({"proxy": route.name, "listen": f"{route.listen_host}:{route.listen_port}"})

    def heal(self, ctx: FaultContext, handle: object) -> None:
        route = _route(ctx)
        route.client.enable(route.name)


def leftover_network_faults(route: ProxyRoute) -> list[str]:
    """What a run left on its proxy: toxics still there, the proxy still disabled."""
    left = [
        f"toxic {t.name} ({t.spec.name}) still on {route.name}"
        for t in route.client.list_toxics(route.name)
    ]
    if not route.client.get_proxy(route.name).enabled:
        left.append(f"proxy {route.name} still disabled")
    return left
