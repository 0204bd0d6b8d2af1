"""The file provider: backends listed in a JSON or YAML file, re-read when it changes."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .._errors import ConfigError
from .._validate import fail
from ._provider import BaseProvider, Resolution, backends_from_data
from ._watch import DEFAULT_STEP_MS, FileWatch
from ._yaml import load_json_or_yaml

__all__ = ["FileProvider", "parse_backends_file"]


def parse_backends_file(path: str, text: str) -> Any:
    """Parse ``text`` as JSON (``.json``) or YAML (anything else; YAML reads JSON too).

    Raises:
        ConfigError: the text does not parse.
    """
    return load_json_or_yaml(path, text, "discovery")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


class FileProvider(BaseProvider):
    """Backends from a file holding a JSON or YAML list: addresses, or mappings with
    ``url``, ``weight``, ``zone`` and ``metadata`` (a mapping with a ``backends`` key
    holding that list works too). The file is watched and re-read on every save.

    Args:
        path: The file (``.json`` is read as JSON, anything else as YAML).
        watch: Watch the file for changes (else only the driver's interval re-reads).
        step_ms: Quiet time after a change before it is read (an editor's save is
            several writes).

    Raises:
        ConfigError: ``path`` is not a non-empty string.
    """

    kind = "file"

    def __init__(self, path: str | os.PathLike[str], *, watch: bool = True,
                 step_ms: int = DEFAULT_STEP_MS) -> None:
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            fail("FileProvider", "path", path, "a file path")
        if not isinstance(watch, bool):
            fail("FileProvider", "watch", watch, "True or False")
        if isinstance(step_ms, bool) or not isinstance(step_ms, int) or step_ms < 1:
            fail("FileProvider", "step_ms", step_ms, "an integer >= 1")
        self.path = os.path.abspath(os.fspath(path))
        self.watch = watch
        self._step = step_ms
        self._watch: FileWatch | None = None

    async def start(self) -> None:
        """Begin watching the file's directory.

        Raises:
            ConfigError: the directory does not exist.
        """
        if not self.watch:
            return
        watch = FileWatch(self.path, step_ms=self._step)
        try:
            watch.open()
        except (FileNotFoundError, OSError) as error:
            raise ConfigError(f"FileProvider: cannot watch {self.path}: {error}; create "
                              "its directory or set watch: false", policy="discovery") from None
        self._watch = watch

    async def stop(self) -> None:
        """Stop watching."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()

    async def resolve(self) -> Resolution:
        """Read and parse the file.

        Raises:
            OSError: the file cannot be read.
            ConfigError: it is empty, does not parse or lists a bad backend.
        """
        text = await asyncio.to_thread(_read, self.path)
        if not text.strip():  # (JSON's or YAML's own complaint would not say so)
            raise ConfigError(f"FileProvider {self.path}: the file is empty (truncated "
                              "by a write still under way?); it must list the backends",
                              policy="discovery")
        data = parse_backends_file(self.path, text)
        return Resolution(backends_from_data(data, f"FileProvider {self.path}"))

    async def changed(self) -> None:
        """Return after the next save of the file."""
        if self._watch is None:
            await super().changed()
            return
        await self._watch.changed()

    def __repr__(self) -> str:
        return f"FileProvider({self.path!r})"
