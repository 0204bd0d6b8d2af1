"""Where a RedisStore connects: a URL, a list of Cluster seed nodes, or a ready client.

- ``redis://``, ``rediss://``, ``unix://``: one Redis (or a proxy in front of several).
- ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://``
  for TLS), or a list of ``"host:port"`` seed nodes: a Redis Cluster.
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``
  (``rediss+sentinel://``): the primary of ``service`` as the sentinels name it.
- A redis-py client or connection pool you built (``redis.Redis``,
  ``redis.cluster.RedisCluster``, their ``redis.asyncio`` twins, or a pool): used
  as it is, for credential providers, SSL contexts or options meshlite does not
  know. A sync client serves sync decisions, an async one async decisions of its
  event loop; the other kind is made from the same connection options.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from .._errors import ConfigError
from .._printable import url_shown
from .._validate import fail

__all__ = ["Target", "check_url", "import_redis", "label_of", "parse_target"]

_PLAIN = ("redis", "rediss", "unix")
_CLUSTER = ("redis+cluster", "rediss+cluster")
_SENTINEL = ("redis+sentinel", "rediss+sentinel")
WHAT = ("a redis://, rediss://, unix://, redis+cluster:// or redis+sentinel:// URL, "
        "a list of 'host:port' cluster seed nodes, or a redis-py client or pool")


def check_url(url: object) -> None:
    """Refuse a ``url`` that is neither text, a list of seed nodes nor a redis-py
    object, before redis-py is imported (the argument is wrong either way)."""
    if not isinstance(url, (str, list, tuple)) and "redis" not in type(url).__module__:
        fail("RedisStore", "url", url, WHAT)


def label_of(url: str) -> str:
    """``url`` without its password (``user:***@``, ``?password=***``), for events,
    messages and ``repr``."""
    return url_shown(url)


def _hosts(owner: str, spec: str, where: object) -> list[tuple[str, int]]:
    out = []
    for item in spec.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            fail(owner, "url", where,
                 "host:port nodes separated by commas (ports from 1 to 65535)")
        out.append((host.strip("[]"), int(port)))
    return out


def _check_plain(redis: Any, url: str, parts: SplitResult) -> None:
    # What redis-py would take wrongly: a port that is no number fails every call
    # later with a ValueError, and a database that is no number means db 0, silently.
    # An option it cannot read (?socket_timeout=abc) failed every decision (a
    # ValueError, which is no store error: out of the caller, a 500 per request).
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        fail("RedisStore", "url", label_of(url), "a URL whose port is a number from 1 to 65535 "
             "(redis://host:6379/0)")
    dbs = parse_qs(parts.query).get("db", [])
    if parts.scheme != "unix" and parts.path.strip("/"):
        dbs.append(parts.path.strip("/"))
    if not all(db.isdigit() for db in dbs):
        fail("RedisStore", "url", label_of(url), "a URL whose database is a number "
             "(redis://host:6379/0, or ?db=0)")
    try:
        redis.connection.parse_url(url)
    except ValueError as error:
        fail("RedisStore", "url", label_of(url), f"a URL whose options redis-py reads ({error})")


class Target:
    """How to make the sync and async clients of one store (see the module doc)."""

    def __init__(self, redis: Any, kind: str, label: str, options: dict[str, Any], *,
                 url: str = "", nodes: list[tuple[str, int]] | None = None,
                 service: str = "", sync: Any = None, aclient: Any = None) -> None:
        self.redis, self.kind, self.label, self.options = redis, kind, label, options
        self.url, self.nodes, self.service = url, nodes or [], service
        self.user_sync, self.user_async = sync, aclient
        self._sentinels: dict[bool, Any] = {}

    # -- making clients --------------------------------------------------------------

    def sync_client(self, max_connections: int) -> Any:
        """The process's sync client."""
        if self.user_sync is not None:
            return self.user_sync
        return self._make(False, max_connections)

    def async_client(self, max_connections: int) -> Any:
        """A new async client for the running event loop."""
        if self.user_async is not None:
            return self.user_async
        return self._make(True, max_connections)

    def _make(self, asynchronous: bool, size: int) -> Any:
        r = self.redis
        mod = r.asyncio if asynchronous else r
        options = dict(self.options, **({"retry": self.options["aretry"]} if asynchronous
                                       else {}))
        options.pop("aretry", None)
        if asynchronous and self.kind != "cluster":
            # The store bounds async requests itself (see _redis_wire.Wire.acall).
            options["socket_timeout"] = None
        if self.kind == "cluster":
            from redis.asyncio.cluster import ClusterNode as AsyncNode
            from redis.cluster import ClusterNode, RedisCluster

            # No retries by the Cluster client: its default (10, with backoff, and a
            # topology refresh each) waits out a hung or dead node for seconds, so a
            # decision could not fall back within ``timeout``. Redirects (MOVED, ASK)
            # are followed all the same; a connection a restart closed is reconnected.
            # Making the sync client reads the command table (``COMMAND``) from the
            # first primary: while that one is down, it is retried on the others.
            retry = r.asyncio.retry.Retry if asynchronous else r.retry.Retry
            options["retry"] = retry(r.backoff.NoBackoff(), 0 if asynchronous
                                     else len(self.nodes))
            # A slot no node serves (cluster-require-full-coverage no) is left out of
            # the slot map; by default redis-py refuses the whole map instead, so the
            # client could neither start nor follow any change while a slot is out.
            options["require_full_coverage"] = False
            options.pop("health_check_interval", None)
            cls = r.asyncio.cluster.RedisCluster if asynchronous else RedisCluster
            node: Any = AsyncNode if asynchronous else ClusterNode
            client = cls(startup_nodes=[node(h, p) for h, p in self.nodes],
                         max_connections=size, **options)
            client.set_retry(retry(r.backoff.NoBackoff(), 0))
            return client
        if self.kind == "sentinel":
            sentinel = self._sentinel(asynchronous, options)
            return sentinel.master_for(self.service, max_connections=size, **options)
        pool = mod.BlockingConnectionPool.from_url(self.url, max_connections=size,
                                                   timeout=None, **options)
        return mod.Redis.from_pool(pool)

    def _sentinel(self, asynchronous: bool, options: dict[str, Any]) -> Any:
        """The Sentinel manager: one for the process (sync), a new one per async
        client (its connections to the sentinels belong to that client's event
        loop, and :meth:`aclose_client` closes them with the client)."""
        found = None if asynchronous else self._sentinels.get(False)
        if found is None:
            r = self.redis
            mod = r.asyncio.sentinel if asynchronous else r.sentinel
            kw = {"socket_timeout": self.options["socket_timeout"],
                  "socket_connect_timeout": options["socket_connect_timeout"]}
            found = mod.Sentinel(self.nodes, sentinel_kwargs=kw, **options)
            if not asynchronous:
                self._sentinels[False] = found
        return found

    async def aclose_client(self, client: Any) -> None:
        """Close an async client made by :meth:`async_client`, with its connections
        to the sentinels (a Sentinel target)."""
        try:
            await client.aclose()
        finally:
            if self.kind == "sentinel":
                await client.connection_pool.sentinel_manager.aclose()

    # -- rediscovery -----------------------------------------------------------------

    def rediscover(self, client: Any) -> None:
        """After READONLY/MOVED/ASK: make the next command find the current primary."""
        if self.kind == "cluster":
            client.nodes_manager.initialize()
        else:
            client.connection_pool.disconnect()

    async def arediscover(self, client: Any) -> None:
        """The async twin of :meth:`rediscover`."""
        if self.kind == "cluster":
            await client.nodes_manager.initialize()
        else:
            await client.connection_pool.disconnect()


