"""The Redis registry: backends register themselves with a TTL heartbeat; meshes
watching the registry see them arrive and leave.

Layout under ``<prefix>:reg:{<service>}`` (one Redis Cluster slot): a sorted set
of addresses scored by the instant (Redis ``TIME``, milliseconds) their
registration expires, a hash of their ``{weight, zone, metadata}`` as JSON, and a
pub/sub channel ``...:events`` on which registering and leaving are announced.
Both keys expire ``2 * ttl`` after the last registration, so a service whose
backends are all gone leaves nothing behind. Registering also sweeps expired
entries out, so resolving is a read-only script (any replica of the watchers may
run it at once without writes). A watcher resolves again after a message arrives,
once the announcements have been quiet for ``coalesce`` seconds (a rolling deploy
of N backends costs each watcher a few resolves, not N), and otherwise when the
first registration would expire, so a backend that stops heartbeating without
leaving (it crashed) is dropped within ``ttl`` seconds plus the driver's
``min_interval``. Expiry is judged on Redis's clock alone, so the hosts' clocks
need not agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from .._fork import after_fork_in_child
from .._validate import fail, optional_positive, positive
from ..routing._backend import Backend
from ..state._base import StoreUnavailableError
from ..state._redis import RedisStore, Script
from ..state._redis_keys import hash_tag
from ._provider import BaseProvider, Resolution
from ._redis_heartbeat import Registration

__all__ = ["DEFAULT_REGISTRY_TTL", "DEFAULT_REGISTRY_TIMEOUT", "Registration", "RedisRegistry"]

DEFAULT_REGISTRY_TTL = 10.0
"""Seconds a registration lives without a heartbeat."""

DEFAULT_REGISTRY_TIMEOUT = 1.0
"""Seconds one registry operation may take (a registry is not on the call path)."""

_log = logging.getLogger("meshlite.discovery")

_REGISTER = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 500)
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('HDEL', KEYS[2], unpack(gone))
end
local old = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '-1')
local meta = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[3]))
if old < now or meta ~= ARGV[2] then
  redis.call('PUBLISH', ARGV[4], 'register ' .. ARGV[1])
  return 1
end
return 0
""")

_DEREGISTER = Script("""
local n = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if n > 0 then redis.call('PUBLISH', ARGV[2], 'leave ' .. ARGV[1]) end
return n
""")

