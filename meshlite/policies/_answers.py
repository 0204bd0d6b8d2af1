"""How a policy's configured value answers an HTTP request of the mesh (FaultInjection's
``result=``, Fallback's value): a copy of an ``httpx.Response`` for ``mesh.http()`` and
``mesh.http_sync()``; none for ``mesh.aiohttp()``, whose responses aiohttp makes from
the wire only."""

from __future__ import annotations

import sys
from typing import Any

from .._context import CallContext
from .._errors import ConfigError
from .._validate import shown

__all__ = ["answer_request", "injected_answer"]


def answer_request(owner: str, field: str, ctx: CallContext, value: Any) -> Any:
    """``value`` as the answer to the HTTP request of ``ctx``: a copy of an
    ``httpx.Response`` (each request gets its own, with the request set by its
    client) for ``mesh.http()`` and ``mesh.http_sync()``; aiohttp makes its responses
    from the wire only, so a ``mesh.aiohttp()`` request takes none.

    Raises:
        ConfigError: ``value`` cannot answer this request (``owner``'s ``field``
            named, and the service).
    """
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(ctx.request, httpx.Request):
        if isinstance(value, httpx.Response):
            return _copied(owner, field, ctx, value, httpx)
        raise ConfigError(
            f"{owner}: {field} must be an httpx.Response to answer a request of "
            f"service {ctx.service!r} (mesh.http(), mesh.http_sync()), got {shown(value)}",
            policy=_KINDS[owner])
    raise ConfigError(
        f"{owner}: a mesh.aiohttp() request of service {ctx.service!r} cannot be "
        f"answered with {field} (aiohttp makes its responses from the wire only): "
        f"{_AIOHTTP_ADVICE[owner]}", policy=_KINDS[owner])


_KINDS = {"FaultInjection": "fault_injection", "Fallback": "fallback"}
_AIOHTTP_ADVICE = {
    "FaultInjection": "inject an error or latency",
    "Fallback": "answer these requests in your code, or use mesh.http()",
}


def _copied(owner: str, field: str, ctx: CallContext, response: Any, httpx: Any) -> Any:
    """A new ``httpx.Response`` with the status, headers and body of ``response``:
    one object answering many requests would have its ``request`` overwritten by
    each, its body streamed once only, and be shared by concurrent callers."""
    headers = httpx.Headers(response.headers)
    stream = response.stream
    if isinstance(stream, httpx.ByteStream):
        body = b"".join(stream)  # the body as given, still encoded
    else:
        try:
            body = response.content  # a response read from the wire: decoded
        except httpx.ResponseNotRead:
            raise ConfigError(
                f"{owner}: {field} must be an httpx.Response whose body is in memory "
                f"(content=, text=, json=, or read) to answer requests of service "
                f"{ctx.service!r}: a streamed body can be sent once only",
                policy=_KINDS[owner]) from None
        headers.pop("Content-Encoding", None)
        headers["Content-Length"] = str(len(body))
    extensions = {k: v for k, v in response.extensions.items()
                  if k in ("http_version", "reason_phrase")}
    return httpx.Response(response.status_code, headers=headers,
                          stream=httpx.ByteStream(body), extensions=extensions)


def injected_answer(ctx: CallContext, result: Any, note: str) -> Any:
    """FaultInjection's ``result`` as the answer to an HTTP request's attempt (its
    error noted with ``note``). An answer of a failure status (5xx, 429) is raised
    inside the pipeline as meshlite's HTTP layer raises a backend's
    (``HttpResponseError``), so Retry, the breaker and Fallback count it as they would
    a real one; the client gets the response when the pipeline gives up.

    Raises:
        ConfigError: ``result`` cannot answer this request.
        HttpResponseError: the answer's status is a failure.
    """
    response = answer_request("FaultInjection", "result", ctx, result)
    status = response.status_code
    # Looked up, not imported (policies sit below the HTTP layer): a request of
    # mesh.http() or mesh.http_sync() is only ever made with that module loaded.
    send = sys.modules.get("meshlite._http._send")
    if send is None or not (status >= 500 or status == 429):
        return response
    request = ctx.request
    error = send.HttpResponseError(
        f"service {ctx.service!r}: FaultInjection answered {request.method} "
        f"{request.url.path} with {status}",
        response=response, status_code=status, address="", service=ctx.service,
        retry_after=send.parse_retry_after(response.headers.get("Retry-After"),
                                           response.headers.get("Date")))
    error.add_note(note)
    try:
        raise error
    finally:  # this frame is in its traceback: no reference cycle
        del error
