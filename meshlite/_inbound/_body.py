"""Request bodies: the size limit (413) and, for validation, reading the body once
and handing the same bytes to the app."""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import parse_qsl

from ._answers import InboundError, RequestTooLargeError
from ._request import Inbound, Message, Receive

__all__ = ["ClientGone", "check_length", "client_left", "fields", "invalid_json", "limited",
           "read_body", "replay", "validation_args"]


class ClientGone(Exception):
    """The client went away before its answer was complete (before its body arrived
    whole: there is no request to validate or hand to the app): there is no one to
    answer, and it is no failure of the service. The ``error.type`` of such a
    request's SERVER span is ``meshlite.asgi.ClientGone``."""

    __module__ = "meshlite.asgi"  # where it is public: error.type names it so


def client_left(error: Exception) -> bool:
    """Whether ``error`` says the client went away: :class:`ClientGone`, or the
    framework's own such error (Starlette's and FastAPI's ``ClientDisconnect``,
    raised by ``await request.body()`` when the client leaves mid-upload). Nobody is
    waiting for an answer, and it is no failure of the service: the request counts
    as ended without one (status 0), not as the 500 of an error escaping the app."""
    if isinstance(error, ClientGone):
        return True
    requests = sys.modules.get("starlette.requests")  # (never imported from here)
    gone = getattr(requests, "ClientDisconnect", None)
    return isinstance(gone, type) and isinstance(error, gone)


def _too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(f"the request body is over the limit of {limit} bytes")


def check_length(request: Inbound, limit: int) -> None:
    """Refuse at once a request whose declared ``Content-Length`` is over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is None or not (declared.isascii() and declared.isdigit()):
        return  # none, or malformed: the server's to refuse; the body is counted anyway
    digits = declared.lstrip("0")  # (leading zeros are valid: 0010 is 10)
    if len(digits) > 18 or int(digits or "0") > limit:  # int() raises past 4,300 digits
        raise _too_large(limit)


def limited(receive: Receive, limit: int) -> Receive:
    """``receive`` counting body bytes: past ``limit`` it raises (chunked bodies and
    lying ``Content-Length`` headers included)."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(limit)
        return message

    return counted


async def read_body(receive: Receive) -> bytes:
    """The whole request body.

    Raises:
        ClientGone: the client disconnected first (what arrived is a prefix, which
            may still parse: ``123`` of ``1234567``).
    """
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` giving the app ``body`` first, then the real stream's messages
    (a disconnect)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


_NO_BODY = object()


def validation_args(request: Inbound, body: bytes) -> dict[str, Any]:
    """The arguments a route's ``Validate`` sees: ``body`` (parsed JSON, or None when
    empty), ``query`` (a dict, last value of each name) and ``headers``.

    Raises:
        InboundError: the body nests deeper than the JSON parser can follow (400,
            not a ``RecursionError`` and a 500 with a traceback per request).
    """
    parsed: Any = None
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = _NO_BODY
        except RecursionError:  # "[[[[...": deeper than the parser's stack allows
            raise InboundError("the request body's JSON is nested too deeply") from None
    query = dict(parse_qsl(request.scope.get("query_string", b"").decode("latin-1")))
    return {"body": parsed, "query": query, "headers": request.headers}


def invalid_json(args: dict[str, Any]) -> bool:
    """Whether the body was not JSON at all."""
    return args["body"] is _NO_BODY


async def fields(body: Any = None, query: Any = None, headers: Any = None) -> None:
    """The function a route's ``Validate`` checks the arguments of (does nothing)."""