def parse_target(redis: Any, url: object, options: dict[str, Any]) -> Target:
    """The :class:`Target` of ``url`` (see the module doc).

    Raises:
        ConfigError: ``url`` is none of the accepted forms.
    """
    if isinstance(url, (list, tuple)):
        if not url or not all(isinstance(u, str) for u in url):
            fail("RedisStore", "url", url, WHAT)
        nodes = _hosts("RedisStore", ",".join(url), url)
        return Target(redis, "cluster", "redis+cluster://" + ",".join(url), options,
                      nodes=nodes)
    if not isinstance(url, str):
        return _ready(redis, url, options)
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in _PLAIN:
        _check_plain(redis, url, parts)
        return Target(redis, "plain", label_of(url), options, url=url)
    if scheme not in _CLUSTER + _SENTINEL:
        fail("RedisStore", "url", label_of(url), WHAT)
    hosts = parts.netloc.rsplit("@", 1)[-1]
    nodes = _hosts("RedisStore", hosts, label_of(url))
    options = dict(options)
    if "@" in parts.netloc:
        creds = parts.netloc.rsplit("@", 1)[0]
        user, _, password = creds.partition(":")
        options.update(username=unquote(user) or None, password=unquote(password) or None)
    if scheme.startswith("rediss"):
        options["ssl"] = True
    if scheme in _CLUSTER:
        return Target(redis, "cluster", label_of(url), options, nodes=nodes)
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        fail("RedisStore", "url", label_of(url),
             "redis+sentinel://host:port[,host:port]/service[/db]")
    if len(path) == 2:
        options["db"] = int(path[1])
    return Target(redis, "sentinel", label_of(url), options, nodes=nodes, service=path[0])