# Read-only: expired entries are skipped here and swept by the next registration.
_RESOLVE = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES')
local out = {now}
if #live == 0 then return out end
local names = {}
for i = 1, #live, 2 do names[#names + 1] = live[i] end
for s = 1, #names, 500 do
  local e = math.min(s + 499, #names)
  local metas = redis.call('HMGET', KEYS[2], unpack(names, s, e))
  for i = s, e do
    out[#out + 1] = names[i]
    out[#out + 1] = live[2 * i]
    out[#out + 1] = metas[i - s + 1] or '{}'
  end
end
return out
""")

DEFAULT_COALESCE = 0.05
"""Seconds of quiet after an announcement before a watcher resolves again."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisRegistry(BaseProvider):
    """Backends of ``service`` as they register themselves in Redis.

    As a discovery provider (``service.attach(Discovery(service, registry))``, or
    ``discovery: {type: redis, service: users, url: ...}`` in a config file) it
    resolves to the backends whose registration is alive. Backends register with
    :meth:`heartbeat` (``async with`` or ``with``), or :meth:`register` /
    :meth:`deregister` for one-shot control.

    Args:
        service: The service name the backends register under.
        url: The Redis URL (as :class:`~meshlite.state.RedisStore` takes it: one Redis,
            ``redis+cluster://`` or ``redis+sentinel://``; passwords in
            it), used when ``store`` is not given.
        store: A :class:`~meshlite.state.RedisStore` to share connections with.
        prefix: Key prefix, when ``store`` is not given (else the store's).
        ttl: Seconds a registration lives without a heartbeat (> 0).
        timeout: Seconds one registry operation may take, when ``store`` is not given.
        coalesce: Seconds of quiet after an announcement before watchers resolve
            again (> 0): a burst of changes costs one resolve.

    Raises:
        ConfigError: a bad argument, or redis-py is not installed.
    """

    kind = "redis"

    def __init__(
        self,
        service: str,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        store: RedisStore | None = None,
        prefix: str = "meshlite",
        ttl: float = DEFAULT_REGISTRY_TTL,
        timeout: float = DEFAULT_REGISTRY_TIMEOUT,
        coalesce: float = DEFAULT_COALESCE,
    ) -> None:
        if not isinstance(service, str) or not service:
            fail("RedisRegistry", "service", service, "a non-empty service name")
        if store is not None and not isinstance(store, RedisStore):
            fail("RedisRegistry", "store", store, "a meshlite.state.RedisStore or None")
        self.service = service
        self.ttl = positive("RedisRegistry", "ttl", ttl)
        self.coalesce = positive("RedisRegistry", "coalesce", coalesce)
        self._own = store is None
        self.store = store if store is not None else RedisStore(
            url, prefix=prefix, timeout=timeout, retry_interval=min(1.0, self.ttl / 4),
            on_error="raise")
        base = f"{self.store.prefix}:reg:{hash_tag(service)}"
        self._keys = (base, f"{base}:meta")
        self.channel = f"{base}:events"
        self._pubsub: Any = None
        after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: subscribe anew (the parent's subscription is its loop's
        and its connection's; reused, every wait for a change failed)."""
        self._pubsub = None

    # -- registering (the backend's side) -------------------------------------------

    def _entry(self, backend: Backend) -> tuple[str, str]:
        meta = {"weight": backend.weight, "zone": backend.zone,
                "metadata": dict(backend.metadata)}
        return backend.address, json.dumps(meta, sort_keys=True, separators=(",", ":"))

    def register(self, backend: Backend | str) -> bool:
        """Register (or renew) ``backend`` for ``ttl`` seconds.

        Returns:
            Whether watchers were told (it was new, had expired, or changed).

        Raises:
            StoreUnavailableError: Redis did not answer.
        """
        address, meta = self._entry(_as_backend(backend))
        return bool(self.store.eval(_REGISTER, 2, *self._keys, address, meta,
                                    round(self.ttl * 1000), self.channel))

    async def aregister(self, backend: Backend | str) -> bool:
        """The async twin of :meth:`register`."""
        address, meta = self._entry(_as_backend(backend))
        return bool(await self.store.aeval(_REGISTER, 2, *self._keys, address, meta,
                                           round(self.ttl * 1000), self.channel))

    def deregister(self, address: str) -> bool:
        """Remove ``address`` now (watchers are told); returns whether it was there."""
        return bool(self.store.eval(_DEREGISTER, 2, *self._keys, address, self.channel))

    async def aderegister(self, address: str) -> bool:
        """The async twin of :meth:`deregister`."""
        return bool(await self.store.aeval(_DEREGISTER, 2, *self._keys, address,
                                           self.channel))

    def heartbeat(self, backend: Backend | str, *, interval: float | None = None,
                  ) -> Registration:
        """A registration kept alive while its ``with`` / ``async with`` block runs.

        Args:
            backend: The backend (or its address) to register.
            interval: Seconds between renewals; by default ``ttl / 3``, so two lost
                heartbeats in a row do not drop the backend.
        """
        every = optional_positive("RedisRegistry.heartbeat", "interval", interval)
        return Registration(self, _as_backend(backend), every or self.ttl / 3)

    # -- watching (the mesh's side) ---------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the registry's announcements (retried by :meth:`changed`)."""
        with contextlib.suppress(Exception):
            await self._subscribe()

    async def stop(self) -> None:
        """Unsubscribe, and close the connections when the registry made its store."""
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        if self._own:
            await self.store.aclose()

    async def resolve(self) -> Resolution:
        """The live registrations; the answer's TTL is when the first one expires.

        Raises:
            StoreUnavailableError: Redis did not answer.
        """
        reply = await self.store.aeval(_RESOLVE, 2, *self._keys)
        now = int(reply[0])
        backends, first = [], None
        for i in range(1, len(reply), 3):
            expires = int(float(reply[i + 1]))
            first = expires if first is None else min(first, expires)
            try:
                meta = json.loads(reply[i + 2])
                backends.append(Backend(_text(reply[i]), weight=meta.get("weight", 1.0),
                                        zone=meta.get("zone"), metadata=meta.get("metadata")))
            except Exception as error:  # one bad entry must not hide the others
                _log.warning("registry of %r: skipping %r: %s", self.service, reply[i], error)
        ttl = None if first is None else max(0.0, (first - now) / 1000)
        return Resolution(tuple(backends), ttl)

    async def _subscribe(self) -> Any:
        if self._pubsub is None:
            pubsub = self.store._aclient().pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
            except BaseException:
                await pubsub.aclose()
                raise
            self._pubsub = pubsub
        return self._pubsub

    async def changed(self) -> None:
        """Return when a backend registers, changes or leaves.

        Raises:
            StoreUnavailableError: the subscription broke (the driver retries).
        """
        try:
            pubsub = await self._subscribe()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=None)
                if message is not None:
                    break
            # Coalesce a burst (a rolling deploy): wait until it has been quiet for
            # ``coalesce`` seconds, or ten times that at most, then resolve once.
            end = asyncio.get_running_loop().time() + 10 * self.coalesce
            while asyncio.get_running_loop().time() < end:
                message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=self.coalesce)
                if message is None:
                    return
        except self.store._errors as error:
            pubsub, self._pubsub = self._pubsub, None
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            raise StoreUnavailableError(
                f"registry of {self.service!r}: subscription to {self.store.label} "
                f"broke: {error}") from error

    def __repr__(self) -> str:
        return f"RedisRegistry({self.service!r}, {self.store.label!r}, ttl={self.ttl!r})"


def _as_backend(value: Backend | str) -> Backend:
    if isinstance(value, str):
        return Backend(value)
    if not isinstance(value, Backend):
        fail("RedisRegistry", "backend", value, "a Backend or an address string")
    return value
