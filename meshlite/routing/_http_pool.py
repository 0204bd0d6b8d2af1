"""Checking ``Service(http_pool=...)``: the keyword arguments of each backend's httpx
transport, checked when the service is built instead of at its first request.

httpx is not imported here (routing stays free of it): names are checked against
the transport's options and values against the types those options take.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._validate import fail

__all__ = ["HTTP_POOL_OPTIONS", "check_http_pool"]


def _bool(value: Any) -> bool:
    return isinstance(value, bool)


def _text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _retries(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100


def _httpx(name: str) -> Callable[[Any], bool]:
    """An instance of ``httpx.<name>`` (httpx is loaded whenever one was made)."""

    def check(value: Any) -> bool:
        cls = getattr(sys.modules.get("httpx"), name, None)
        return isinstance(cls, type) and isinstance(value, cls)

    return check


def _verify(value: Any) -> bool:
    import ssl

    return isinstance(value, bool | str | ssl.SSLContext)


def _cert(value: Any) -> bool:
    if value is None or isinstance(value, str):
        return True
    return isinstance(value, tuple) and 1 <= len(value) <= 3 and all(
        v is None or isinstance(v, str) for v in value)


def _proxy(value: Any) -> bool:
    return value is None or isinstance(value, str) or _httpx("URL")(value) \
        or _httpx("Proxy")(value)


def _socket_options(value: Any) -> bool:
    return value is None or (isinstance(value, Iterable) and not isinstance(value, str | bytes)
                             and all(isinstance(v, tuple) for v in value))


HTTP_POOL_OPTIONS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "verify": (_verify, "True, False, a CA bundle path or an ssl.SSLContext"),
    "cert": (_cert, "a certificate path or a (cert, key[, password]) tuple"),
    "trust_env": (_bool, "True or False"),
    "http1": (_bool, "True or False"),
    "http2": (_bool, "True or False"),
    "limits": (_httpx("Limits"), "an httpx.Limits(...)"),
    "proxy": (_proxy, "a proxy URL, an httpx.Proxy or None"),
    "uds": (_text, "a Unix socket path or None"),
    "local_address": (_text, "a local IP address or None"),
    "retries": (_retries, "an integer from 0 to 100 (connection retries)"),
    "socket_options": (_socket_options, "a list of (level, option, value) tuples"),
}
"""The options of an httpx transport: name -> (check, what is valid)."""


def check_http_pool(owner: str, value: Any) -> dict[str, Any]:
    """``value`` (None or a mapping of transport options) as a dict.

    Raises:
        ConfigError: it is not a mapping, names an unknown option, or gives an
            option a value of the wrong type.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        fail(owner, "http_pool", value, "a mapping of httpx transport options")
    for key, option in value.items():
        known = HTTP_POOL_OPTIONS.get(key) if isinstance(key, str) else None
        if known is None:
            fail(owner, "http_pool", value, "a mapping of httpx transport options; "
                 f"{key!r} is not one (valid: {', '.join(HTTP_POOL_OPTIONS)})")
        check, valid = known
        if not check(option):
            fail(owner, "http_pool", value, f"a mapping whose {key!r} is {valid}")
    if value.get("http2") is True and importlib.util.find_spec("h2") is None:
        fail(owner, "http_pool", value, "a mapping whose 'http2': True has the h2 package "
             "installed (pip install 'httpx[http2]')")
    return dict(value)
