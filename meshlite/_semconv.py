"""OpenTelemetry semantic-convention values shared by the Trace policy, routing's
attempt spans and metrics."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

__all__ = ["DEFAULT_PORTS", "KNOWN_METHODS", "OTHER_METHOD", "error_type", "server_of"]

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS",
                           "TRACE", "PATCH"})
"""The HTTP methods the conventions know (RFC 9110 and PATCH): any other is
``_OTHER`` in ``http.request.method``, and a span is named ``HTTP`` rather than after
it, so that made-up methods add neither span names nor series without end."""

OTHER_METHOD = "_OTHER"
"""``http.request.method`` of a method outside :data:`KNOWN_METHODS`."""

DEFAULT_PORTS = {"http": 80, "https": 443}
"""``server.port`` of a URL or ``Host`` that names none, by scheme; a ``url.full``
leaves such a port out, as httpx and yarl write a URL."""


def server_of(address: str) -> tuple[dict[str, str | int], SplitResult | None]:
    """``server.address`` / ``server.port`` of a backend address (empty when it is
    not a URL with a host; the port by scheme for http(s) when it names none), and
    the address split (None when it is not a URL): the one parse of an address for
    spans and exported metrics."""
    try:
        parts = urlsplit(address)
        host, port = parts.hostname, parts.port
    except ValueError:  # a non-URL address (mesh.call backends may be anything)
        return {}, None
    server: dict[str, str | int] = {}
    if host:
        server["server.address"] = host
        port = port or DEFAULT_PORTS.get(parts.scheme)
        if port is not None:
            server["server.port"] = port
    return server, parts


def error_type(error: BaseException) -> str:
    """The ``error.type`` of ``error``: the HTTP status code for an HTTP status error
    (as the HTTP conventions ask), otherwise the fully qualified class name, written
    as the SDK writes ``exception.type`` (no ``builtins.`` prefix)."""
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        return str(status)
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
