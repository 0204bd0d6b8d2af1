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

from .._lazy import declared_exports

# The built-in providers (static, file, dns, redis) are registered in ``_provider``
# and imported with the first use of their kind: a mesh whose services use static
# backends never imports the DNS provider or the Redis registry (start-up time).
# This block is the one declaration of the public names (docs/design.md, "Layers").
if TYPE_CHECKING:
    from ._dns import DEFAULT_DNS_TIMEOUT as DEFAULT_DNS_TIMEOUT
    from ._dns import DNS_RECORDS as DNS_RECORDS
    from ._dns import DnsProvider as DnsProvider
    from ._driver import DEFAULT_MIN_INTERVAL as DEFAULT_MIN_INTERVAL
    from ._driver import DEFAULT_RESOLVE_TIMEOUT as DEFAULT_RESOLVE_TIMEOUT
    from ._driver import DEFAULT_RETRY_INTERVAL as DEFAULT_RETRY_INTERVAL
    from ._driver import Discovery as Discovery
    from ._file import FileProvider as FileProvider
    from ._provider import BaseProvider as BaseProvider
    from ._provider import DiscoveryFailed as DiscoveryFailed
    from ._provider import DiscoveryProvider as DiscoveryProvider
    from ._provider import DiscoveryRecovered as DiscoveryRecovered
    from ._provider import ProviderFactory as ProviderFactory
    from ._provider import Resolution as Resolution
    from ._provider import backends_from_data as backends_from_data
    from ._provider import provider_factory as provider_factory
    from ._provider import provider_kinds as provider_kinds
    from ._provider import register_provider as register_provider
    from ._redis import DEFAULT_REGISTRY_TIMEOUT as DEFAULT_REGISTRY_TIMEOUT
    from ._redis import DEFAULT_REGISTRY_TTL as DEFAULT_REGISTRY_TTL
    from ._redis import RedisRegistry as RedisRegistry
    from ._redis import Registration as Registration
    from ._static import StaticProvider as StaticProvider
    from ._watch import FileWatch as FileWatch

# Type checkers see neither __getattr__ nor the computed __all__ (which they would read
# as empty): to them the package has the names re-exported above (`X as X`) and no
# other, so a misspelt one is an error, not an Any, and those names are what
# `from meshlite.discovery import *` gives them, as __all__ does at run time.
if not TYPE_CHECKING:
    __getattr__, __dir__, __all__ = declared_exports(__name__, __file__, globals())
