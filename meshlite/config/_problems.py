"""Collecting every problem of a config file, each under its path, with secrets masked.

Values that reached the config through a ``${VAR}`` reference or a ``MESHLITE_*``
override are *secrets* here: they are replaced by ``***`` in every message this
module produces, whatever wrote the message (the schema, a policy's own check).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from .._errors import ConfigError
from .._printable import origin_shown, printable, url_shown
from .._validate import clip

__all__ = [
    "MASK",
    "SECRET_FIELDS",
    "Path",
    "Problems",
    "Secrets",
    "construct",
    "format_path",
    "map_config_error",
    "shown",
]

MASK = "***"

SECRET_FIELDS = frozenset({"token", "admin_token", "key_password", "password"})
"""Options whose value is never shown in a message, however it was written."""

MAX_MESSAGE = 400
"""Characters of one problem's message; a longer one (a huge key) is cut."""

MAX_LISTED = 50
"""Problems listed in a ConfigError's message (``.errors`` holds at most this many
more, then a count of the rest)."""

_GOT = re.compile(r"\bgot .*\Z", re.S)
_HIDDEN = "got <hidden>"
_NOT_SHOWN = "got a value not shown (a secret)"

T = TypeVar("T")

Path = tuple[str | int, ...]
"""A location in the config document: keys and list indexes."""


