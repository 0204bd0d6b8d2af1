"""The dashboard's guard: bind checks, bearer-token auth and browser protections.

One pure ASGI middleware in front of every route:

- with a token, every data route (``/api/*``, ``/ws``, ``/metrics``) needs
  ``Authorization: Bearer <token>``; the WebSocket also accepts ``?token=`` because
  browsers cannot set headers on it. Tokens are compared in constant time. The
  page shell (``/`` and ``/static/*``) holds no data and is served to anyone.
- without a token (loopback only), the ``Host`` header must name a loopback host,
  which defeats DNS rebinding;
- a WebSocket with an ``Origin`` must come from the dashboard's own origin, so
  another site open in the browser cannot read the live feed;
- every answer carries a strict Content-Security-Policy and no-sniff headers.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from ..._errors import ConfigError
from ..._validate import at_least, fail

__all__ = ["DEFAULT_MAX_CLIENTS", "MIN_TOKEN_LENGTH", "Guard", "check_bind", "is_loopback"]

DEFAULT_MAX_CLIENTS = 32
"""WebSocket clients served at once; more are refused (close code 1013)."""

MIN_TOKEN_LENGTH = 16
"""Shortest token accepted: ``secrets.token_urlsafe(32)`` makes a good one."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_CSP = (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_SECURITY_HEADERS = [
    (b"content-security-policy", _CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


@functools.lru_cache(maxsize=64)  # the Host header of every request; bounded
def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 optionally bracketed) is loopback."""
    host = host.strip().lower().strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: Any, port: Any, token: Any, max_clients: Any) -> None:
    """Validate the dashboard's bind arguments.

    Raises:
        ConfigError: a bad host, port, token or max_clients, or a non-loopback host
            without a token.
    """
    owner = "serve_dashboard"
    if not isinstance(host, str) or not host:
        fail(owner, "host", host, "a host name or IP address")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        fail(owner, "port", port, "an integer in [0, 65535] (0 picks a free port)")
    if token is not None and (not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH
                              or any(c.isspace() for c in token)):
        fail(owner, "token", "<hidden>",
             f"None or a string of at least {MIN_TOKEN_LENGTH} characters without spaces "
             "(make one with python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    at_least(owner, "max_clients", max_clients, 1)
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"serve_dashboard: host {host!r} is not a loopback address, so the dashboard "
            "would be reachable from the network without authentication; pass token=... "
            "(clients then send 'Authorization: Bearer <token>') or bind 127.0.0.1",
            policy="dashboard")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Guard:
    """ASGI middleware enforcing the rules in this module's docstring."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._token = None if token is None else token.encode()

    def _authorized(self, scope: Scope) -> bool:
        expected = self._token
        if expected is None:
            return True
        given = b""
        header = _header(scope, b"authorization")
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "bearer":
                given = value.strip().encode("latin-1")
        if not given and scope["type"] == "websocket":
            query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
            given = (query.get("token") or [""])[0].encode()
        # compare_digest takes time independent of where the strings differ
        return hmac.compare_digest(given, expected)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        host = _header(scope, b"host") or ""
        if self._token is None and not is_loopback(_host_name(host)):
            return 403, "this dashboard only answers requests addressed to a loopback host"
        origin = _header(scope, b"origin")
        if scope["type"] == "websocket" and origin is not None and origin not in (
                f"http://{host}", f"https://{host}"):
            return 403, "cross-origin WebSocket refused"
        path: str = scope.get("path", "")
        public = scope["type"] == "http" and (path == "/" or path.startswith("/static/"))
        if not public and not self._authorized(scope):
            return 401, "missing or wrong bearer token (send 'Authorization: Bearer <token>')"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await _refuse(scope, send, *refusal)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, secured)


async def _refuse(scope: Scope, send: Send, status: int, reason: str) -> None:
    body = json.dumps({"error": reason}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), *_SECURITY_HEADERS]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="meshlite"'))
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # pragma: no cover - servers without the denial-response extension
        await send({"type": "websocket.close", "code": 1008})
