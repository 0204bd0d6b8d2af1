"""API keys: a table of key digests, from code, a file or an environment variable,
with the file re-read when it changes. Keys are kept only as SHA-256 digests and
never appear in a log line, an error message or a repr."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._arguments import explained
from .._errors import ConfigError
from .._validate import fail, non_negative
from ._request import Principal

__all__ = ["DEFAULT_RELOAD_INTERVAL", "ApiKeys"]

DEFAULT_RELOAD_INTERVAL = 1.0
"""Seconds between checks of a key file for changes."""

_log = logging.getLogger("meshlite.inbound")
_COMMENT = re.compile(r"(?:^|\s)#.*")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _parse(text: str, where: str) -> dict[bytes, Principal]:
    """Lines ``SUBJECT KEY [SCOPE ...]`` (``;`` also separates entries; ``#`` starting
    a word starts a comment: within a key it is part of the key, never its end)."""
    table: dict[bytes, Principal] = {}
    for number, line in enumerate(text.replace(";", "\n").splitlines(), 1):
        words = _COMMENT.sub("", line).split()
        if not words:
            continue
        if len(words) < 2:
            # The line is not echoed: it may hold a key.
            raise ConfigError(f"ApiKeys: entry {number} of {where} must be 'SUBJECT KEY "
                              "[SCOPE ...]'", policy="inbound")
        subject, key, *scopes = words
        table[_digest(key)] = Principal(subject, frozenset(scopes), "api_key")
    return table


def _principal(i: int, entry: Any) -> Principal:
    """The principal of entry ``i``, ``(subject, scopes)``; one scope may be given
    alone (``"orders:read"``, not its letters)."""
    subject, scopes = entry if isinstance(entry, tuple) and len(entry) == 2 else ("", ())
    if isinstance(scopes, str) or not isinstance(scopes, Iterable):
        scopes = (scopes,)
    scopes = tuple(scopes)
    if not subject or not all(isinstance(s, str) and s for s in scopes):
        fail("ApiKeys", f"keys[{i}]", "...", "key: (subject, scopes), scopes being strings")
    return Principal(str(subject), frozenset(scopes), "api_key")


@explained
class ApiKeys:
    """Which API keys are valid, whose they are and what they may do.

    Args:
        keys: ``{key: (subject, scopes)}``; see also :meth:`from_file` and
            :meth:`from_env`.

    Raises:
        ConfigError: a malformed entry (named by position, never by value).
    """

    def __init__(self, keys: Mapping[str, tuple[str, Iterable[str]]] | None = None) -> None:
        if keys is not None and not isinstance(keys, Mapping):
            fail("ApiKeys", "keys", "...", "a mapping {key: (subject, scopes)}")
        table: dict[bytes, Principal] = {}
        for i, (key, entry) in enumerate((keys or {}).items()):
            if not isinstance(key, str) or not key:
                fail("ApiKeys", f"keys[{i}]", "...", "key: (subject, scopes)")
            table[_digest(key)] = _principal(i, entry)
        self._table = table
        self._path: str | None = None
        self._stamp: tuple[float, int] | None = None
        self._unreadable = False
        self._checked = 0.0
        self.interval = DEFAULT_RELOAD_INTERVAL
        self._now: Callable[[], float] = time.monotonic

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *,
                  reload_interval: float = DEFAULT_RELOAD_INTERVAL) -> ApiKeys:
        """Keys from a file of lines ``SUBJECT KEY [SCOPE ...]``, re-read when it
        changes (checked at most every ``reload_interval`` seconds). A change that
        does not parse is logged and the keys in force stay.

        Raises:
            ConfigError: the file cannot be read or does not parse.
        """
        keys = cls()
        keys._path = os.fspath(path)
        keys.interval = non_negative("ApiKeys.from_file", "reload_interval", reload_interval)
        try:
            keys._load()
        except OSError as error:
            raise ConfigError(f"ApiKeys: cannot read {keys._path}: "
                              f"{error.strerror or error}", policy="inbound") from error
        return keys

    @classmethod
    def from_env(cls, variable: str = "MESHLITE_API_KEYS",
                 environ: Mapping[str, str] | None = None) -> ApiKeys:
        """Keys from an environment variable holding entries ``SUBJECT KEY [SCOPE ...]``
        separated by ``;`` or newlines.

        Raises:
            ConfigError: the variable is unset or does not parse.
        """
        value = (os.environ if environ is None else environ).get(variable)
        if value is None:
            raise ConfigError(f"ApiKeys: the environment variable {variable} is not set",
                              policy="inbound")
        keys = cls()
        keys._table = _parse(value, f"${variable}")
        return keys

    def _load(self) -> None:
        assert self._path is not None
        st = os.stat(self._path)
        with open(self._path, encoding="utf-8") as f:
            self._table = _parse(f.read(), self._path)
        self._stamp = (st.st_mtime, st.st_size)

    def _refresh(self) -> None:
        now = self._now()
        if now - self._checked < self.interval:
            return
        self._checked = now
        assert self._path is not None
        try:
            st = os.stat(self._path)
            if (st.st_mtime, st.st_size) != self._stamp:
                self._stamp = (st.st_mtime, st.st_size)  # a bad file is reported once
                self._load()
                _log.info("API keys reloaded from %s (%d keys)", self._path,
                          len(self._table))
        except OSError as error:
            self._stamp = None  # read again once it is back
            if not self._unreadable:  # reported once, not at every check
                self._unreadable = True
                _log.error("API keys not reloaded from %s, the keys in force stay: %s",
                           self._path, error)
            return
        except ConfigError as error:
            _log.error("API keys not reloaded from %s, the keys in force stay: %s",
                       self._path, error)
        self._unreadable = False

    def lookup(self, key: str) -> Principal | None:
        """The principal of ``key``, or None when it is not a valid key."""
        if self._path is not None:
            self._refresh()
        return self._table.get(_digest(key))

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        source = f"from {self._path!r}, " if self._path else ""
        return f"ApiKeys({source}{len(self._table)} keys)"
