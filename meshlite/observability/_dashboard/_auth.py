"""The dashboard's guard: bind checks, bearer-token auth and browser protections.

One pure ASGI middleware in front of every route:

- with a token (``token`` for reading, ``admin_token`` for admin actions and
  reading), every data route (``/api/*``, ``/ws``, ``/metrics``) needs
  ``Authorization: Bearer <token>``; ``/api/admin/*`` needs the admin token (403
  with the read token). The browser's WebSocket, which cannot send that header,
  offers a single-use ticket from ``POST /api/ws-ticket`` as a subprotocol
  (:mod:`._tickets`); no credential is ever read from a URL, so none reaches a log.
  Tokens are compared in constant time. The page shell (``/`` and ``/static/*``)
  holds no data and is served to anyone.
- without any token (loopback only), the ``Host`` header must name a loopback
  host, which defeats DNS rebinding;
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

from ..._errors import ConfigError
from ..._validate import at_least, fail, listen_host
from ._tickets import SUBPROTOCOL, TICKET_SECONDS, Tickets
from ._tokens import ADMIN, MIN_TOKEN_LENGTH, READ, check_token

__all__ = ["DEFAULT_MAX_CLIENTS", "MIN_TOKEN_LENGTH", "Guard", "check_bind", "is_loopback"]

DEFAULT_MAX_CLIENTS = 32
"""WebSocket clients served at once; more are refused (close code 1013)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TICKET_PATH = "/api/ws-ticket"
ADMIN_PREFIX = "/api/admin/"

_CSP = (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_SECURITY_HEADERS = [
    (b"content-security-policy", _CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
_UNAUTHORIZED = "missing or wrong bearer token (send 'Authorization: Bearer <token>')"
_NOT_ADMIN = ("this needs the admin token (admin_token); the token sent only grants "
              "reading")


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


def check_bind(host: Any, port: Any, token: Any, max_clients: Any,
               admin_token: Any = None) -> None:
    """Validate the dashboard's bind arguments (tokens already resolved to strings).

    Raises:
        ConfigError: a bad host, port, token, admin_token or max_clients, the same
            value for both tokens, or a non-loopback host without a token.
    """
    owner = "serve_dashboard"
    listen_host(owner, "host", host)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        fail(owner, "port", port, "an integer in [0, 65535] (0 picks a free port)")
    check_token(owner, "token", token)
    check_token(owner, "admin_token", admin_token)
    if token is not None and token == admin_token:
        raise ConfigError(f"{owner}: token and admin_token are the same; give the admin "
                          "token its own value, or leave token out (the admin token "
                          "also grants reading)", policy="dashboard")
    at_least(owner, "max_clients", max_clients, 1)
    if token is None and admin_token is None and not is_loopback(host):
        raise ConfigError(
            f"{owner}: host {host!r} is not a loopback address, so the dashboard "
            "would be reachable from the network without authentication; pass token=... "
            "and/or admin_token=... (clients then send 'Authorization: Bearer <token>') "
            "or bind 127.0.0.1", policy="dashboard")


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
    """ASGI middleware enforcing the rules in this module's docstring; it also
    answers ``POST /api/ws-ticket``.

    Args:
        app: The application behind it.
        token: The read token, or None.
        admin_token: The admin token, or None.
    """

    def __init__(self, app: ASGIApp, token: str | None, admin_token: str | None = None,
                 ) -> None:
        self.app = app
        self._tokens = [(t.encode(), access) for t, access
                        in ((admin_token, ADMIN), (token, READ)) if t is not None]
        self._has_admin = admin_token is not None
        self.tickets = Tickets()

    def _access(self, scope: Scope) -> str | None:
        """What the request's credentials grant: ``"admin"``, ``"read"`` or None."""
        if not self._tokens:
            return READ
        header = _header(scope, b"authorization")
        if header is not None:
            scheme, _, value = header.partition(" ")
            given = value.strip().encode("latin-1") if scheme.lower() == "bearer" else b""
            found = None
            for expected, access in self._tokens:  # all compared: no early exit
                # compare_digest takes time independent of where the strings differ
                if hmac.compare_digest(given, expected) and found is None:
                    found = access
            return found
        offered = _header(scope, b"sec-websocket-protocol")
        if scope["type"] == "websocket" and offered is not None:
            return self.tickets.redeem(offered)
        return None

    def _refusal(self, scope: Scope) -> tuple[int, str] | str:
        """Why the request is refused (status, reason), else the access it has."""
        host = _header(scope, b"host") or ""
        if not self._tokens and not is_loopback(_host_name(host)):
            return 403, "this dashboard only answers requests addressed to a loopback host"
        origin = _header(scope, b"origin")
        if scope["type"] == "websocket" and origin is not None and origin not in (
                f"http://{host}", f"https://{host}"):
            return 403, "cross-origin WebSocket refused"
        path: str = scope.get("path", "")
        if scope["type"] == "http" and (path == "/" or path.startswith("/static/")):
            return READ
        access = self._access(scope)
        if access is None:
            return 401, _UNAUTHORIZED
        if path.startswith(ADMIN_PREFIX) and self._has_admin and access != ADMIN:
            return 403, _NOT_ADMIN
        return access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        verdict = self._refusal(scope)
        if isinstance(verdict, tuple):
            await _refuse(scope, send, *verdict)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        if scope["path"] == TICKET_PATH:
            await self._ticket(scope, send, verdict)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, secured)

    async def _ticket(self, scope: Scope, send: Send, access: str) -> None:
        if scope["method"] != "POST":
            await _refuse(scope, send, 405, f"{TICKET_PATH} takes POST")
            return
        await _answer(send, 200, {"ticket": self.tickets.issue(access),
                                  "expires_in": TICKET_SECONDS, "protocol": SUBPROTOCOL})


async def _answer(send: Send, status: int, data: dict[str, Any]) -> None:
    body = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()), *_SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


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
        # The server counts the body: uvicorn before 0.53 added its Content-Length to
        # ours, and clients refuse a response with two (the 401/403 was lost).
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [h for h in headers if h[0] != b"content-length"]})
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # pragma: no cover - servers without the denial-response extension
        await send({"type": "websocket.close", "code": 1008})
