"""Admission: what a request must meet before its app runs (credentials and scopes,
body size, validation), and what a WebSocket handshake must meet (its route's
credentials). The middleware answers what these refuse; they answer nothing."""

from __future__ import annotations

import asyncio
import time

from .._errors import MeshliteError, TimeoutExceeded
from .._validate import fail
from ._answers import InboundError, handshake_refusal
from ._auth import Auth, sign_in
from ._body import check_length, fields, invalid_json, limited, read_body, replay, validation_args
from ._request import Inbound, Receive, Scope, Send
from ._routes import DOTTED, CompiledRoute, RouteTable, dot_segments

__all__ = ["admit", "admit_by", "check_auth", "check_handshake"]


async def admit(auth: Auth | None, request: Inbound, route: CompiledRoute) -> None:
    """Check ``request`` against ``auth`` and its route's body limit and validation;
    the body is then read through the limit, or replayed once validated.

    Raises:
        MeshliteError: the refusal to answer (401, 403, 413, 422).
        ClientGone: the client left before its body arrived whole.
    """
    if auth is not None:
        await sign_in(auth, request, route.route)
    if route.max_body is not None:
        check_length(request, route.max_body)
        request.receive = limited(request.receive, route.max_body)
    if route.validator is not None:
        body = await read_body(request.receive)
        args = validation_args(request, body)
        if invalid_json(args):
            raise InboundError("the request body is not valid JSON")
        await route.validator.acall(fields, **args)
        request.receive = replay(body, request.receive)


async def admit_by(deadline: float, auth: Auth | None, request: Inbound,
                   route: CompiledRoute) -> None:
    """:func:`admit` within the caller's deadline (a ``time.monotonic()`` instant), as
    the handler is held to it: a body trickling in for validation is not waited for
    past it.

    Raises:
        TimeoutExceeded: the deadline passed first (answered 504).
    """
    limit = asyncio.timeout(deadline - time.monotonic())
    try:
        async with limit:
            await admit(auth, request, route)
    except TimeoutError:
        if not limit.expired():
            raise  # (a verifier's or validator's own)
        raise TimeoutExceeded("the request ran out of time before it was admitted",
                              policy="inbound") from None


async def check_handshake(auth: Auth, table: RouteTable, scope: Scope, receive: Receive,
                          send: Send) -> tuple[Inbound, MeshliteError] | None:
    """Whether a WebSocket handshake may go on: None, or the request to refuse (its
    refusals sent as the handshake's) and the error to refuse it with. Its
    credentials are checked as a GET of its path would be (the route's auth and
    scopes; its other policies are per request)."""
    route = table.find(scope["path"], "GET", scope.get("root_path"))
    request = Inbound(scope, receive, handshake_refusal(scope, send), route.label or "")
    if table.routes and dot_segments(scope["path"]):
        return request, InboundError(DOTTED)
    try:
        await sign_in(auth, request, route.route)
    except MeshliteError as error:
        return request, error
    return None


def check_auth(where: str, auth: Auth | None, table: RouteTable) -> None:
    """Refuse an ``auth`` that is not an :class:`Auth`, and routes requiring
    credentials without one (they would let every request in)."""
    if auth is not None and not isinstance(auth, Auth):
        fail(where, "auth", auth, "a meshlite.asgi.Auth or None")
    if auth is None and any(r.route.needs_auth for r in table.routes):
        fail(where, "auth", None, "an Auth when a route requires credentials")
    keyed = [r.route.pattern for r in table.routes if r.route.key == "api_key"]
    if keyed and (auth is None or auth.api_keys is None):
        # Nothing checks the header then: each client picks a new quota at will.
        fail(where, "auth", auth, f"an Auth with api_keys= when a route's quota is keyed "
             f"by 'api_key' ({keyed[0]!r}), which counts only a checked key")
