"""Cassettes: the JSON files :class:`Recorder` writes and :func:`replay` serves.

Format (version 1)::

    {"meshlite_cassette": 1,
     "redacted_params": ["access_token", ...],
     "interactions": [
       {"kind": "call", "name": "app.fetch", "args": [1], "kwargs": {}, "result": {...}},
       {"kind": "call", "name": "app.fetch", "args": [2], "kwargs": {},
        "error": {"module": "builtins", "type": "ValueError", "message": "..."}},
       {"kind": "http",
        "request": {"method": "GET", "url": "...", "headers": {...}, "body": {"text": ""}},
        "response": {"status": 200, "headers": {"content-type": "..."}, "body": {"text": "..."}}}
     ]}

An error may carry ``"args"`` (when they are not just its message) and a meshlite
error ``"attributes"`` (``retry_after``...). A response whose body failed midway has
the part before the failure as its ``"body"`` and a ``"body_error"``; one the client
closed early has what the client read and ``"body_cut": true``.

Values are stored as JSON; bytes as ``{"$bytes": base64}``; anything JSON cannot
hold as ``{"$repr": repr(value)}`` (sets sorted, memory addresses left out, so
another run writes the same), which matches arguments but cannot be replayed as a
result. Tuples come back as lists.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import secrets
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterable
from hashlib import sha256
from pathlib import Path
from typing import Any

from .._errors import CassetteError, CassetteMiss, ReplayedError
from ._cassette_check import malformed
from ._cassette_errors import decode_error, encode_error

__all__ = [
    "FORMAT_VERSION",
    "Cassette",
    "CassetteError",
    "CassetteMiss",
    "ReplayedError",
    "decode_body",
    "decode_error",
    "decode_value",
    "encode_body",
    "encode_error",
    "encode_value",
    "matched_body",
    "stable_repr",
    "stored_body",
]

FORMAT_VERSION = 1
_SHOWN = 20  # interactions listed in a miss message


# -- values -----------------------------------------------------------------------------


def encode_value(value: Any) -> Any:
    """``value`` as JSON data (see the module docstring for the tags)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$repr": repr(value)}
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: encode_value(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    return {"$repr": stable_repr(value)}


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def stable_repr(value: Any) -> str:
    """``repr(value)`` as another run of the test writes it too: a set's items sorted
    (their order follows string hashing, which changes per process) and memory
    addresses (``<Client object at 0x7f...>``) left out."""
    if isinstance(value, set | frozenset):
        items = ", ".join(sorted(stable_repr(item) for item in value))
        if not items or type(value) is not set:
            return f"{type(value).__name__}({{{items}}})" if items else f"{type(value).__name__}()"
        return f"{{{items}}}"
    return _ADDRESS.sub("", repr(value))


def decode_value(data: Any, what: str) -> Any:
    """The value :func:`encode_value` stored.

    Raises:
        CassetteError: it was stored as a repr and cannot be rebuilt.
    """
    if isinstance(data, list):
        return [decode_value(v, what) for v in data]
    if isinstance(data, dict):
        if set(data) == {"$bytes"}:
            return base64.b64decode(data["$bytes"])
        if set(data) == {"$repr"}:
            raise CassetteError(
                f"{what} was recorded as {data['$repr']} (not JSON-serialisable) and cannot "
                "be replayed; return JSON-friendly values (dict, list, str, numbers, bytes)"
            )
        return {k: decode_value(v, what) for k, v in data.items()}
    return data


def encode_body(content: bytes) -> dict[str, str]:
    """A body as ``{"text": ...}`` when it is UTF-8, else ``{"base64": ...}``."""
    try:
        return {"text": content.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(content).decode("ascii")}


def decode_body(data: dict[str, str]) -> bytes:
    """The bytes :func:`encode_body` stored."""
    if "base64" in data:
        return base64.b64decode(data["base64"])
    return data.get("text", "").encode("utf-8")


# -- the file and its matching ----------------------------------------------------------


_BOUNDARY = re.compile(r"""boundary=(?:"([^"]+)"|([^;\s]+))""", re.IGNORECASE)
_FIXED_BOUNDARY = b"meshlite-cassette-boundary"


def matched_body(body: bytes, content_type: str | None) -> bytes:
    """The body a request is matched by: itself, except that a multipart body's
    boundary (which httpx, aiohttp and requests draw at random for each request) is
    replaced by a fixed one, so the same upload matches its recording."""
    if not content_type or not content_type.lower().startswith("multipart/"):
        return body
    found = _BOUNDARY.search(content_type)
    if found is None:
        return body
    boundary = (found.group(1) or found.group(2)).encode("latin-1")
    return body.replace(b"--" + boundary, b"--" + _FIXED_BOUNDARY)


def stored_body(request: dict[str, Any]) -> Any:
    """The stored request's body as it is matched (see :func:`matched_body`)."""
    body = request.get("body")
    content_type = request.get("headers", {}).get("content-type")
    if body is None or not content_type:
        return body
    return encode_body(matched_body(decode_body(body), content_type))


def describe(entry: dict[str, Any]) -> str:
    """One line naming an interaction, for miss messages (a body by its size and the
    start of its digest: two of one size that differ read apart)."""
    if entry.get("kind") == "http":
        request = entry["request"]
        body = stored_body(request)
        content = b"" if body is None else decode_body(body)
        line = f"{request['method']} {request['url']}"
        if content:
            line += f" (body {len(content)} bytes, sha256 {sha256(content).hexdigest()[:8]})"
        return line
    args = [json.dumps(a) for a in entry.get("args", [])]
    args += [f"{k}={json.dumps(v)}" for k, v in entry.get("kwargs", {}).items()]
    return f"call {entry.get('name')}({', '.join(args)})"


def _temporary(target: Path) -> tuple[int, Path]:
    """A new file beside ``target`` to write it in, open for writing: made with the
    permissions ``open(target, "w")`` gives (the umask's for a new cassette, those of the
    one it replaces), where ``tempfile.mkstemp`` would make it readable by its owner only
    (a cassette recorded in a container, then unreadable to the user running the tests)."""
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mode = None
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits taken
            continue
        if mode is not None:
            try:
                os.chmod(tmp, mode)
            except BaseException:
                os.close(fd)
                tmp.unlink(missing_ok=True)
                raise
        return fd, tmp


class Cassette:
    """The interactions of one cassette file, served in recorded order per match key."""

    def __init__(self, path: str | os.PathLike[str], data: dict[str, Any]) -> None:
        self.path = Path(path)
        self.interactions: list[dict[str, Any]] = list(data.get("interactions", []))
        self.redacted_params: tuple[str, ...] = tuple(
            name.lower() for name in data.get("redacted_params", ()))
        self._lock = threading.Lock()
        self._queues: dict[str, deque[dict[str, Any]]] | None = None
        self._last: dict[str, dict[str, Any]] = {}
        self._used: set[int] = set()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Cassette:
        """Read a cassette file.

        Raises:
            CassetteError: missing, unreadable, or not a meshlite cassette.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CassetteError(f"no cassette at {path}: record one first with "
                                f"meshlite.testing.Recorder({str(path)!r})") from None
        except json.JSONDecodeError as error:
            raise CassetteError(
                f"cassette {path} is not JSON ({error.msg}: line {error.lineno} column "
                f"{error.colno}); a meshlite cassette is the JSON a meshlite.testing.Recorder "
                "writes: mend the edit, or record it again") from error
        except (OSError, ValueError) as error:
            raise CassetteError(f"cannot read cassette {path}: {error}") from error
        if not isinstance(data, dict) or "meshlite_cassette" not in data:
            raise CassetteError(f"{path} is not a meshlite cassette (version {FORMAT_VERSION})")
        version = data["meshlite_cassette"]
        if type(version) is not int or version != FORMAT_VERSION:  # (True == 1)
            raise CassetteError(
                f"{path} is a meshlite cassette of format {version!r}, and "
                f"this meshlite reads format {FORMAT_VERSION} only: record it again with "
                "this version's meshlite.testing.Recorder, or use the meshlite that wrote it")
        problem = malformed(data)
        if problem is not None:
            raise CassetteError(f"{path} is not a valid meshlite cassette: {problem} (edited by "
                                "hand? record it again with meshlite.testing.Recorder)")
        return cls(path, data)

    @staticmethod
    def save(path: str | os.PathLike[str], interactions: Iterable[dict[str, Any]],
             redacted_params: Iterable[str]) -> Path:
        """Write a cassette atomically (a reader never sees half a file); returns its path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = {"meshlite_cassette": FORMAT_VERSION, "redacted_params": sorted(redacted_params),
                "interactions": list(interactions)}
        fd, tmp = _temporary(target)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=2, ensure_ascii=False)
                out.write("\n")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def take(self, key: str, asked: str, key_of: Callable[[dict[str, Any]], str],
             *, repeat: bool) -> dict[str, Any]:
        """The next unused interaction whose ``key_of(interaction)`` is ``key``.

        Raises:
            CassetteMiss: none is left (``repeat`` serves the last one again instead).
        """
        with self._lock:
            if self._queues is None:
                self._queues = {}
                for entry in self.interactions:
                    if id(entry) not in self._used:
                        self._queues.setdefault(key_of(entry), deque()).append(entry)
                self._last = {key_of(entry): entry for entry in self._last.values()}
            queue = self._queues.get(key)
            if queue:
                entry = self._last[key] = queue.popleft()
                self._used.add(id(entry))
                return entry
            if repeat and key in self._last:
                return self._last[key]
        raise self._miss(asked, used_up=key in self._last)

    def rekey(self) -> None:
        """Index the interactions again at the next :meth:`take`, whose ``key_of`` has
        changed (what was replayed stays replayed)."""
        with self._lock:
            self._queues = None

    def unplayed(self) -> list[str]:
        """The interactions not replayed yet, as text."""
        return [describe(e) for e in self.interactions if id(e) not in self._used]

    def _miss(self, asked: str, *, used_up: bool) -> CassetteMiss:
        available = [("* " if id(e) in self._used else "  ") + describe(e)
                     for e in self.interactions]
        shown = available[:_SHOWN] or ["  (nothing: the cassette is empty)"]
        if len(available) > _SHOWN:
            shown.append(f"  ... and {len(available) - _SHOWN} more")
        why = ("every recording of it was already replayed (pass repeat=True to replay "
               "the last one again)" if used_up else "nothing recorded matches it")
        message = (f"{asked} is not in cassette {self.path}: {why}.\n"
                   f"The cassette has ({len(available)}; * = already replayed):\n"
                   + "\n".join(shown)
                   + "\nRecord it again with meshlite.testing.Recorder, or make the same calls.")
        return CassetteMiss(message, asked=asked, available=[a[2:] for a in available])
