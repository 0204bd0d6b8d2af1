"""From a file to one plain document: parse (YAML or TOML), interpolate ``${VAR}``,
overlay the ``MESHLITE_ENV`` profile, apply ``MESHLITE_*`` overrides.

Every value that came from the environment (not a default written in the file) is
recorded in :class:`Secrets`, so messages can mask it; where a profile or an
override set a value is recorded in ``origins``, so messages can say so.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import ConfigError
from ..discovery._yaml import load_json_or_yaml
from ._problems import Path, Problems, Secrets

__all__ = [
    "ENV_PREFIX",
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_DEPTH",
    "MAX_CONFIG_VALUES",
    "PROFILE_VARIABLE",
    "TOP_LEVEL_KEYS",
    "Document",
    "read_document",
    "read_text",
]

PROFILE_VARIABLE = "MESHLITE_ENV"
"""The environment variable naming the profile to overlay."""

ENV_PREFIX = "MESHLITE_"
"""Prefix of override variables: ``MESHLITE_SERVICES__USERS__RETRY__ATTEMPTS=5``."""

TOP_LEVEL_KEYS = ("services", "telemetry", "dashboard", "alerts", "hot_reload",
                  "drain_timeout", "audit", "inbound", "metrics")
"""Top-level keys of a config (every field of ``MeshConfig``); only overrides under
one of them are read."""

MAX_CONFIG_BYTES = 4 * 1024 * 1024
"""The largest config file read, in bytes (4 MiB: some 20,000 services)."""

MAX_CONFIG_DEPTH = 32
"""The deepest nesting of mappings and lists a config may have."""

MAX_CONFIG_VALUES = 1_000_000
"""The most values (mappings, lists, scalars) a config may hold once YAML aliases are
expanded: a few hundred bytes of nested aliases can stand for billions of values."""

_REFERENCE = re.compile(r"\$(\$?)\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass
class Document:
    """A config file after interpolation, profile and overrides, before the schema."""

    path: str
    data: dict[str, Any]
    secrets: Secrets
    origins: dict[Path, str] = field(default_factory=dict)
    profile: str | None = None
    empty: bool = False
    """The file had no section (empty, or comments only): a mesh of no service at
    start-up, refused by a reload."""


def _too_large(path: str, size: int) -> ConfigError:
    return ConfigError(f"{path}: the config file is too large ({size:,} bytes; at most "
                       f"{MAX_CONFIG_BYTES:,})", policy="config")


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
            if len(data) > MAX_CONFIG_BYTES:
                raise _too_large(path, os.fstat(f.fileno()).st_size)
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise ConfigError(f"{path}: cannot read the config file: {reason}",
                          policy="config") from error


def _parse(path: str, text: str) -> Any:
    if len(text) > MAX_CONFIG_BYTES and len(text.encode()) > MAX_CONFIG_BYTES:
        raise _too_large(path, len(text.encode()))
    try:
        if path.endswith(".toml"):
            import tomllib

            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as error:
                raise ConfigError(f"{path}: not valid TOML: {error}",
                                  policy="config") from None
        else:
            try:
                data = load_json_or_yaml(path, text, "config")
            except ConfigError as error:
                raise ConfigError(str(error) + _yaml_hint(path, text, str(error)),
                                  policy="config") from None
    except RecursionError:
        raise ConfigError(f"{path}: the config is nested too deeply (at most "
                          f"{MAX_CONFIG_DEPTH} levels)", policy="config") from None
    _check_size(path, data)
    return data


_MARK = re.compile(r"at line (\d+), column (\d+)")


def _yaml_hint(path: str, text: str, message: str) -> str:
    """What to do about a YAML error whose cause PyYAML does not name: a tab in a
    line's indentation (a character that "cannot start any token"), or a bare
    ``${VAR}`` inside ``{...}`` or ``[...]``, where ``}`` ends the mapping."""
    if path.endswith(".json"):
        return ""
    lines = text.splitlines()
    for match in _MARK.finditer(message):
        number = int(match[1])
        if not 0 < number <= len(lines):
            continue
        line = lines[number - 1]
        if "\t" in _indent(line):
            return (f"\nline {number} is indented with a tab: YAML indents with spaces "
                    "only")
        if "${" in line and re.search(r"[\[{]", line[:line.index("${")]):
            return (f"\nline {number}: inside {{...}} or [...], quote a value that holds a "
                    "reference (\"${VAR}\"): unquoted, YAML reads its braces as a mapping")
    return ""


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip(" \t"))]


def _check_size(path: str, data: Any) -> None:
    """Refuse data nested deeper than MAX_CONFIG_DEPTH or holding more than
    MAX_CONFIG_VALUES values, counting every use of a YAML alias (an iterative walk
    that stops at the limit, so a billion-laughs file costs no more than the limit)."""
    count = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(f"{path}: the config holds more than {MAX_CONFIG_VALUES:,} "
                              "values (YAML aliases counted each time they are used)",
                              policy="config")
        if isinstance(value, dict | list):
            if depth >= MAX_CONFIG_DEPTH:
                raise ConfigError(f"{path}: the config is nested too deeply (at most "
                                  f"{MAX_CONFIG_DEPTH} levels)", policy="config")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)


def _interpolate(value: Any, path: Path, env: Mapping[str, str], secrets: Secrets,
                 problems: Problems) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, str(k)), env, secrets, problems)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), env, secrets, problems)
                for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        escaped, body = match.group(1), match.group(2)
        if escaped:
            return "${" + body + "}"
        name, sep, default = body.partition(":-")
        if not _NAME.match(name):
            problems.add(path, f"${{{body}}} is not a valid reference; write ${{VAR}} or "
                               "${VAR:-default} (and $${...} for a literal ${...})")
            return match.group(0)
        found = env.get(name)
        if found is not None and not (sep and found == ""):
            secrets.add(found, path)  # from the environment: masked; a default is not
            return found
        if not sep:
            problems.add(path, f"environment variable {name} is not set; set it or "
                               f"give a default: ${{{name}:-default}}")
            problems.block(path)
            return ""
        return default

    return _REFERENCE.sub(substitute, value)


_PASSWORD = re.compile(r"(?:\A|//)[^\s/@:]*:([^\s/@]+)@")
"""The password of a URL's user information (``redis://:PASSWORD@host``), found in
text that may not parse as a URL (a scheme without its colon)."""


def _passwords(value: Any, path: Path, secrets: Secrets) -> None:
    """Hide every URL password the file wrote from messages about its value: a value
    that is no valid URL is shown as it is (nothing there can tell its password)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _passwords(v, (*path, str(k)), secrets)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _passwords(v, (*path, i), secrets)
    elif isinstance(value, str) and "@" in value:
        for match in _PASSWORD.finditer(value):
            secrets.add_written(match[1], path)


