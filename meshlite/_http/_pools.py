"""Connection pools (one httpx transport per backend), TLS contexts, HTTP probes."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from typing import Any, NamedTuple

import httpx

from .._errors import MeshClosedError
from .._fork import after_fork_in_child, fork_safe
from ..routing._backend import Backend
from ..routing._endpoint import Endpoint
from ..routing._service import Service
from ..routing._tls import Headers
from ._aio_wire import AiohttpTransport, aiohttp_options
from ._inherited import close_inherited
from ._loop_transport import PerLoopTransport
from ._outgoing import check_base_url
from ._retire import Retired, Retiring, busy
from ._sync_wire import Urllib3Transport, urllib3_options

__all__ = ["MeshPools", "Pools", "Target", "tls_context"]


class Target(NamedTuple):
    transport: Any
    scheme: str
    host: str
    port: int | None
    prefix: bytes
    netloc: str
    origin: str | None
    """``scheme://netloc`` (plus the prefix on the aiohttp wire) when the transport
    is one of meshlite's wires, whose routed path builds its URL from it; else None
    (httpcore, for options only it honours: the attempt is an ``httpx.Request``)."""
    loop: asyncio.AbstractEventLoop | None = None
    """The event loop an async transport was made on (its connections' loop)."""


_tls_lock = fork_safe(threading.Lock())
_tls: dict[str, ssl.SSLContext] = {}


def tls_context(scheme: str) -> ssl.SSLContext:
    """One verifying TLS context per process (building one loads the CA bundle,
    ~0.1 s), and for plain-HTTP backends a context that is never used for a handshake
    (httpx builds one per transport otherwise)."""
    key = "https" if scheme == "https" else "http"
    context = _tls.get(key)
    if context is None:
        with _tls_lock:
            context = _tls.get(key)
            if context is None:
                context = _tls[key] = (httpx.create_ssl_context() if key == "https"
                                       else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    return context


def _with_tls(options: dict[str, Any], scheme: str) -> dict[str, Any]:
    if "verify" in options or "cert" in options:
        return options  # the user's TLS settings win
    return {**options, "verify": tls_context(scheme)}


_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20,
                       keepalive_expiry=5.0)
"""httpx's default limits, which the aiohttp wire honours too."""


def _ssl_of(options: dict[str, Any]) -> ssl.SSLContext:
    verify, cert = options["verify"], options.get("cert")
    if isinstance(verify, ssl.SSLContext) and cert is None:
        return verify
    # httpx's own reading of verify= and cert= (paths, False, a client certificate)
    return httpx.create_ssl_context(verify=verify, cert=cert)


class Pools:
    """One ``httpx`` transport (a connection pool) per backend, made on first use.

    A backend the service no longer has (``Service.set_backends``) has its transport
    forgotten at once and closed once nothing runs on it (``_retire``); if it comes
    back, it gets a new one."""

    def __init__(self, service: Service, is_async: bool) -> None:
        context = service.ssl_context()
        # The service's TLS identity and trust are for its backends only; requests
        # to other hosts (the passthrough) get the default verification.
        self._plain = service.http_pool
        self._options = self._plain if context is None else {
            **self._plain, "verify": context}
        self.headers: Headers = service._headers
        """Static headers every routed attempt carries (never the passthrough)."""
        self._async = is_async
        self._targets: dict[str, Target] = {}
        self._passthrough: Any = None
        self._lock = threading.Lock()
        self._closed = False  # closed with the mesh (or its service): makes no transport
        self._service = service
        self._retiring = Retiring(is_async)
        self._unwatch = service.watch_backends(self._retire)
        if not is_async:  # async pools are per event loop: a child runs its own
            after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: start with no connection, and close the child's copies
        of the parent's sockets (``_inherited``)."""
        inherited = [t.transport for t in self._targets.values()]
        inherited += [self._passthrough] if self._passthrough is not None else []
        inherited += [r.transport for r in self._retiring._waiting]
        self._lock = threading.Lock()
        self._targets, self._passthrough = {}, None
        self._retiring = Retiring(self._async)
        close_inherited(inherited)

    def _transport(self, scheme: str = "https", *, own: bool = True) -> Any:
        options = _with_tls(self._options if own else self._plain, scheme)
        if self._async:
            if aiohttp_options(options):
                return AiohttpTransport(_ssl_of(options), options.get("limits", _LIMITS),
                                        options.get("local_address"))
            return PerLoopTransport(lambda: httpx.AsyncHTTPTransport(**options))
        if urllib3_options(options):
            return Urllib3Transport(_ssl_of(options), options.get("limits", _LIMITS))
        return httpx.HTTPTransport(**options)

    def get(self, backend: Backend) -> Target:
        target = self._targets.get(backend.address)
        if target is None:
            with self._lock:
                target = self._targets.get(backend.address)
                if target is None:
                    if self._closed:
                        raise self._closed_error()
                    check_base_url(backend.address, "mesh.http()")
                    url = httpx.URL(backend.address)
                    transport = self._transport(url.scheme)
                    prefix = url.raw_path.split(b"?")[0].rstrip(b"/")
                    netloc = url.netloc.decode("ascii")
                    origin = None
                    if isinstance(transport, AiohttpTransport):
                        origin = f"{url.scheme}://{netloc}{prefix.decode('ascii')}"
                    elif isinstance(transport, Urllib3Transport):
                        origin = f"{url.scheme}://{netloc}"  # its path carries the prefix
                    target = self._targets[backend.address] = Target(
                        transport, url.scheme, url.host, url.port, prefix, netloc, origin,
                        _running_loop() if self._async else None)
        return target

    def _closed_error(self) -> MeshClosedError:
        # An attempt of a call that was in flight when the pools closed (a retry of
        # it, say): a transport made now would be closed by no one.
        name = self._service.name
        return MeshClosedError(
            f"service {name!r}: its connection pools closed (the mesh closed, or the "
            "service was removed) while the call was in flight; it is not sent again",
            service=name, policy="mesh")

    def _retire(self, removed: tuple[Endpoint, ...]) -> None:
        """Retire the transports of backends the service no longer has (after
        ``set_backends`` took ``removed`` out)."""
        current = {e.address for e in self._service.endpoints}
        with self._lock:
            gone = {a: self._targets.pop(a) for a in list(self._targets) if a not in current}
        if gone:
            self._retiring.add([
                Retired(t.transport, tuple(e for e in removed if e.address == a), t.loop)
                for a, t in gone.items()])

    def passthrough(self) -> Any:
        """The transport for requests to hosts other than the service's own.

        Raises:
            MeshClosedError: these pools are closed (a transport made now would be
                closed by no one).
        """
        with self._lock:
            if self._passthrough is None:
                if self._closed:
                    raise self._closed_error()
                self._passthrough = self._transport(own=False)
            return self._passthrough

    def transports(self) -> int:
        """How many transports are open: one per backend used, the passthrough's,
        and those of removed backends still retiring."""
        return (len(self._targets) + (self._passthrough is not None)
                + len(self._retiring))

    def busy(self) -> bool:
        """Whether a connection of these pools is in use (a response body still being
        read); those of removed backends still retiring are closed when idle."""
        with self._lock:
            found = [t.transport for t in self._targets.values()]
            if self._passthrough is not None:
                found.append(self._passthrough)
        return any(busy(t) for t in found)

    def _all(self) -> list[Any]:
        self._unwatch()
        with self._lock:
            self._closed = True
            found = [t.transport for t in self._targets.values()]
            if self._passthrough is not None:
                found.append(self._passthrough)
            self._targets, self._passthrough = {}, None
        return found + self._retiring.take_all()

    async def aclose(self) -> None:
        for transport in self._all():
            await transport.aclose()

    def close(self) -> None:
        for transport in self._all():
            transport.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class MeshPools:
    """The HTTP connection pools of one mesh: a :class:`Pools` (one pool per backend)
    per service and kind (async, sync), made on first use. The mesh holds it and
    closes it (all of it when the mesh closes, one service's part when a reload
    retires the service) through :meth:`aclose`, :meth:`close` and :meth:`take`,
    without knowing what is inside."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[tuple[Service, bool], Pools] = {}
        self._closed = False  # all taken (the mesh closed): makes no Pools
        after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (each :class:`Pools` resets itself)."""
        self._lock = threading.Lock()

    def get(self, service: Service, is_async: bool) -> Pools:
        """The pools of ``service`` for async or sync clients (made now if new)."""
        key = (service, is_async)
        pools = self._made.get(key)
        if pools is None:
            with self._lock:
                pools = self._made.get(key)
                if pools is None:
                    if self._closed:
                        raise MeshClosedError(
                            f"service {service.name!r}: the mesh's connection pools "
                            "closed; open the mesh again to send", policy="mesh",
                            service=service.name)
                    pools = self._made[key] = Pools(service, is_async)
        return pools

    def made(self, service: Service, is_async: bool) -> bool:
        """Whether ``service`` has pools of that kind open."""
        return (service, is_async) in self._made

    def busy(self, service: Service) -> bool:
        """Whether a connection of ``service``'s pools is in use."""
        with self._lock:
            made = [p for (s, _), p in self._made.items() if s is service]
        return any(p.busy() for p in made)

    def take(self, service: Service | None = None) -> tuple[list[Pools], list[Pools]]:
        """Forget the pools of ``service`` (of every service when None: the mesh
        closes, and this registry makes no more) and return them, async ones first,
        for the caller to close."""
        with self._lock:
            self._closed = self._closed or service is None
            keys = [k for k in self._made if service is None or k[0] is service]
            taken = [(k[1], self._made.pop(k)) for k in keys]
        return [p for a, p in taken if a], [p for a, p in taken if not a]

    async def aclose(self, service: Service | None = None) -> None:
        """Close the pools of ``service`` (every service when None)."""
        async_pools, sync_pools = self.take(service)
        for pools in async_pools:
            with contextlib.suppress(Exception):
                await pools.aclose()
        for pools in sync_pools:
            with contextlib.suppress(Exception):
                pools.close()