def _ready(redis: Any, obj: Any, options: dict[str, Any]) -> Target:
    """A Target around a client or pool the user made."""
    r = redis
    from redis.cluster import RedisCluster

    if isinstance(obj, (r.ConnectionPool, r.asyncio.ConnectionPool)):
        mod = r if isinstance(obj, r.ConnectionPool) else r.asyncio
        obj = mod.Redis(connection_pool=obj)
    sync = obj if isinstance(obj, (r.Redis, RedisCluster)) else None
    aclient = obj if isinstance(obj, (r.asyncio.Redis, r.asyncio.cluster.RedisCluster)) \
        else None
    if sync is None and aclient is None:
        fail("RedisStore", "url", obj, WHAT)
    label = f"redis:{type(obj).__name__}"
    if isinstance(obj, (RedisCluster, r.asyncio.cluster.RedisCluster)):
        nodes = [(n.host, n.port) for n in obj.get_nodes()]
        return Target(redis, "cluster", label, options, nodes=nodes, sync=sync,
                      aclient=aclient)
    kwargs = dict(obj.connection_pool.connection_kwargs)
    kwargs.pop("retry", None)
    kind = "sentinel" if "Sentinel" in type(obj.connection_pool).__name__ else "plain"
    target = Target(redis, "plain", label, dict(kwargs, **options), sync=sync,
                    aclient=aclient)
    target.kind = kind if kind == "plain" else "ready-sentinel"
    target.url = _url_of(kwargs)
    return target


def _url_of(kwargs: dict[str, Any]) -> str:
    """A URL for the other client kind of a ready client (options travel separately)."""
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def import_redis() -> Any:
    """redis-py with every module a store uses (imported when a store is made).

    Raises:
        ConfigError: redis-py is not installed.
    """
    try:
        import redis
        import redis.asyncio
        import redis.asyncio.cluster
        import redis.asyncio.retry
        import redis.asyncio.sentinel
        import redis.backoff
        import redis.cluster
        import redis.commands.core
        import redis.retry
        import redis.sentinel
    except ImportError:
        raise ConfigError(
            "RedisStore needs redis-py, which is not installed; "
            "pip install 'meshlite-mesh[redis]'", policy="store") from None
    return redis
