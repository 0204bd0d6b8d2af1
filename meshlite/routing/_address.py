"""What a backend's address must be where something will connect to it.

:class:`~meshlite.routing.Backend` itself takes any non-empty string (whatever a
call function understands). Two places are stricter, and both ask here so the rule
lives once: meshlite's HTTP clients (:func:`base_url_problem`: an ``http(s)`` base
URL they can send to) and a config file's backends (:func:`address_problem`: such a
URL, or ``host[:port]`` for a call function), refused at ``meshlite check``, at load
and at hot reload instead of at the first call.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from .._validate import is_host, is_ip

__all__ = ["VALID_ADDRESS", "address_problem", "base_url_problem"]

VALID_ADDRESS = ("an http(s) base URL (http://host:port, optionally with a path prefix) "
                 "or host[:port] for mesh.call()")
"""What a config file's backend address may be, as error messages say it."""

_BAD_PORT = "has a port that is not a number in 1..65535"
_BRACKETS = "has an unbalanced [ or ] (an IPv6 host is written [::1])"


def _split(url: str) -> SplitResult | None:
    """``urlsplit(url)``, or None where it raises (an unbalanced ``[`` or ``]``)."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


def base_url_problem(address: str) -> str | None:
    """Why meshlite's HTTP clients cannot send to ``address``, or None when they can.

    Returns:
        The reason as words that follow the address (``"is not an http(s) base
        URL"``, ``"has no host"``...), or None for an ``http(s)://host[:port][/prefix]``
        URL.
    """
    parts = _split(address)
    if parts is None:
        return _BRACKETS
    if parts.scheme.lower() not in ("http", "https"):
        return ("is not an http(s) base URL" if not parts.scheme or "://" not in address
                else f"has the scheme {parts.scheme!r}, not http or https")
    if parts.query or parts.fragment or address.endswith(("?", "#")):
        return "has a query or fragment"  # each request's own path and query replace them
    return _host_problem(parts)


def address_problem(address: str) -> str | None:
    """Why ``address`` is neither an http(s) base URL nor ``host[:port]``, or None.

    Returns:
        The reason as words that follow the address, or None when it is valid.
    """
    if "://" in address:
        return base_url_problem(address)
    if is_ip(address):  # a bare IPv6 address, which has colons of its own
        return None
    parts = _split("//" + address)
    if parts is None:
        return _BRACKETS
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        return "is neither an http(s) URL (http://...) nor host[:port]"
    return _host_problem(parts)


def _host_problem(parts: SplitResult) -> str | None:
    try:
        port = parts.port
    except ValueError:
        return _BAD_PORT
    host = parts.hostname
    if not host:
        return "has no host"
    if not is_host(host):
        return f"has the host {host!r}, which is not a host name or IP address"
    return _BAD_PORT if port == 0 else None