def _merge(base: dict[str, Any], overlay: Mapping[str, Any], path: Path,
           origins: dict[Path, str], origin: str) -> None:
    for key, value in overlay.items():
        here = (*path, str(key))
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, here, origins, origin)
        else:
            base[key] = value
            origins[here] = origin


def _profile(doc: Document, name: str | None, problems: Problems) -> None:
    profiles = doc.data.pop("profiles", None)
    if profiles is None or name is None or name == "":
        return
    if not isinstance(profiles, Mapping):
        problems.add(("profiles",), "must be a mapping of profile names to config overlays")
        return
    overlay = profiles.get(name)
    if overlay is None:
        known = ", ".join(sorted(map(str, profiles))) or "none"
        problems.add(("profiles",), f"{PROFILE_VARIABLE}={name!r} names no profile "
                                    f"(profiles: {known})")
        return
    if not isinstance(overlay, Mapping):
        problems.add(("profiles", name), "must be a mapping (a config overlay)")
        return
    doc.profile = name
    _merge(doc.data, overlay, (), doc.origins, f"from profile {name!r}")


def _normal(key: str) -> str:
    return key.lower().replace("-", "_").replace(".", "_")


def _override(doc: Document, variable: str, raw: str, problems: Problems) -> None:
    parts = variable[len(ENV_PREFIX):].split("__")
    if _normal(parts[0]) not in TOP_LEVEL_KEYS or not all(parts):
        return
    value: Any = raw
    if raw.lstrip()[:1] in ("[", "{"):
        try:
            value = json.loads(raw)
        except ValueError:
            problems.add((), f"{variable}: its value starts like JSON but does not parse")
            return
    node: Any = doc.data
    path: Path = ()
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            key: str | int = int(part)
        elif isinstance(node, dict):
            key = next((k for k in node if _normal(str(k)) == _normal(part)), part.lower())
        else:
            problems.add(path, f"{variable}: cannot set {part.lower()!r} here, the value "
                               "is not a mapping")
            return
        path = (*path, key)
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and node.get(key) is None:
                node[key] = {}
            node = node[key]
    doc.secrets.add(raw, path)
    doc.origins[path] = f"from {variable}"


def read_text(path: str) -> str:
    """The file's text.

    Raises:
        ConfigError: it cannot be read (its ``__cause__`` is the OSError).
    """
    return _read(path)


def read_document(path: str, *, environ: Mapping[str, str] | None = None,
                  profile: str | None = None, text: str | None = None,
                  allow_empty: bool = True) -> tuple[Document, Problems]:
    """Read ``path`` into a :class:`Document`, and the problems found so far (missing
    variables, an unknown profile, a bad override), which the caller reports with
    the schema's.

    Args:
        path: A ``.yaml``/``.yml``, ``.toml`` or ``.json`` file.
        environ: Environment for ``${VAR}``, ``MESHLITE_ENV`` and overrides
            (default ``os.environ``).
        profile: The profile to overlay (default ``environ["MESHLITE_ENV"]``).
        text: The file's text, when already read.
        allow_empty: Whether a file with no section is a mesh of no service (as at
            start-up) rather than an error (as on reload).

    Raises:
        ConfigError: the file cannot be read (its ``__cause__`` is the OSError), does
            not parse, is not a mapping, or is empty and ``allow_empty`` is False.
    """
    env = os.environ if environ is None else environ
    data = _parse(path, _read(path) if text is None else text)
    secrets = Secrets()
    problems = Problems(path, secrets)
    empty = data is None or data == {}
    if empty:
        if not allow_empty:
            raise ConfigError(f"{path}: the config file is empty (caught half-saved?); a "
                              "mesh of no service says `services: {}`", policy="config")
        data = {}
    if not isinstance(data, dict):
        problems.add((), f"must be a mapping of sections (services, ...), "
                         f"got {type(data).__name__}")
        problems.check()
    doc = Document(path, _interpolate(data, (), env, secrets, problems), secrets,
                   empty=empty)
    _profile(doc, env.get(PROFILE_VARIABLE) if profile is None else profile, problems)
    for variable in sorted(env):
        if variable.startswith(ENV_PREFIX) and variable != PROFILE_VARIABLE:
            _override(doc, variable, env[variable], problems)
    problems.origins = doc.origins
    _passwords(doc.data, (), secrets)
    return doc, problems
