"""What the inbound side answers: meshlite errors mapped to HTTP statuses, and the
small JSON responses it sends itself (429, 503, 504, 401, 403, 413, 422).

The mapping lives here once; the middleware and the Starlette/FastAPI exception
handlers (:func:`exception_handlers`) both use it. Bodies name the kind of failure,
never internal detail (backend addresses, service names) an outside caller should
not learn; the field list of a :class:`~meshlite.ValidationError` of arguments is the
exception, since it names fields and expectations only, never values (one of a
result, a dependency's answer found wrong, is not answered here at all).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .._errors import (
    BulkheadFullError,
    CircuitOpenError,
    ForbiddenError,
    InboundError,
    MeshliteError,
    NoHealthyBackendError,
    RateLimitedError,
    RejectedError,
    RequestTooLargeError,
    TimeoutExceeded,
    UnauthorizedError,
)

__all__ = [
    "DEFAULT_OVERLOAD_RETRY_AFTER",
    "END_BODY_GRACE",
    "Answer",
    "ForbiddenError",
    "InboundError",
    "RequestTooLargeError",
    "UnauthorizedError",
    "answer_for",
    "end_body",
    "exception_handlers",
    "handshake_refusal",
    "send_answer",
    "status_for",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_OVERLOAD_RETRY_AFTER = 1.0
"""``Retry-After`` seconds of a 503 whose error does not know when to retry: load
shedding frees capacity within a round trip, so a short pause is the honest hint."""

_KINDS: tuple[tuple[type[BaseException], int, str, str, float | None], ...] = (
    (RateLimitedError, 429, "rate_limited", "too many requests: slow down and retry later",
     None),
    (CircuitOpenError, 503, "circuit_open", "a dependency is failing: retry later", None),
    (BulkheadFullError, 503, "overloaded", "the service is at capacity: retry later",
     DEFAULT_OVERLOAD_RETRY_AFTER),
    (NoHealthyBackendError, 503, "unavailable", "a dependency is unavailable: retry later",
     None),
    (TimeoutExceeded, 504, "deadline_exceeded", "the request ran out of time", None),
    (RejectedError, 503, "rejected", "the service refused the request: retry later",
     DEFAULT_OVERLOAD_RETRY_AFTER),
)


class Answer:
    """A response the inbound side sends itself: status, JSON body, extra headers."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, kind: str, message: str, *,
                 retry_after: float | None = None, **fields: Any) -> None:
        self.status = status
        payload: dict[str, Any] = {"error": kind, "message": message, **fields}
        headers = [(b"content-type", b"application/json")]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        # An unknown wait (inf, NaN: an error raised by the application) sends none.
        if retry_after is not None and math.isfinite(retry_after):
            seconds = max(1, math.ceil(retry_after))  # delta-seconds is an integer
            payload["retry_after"] = seconds
            headers.append((b"retry-after", str(seconds).encode()))
        self.body = json.dumps(payload, separators=(",", ":")).encode()
        headers.append((b"content-length", str(len(self.body)).encode()))
        self.headers = headers


def status_for(error: BaseException) -> int | None:
    """The HTTP status a meshlite error maps to (429, 503, 504, 422, and the inbound
    refusals' 400, 401, 403, 413), or None for an error the inbound side does not map
    (left to the framework: usually 500)."""
    answer = answer_for(error)
    return None if answer is None else answer.status


def answer_for(error: BaseException) -> Answer | None:
    """The response for a meshlite error escaping a handler, or None when unmapped.

    ``RateLimitedError`` is 429; ``CircuitOpenError``, ``BulkheadFullError`` (and
    load shedding), ``NoHealthyBackendError`` and other rejections are 503;
    ``TimeoutExceeded`` is 504; ``ValidationError`` is 422 with its ``errors`` when
    arguments failed (a result that failed is unmapped: no fault of the request); the
    inbound refusals are ``UnauthorizedError`` 401, ``ForbiddenError`` 403,
    ``RequestTooLargeError`` 413 and another ``InboundError`` 400. ``Retry-After`` is
    set whenever the error knows when to retry.
    """
    if not isinstance(error, MeshliteError):
        return None
    for kind, status, name, message, default in _KINDS:
        if isinstance(error, kind):
            after = error.retry_after if error.retry_after is not None else default
            return Answer(status, name, message, retry_after=after)
    if isinstance(error, InboundError):
        return Answer(error.status, error.kind, str(error), retry_after=error.retry_after)
    if error.policy == "validate" and getattr(error, "stage", "args") == "args":
        # A result's failing validation is a dependency's answer (or the app's own
        # work) found wrong: no fault of the request, and its fields and the check's
        # message describe the dependency. It is left to the framework (500).
        errors = list(getattr(error, "errors", ()))
        return Answer(422, "invalid", "the request is invalid", errors=errors)
    return None


async def send_answer(send: Send, answer: Answer) -> None:
    """Send ``answer`` as a complete ASGI HTTP response."""
    await send({"type": "http.response.start", "status": answer.status,
                "headers": answer.headers})
    await send({"type": "http.response.body", "body": answer.body})


async def end_body(send: Send) -> None:
    """End a response whose headers went out, where its handler was cut off at its
    deadline: the body ends there, as a whole response, which the server completes
    without logging an error (raising instead writes a traceback per such request,
    and the caller, whose deadline it was, has stopped waiting). A response that
    declared its ``Content-Length`` cannot end early: the server then closes the
    connection. So does one whose client stopped reading: its end waits at most
    :data:`END_BODY_GRACE` for the client to make room (the request, its task and its
    span would otherwise be held until the client goes, past the deadline)."""
    try:
        async with asyncio.timeout(END_BODY_GRACE):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except Exception:  # (h11, httptools: the body is shorter than declared; the wait)
        return


END_BODY_GRACE = 1.0
"""Seconds :func:`end_body` waits for a client to read: one still reading drains a
socket's buffers within that, one that stopped would hold the request for good."""


def handshake_refusal(scope: Scope, send: Send) -> Send:
    """A ``send`` through which :func:`send_answer` refuses a WebSocket handshake:
    as the HTTP response itself where the server offers the
    ``websocket.http.response`` extension (uvicorn does), else as a close before
    accept, which the server answers 403."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        async def answering(message: Message) -> None:
            await send({**message, "type": f"websocket.{message['type']}"})
    else:
        async def answering(message: Message) -> None:
            if message["type"] == "http.response.start":
                await send({"type": "websocket.close", "code": _POLICY_VIOLATION})
    return answering


_POLICY_VIOLATION = 1008
"""The WebSocket close code of a refused handshake (RFC 6455, 7.4.1)."""


def exception_handlers() -> dict[type[Exception], Callable[..., Any]]:
    """Starlette/FastAPI exception handlers mapping meshlite errors to responses.

    ``Starlette(exception_handlers=meshlite.asgi.exception_handlers())``, or for
    FastAPI ``for e, h in exception_handlers().items(): app.add_exception_handler(e, h)``.
    Errors the mapping does not cover are re-raised (the framework answers 500).
    """
    from starlette.responses import Response  # the handlers are Starlette's own shape

    async def handle(request: Any, error: Exception) -> Any:
        answer = answer_for(error)
        if answer is None:
            raise error
        headers = {k.decode(): v.decode() for k, v in answer.headers
                   if k != b"content-length"}
        return Response(answer.body, status_code=answer.status, headers=headers)

    return {MeshliteError: handle}
