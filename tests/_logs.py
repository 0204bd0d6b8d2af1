"""Capturing every log record of every logger, at every level (uvicorn's TRACE,
5, included), to prove that no record carries a secret."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["CLIENT_LOGGERS", "all_log_records", "keep_uvicorn_lines", "meshlite_records",
           "of_event", "records_holding"]

CLIENT_LOGGERS = ("websockets.client", "httpx", "httpcore")
"""Loggers of a test's own clients, which log what the test sends."""

_LOUD = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "websockets",
         "starlette", "meshlite")


class _Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=1)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def keep_uvicorn_lines(monkeypatch: Any) -> None:
    """Let through uvicorn's informational lines, which a dashboard served in the
    background drops, as ``meshlite dashboard`` (the foreground) logs them: a test
    that no record holds a secret checks every record uvicorn writes."""
    from meshlite.observability._dashboard import _uvicorn

    monkeypatch.setattr(_uvicorn.Quiet, "filter", lambda self, record: True)


@contextlib.contextmanager
def all_log_records() -> Iterator[list[logging.LogRecord]]:
    """Every record logged within, of any logger at any level (the root logger and
    the servers' loggers set to level 1 meanwhile)."""
    root = logging.getLogger()
    handler = _Everything()
    saved = {name: logging.getLogger(name).level for name in _LOUD}
    saved_root = root.level
    root.addHandler(handler)
    root.setLevel(1)
    for name in _LOUD:
        logging.getLogger(name).setLevel(1)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_root)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args), repr(record.__dict__)]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append(repr(record.exc_info[1]))
    return "\n".join(parts)


def records_holding(records: Iterable[logging.LogRecord], secrets: Iterable[str],
                    ) -> list[tuple[str, int, str]]:
    """(logger, level, message) of each record, other than the test's own clients',
    whose message, arguments or attributes hold one of ``secrets``."""
    wanted = list(secrets)
    return [(r.name, r.levelno, r.getMessage()) for r in records
            if not r.name.startswith(CLIENT_LOGGERS)
            and any(s in _text(r) for s in wanted)]


@contextlib.contextmanager
def meshlite_records() -> Iterator[list[logging.LogRecord]]:
    """Every record of the ``meshlite`` loggers at INFO and above, logged within."""
    found: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = found.append  # type: ignore[method-assign]
    logger = logging.getLogger("meshlite")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def of_event(records: Iterable[logging.LogRecord], event: str) -> list[logging.LogRecord]:
    """The records of ``records`` for ``event`` (their ``meshlite_event``)."""
    return [r for r in records if getattr(r, "meshlite_event", None) == event]
