"""MeshMiddleware: the pure ASGI middleware of the inbound side."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from .._arguments import explained
from .._context import CallContext, _current
from .._errors import MeshliteError, TimeoutExceeded
from .._validate import fail, positive
from ._admission import admit, admit_by, check_auth, check_handshake
from ._answers import InboundError, answer_for, end_body, send_answer
from ._audit import RefusalAudit
from ._auth import Auth
from ._body import ClientGone, client_left
from ._deadline import cut_by, run_by
from ._departure import Departure
from ._follow import ConfigFollower
from ._frameworks import install_handlers
from ._headers import NOTHING, scan, valid_caller
from ._lifespan import watching
from ._refusals import RefusalFeed, refusal_kind, shown_client, shown_path
from ._relay import EventRelay
from ._request import PRINCIPAL_KEY, Inbound, Message, Receive, Scope, Send
from ._routes import DEFAULT_MAX_DEADLINE, DOTTED, CompiledRoute, Route, RouteTable, dot_segments
from ._setup import InboundMesh, MiddlewareSetup, check_options
from ._span import ServerSpan, recording
from ._stats import InboundStats, Series, method_label

if TYPE_CHECKING:
    from .._audit import AuditLog

__all__ = ["PRINCIPAL_KEY", "MeshMiddleware"]


@explained
class MeshMiddleware(MiddlewareSetup):
    """Guard an ASGI app's inbound side as a sidecar would (see docs/inbound.md).

    For each HTTP request: a SERVER span continuing the caller's W3C trace context;
    the caller's deadline (``x-meshlite-deadline`` milliseconds, or ``grpc-timeout``)
    as the request's budget, seen by ``ml.remaining()`` and by every mesh call made
    while handling it (504 at once when it arrives expired); the first matching
    :class:`Route`'s auth (401/403), size limit (413), validation (422), rate limit
    (429), concurrency limits (503) and timeout (504); meshlite errors escaping the
    app mapped to 429/503/504 with ``Retry-After``; RED metrics per route
    (:attr:`stats`) and the services that call this one.

    Args:
        app: The ASGI app.
        mesh: The mesh whose calls the app makes (its name and metrics; optional);
            the routes' events (rejections, store fallbacks) go to its metrics and
            to the hooks added with ``mesh.add_hook``.
        routes: Inbound policies per path pattern, first match wins. When None and
            ``mesh`` was built from a config file, its ``inbound:`` section's routes
            and API keys, followed across hot reloads.
        auth: How credentials are verified (:class:`Auth`); needed by routes with
            ``scopes``.
        trace: Start a SERVER span per request.
        max_deadline: The longest budget in seconds a caller's deadline may grant.
        audit: An ``ml.AuditLog`` for refusals (they are logged in any case).

    Raises:
        ConfigError: an invalid option (named).
    """

    def __init__(self, app: Any, *, mesh: InboundMesh | None = None,
                 routes: Sequence[Route] | None = None, auth: Auth | None = None,
                 trace: bool = True, max_deadline: float = DEFAULT_MAX_DEADLINE,
                 audit: AuditLog | None = None) -> None:
        if not callable(app):
            fail("MeshMiddleware", "app", app, "an ASGI app")
        check_options(mesh, trace, audit)
        self.app = app
        self.mesh = mesh
        self.auth = auth
        self.trace = trace
        self.max_deadline = positive("MeshMiddleware", "max_deadline", max_deadline)
        self._own = (self.max_deadline, trace)  # what a config file's section may override
        self.stats = InboundStats()
        """Server-side metrics (a Prometheus collector) and the calling services."""
        self.table = RouteTable(routes or ())
        self.stats.keep(r.series for r in self.table.routes)
        check_auth("MeshMiddleware", auth, self.table)
        self._relay = None if mesh is None else EventRelay(mesh)
        self._config = ConfigFollower(mesh) if routes is None and mesh is not None else None
        if self._config is not None:
            self._follow()  # the file's routes (their events relayed by configure)
        elif self._relay is not None:
            self._relay.follow(self.table)  # the routes' events: the mesh's metrics, hooks
        self.audit = RefusalAudit(audit, clock=time.monotonic)
        self.refusals = RefusalFeed()
        """Refusals aggregated for the dashboard's live feed."""
        install_handlers(app)
        self._unregister: Callable[[], None] | None = None
        if mesh is not None:
            self._attach(mesh)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._config is not None and self._config.stale():
            self._follow()
        if scope["type"] != "http":
            await self._other(scope, receive, send)
            return
        table = self.table
        path = scope["path"]
        if table.routes and "/." in path and dot_segments(path):  # (see dot_segments)
            await self._refuse(Inbound(scope, receive, send, ""), InboundError(DOTTED))
            return
        route = table.find(path, scope["method"], scope.get("root_path")) if (
            table.routes) else table.plain
        found = scan(scope["headers"])
        if (found is not NOTHING or not route.direct or self.auth is not None
                or (self.trace and recording())):
            await self._full(scope, receive, send, route, found)
            return
        # The common case made cheap: no policy, deadline, caller, auth or span: only a
        # watch on the app's messages, for the status, the end and the client's
        # leaving (no request object, no other coroutine frame).
        started = _monotonic()
        watch = Departure(scope, receive, send, started)
        status = -1  # (the watch's)
        try:
            await self.app(scope, watch.receive, watch.send)
        except MeshliteError as error:
            watch.stop()
            request = Inbound(scope, receive, send, route.label or "")
            request.status, status = watch.status, watch.status or _UNANSWERED  # (if raised on)
            await self._refuse(request, error)
            status = request.status
        except Exception as error:
            if not client_left(error):
                status = watch.status or _UNANSWERED  # the server answers it 500
                raise
            # What went out before the client left (0: nothing), not the 500 a
            # framework sends after it, to no one (the watch's send refuses it).
            status = watch.status
        finally:
            seconds = watch.finish() - started
            if status < 0 or (status and watch.unanswered):
                status = watch.status
            method = scope["method"]
            (route.counted.get(method) or self._series(route, method)).add(status, seconds)

    def _series(self, route: CompiledRoute, method: str) -> Series:
        """The stats series of a route's requests of ``method``, kept on the route
        (past its first request, the direct path finds it there)."""
        label = method_label(method, route.methods)
        series = self.stats.series(route.series, label)
        if label == method:  # never one entry per made-up method
            route.counted[method] = series
        return series

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Lifespan passes through (a mesh it opened and left open is closed at its
        end); a WebSocket too, once its handshake met its route's credentials check."""
        if scope["type"] == "lifespan" and self.mesh is not None:
            send = watching(self.mesh, send)
        if scope["type"] != "websocket" or await self._handshake(scope, receive, send):
            await self.app(scope, receive, send)

    async def _full(self, scope: Scope, receive: Receive, send: Send, route: CompiledRoute,
                    found: tuple[float | None, str | None, bool]) -> None:
        budget, caller, context = found
        started = time.monotonic()
        watch = Departure(scope, receive, send, started)
        request = Inbound(scope, watch.receive, watch.send, route.label or "")
        if self.auth is not None:
            request.api_key_header = self.auth.api_key_header  # for key="api_key" quotas
        if caller is not None:
            request.caller = valid_caller(caller)
        span = ServerSpan(request, route.label, method_label(
            request.method, route.methods)) if self.trace and (
            context or recording()) else None
        error: BaseException | None = None
        try:
            error = await self._handle(request, route, started, budget)
        except BaseException as raised:
            error = raised
            if not request.status and isinstance(raised, Exception):
                request.status = _UNANSWERED  # the server answers it 500
            raise
        finally:
            end = watch.finish()
            if watch.gone:
                request.status = watch.status  # what went out before it left (0: none)
                if error is None:
                    error = ClientGone("the client left before its answer was complete")
            if span is not None:
                span.end(request, error, end)
            self.stats.record(route.series, method_label(request.method, route.methods),
                              request.status, end - started, request.caller, end)

    async def _handle(self, request: Inbound, route: CompiledRoute, started: float,
                      budget: float | None) -> MeshliteError | None:
        """Run the request; returns the error that cut its response short, if any."""
        ctx = None
        if budget is not None:
            budget = min(budget, self.max_deadline)
            ctx = CallContext(self.app, (), {}, request.route or request.path)
            ctx.deadline = started + budget
        token = _current.set(ctx) if ctx is not None else None
        try:
            if budget is None:
                if route.admits or self.auth is not None:
                    await admit(self.auth, request, route)
                pipeline = route.pipeline
                if pipeline is None:
                    await self._run(request)
                else:
                    await pipeline.acall(self._run, request)
            else:
                await self._within(request, route, started, budget)
        except MeshliteError as error:
            if request.status and isinstance(error, TimeoutExceeded):
                if budget is not None and started + budget <= _monotonic():
                    # The caller's deadline passed after the headers went out: the
                    # body ends there (see end_body); the caller has stopped waiting.
                    await end_body(request.send)
                # Else the route's own timeout, the caller still reading: the body
                # stays cut short, and the server closes the connection (with one
                # line in its log, not the traceback of an error raised to it).
                return error
            await self._refuse(request, error)
        except Exception as error:
            if not client_left(error):
                raise
            request.status = 0  # see client_left: ended without an answer
        finally:
            if token is not None:
                _current.reset(token)
        return None

    async def _within(self, request: Inbound, route: CompiledRoute, started: float,
                      budget: float) -> None:
        """Admit and run a request held to its caller's deadline, ``budget`` seconds
        from ``started``.

        Raises:
            TimeoutExceeded: the deadline passed (or had on arrival).
        """
        if budget <= 0.0:
            raise TimeoutExceeded("the request arrived after its deadline", policy="inbound")
        deadline = started + budget
        try:
            if route.admits or self.auth is not None:
                await admit_by(deadline, self.auth, request, route)
            pipeline = route.pipeline
            if route.timed:  # the route's Timeout holds it to the sooner of the two
                await (self._run(request) if pipeline is None else
                       pipeline.acall(self._run, request))
            elif pipeline is None:
                await run_by(self.app, deadline, request)
            else:
                await pipeline.acall(partial(run_by, self.app, deadline), request)
        except Exception as error:
            if not cut_by(error, deadline):
                raise
            raise TimeoutExceeded("the request ran out of its caller's time",
                                  policy="inbound") from error

    async def _handshake(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Whether a WebSocket handshake may go on (see :func:`check_handshake`); a
        refusal is answered, audited and fed as a request's."""
        if self.auth is None:  # (then no route requires credentials)
            return True
        refused = await check_handshake(self.auth, self.table, scope, receive, send)
        if refused is not None:
            await self._refuse(*refused)
        return refused is None

    async def _run(self, request: Inbound) -> None:
        send = request.send

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                request.status = message["status"]
            await send(message)

        await self.app(request.scope, request.receive, sending)

    async def _refuse(self, request: Inbound, error: MeshliteError) -> None:
        answer = answer_for(error)
        if answer is None or request.status:
            raise error  # unmapped, or the response began: the server handles it
        request.status = answer.status
        action = refusal_kind(answer.status, error)
        if action is not None:
            client, route = shown_client(request.client), request.route or shown_path(
                request.path)
            if action != "shed":
                self.audit.refused(action, client, route, answer.status)
            self.refusals.add(action, route, answer.status, client)
        await send_answer(request.send, answer)


_monotonic = time.monotonic
_UNANSWERED = 500
"""The status counted for an error escaping the app before its response started: the
one the ASGI server answers (a cancelled request, with no answer, counts as 0)."""
