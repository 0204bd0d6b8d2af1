"""Both ends of a collector's outage, said once each: :class:`ExportOutage`.

While a collector is down, every export fails, and the OTLP exporter's own logger
says why (once a minute per kind of message, ``_quiet``); nothing says when the
collector takes data again. An exporter tells its :class:`ExportOutage` how each
export went, and the outage says on the ``meshlite.telemetry`` logger when the first
export fails (WARNING) and when one goes through again (INFO): once each per outage
and process, whatever the number of exports that fail meanwhile. The span exporter
(``_sdk.WatchedExporter``) and the metrics exporter (``_metrics_export``) share it,
each with its own words (:class:`OutageWords`): what is lost differs, spans given up
against metrics that a later push carries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from .._fork import after_fork_in_child, fork_safe

__all__ = ["ExportFailed", "ExportOutage", "ExportRecovered", "Line", "OutageWords"]

_log = logging.getLogger("meshlite.telemetry")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportFailed:
    """The first export of an outage failed.

    Attributes:
        collector: The URL exported to (no credentials).
        items: What that export carried (spans, metric points), given up.
    """

    collector: str
    items: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportRecovered:
    """An export went through after an outage.

    Attributes:
        collector: The URL exported to (no credentials).
        down_seconds: From the first failed export of the outage to this one.
        exports: Exports that failed meanwhile, each given up.
        items: What they carried.
        dropped: Items dropped meanwhile before being exported (a full queue).
    """

    collector: str
    down_seconds: float
    exports: int
    items: int
    dropped: int


class Line(NamedTuple):
    """A log line: its ``%`` template, the template's arguments and the record's
    fields (``extra``) besides ``meshlite_event`` and ``collector``."""

    template: str
    args: tuple[Any, ...]
    fields: dict[str, Any]


class OutageWords(Protocol):
    """What an exporter says of the two ends of an outage."""

    signal: str
    """``"Span"``, ``"Metric"``: the events are ``{signal}ExportFailed`` and
    ``{signal}ExportRecovered``."""

    def failed(self, event: ExportFailed) -> Line:
        """The WARNING line of an outage's beginning."""

    def recovered(self, event: ExportRecovered) -> Line:
        """The INFO line of its end."""


class ExportOutage:
    """Whether a collector takes an exporter's exports, said when that changes
    (thread-safe; a forked child starts with no outage of its own to end).

    Args:
        collector: The URL exported to, without credentials (``url_shown``).
        words: The exporter's lines.
        clock: Seconds, monotonic (injected for tests).
    """

    def __init__(self, collector: str, words: OutageWords,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.collector = collector
        self._words = words
        self._clock = clock
        self._lock = fork_safe(threading.Lock())
        self._since: float | None = None  # when the outage began; None: no outage
        self._exports = 0  # exports given up since it began
        self._items = 0  # what they carried
        self._dropped = 0  # the exporter's count of drops when it began
        after_fork_in_child(self)

    @property
    def down(self) -> bool:
        """Whether the last export failed."""
        return self._since is not None

    def after_fork(self) -> None:
        """A forked child has exported nothing yet: no outage of its own to end."""
        self._since = None

    def exported(self, ok: bool, items: int, dropped: int = 0
                 ) -> ExportFailed | ExportRecovered | None:
        """Note how an export went, and say it when it begins or ends an outage.

        Args:
            ok: Whether the collector took it.
            items: What it carried (spans, metric points).
            dropped: The exporter's count of items dropped so far before export (a
                full queue's), for what the outage lost besides failed exports.

        Returns:
            The change said, or None when the export changed nothing.
        """
        now = self._clock()
        with self._lock:
            since = self._since
            if not ok:
                if since is None:
                    self._since, self._exports, self._items, self._dropped = (
                        now, 1, items, dropped)
                else:
                    self._exports += 1
                    self._items += items
            elif since is not None:
                self._since = None
            exports, lost, dropped_since = self._exports, self._items, dropped - self._dropped
        if not ok and since is None:
            began = ExportFailed(collector=self.collector, items=items)
            self._say(logging.WARNING, "ExportFailed", self._words.failed(began))
            return began
        if ok and since is not None:
            ended = ExportRecovered(collector=self.collector, down_seconds=now - since,
                                    exports=exports, items=lost, dropped=dropped_since)
            self._say(logging.INFO, "ExportRecovered", self._words.recovered(ended))
            return ended
        return None

    def _say(self, level: int, event: str, line: Line) -> None:
        _log.log(level, line.template, *line.args, extra={
            "meshlite_event": self._words.signal + event, "collector": self.collector,
            **line.fields})
