"""The audit log: one JSON line per admin action and per config change.

``mesh.audit = ml.AuditLog("audit.jsonl")`` (or ``audit: audit.jsonl`` in a config
file) makes the dashboard's admin API and the config reload path append a record
for everything they do, applied or not::

    {"time": "2026-01-01T12:00:00.123Z", "actor": "admin:127.0.0.1",
     "action": "breaker.force_open", "target": "users/breakers/users", "result": "ok",
     "error": null, "old_sha256": null, "new_sha256": null, "details": {"state": "forced_open"}}

Records are ASCII JSON (other characters as ``\\uXXXX`` escapes, which every JSON
reader turns back into them), so that no string, wherever it came from, puts a
control or bidi character in the file: a record is one printable line.
Each record is written with one ``write`` to a file opened with ``O_APPEND``, so
lines from several threads or processes never interleave; the file is opened per
record, so a log rotated away (logrotate's ``create``) is followed at once.
Secrets (values a config took from the environment) are masked in every string
of a record by the caller's ``mask``.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ._arguments import explained
from ._errors import ConfigError
from ._fork import fork_safe
from ._printable import MAX_ADDRESS, printable
from ._validate import fail

__all__ = [
    "ACTOR_API",
    "ACTOR_WATCHER",
    "RESULTS",
    "AuditLog",
    "admin_actor",
    "audited_by_caller",
    "caller_audits",
    "config_sha256",
    "mask_strings",
    "secret_mask",
]

ACTOR_API = "api"
"""The actor of a change made by code (``await mesh.reload()``, ``breaker.force_open()``,
``service.eject(address)`` on a mesh's service)."""

ACTOR_WATCHER = "config-watcher"
"""The actor of a change the hot-reload watcher applied or rejected."""

RESULTS = ("applied", "rejected", "ok", "error")
"""A record's ``result``: a config change ``applied`` or ``rejected``; another action
``ok`` or ``error``."""

_log = logging.getLogger("meshlite.audit")

_CALLER_AUDITS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "meshlite_caller_audits", default=False)


@contextlib.contextmanager
def audited_by_caller() -> Iterator[None]:
    """Within it, changes are recorded by the caller (the admin API, with its own
    actor), not a second time as the Python API's (``"api"``)."""
    token = _CALLER_AUDITS.set(True)
    try:
        yield
    finally:
        _CALLER_AUDITS.reset(token)


def caller_audits() -> bool:
    """Whether the running code is inside :func:`audited_by_caller`."""
    return _CALLER_AUDITS.get()


Mask = Callable[[str], str]


def admin_actor(client: str | None) -> str:
    """The actor of an admin API request from ``client`` (its address, which the
    server may have taken from ``X-Forwarded-For``: escaped and cut, so that it
    cannot forge a line of a log)."""
    return f"admin:{printable(client, MAX_ADDRESS) if client else 'unknown'}"


def config_sha256(text: str) -> str:
    """The hex SHA-256 of a config file's text (the digests of audit records)."""
    return hashlib.sha256(text.encode()).hexdigest()


def _same(text: str) -> str:
    return text


def secret_mask(mesh: Any) -> Mask:
    """What hides the secrets of ``mesh``'s config (values from the environment) in a
    text: ``***`` in their place. Identity for a mesh that no config file manages.

    Looked up in ``sys.modules`` so that a mesh built in code never imports the
    config package (and pydantic) for it.
    """
    load = sys.modules.get("meshlite.config._load")
    managed = None if load is None else load.managed_of(mesh)
    if managed is None:
        return _same
    mask: Mask = managed.plan.document.secrets.mask
    return mask


def mask_strings(value: Any, mask: Mask) -> Any:
    """A copy of JSON-ready data (dicts, lists, strings) with ``mask`` applied to each
    string value (keys are names chosen by code, left alone)."""
    # String by string (not the JSON text), so the output stays valid JSON whatever a
    # secret looks like; numbers and flags in records and answers are never secrets.
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {str(k): mask_strings(v, mask) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_strings(v, mask) for v in value]
    return value


def _iso(seconds: float) -> str:
    import datetime  # on the first record: building a mesh needs none of it

    stamp = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@explained
class AuditLog:
    """An append-only file of JSON lines recording admin actions and config changes.

    Args:
        path: The file; created (mode 0600) if missing, appended to otherwise. Its
            directory must exist.
        wall: Wall clock (seconds since the epoch) for the records' ``time``; tests
            inject one.

    Raises:
        ConfigError: ``path`` is not a path, or the file cannot be opened for
            appending (the ``OSError`` is the ``__cause__``).
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 wall: Callable[[], float] = time.time) -> None:
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            fail("AuditLog", "path", path, "a file path")
        self.path = os.path.abspath(os.fspath(path))
        if not callable(wall):
            fail("AuditLog", "wall", wall, "a function returning seconds since the epoch")
        self.wall = wall
        self._lock = fork_safe(threading.Lock())
        try:
            os.close(self._open())
        except OSError as error:
            raise ConfigError(f"AuditLog: cannot append to {self.path}: "
                              f"{error.strerror or error}; create its directory or pick "
                              "a writable path", policy="audit") from error

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        return os.open(self.path, flags, 0o600)

    def record(self, *, actor: str, action: str, target: str, result: str,
               error: str | None = None, old_sha256: str | None = None,
               new_sha256: str | None = None, details: Mapping[str, Any] | None = None,
               mask: Mask | None = None) -> bool:
        """Append one record.

        Args:
            actor: Who: ``"admin:<client address>"``, ``"config-watcher"``, ``"api"``.
            action: What, as ``"<object>.<verb>"`` (``"backend.eject"``,
                ``"config.reload"``).
            target: What it was done to (``"users/backends/http://127.0.0.1:80"``, a
                config file's path).
            result: One of :data:`RESULTS`.
            error: Why it failed, for ``"rejected"``/``"error"``.
            old_sha256: For a config change: the digest of the config in force before.
            new_sha256: For a config change: the digest of the file read.
            details: More about it (JSON-ready values).
            mask: Hides secrets in every string of the record.

        Returns:
            Whether the record was written; a failure to write is logged on the
            ``meshlite.audit`` logger and never raised (the action has happened).

        Raises:
            ConfigError: ``result`` is not one of :data:`RESULTS`.
        """
        if result not in RESULTS:
            fail("AuditLog.record", "result", result, " or ".join(map(repr, RESULTS)))
        entry = {"time": _iso(self.wall()), "actor": actor, "action": action,
                 "target": target, "result": result, "error": error,
                 "old_sha256": old_sha256, "new_sha256": new_sha256,
                 "details": dict(details or {})}
        if mask is not None:
            entry = mask_strings(entry, mask)
        # ASCII JSON: every control, bidi or line-breaking character (\x85, U+2028)
        # and lone surrogate is a \u escape, whoever wrote the string: a record is
        # one printable line in a terminal, for `splitlines`, and always encodable.
        line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode("ascii")
        try:
            self._append(line)
        except OSError as failure:
            _log.error("cannot append the audit record of %s %s (%s) to %s: %s",
                       entry["action"], entry["target"], entry["result"], self.path, failure)
            return False
        return True

    def _append(self, line: bytes) -> None:
        with self._lock:  # one writer at a time in this process; O_APPEND across them
            fd = self._open()
            try:
                view = memoryview(line)
                while view:  # a regular file takes it in one write; loop for safety
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        """Every record in the file, oldest first (for tools and tests).

        Raises:
            OSError: the file cannot be read.
        """
        with open(self.path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def __repr__(self) -> str:
        return f"AuditLog({self.path!r})"
