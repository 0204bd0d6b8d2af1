"""Text an outside party wrote, made safe to show in a log line, an audit record or
the dashboard: one implementation for every place that shows such text."""

from __future__ import annotations

import re
from collections.abc import Collection
from urllib.parse import unquote_plus, urlsplit

__all__ = [
    "MAX_ADDRESS", "MAX_DESCRIBED", "SECRET_WORDS", "described", "error_shown",
    "named_secret", "origin_shown", "printable", "redacted_url", "url_shown",
]

MAX_ADDRESS = 64
"""Characters of a client address kept (an IPv6 address with a zone fits)."""

MAX_DESCRIBED = 200
"""Characters of an error's message :func:`described` keeps."""


def printable(text: str, limit: int) -> str:
    """``text`` with every character that is not printable (a newline forging a log
    line, a terminal escape such as ``\\x1b`` or the C1 ``\\x9b``, a bidi override)
    escaped as Python writes it, and cut at ``limit`` characters (``...`` marks the
    cut). Text that needs neither comes back as it is, at the cost of one check."""
    if len(text) <= limit and text.isprintable():
        return text
    escaped = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text[:limit])
    if len(text) > limit or len(escaped) > limit:
        return escaped[:limit] + "..."
    return escaped


def described(error: BaseException, limit: int = MAX_DESCRIBED) -> str:
    """``error`` as a note, a log line or an event's reason shows it, every error
    alike: its type's name and its message, ``ConnectionError('reset by peer')``, the
    message cut at ``limit`` characters (``...`` marks the cut) and escaped as a repr
    escapes it. An error's own repr is not it: aiohttp's connection errors show their
    connection key there (eight fields) and not their message, which names the host,
    the cause and, for a mesh's attempt, the service and backend."""
    name = type(error).__name__
    args = error.args
    if len(args) == 1 and isinstance(args[0], str):
        text = args[0]  # (as the repr shows it: a KeyError's str quotes it again)
    else:
        try:
            text = str(error)
        except Exception:  # a user's error with a broken __str__
            return f"{name}(...)"
    if not text:
        return f"{name}()"
    if len(text) > limit:
        text = text[:limit] + "..."
    return f"{name}({text!r})"


SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "sig", "credential")
"""Query parameters whose value a shown URL hides: any whose name holds one of these
(``password``, ``access_token``, ``api-key``, ``X-Amz-Signature``...)."""


def named_secret(name: str, words: Collection[str]) -> bool:
    """Whether ``name`` (any case) holds one of ``words`` (lower case)."""
    lowered = name.lower()
    return any(word in lowered for word in words)


def url_shown(url: str) -> str:
    """``url`` (or a path and query) as a log line, a message or a ``repr`` shows it:
    a password in its user information (``user:***@host``) and the values of query
    parameters named like secrets (``?password=***``) hidden. Text that is no URL,
    or has neither, comes back as it is."""
    return redacted_url(url, SECRET_WORDS, "***")


def redacted_url(url: str, words: Collection[str], mask: str) -> str:
    """``url`` with ``mask`` for the password of its user information and for the
    values of its query (and fragment) fields whose name holds one of ``words``
    (:func:`url_shown`'s, or a recorder's own)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    scheme, sep, rest = url.partition("://")
    if (parts is None or not host) and sep and "@" in rest:
        # No host read: a password with a raw '/', '#' or '?' ended the netloc early
        return f"{scheme}://{mask}@{rest.rsplit('@', 1)[1]}"
    if not sep and "@" in url:
        # No "://" (a scheme's colon left out: "rediss//:pw@host/0"): what may be a
        # password, from the first ':' after the last '//' to the last '@', is masked
        credentials, after = url.rsplit("@", 1)
        start = credentials.rfind("//") + 1 if "//" in credentials else 0
        colon = credentials.find(":", start)
        if colon >= 0:
            return f"{credentials[:colon]}:{mask}@{after}"
    if parts is None:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        credentials, host = netloc.rsplit("@", 1)
        if ":" in credentials:
            netloc = f"{credentials.split(':', 1)[0]}:{mask}@{host}"
    # (a fragment too: OAuth's implicit flow hands its access_token=... there)
    query = _fields(parts.query, words, mask)
    fragment = _fields(parts.fragment, words, mask)
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    # (urlunsplit drops unix:'s //; a path alone, /healthz?token=..., has no scheme)
    shown = (f"{parts.scheme}://{netloc}" if sep else netloc) + parts.path
    return shown + (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")


def _fields(fields: str, words: Collection[str], mask: str) -> str:
    """``name=value&...`` with the values of the fields named like secrets masked; the
    rest as it was. Fields are split on ``;`` as well as ``&`` (servers that read the
    older form take ``?a=1;token=...`` as two fields)."""
    if "=" not in fields:
        return fields

    def masked(field: re.Match[str]) -> str:
        name = field.group(1)
        return f"{name}={mask}" if named_secret(unquote_plus(name), words) else field.group(0)

    return _FIELD.sub(masked, fields)


_FIELD = re.compile(r"(?<![^&;])([^&;=]*)=([^&;]*)")
"""One ``name=value`` field of a query (or fragment): at its start or after ``&``/``;``."""


def origin_shown(url: str) -> str:
    """``url``'s scheme, host and port alone, ``/...`` marking a path left out: for a
    URL whose path itself may be the secret (a Slack-style webhook)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(a malformed URL)"
    if ":" in host:
        host = f"[{host}]"
    origin = f"{parts.scheme}://{host}" + ("" if port is None else f":{port}")
    return origin + ("/..." if parts.path.strip("/") or parts.query else "")


def error_shown(error: BaseException) -> str:
    """``error`` as a message shows it (:func:`described`), with what
    may be a secret masked as :func:`url_shown` masks a URL's: a URL's password and
    the values of query fields named like secrets, also of a path and query alone.

    A backend's standing (a failed health check, an ejection) gives its reason so:
    it is logged, sent to event hooks and shown by ``mesh.health()`` and the
    dashboard, and a failed exchange's message may hold its URL: aiohttp's parse
    errors end with ``url='http://host/healthz?token=...'``, requests' connection
    errors with ``url: /healthz?token=...``."""
    text = _URL_IN_TEXT.sub(lambda m: url_shown(m.group(0)), described(error))
    return _FIELD_IN_TEXT.sub(_field_shown, text)


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>\\]+")
"""A URL in a message, up to a space, a quote, a bracket or (in a repr) a backslash."""

_FIELD_IN_TEXT = re.compile(r"(?<=[?&;])([^\s&;=?'\"<>\\]+)=([^\s&;'\"<>\\]*)")
"""A query field ``name=value`` after ``?``, ``&`` or ``;`` in a message."""


def _field_shown(field: re.Match[str]) -> str:
    name = field.group(1)
    return f"{name}=***" if named_secret(unquote_plus(name), SECRET_WORDS) else field.group(0)
