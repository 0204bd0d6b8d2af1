"""What a :class:`~meshlite.testing.Recorder` keeps out of a cassette, and how replay
redacts what it is asked the same way, so a request or call with another secret
still matches its recording.

A header, query parameter or keyword argument is secret when its name (in any case)
holds one of the recorder's words: the parameter words are those
:func:`meshlite._printable.url_shown` hides (``pass``, ``token``, ``key``...), so
``access-token``, ``X-Api-Key`` and ``client_secret`` need no list of their own.
A password in a URL's user information is always redacted, in a request's URL and
in any URL inside an error's message or an argument.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Collection
from typing import Any

from .._printable import SECRET_WORDS, named_secret, redacted_url

__all__ = [
    "DEFAULT_REDACTED_HEADERS",
    "DEFAULT_REDACTED_PARAMS",
    "REDACTED",
    "named_secret",
    "redact_call",
    "redact_text",
    "redact_url",
    "signature_of",
]

REDACTED = "REDACTED"
"""What a secret value is replaced with in a cassette."""

DEFAULT_REDACTED_HEADERS: frozenset[str] = frozenset({
    "authorization", "cookie", "key", "pass", "pwd", "secret", "sig", "token",
})
"""Headers whose name (any case) holds one of these never reach a cassette:
``Authorization``, ``Set-Cookie``, ``X-Goog-Api-Key``, ``PRIVATE-TOKEN``... (not
``auth``: ``WWW-Authenticate`` is a challenge a client must read at replay)."""

DEFAULT_REDACTED_PARAMS: frozenset[str] = frozenset(SECRET_WORDS)
"""Query parameters and keyword arguments whose name (any case) holds one of these
never reach a cassette: ``token``, ``api-key``, ``X-Amz-Signature``, ``password``..."""

# A URL inside text (an error's message, a string argument); quotes and brackets
# end it, as they end the URLs httpx and most libraries write into messages, and
# it does not end in the punctuation of the sentence around it.
_URL = re.compile(r"""[A-Za-z][A-Za-z0-9+.\-]*://[^\s'"<>`]*[^\s'"<>`.,;:!?)\]]""")


def redact_url(url: str, params: Collection[str]) -> str:
    """``url`` with the password of its user information and the values of its
    query (and fragment) fields named like secrets (``params``: lower-case words)
    redacted, as :func:`meshlite._printable.url_shown` hides them."""
    return redacted_url(url, params, REDACTED)


def redact_text(text: str, params: Collection[str]) -> str:
    """``text`` with every URL in it redacted as :func:`redact_url` does."""
    if "://" not in text:
        return text
    return _URL.sub(lambda found: redact_url(found.group(0), params), text)


def _strings(data: Any, params: Collection[str]) -> Any:
    """Encoded JSON data with the URLs in its strings (a ``$repr`` too) redacted."""
    if isinstance(data, str):
        return redact_text(data, params)
    if isinstance(data, list):
        return [_strings(item, params) for item in data]
    if isinstance(data, dict):
        return {key: _strings(value, params) for key, value in data.items()}
    return data


def redact_call(args: Any, kwargs: Any, params: Collection[str],
                signature: inspect.Signature | None = None) -> tuple[Any, Any]:
    """A call's encoded arguments as a cassette holds them: keyword arguments named
    like secrets, and positional ones bound to such a parameter of ``signature``,
    redacted; URLs in any string redacted."""
    args, kwargs = _strings(args, params), _strings(kwargs, params)
    if isinstance(kwargs, dict):
        kwargs = {k: REDACTED if named_secret(k, params) else v for k, v in kwargs.items()}
    if signature is not None and isinstance(args, list):
        positional = [p.name for p in signature.parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        args = [REDACTED if i < len(positional) and named_secret(positional[i], params)
                else value for i, value in enumerate(args)]
    return args, kwargs


def signature_of(fn: Callable[..., Any]) -> inspect.Signature | None:
    """The signature calls of ``fn`` are bound to, or ``None`` when Python cannot tell
    (some builtins and extension functions)."""
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None

