"""Inbound: what the middleware knows about one request, handed to key functions,
verifiers and the route's policies (the one argument of the inbound pipeline)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from .._printable import MAX_ADDRESS, printable

__all__ = ["MAX_ADDRESS", "PRINCIPAL_KEY", "Inbound", "Principal", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


PRINCIPAL_KEY = "meshlite.principal"
"""The ASGI scope key holding the authenticated :class:`Principal`."""

_LISTS = frozenset({"tracestate", "baggage"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified credential belongs to.

    Attributes:
        subject: A stable name of the caller (a token's ``sub``, an API key's name);
            never the secret itself.
        scopes: What it may do (``"orders:write"``): a frozenset, made from any
            iterable of names given; a string given is an OAuth 2 scope string,
            names separated by spaces (``"orders:read orders:write"``), never its
            letters or a text each required scope is looked for in.
        kind: How it was verified: ``"api_key"`` or ``"bearer"``.
    """

    subject: str
    scopes: frozenset[str] = frozenset()
    kind: str = "bearer"

    def __post_init__(self) -> None:
        scopes: Any = self.scopes
        if type(scopes) is not frozenset:
            # A verifier handing on a token's ``scope`` claim as it came would make
            # ``"orders" in "orders:read"`` true: a scope granted by a substring.
            object.__setattr__(self, "scopes", frozenset(
                scopes.split() if isinstance(scopes, str) else scopes))


class Inbound:
    """One request as the middleware sees it.

    Attributes:
        scope: The ASGI scope.
        method: The HTTP method.
        path: The request path.
        route: The pattern of the route it matched (``"/orders/{id}"``).
        principal: Who the request authenticated as, or None.
        caller: The calling mesh's service name (``x-meshlite-caller``), or None.
        api_key_header: The header carrying API keys (``Auth(api_key_header=...)``).
    """

    __slots__ = ("_headers", "api_key_header", "caller", "method", "path", "principal",
                 "receive", "route", "scope", "send", "status")

    def __init__(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope.get("method", "GET")
        self.path: str = scope.get("path", "/")
        self.route = route
        self._headers: dict[str, str] | None = None
        self.principal: Principal | None = None
        self.caller: str | None = None
        self.api_key_header = "x-api-key"
        self.status = 0  # the response status, once the app started answering

    @property
    def headers(self) -> dict[str, str]:
        """Request headers, lower-case names, the first value of each (decoded on
        first use: most requests never need them); ``tracestate`` and ``baggage``,
        lists a proxy may split over several lines, are their lines joined by commas
        (as RFC 9110 and the W3C specifications combine them)."""
        headers = self._headers
        if headers is None:
            headers = {}
            lines: dict[str, list[str]] | None = None  # a list's lines after its first
            for name, value in self.scope["headers"]:
                key = name.decode("latin-1").lower()
                if key not in headers:
                    headers[key] = value.decode("latin-1")
                elif key in _LISTS:
                    lines = {} if lines is None else lines
                    lines.setdefault(key, [headers[key]]).append(value.decode("latin-1"))
            if lines is not None:
                for key, values in lines.items():
                    headers[key] = ",".join(values)  # once: thousands of lines stay linear
            self._headers = headers
        return headers

    @property
    def ip(self) -> str:
        """The client's address (the ASGI ``client``), or ``""``. A server taking it
        from ``X-Forwarded-For`` (uvicorn's ``--proxy-headers``) passes on any text
        a client wrote there: one that is no plausible address (longer than
        :data:`MAX_ADDRESS` or not printable) is escaped and cut, so it can neither
        forge a log line nor make each quota key as large as a request head."""
        client = self.scope.get("client")
        return printable(str(client[0]), MAX_ADDRESS) if client else ""

    @property
    def client(self) -> str:
        """The quota key by default: the principal's subject when authenticated, else
        the client's address."""
        principal = self.principal
        return f"sub:{principal.subject}" if principal is not None else f"ip:{self.ip}"

    def __repr__(self) -> str:
        return f"Inbound({self.method} {self.path!r}, route={self.route!r})"
