"""RedisStore: policy state shared by every process that points at one Redis.

redis-py is imported when a store is made, never by ``import meshlite``. Each
decision is one command (mostly one ``EVALSHA`` of a small Lua script, so it is
atomic in Redis); each network step of it (connecting, reading the answer) is
bounded by ``timeout`` through redis-py's socket timeouts, sync and async alike.
Once a command fails the store is *down* (see :mod:`._health`): decisions fall
back without touching the network for ``retry_interval`` seconds, then Redis is
tried again.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .._errors import ConfigError
from .._events import Hook
from .._validate import fail, positive
from ._base import (
    LOCAL,
    ON_ERROR_MODES,
    OnError,
    SharedCache,
    SharedCircuit,
    SharedGcra,
    StoreUnavailableError,
)
from ._codec import resolve_codec
from ._health import Health
from ._redis_conn import Connections

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._clock import Clock
    from ..policies._circuit_breaker._options import CircuitBreakerOptions

__all__ = ["DEFAULT_PREFIX", "DEFAULT_RETRY_INTERVAL", "DEFAULT_TIMEOUT", "RedisStore", "Script"]

DEFAULT_PREFIX = "meshlite"
"""Every key the store writes starts with ``"<prefix>:"``."""

DEFAULT_TIMEOUT = 0.05
"""Seconds one store operation may take before the decision falls back."""

DEFAULT_RETRY_INTERVAL = 1.0
"""Seconds decisions fall back without trying Redis after it failed."""

_SCHEMES = ("redis", "rediss", "unix")


class Script:
    """A Lua script, run by its SHA1 and loaded again when Redis forgot it (a restart)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def _label(url: str) -> str:
    """``url`` without its password, for events, messages and ``repr``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class RedisStore:
    """Policy state in Redis, shared by every process (and host) using the same URL.

    Pass it as ``store=`` to :class:`~meshlite.RateLimit`, :class:`~meshlite.Cache`
    and :class:`~meshlite.CircuitBreaker` (with ``name=``). One store holds one
    connection pool for sync calls and one per event loop for async calls; it is
    thread-safe and meant to be shared by all the policies of a process.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS
            (certificate options as URL query arguments, as redis-py reads them),
            or ``unix:///path/to/socket``.
        prefix: Start of every key written (several apps may share one Redis).
        on_error: What a decision does when Redis does not answer within
            ``timeout``: ``"local"`` (use the policy's in-process state),
            ``"allow"`` (admit the call), ``"deny"`` (reject it) or ``"raise"``
            (raise :class:`StoreUnavailableError`).
        timeout: Seconds each network step of an operation may take (connecting,
            reading the reply; > 0): a decision falls back after about that long.
        retry_interval: Seconds decisions fall back without trying Redis after a
            failure (> 0); then one decision tries again.
        codec: How cached values are encoded: ``"json"`` (default), ``"msgpack"``,
            ``"pickle"`` (only if you trust everyone who can write to this Redis:
            decoding a pickle runs code) or an object with ``dumps``/``loads``.
        cache_lock: Seconds of the cross-process single-flight lock of a cache
            miss (one process computes, the others wait for its entry), or
            ``None`` (default) for single flight within each process only.

    Raises:
        ConfigError: an option is out of range, or redis-py is not installed
            (``pip install 'meshlite-mesh[redis]'``).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = DEFAULT_PREFIX,
        on_error: OnError = LOCAL,
        timeout: float = DEFAULT_TIMEOUT,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        codec: object = "json",
        cache_lock: float | None = None,
    ) -> None:
        if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
            fail("RedisStore", "url", url, "a redis://, rediss:// or unix:// URL")
        if not isinstance(prefix, str) or not prefix:
            fail("RedisStore", "prefix", prefix, "a non-empty string")
        if on_error not in ON_ERROR_MODES:
            fail("RedisStore", "on_error", on_error, "'local', 'allow', 'deny' or 'raise'")
        self.timeout = positive("RedisStore", "timeout", timeout)
        self.retry_interval = positive("RedisStore", "retry_interval", retry_interval)
        self.cache_lock = (None if cache_lock is None
                           else positive("RedisStore", "cache_lock", cache_lock))
        self.codec = resolve_codec(codec)
        self.url = url
        self.prefix = prefix
        self.on_error: OnError = on_error
        self.label = _label(url)
        self._health = Health(self.label, self.retry_interval)
        self.hooks = self._health.hooks
        self.fallbacks = self._health.fallbacks
        """Decisions taken without Redis, by ``(policy kind, action)``."""
        self._redis = _import_redis()
        self._errors: tuple[type[BaseException], ...] = (
            self._redis.exceptions.RedisError, OSError, TimeoutError)
        self._noscript = self._redis.exceptions.NoScriptError
        self._conns = Connections(self._redis, url, self._client_options(False),
                                  self._client_options(True))
        self._aclients: dict[int, tuple[asyncio.AbstractEventLoop, Any]] = {}
        self._lock = threading.Lock()

    def _client_options(self, asynchronous: bool) -> dict[str, Any]:
        r = self._redis
        retry_mod = r.asyncio.retry if asynchronous else r.retry
        # One immediate retry, on connection errors only: a pooled connection that a
        # Redis restart closed fails once, then reconnects. Timeouts are not retried,
        # so a slow Redis costs one ``timeout`` per decision, never several.
        retry = retry_mod.Retry(r.backoff.NoBackoff(), 1,
                                supported_errors=(r.exceptions.ConnectionError,))
        options: dict[str, Any] = {
            "socket_timeout": self.timeout, "socket_connect_timeout": self.timeout,
            "retry": retry, "health_check_interval": 0}
        # No CLIENT SETINFO round trips on connect: a reconnect should cost one
        # handshake, not three (redis-py >= 7 spells it driver_info=None).
        if "driver_info" in inspect.signature(r.Redis.__init__).parameters:
            options["driver_info"] = None
        else:
            options["lib_name"] = options["lib_version"] = None
        return options

    # -- the factory the policies use ------------------------------------------------

    def rate_limit(self, name: str, interval: float, tau: float) -> SharedGcra:
        """The shared GCRA state of rate limit ``name`` (keys ``<prefix>:rl:<name>...``)."""
        from ._redis_gcra import RedisGcra

        return RedisGcra(self, f"{self.prefix}:rl:{name}", interval, tau)

    def cache(self, namespace: str, ttl: float, stale_ttl: float) -> SharedCache:
        """The shared entries of cache ``namespace`` (keys ``<prefix>:cache:<namespace>...``)."""
        from ._redis_cache import RedisCache

        return RedisCache(self, f"{self.prefix}:cache:{namespace}", ttl, stale_ttl)

    def circuit(self, name: str, options: CircuitBreakerOptions, clock: Clock) -> SharedCircuit:
        """The shared state machine of breaker ``name`` (keys ``<prefix>:cb:<name>...``);
        ``clock`` is the breaker's, on which ``metrics().opened_at`` is given."""
        from ._redis_circuit import RedisCircuit

        return RedisCircuit(self, f"{self.prefix}:cb:{name}", options, clock)

    # -- health ----------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """Whether the last operation reached Redis (``True`` before the first one)."""
        return self._health.down_since is None

    def add_hook(self, hook: Hook) -> Callable[[], None]:
        """Subscribe to :class:`StoreUnavailable` and :class:`StoreRecovered`;
        returns the unsubscribe function."""
        return self.hooks.add(hook)

    def note_fallback(self, policy: str, action: str) -> None:
        """Count one fallback (see :meth:`Health.note_fallback`)."""
        self._health.note_fallback(policy, action)

    # -- commands (sync) -------------------------------------------------------------

    def eval(self, script: Script, nkeys: int, *args: Any) -> Any:
        """Run ``script`` on ``args`` (the first ``nkeys`` are keys); the raw reply.

        Raises:
            StoreUnavailableError: Redis did not answer in time, or refused.
        """
        health = self._health
        if health.down_since is not None:
            health.refuse()
        send = self._conns.send
        try:
            try:
                result = send("EVALSHA", script.sha, nkeys, *args)
            except self._noscript:  # Redis restarted and forgot it
                send("SCRIPT", "LOAD", script.source)
                result = send("EVALSHA", script.sha, nkeys, *args)
        except self._errors as error:
            raise health.failed(error) from error
        if health.down_since is not None:
            health.recovered()
        return result

    def command(self, *args: Any) -> Any:
        """Run one Redis command, such as ``("GET", key)``; the raw reply.

        Raises:
            StoreUnavailableError: Redis did not answer in time, or refused.
        """
        health = self._health
        if health.down_since is not None:
            health.refuse()
        try:
            result = self._conns.send(*args)
        except self._errors as error:
            raise health.failed(error) from error
        if health.down_since is not None:
            health.recovered()
        return result

    # -- commands (async) ------------------------------------------------------------

    async def aeval(self, script: Script, nkeys: int, *args: Any) -> Any:
        """The async twin of :meth:`eval`."""
        health = self._health
        if health.down_since is not None:
            health.refuse()
        send = self._conns.asend
        try:
            try:
                result = await send("EVALSHA", script.sha, nkeys, *args)
            except self._noscript:
                await send("SCRIPT", "LOAD", script.source)
                result = await send("EVALSHA", script.sha, nkeys, *args)
        except self._errors as error:
            raise health.failed(error) from error
        if health.down_since is not None:
            health.recovered()
        return result

    async def acommand(self, *args: Any) -> Any:
        """The async twin of :meth:`command`."""
        health = self._health
        if health.down_since is not None:
            health.refuse()
        try:
            result = await self._conns.asend(*args)
        except self._errors as error:
            raise health.failed(error) from error
        if health.down_since is not None:
            health.recovered()
        return result

    def _aclient(self) -> Any:
        """A full redis.asyncio client of the running loop (for pub/sub)."""
        loop = asyncio.get_running_loop()
        entry = self._aclients.get(id(loop))
        if entry is not None and entry[0] is loop:
            return entry[1]
        client = self._redis.asyncio.Redis.from_url(self.url, **self._client_options(True))
        with self._lock:
            self._aclients = {k: v for k, v in self._aclients.items() if not v[0].is_closed()}
            self._aclients[id(loop)] = (loop, client)
        return client

    # -- lifecycle -------------------------------------------------------------------

    def ping(self) -> bool:
        """Whether Redis answers a ``PING`` now (never raises)."""
        try:
            self.command("PING")
        except StoreUnavailableError:
            return False
        return True

    async def aping(self) -> bool:
        """The async twin of :meth:`ping`."""
        try:
            await self.acommand("PING")
        except StoreUnavailableError:
            return False
        return True

    def close(self) -> None:
        """Close the sync connections (async ones: :meth:`aclose` in their loop)."""
        self._conns.close()

    async def aclose(self) -> None:
        """Close the sync connections and those of the running event loop.

        Call it before an event loop that used the store ends, so no connection of
        that loop is left open.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._aclients.pop(id(loop), None)
        if entry is not None:
            await entry[1].aclose()
        await self._conns.aclose()
        self._conns.close()

    def __repr__(self) -> str:
        return (f"RedisStore({self.label!r}, prefix={self.prefix!r}, "
                f"on_error={self.on_error!r}, timeout={self.timeout!r})")


def _import_redis() -> Any:
    try:
        import redis
        import redis.asyncio
        import redis.asyncio.retry
        import redis.backoff
        import redis.retry
    except ImportError:
        raise ConfigError(
            "RedisStore needs redis-py, which is not installed; "
            "pip install 'meshlite-mesh[redis]'", policy="store") from None
    return redis
