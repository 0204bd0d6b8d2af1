"""meshlite.discovery: where a service's backends come from.

A provider resolves a service's backends; :class:`Discovery` runs one for a
service while the mesh is open, replacing the service's backends on every change
and keeping the last known ones when the provider fails::

    users = ml.Service("users")
    users.attach(Discovery(users, DnsProvider("users.internal", port=8000)))

Built in: :class:`StaticProvider` (the default: the configured ``backends``),
:class:`FileProvider` (a watched JSON or YAML list), :class:`DnsProvider` (A/AAAA
or SRV records, re-resolved at their TTL) and :class:`RedisRegistry` (backends that
register themselves in Redis with a TTL heartbeat). Others implement
:class:`DiscoveryProvider` and, for config files, :func:`register_provider`.
Importing this module imports neither dnspython, watchfiles nor PyYAML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._dns import DEFAULT_DNS_TIMEOUT, DNS_RECORDS, DnsProvider
    from ._driver import (
        DEFAULT_MIN_INTERVAL,
        DEFAULT_RESOLVE_TIMEOUT,
        DEFAULT_RETRY_INTERVAL,
        Discovery,
    )
    from ._file import FileProvider
    from ._provider import (
        BaseProvider,
        DiscoveryFailed,
        DiscoveryProvider,
        DiscoveryRecovered,
        ProviderFactory,
        Resolution,
        backends_from_data,
        provider_factory,
        provider_kinds,
        register_provider,
    )
    from ._redis import (
        DEFAULT_REGISTRY_TIMEOUT,
        DEFAULT_REGISTRY_TTL,
        RedisRegistry,
        Registration,
    )
    from ._static import StaticProvider
    from ._watch import FileWatch

# The built-in providers (static, file, dns, redis) are registered in ``_provider``
# and imported with the first use of their kind: a mesh whose services use static
# backends never imports the DNS provider or the Redis registry (start-up time).
_LAZY = {
    **dict.fromkeys(("BaseProvider", "DiscoveryFailed", "DiscoveryProvider",
                     "DiscoveryRecovered", "ProviderFactory", "Resolution",
                     "backends_from_data", "provider_factory", "provider_kinds",
                     "register_provider"), "._provider"),
    "Discovery": "._driver",
    "DEFAULT_MIN_INTERVAL": "._driver",
    "DEFAULT_RETRY_INTERVAL": "._driver",
    "DEFAULT_RESOLVE_TIMEOUT": "._driver",
    "StaticProvider": "._static",
    "FileProvider": "._file",
    "DnsProvider": "._dns",
    "DNS_RECORDS": "._dns",
    "DEFAULT_DNS_TIMEOUT": "._dns",
    "RedisRegistry": "._redis",
    "Registration": "._redis",
    "DEFAULT_REGISTRY_TTL": "._redis",
    "DEFAULT_REGISTRY_TIMEOUT": "._redis",
    "FileWatch": "._watch",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    # the driver
    "Discovery",
    "DEFAULT_MIN_INTERVAL",
    "DEFAULT_RETRY_INTERVAL",
    "DEFAULT_RESOLVE_TIMEOUT",
    # providers
    "DiscoveryProvider",
    "BaseProvider",
    "Resolution",
    "StaticProvider",
    "FileProvider",
    "DnsProvider",
    "DNS_RECORDS",
    "DEFAULT_DNS_TIMEOUT",
    "RedisRegistry",
    "Registration",
    "DEFAULT_REGISTRY_TTL",
    "DEFAULT_REGISTRY_TIMEOUT",
    # registry for config files
    "register_provider",
    "provider_factory",
    "provider_kinds",
    "ProviderFactory",
    "backends_from_data",
    # events
    "DiscoveryFailed",
    "DiscoveryRecovered",
    # helpers
    "FileWatch",
]