def format_path(path: Path) -> str:
    """``("services", "users", "backends", 0)`` as ``services.users.backends[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def _coerced(value: str) -> set[str]:
    """The forms a value takes once the schema converted it ("-3" is shown as -3.0)."""
    forms: set[str] = {value}
    with contextlib.suppress(ValueError):
        number = float(value)
        forms.add(repr(number))
        if number.is_integer():
            forms.add(str(int(number)))
    if value.lower() in ("true", "false", "yes", "no", "on", "off"):
        forms.add(str(value.lower() in ("true", "yes", "on")))
    return forms


def _pattern(values: set[str]) -> re.Pattern[str]:
    ordered = sorted(values, key=len, reverse=True)
    alternatives = "|".join(re.escape(v) for v in ordered)
    # Only where a secret is not part of a longer word or number ("0" leaves "10").
    return re.compile(rf"(?<!\w)(?<!\w\.)(?:{alternatives})(?!\w|\.\w)")


def _related(a: Path, b: Path) -> bool:
    return a[:len(b)] == b or b[:len(a)] == a


MIN_GLOBAL_SECRET = 4
"""Secrets at least this long are masked in every message; shorter ones (a port, a
count) only in messages about the value they were interpolated into, so that a
``MESHLITE_..._ATTEMPTS=1`` does not mask every "1" of every message."""


class Secrets:
    """The values that came from the environment, and a :meth:`mask` that hides them."""

    def __init__(self) -> None:
        self.values: set[str] = set()
        self.paths: set[Path] = set()
        """Where values from the environment were put."""
        self._local: dict[Path, set[str]] = {}
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str, path: Path | None = None) -> None:
        """Hide ``value`` (ignored when blank), which was put at ``path``, from now on."""
        stripped = value.strip()
        if not stripped:
            return
        if path is not None:
            self.paths.add(path)
        # Also the forms a message may show it in: escaped (repr, JSON) or converted.
        forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1], *_coerced(stripped)}
        if path is not None and len(stripped) < MIN_GLOBAL_SECRET:
            self._local.setdefault(path, set()).update(forms)
            return
        self.values.update(forms)
        self._pattern = None

    def add_written(self, value: str, path: Path) -> None:
        """Hide ``value``, written in the file at ``path`` (a URL's password), from
        messages about that value or around it: whatever shows the value (a message
        that could not parse it as a URL, so did not hide its password) hides it."""
        if value.strip():
            forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1]}
            self._local.setdefault(path, set()).update(forms)

    def mask(self, text: str, path: Path | None = None) -> str:
        """``text`` with every secret replaced by ``***``; short secrets only when
        ``path`` (what the text is about) is where they were put, or around it."""
        if self.values:
            if self._pattern is None:
                self._pattern = _pattern(self.values)
            text = self._pattern.sub(MASK, text)
        if path is not None:
            for where, forms in self._local.items():
                if _related(path, where):
                    text = _pattern(forms).sub(MASK, text)
        return text

    def mask_data(self, value: Any, path: Path = ()) -> Any:
        """A copy of nested data (dicts, lists, strings) with secrets masked, and each
        value as :func:`shown` shows the option it is of, however written."""
        name = path[-1] if path and isinstance(path[-1], str) else ""
        if name in SECRET_FIELDS or name == "headers":
            return shown(name, value)
        if isinstance(value, Mapping):
            return {k: self.mask_data(v, (*path, str(k))) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask_data(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, str):
            return shown(name, self.mask(value, path))
        if isinstance(value, int | float) and not isinstance(value, bool):
            return MASK if self.mask(str(value), path) != str(value) else value
        return value


def shown(name: str, value: Any) -> Any:
    """The value of option ``name`` as a config's dump or ``repr`` shows it: a secret
    field's (:data:`SECRET_FIELDS`) and every header's as ``***``, a URL without its
    password or secret-named query parameters
    (:func:`~meshlite._printable.url_shown`), a webhook by its host alone."""
    if value is None:
        return None
    if name in SECRET_FIELDS:
        return MASK
    if name == "headers" and isinstance(value, Mapping):
        return dict.fromkeys(value, MASK)
    if isinstance(value, str):
        return origin_shown(value) if name == "webhook" else url_shown(value)
    return value


class Problems:
    """Every problem found, in order; :meth:`check` raises them as one ConfigError.

    Args:
        source: What is being read (the file's path), for the message.
        secrets: Values to mask in every message.
        origins: Where values at some paths came from (a profile, an environment
            variable), appended to messages about them.
    """

    def __init__(self, source: str, secrets: Secrets,
                 origins: Mapping[Path, str] | None = None) -> None:
        self.source = source
        self.secrets = secrets
        self.origins: dict[Path, str] = dict(origins or {})
        self.errors: list[str] = []
        self._more = 0
        self._blocked: list[Path] = []

    def block(self, path: Path) -> None:
        """Record no further problem at or under ``path`` (its value is known bad, so
        later checks would only repeat that)."""
        self._blocked.append(path)

    def add(self, path: Path, message: str) -> None:
        """Record ``message`` about the value at ``path``."""
        if any(path[:len(b)] == b for b in self._blocked):
            return
        if any(part in SECRET_FIELDS for part in path):
            # A message that hid the value itself (``got <hidden>``) keeps what follows
            # it (how to make a token); any other loses everything from ``got`` on.
            message = (message.replace(_HIDDEN, _NOT_SHOWN) if _HIDDEN in message
                       else _GOT.sub(_NOT_SHOWN, message))
        elif "..." in message and any(_related(path, p) for p in self.secrets.paths):
            # A value cut short may have cut a secret in two, which masking would miss.
            message = _GOT.sub("got a value not shown (it holds an environment value)",
                               message)
        origin = self._origin(path)
        text = f"{clip(format_path(path))}: {message}" + (f" ({origin})" if origin else "")
        # A key or a value of the file may hold a terminal escape or a newline: shown
        # escaped, so a problem is one line that recolours nothing (after masking,
        # which knows secrets as they were written).
        text = self.secrets.mask(text, path)
        text = clip(printable(text, len(text) * 10), MAX_MESSAGE)
        if text in self.errors:
            return
        if len(self.errors) >= 2 * MAX_LISTED:
            self._more += 1
            return
        self.errors.append(text)

    def about(self, path: Path) -> bool:
        """Whether a problem was recorded at ``path`` or under it."""
        head = format_path(path)
        return any(e == head or e.startswith((head + ":", head + ".", head + "["))
                   for e in self.errors)

    def _origin(self, path: Path) -> str | None:
        for end in range(len(path), 0, -1):
            origin = self.origins.get(path[:end])
            if origin is not None:
                return origin
        return None

    def __bool__(self) -> bool:
        return bool(self.errors)

    def error(self) -> ConfigError:
        """One ConfigError listing every problem (``.errors`` holds each)."""
        count = len(self.errors) + self._more
        head = (f"{printable(self.source, len(self.source) * 10)}: {count:,} "
                f"problem{'s' if count != 1 else ''} in the config")
        lines = [f"  - {e}" for e in self.errors[:MAX_LISTED]]
        if count > MAX_LISTED:
            lines.append(f"  - ... and {count - MAX_LISTED:,} more")
        return ConfigError(head + "\n" + "\n".join(lines), errors=self.errors,
                           policy="config")

    def check(self) -> None:
        """Raise the ConfigError when any problem was recorded."""
        if self.errors:
            raise self.error()


_FIELD = re.compile(r"^(?P<owner>[^:]+): (?P<field>[A-Za-z_]\w*) must be (?P<rest>.*)$", re.S)


def map_config_error(problems: Problems, path: Path, error: ConfigError,
                     fields: Collection[str], rename: Mapping[str, str] | None = None,
                     ) -> None:
    """Record a policy's ConfigError under the config path of the option it names.

    ``"Retry: attempts must be >= 1, got 0"`` raised while building the section at
    ``path`` becomes ``"<path>.attempts: must be >= 1, got 0"`` when ``attempts`` is
    one of ``fields`` (``rename`` maps constructor names to config keys); any other
    message is recorded under ``path`` as it is.
    """
    for message in _messages(error):
        match = _FIELD.match(message)
        if match is not None:
            field = (rename or {}).get(match["field"], match["field"])
            if field in fields:
                problems.add((*path, field), "must be " + match["rest"])
                continue
        problems.add(path, message)


def construct(factory: Callable[..., T], args: dict[str, Any], problems: Problems,
              path: Path, fields: Collection[str],
              rename: Mapping[str, str] | None = None) -> T | None:
    """``factory(**args)``, or None with every option error recorded under ``path``.

    A constructor stops at its first bad option, so after each error naming an
    option that option is left out and the constructor tried again: one run
    reports every bad option, not just the first.
    """
    args = dict(args)
    failed = False
    removed: set[str] = set()
    while True:
        try:
            made = factory(**args)
        except TypeError:
            if failed:  # a required option was left out after its error: done
                return None
            missing = _missing(factory, args)
            if not missing:
                raise
            for option in missing:  # left out, or left out after its value was refused
                if not problems.about((*path, option)):
                    problems.add((*path, option), "required option is missing")
            return None
        except ConfigError as error:
            match = _FIELD.match(_messages(error)[0])
            name = match["field"] if match is not None else None
            if name in removed:  # it now complains the option is missing: said already
                return None
            map_config_error(problems, path, error, fields, rename)
            failed = True
            if name is None or name not in args:
                return None
            del args[name]
            removed.add(name)
            continue
        return None if failed else made


def _missing(factory: Callable[..., Any], args: Mapping[str, Any]) -> list[str]:
    """The required parameters of ``factory`` that ``args`` does not give."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters if p.default is p.empty and p.name not in args
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _messages(error: ConfigError) -> tuple[str, ...]:
    return error.errors or (str(error),)
