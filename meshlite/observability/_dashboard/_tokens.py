"""The dashboard's two tokens: where they come from, and what each grants.

``token`` grants reading (the REST API, the WebSocket feed, ``/metrics``);
``admin_token`` grants the admin API and reading. Either is a string, or a
mapping naming where to read it::

    token: {env: MESHLITE_DASHBOARD_TOKEN}      # an environment variable
    admin_token: {file: /run/secrets/admin}     # a file (trailing newline dropped)

A token is never repeated in an error message: messages name the variable or the
file, not what they hold.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..._errors import ConfigError

__all__ = ["ADMIN", "MIN_TOKEN_LENGTH", "READ", "TOKEN_SOURCES", "check_token", "resolve_token"]

MIN_TOKEN_LENGTH = 16
"""Shortest token accepted: ``secrets.token_urlsafe(32)`` makes a good one."""

READ = "read"
"""The access a read token (``token``) grants."""

ADMIN = "admin"
"""The access the admin token (``admin_token``) grants: admin actions and reading."""

TOKEN_SOURCES = ("env", "file")
"""The keys of a token given as a mapping: ``{env: NAME}`` or ``{file: PATH}``."""

MAX_TOKEN_FILE = 4096
"""Largest token file read (a token is tens of bytes; this is not a token file)."""

_MAKE = "make one with python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _fail(owner: str, field: str, what: str) -> ConfigError:
    return ConfigError(f"{owner}: {field} {what}", policy="dashboard")


def _from_env(owner: str, field: str, name: Any, environ: Mapping[str, str]) -> str:
    if not isinstance(name, str) or not name:
        raise _fail(owner, field, "must be {env: NAME} with the name of an environment "
                                  "variable")
    value = environ.get(name)
    if value is None or not value.strip():
        raise _fail(owner, field, f"must be the name of a set environment variable: {name} "
                                  "is not set or is empty")
    return value.strip()


def _from_file(owner: str, field: str, path: Any, base: str | None) -> str:
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        raise _fail(owner, field, "must be {file: PATH} with the path of a file holding "
                                  "the token")
    full = os.path.join(base, os.fspath(path)) if base else os.fspath(path)
    try:
        with open(full, "rb") as f:
            raw = f.read(MAX_TOKEN_FILE + 1)
    except OSError as error:
        raise _fail(owner, field, f"must be the path of a readable file: cannot read {full}: "
                                  f"{error.strerror or type(error).__name__}") from None
    if len(raw) > MAX_TOKEN_FILE:
        raise _fail(owner, field, f"must be a file holding the token alone: {full} is "
                                  f"larger than {MAX_TOKEN_FILE} bytes")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise _fail(owner, field, f"must be a UTF-8 text file: {full} is not") from None


def resolve_token(value: Any, field: str, *, owner: str = "serve_dashboard",
                  environ: Mapping[str, str] | None = None, base: str | None = None,
                  ) -> str | None:
    """The token ``value`` stands for: itself (a string), or what the environment
    variable or file it names holds (``{env: NAME}``, ``{file: PATH}``).

    Args:
        value: None, a string, or a one-key mapping as above.
        field: Its name in messages (``token``, ``admin_token``).
        owner: Who is asking, in messages.
        environ: The environment (default ``os.environ``).
        base: The directory a relative file path is relative to (a config file's).

    Raises:
        ConfigError: the mapping is malformed, the variable is unset, or the file
            cannot be read; the token itself is never in the message.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping) and len(value) == 1:
        (kind, where), = value.items()
        if kind == "env":
            return _from_env(owner, field, where, os.environ if environ is None else environ)
        if kind == "file":
            return _from_file(owner, field, where, base)
    raise _fail(owner, field, f"must be a string, {{env: NAME}} or {{file: PATH}}, got "
                              f"{type(value).__name__}")


def check_token(owner: str, field: str, token: Any) -> None:
    """Refuse a token that is not a string of :data:`MIN_TOKEN_LENGTH` characters
    without spaces; the message never holds the value.

    Raises:
        ConfigError: as above.
    """
    if token is None:
        return
    if (not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH
            or any(c.isspace() for c in token)):
        raise _fail(owner, field, f"must be None or a string of at least {MIN_TOKEN_LENGTH} "
                                  f"characters without spaces, got <hidden> ({_MAKE})")
