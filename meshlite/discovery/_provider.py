"""The discovery provider protocol, its result, its events and the provider registry."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .._errors import ConfigError
from .._events import Event
from .._validate import fail
from ..routing._backend import Backend

__all__ = [
    "BaseProvider",
    "DiscoveryFailed",
    "DiscoveryProvider",
    "DiscoveryRecovered",
    "ProviderFactory",
    "Resolution",
    "backends_from_data",
    "provider_factory",
    "provider_kinds",
    "register_provider",
]


@dataclass(frozen=True, slots=True)
class Resolution:
    """What one resolve found.

    Attributes:
        backends: The backends, in order.
        ttl: Seconds this answer stays valid (a DNS record's TTL), or ``None`` when
            the source does not say; the driver re-resolves after it.
    """

    backends: tuple[Backend, ...]
    ttl: float | None = None


@runtime_checkable
class DiscoveryProvider(Protocol):
    """A source of a service's backends: static, a file, DNS, a registry.

    :class:`~meshlite.discovery.Discovery` drives it: ``start`` once, ``resolve`` at
    start and then whenever ``changed`` returns or the answer's TTL (or the driver's
    interval) runs out, ``stop`` once. A provider only reports; keeping the last
    known backends when it fails is the driver's job. Subclass :class:`BaseProvider`
    to inherit no-op ``start``/``stop``/``changed``.
    """

    kind: str
    """Short name shown in events and logs (``"dns"``, ``"file"``...)."""

    async def start(self) -> None:
        """Acquire what resolving needs (a watcher, a connection)."""
        ...

    async def stop(self) -> None:
        """Release it."""
        ...

    async def resolve(self) -> Resolution:
        """Return the current backends.

        Raises:
            Exception: any failure; the driver keeps the last known backends.
        """
        ...

    async def changed(self) -> None:
        """Return when the source changed and should be resolved again early (a watched
        file was saved); sources that cannot tell never return. Must be cancellable."""
        ...


class BaseProvider:
    """Defaults for the optional parts of :class:`DiscoveryProvider`."""

    kind = "custom"

    async def start(self) -> None:
        """Nothing to acquire."""

    async def stop(self) -> None:
        """Nothing to release."""

    async def changed(self) -> None:
        """Never signals a change: the driver's TTL or interval decides."""
        await asyncio.Event().wait()


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryFailed(Event):
    """A provider failed to resolve; the service keeps ``backends``, its last known.

    ``error`` is the failure's message (with interpolated config values masked).
    """

    provider: str
    error: str
    backends: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryRecovered(Event):
    """A provider that had failed resolved again; ``backends`` are now in use."""

    provider: str
    backends: tuple[str, ...]


ProviderFactory = Callable[..., DiscoveryProvider]
"""Builds a provider from the options of a ``discovery:`` config section."""

_registry: dict[str, ProviderFactory] = {}

_BUILT_IN: dict[str, tuple[str, str]] = {
    "static": ("_static", "StaticProvider"),
    "file": ("_file", "FileProvider"),
    "dns": ("_dns", "DnsProvider"),
    "redis": ("_redis", "RedisRegistry"),
}
"""The built-in kinds, each imported the first time it is asked for (unless a
factory registered under the same kind replaced it)."""


def register_provider(kind: str, factory: ProviderFactory) -> None:
    """Make ``discovery: {type: <kind>, ...}`` in config files build providers with
    ``factory(**options)``; the options are checked against its signature.

    Raises:
        ConfigError: ``kind`` is empty or ``factory`` is not callable.
    """
    if not isinstance(kind, str) or not kind:
        fail("register_provider", "kind", kind, "a non-empty string")
    if not callable(factory):
        fail("register_provider", "factory", factory, "a callable returning a provider")
    _registry[kind] = factory


def provider_kinds() -> tuple[str, ...]:
    """The registered provider kinds (the built-in ones included), sorted."""
    return tuple(sorted(set(_registry) | set(_BUILT_IN)))


def provider_factory(kind: str) -> ProviderFactory:
    """The factory registered for ``kind``.

    Raises:
        ConfigError: no provider of that kind (the message lists the known ones).
    """
    if not isinstance(kind, str):
        fail("discovery", "type", kind, "one of " + ", ".join(provider_kinds()))
    factory = _registry.get(kind)
    if factory is None:
        built_in = _BUILT_IN.get(kind)
        if built_in is None:
            fail("discovery", "type", kind, "one of " + ", ".join(provider_kinds()))
        module, name = built_in
        factory = getattr(importlib.import_module(f"{__package__}.{module}"), name)
        _registry[kind] = factory
    return factory


def _backend(item: Any, owner: str, where: str) -> Backend:
    if isinstance(item, Backend):
        return item
    if isinstance(item, str):
        return Backend(item)
    if not isinstance(item, Mapping):
        fail(owner, where, item, "an address string or a mapping with 'url'")
    unknown = set(item) - {"url", "address", "weight", "zone", "metadata"}
    if unknown:
        fail(owner, where, sorted(unknown)[0], "one of the keys url, weight, zone, metadata")
    url = item.get("url", item.get("address"))
    try:
        return Backend(url, weight=item.get("weight", 1.0), zone=item.get("zone"),
                       metadata=item.get("metadata"))
    except ConfigError as error:
        raise ConfigError(f"{owner}: {where}: {error}", policy="discovery") from None


def backends_from_data(data: Any, owner: str) -> tuple[Backend, ...]:
    """Backends from parsed JSON/YAML: a list of addresses or ``{url, weight, zone,
    metadata}`` mappings, or a mapping whose ``backends`` key holds that list.

    Raises:
        ConfigError: the data has another shape (the message names the item).
    """
    if isinstance(data, Mapping):
        data = data.get("backends")
    if isinstance(data, str | bytes | Mapping) or not isinstance(data, Iterable):
        fail(owner, "backends", type(data).__name__, "a list of backends")
    return tuple(_backend(item, owner, f"backends[{i}]") for i, item in enumerate(data))
