"""The keys of a Cache's entries in a shared store: readable where they name the
cache and the function, a digest where they would name the arguments.

A shared store is read by more people than a call's arguments are meant for
(``SCAN``/``KEYS`` and ``MONITOR`` on a shared Redis, a support engineer, a backup),
and arguments are often user ids, emails or tokens. So no argument appears in a
key: what stands for them is BLAKE2b over their JSON (sorted keys, compact, ASCII:
the same text in every process and every Python, unlike ``hash()``), keyed with a
secret and the cache's namespace. The function (``module.qualname``) and the
namespace stay readable, so a cache's keys are still found and deleted by prefix.

The secret is ``Cache(key_secret=...)``, else the ``MESHLITE_CACHE_KEY_SECRET``
environment variable, else none. Every process sharing a namespace must use the same
one (a process with another one computes other keys: it shares no entry, and its
``invalidate()`` misses theirs). Without a secret the digest still hides arguments
from a reader, not from a guesser: whoever can read the keys can hash candidate
arguments (every user id up to a million, a list of emails) and compare.

The digest is 256 bits: two different arguments sharing a key is out of reach
(about 2**128 distinct calls for even odds). What JSON itself does not tell apart
shares a key, as it always did: a tuple and a list of the same items, a dict whose
keys are numbers and one whose keys are the same numbers as strings.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from ._options import KeyFunction

__all__ = ["DIGEST_SIZE", "KEY_SECRET_ENV", "ArgumentDigest", "argument_digest"]

KEY_SECRET_ENV = "MESHLITE_CACHE_KEY_SECRET"
"""The environment variable read for the secret when ``key_secret`` is not given."""

DIGEST_SIZE = 32
"""Bytes of an argument digest (64 hexadecimal digits in a key)."""

_PERSON = b"meshlite.cache"  # BLAKE2b personalisation: these digests are no others
_SECRET_PERSON = b"meshlite.secret"


class ArgumentDigest:
    """``digest(text) -> str``: the hexadecimal BLAKE2b of ``text``, keyed with the
    secret and the namespace (see the module doc).

    Args:
        namespace: The cache's namespace (the same arguments in two caches give
            two unrelated digests).
        secret: The secret, or ``None`` to read :data:`KEY_SECRET_ENV`.
    """

    __slots__ = ("_start",)

    def __init__(self, namespace: str, secret: str | bytes | None) -> None:
        if secret is None:
            secret = os.environ.get(KEY_SECRET_ENV) or None
        key = b"" if secret is None else hashlib.blake2b(
            secret.encode() if isinstance(secret, str) else secret,
            person=_SECRET_PERSON).digest()  # any length fits BLAKE2b's 64-byte key
        start = hashlib.blake2b(digest_size=DIGEST_SIZE, key=key, person=_PERSON)
        name = namespace.encode()
        start.update(len(name).to_bytes(8, "big") + name)
        self._start = start

    def __call__(self, text: str) -> str:
        digest = self._start.copy()
        digest.update(text.encode())
        return digest.hexdigest()


def argument_digest(key: KeyFunction | None, args: tuple[Any, ...], kwargs: dict[str, Any],
                    where: str, digest: ArgumentDigest) -> str:
    """The argument part of a shared key: the digest of the arguments' JSON (or of
    what ``key=`` returns).

    Raises:
        TypeError: the arguments (or what ``key=`` returns) are not JSON.
    """
    value: Any
    if key is not None:
        value = key(*args, **kwargs)
    else:
        # A list without keyword arguments, an object with them: never equal.
        value = {"args": args, "kwargs": kwargs} if kwargs else args
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        what = "key= result" if key is not None else "arguments"
        raise TypeError(
            f"Cache: the {what} of {where} cannot make a shared cache key ({error}); "
            "with a store, keys are JSON: pass key= returning a string, a number or a "
            "tuple of them") from None
    return digest(text)
