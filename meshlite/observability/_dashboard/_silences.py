"""Silences: a time-boxed mute of one service's or one rule's notifications.

A silenced alert still fires, resolves, shows on the page and is logged; only its
webhook notification is held back. Silences are made by code (``mesh.alerts.
silences.add``) or by an operator through the dashboard's admin API, and end by
themselves (or when removed): ``seconds`` after they were made on a monotonic
clock (the mesh's), so a wall clock stepped back cannot stretch a mute, nor one
stepped forward end it early; ``starts_at`` and ``ends_at`` are wall-clock times
for people to read.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..._errors import ConfigError
from ..._fork import fork_safe
from ..._validate import fail, positive
from ._rules import Alert

__all__ = ["MAX_NAME", "MAX_SILENCES", "MAX_SILENCE_SECONDS", "Silence", "Silences"]

MAX_SILENCE_SECONDS = 7 * 24 * 3600.0
"""The longest silence: a week (a forgotten silence must end by itself)."""

MAX_SILENCES = 1000
"""Silences in force at once (each admin API call makes one: they must not pile up
without end)."""

MAX_NAME = 200
"""Characters of a silence's ``service`` or ``rule``."""

_OWNER = "Alerts.silences.add"


@dataclass(frozen=True, slots=True, kw_only=True)
class Silence:
    """One silence.

    Attributes:
        id: Its number, unique in the process (``POST /api/admin/silences/{id}/expire``
            ends it).
        service: The service muted, or ``None`` for every service.
        rule: The rule muted, or ``None`` for every rule.
        starts_at: Wall-clock time (seconds since the epoch) it was made.
        ends_at: Wall-clock time it ends, as it was foreseen when made (it ends
            ``ends_at - starts_at`` seconds after it was made, on the monotonic clock).
        comment: Why (in the silence's JSON: the admin API's answer and ``/api/alerts``).
    """

    id: int
    service: str | None
    rule: str | None
    starts_at: float
    ends_at: float
    comment: str

    def matches(self, alert: Alert) -> bool:
        """Whether this silence mutes ``alert`` (ignoring time)."""
        return ((self.service is None or self.service == alert.service)
                and (self.rule is None or self.rule == alert.rule))

    def as_dict(self) -> dict[str, Any]:
        """This silence as JSON-ready data."""
        return {"id": self.id, "service": self.service, "rule": self.rule,
                "starts_at": self.starts_at, "ends_at": self.ends_at,
                "comment": self.comment}


_ids = itertools.count(1)


class Silences:
    """The active silences of a mesh's alerts (``mesh.alerts.silences``).

    Args:
        wall: Wall clock (seconds since the epoch) for the times shown.
        monotonic: The clock silences end on (the mesh's ``clock.monotonic``).
    """

    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.wall = wall
        self.monotonic = monotonic
        self._lock = fork_safe(threading.Lock())
        self._active: dict[int, tuple[Silence, float]] = {}  # id -> (silence, ends)

    def add(self, *, seconds: float, service: str | None = None, rule: str | None = None,
            comment: str = "") -> Silence:
        """Mute the notifications of ``service``'s alerts (``None``: every service)
        of ``rule`` (``None``: every rule) for ``seconds``.

        Raises:
            ConfigError: ``seconds`` not in (0, one week], a bad name or comment, or
                :data:`MAX_SILENCES` silences in force already.
        """
        seconds = positive(_OWNER, "seconds", seconds)
        if seconds > MAX_SILENCE_SECONDS:
            fail(_OWNER, "seconds", seconds, f"<= {MAX_SILENCE_SECONDS:g} (one week)")
        for field, value in (("service", service), ("rule", rule)):
            if value is not None and (not isinstance(value, str) or not value.strip()
                                      or len(value) > MAX_NAME or not value.isprintable()):
                fail(_OWNER, field, value, f"a non-empty printable string of at most "
                     f"{MAX_NAME} characters, or None")
        if not isinstance(comment, str) or len(comment) > 500:
            fail(_OWNER, "comment", comment, "a string of at most 500 characters")
        now, at = self.wall(), self.monotonic()
        silence = Silence(id=next(_ids), service=service, rule=rule, starts_at=now,
                          ends_at=now + seconds, comment=comment)
        with self._lock:
            if len(self._active) >= MAX_SILENCES:
                self._drop_ended(at)
            if len(self._active) >= MAX_SILENCES:
                raise ConfigError(f"{_OWNER}: {MAX_SILENCES} silences are in force already; "
                                  "expire some (POST /api/admin/silences/{id}/expire, or "
                                  "silences.remove(id)) or let them end", policy="alerts")
            self._active[silence.id] = (silence, at + seconds)
        return silence

    def _drop_ended(self, at: float) -> None:
        for key in [k for k, (_, ends) in self._active.items() if ends <= at]:
            del self._active[key]

    def remove(self, silence_id: int) -> bool:
        """End the silence ``silence_id`` now; returns whether it was active."""
        with self._lock:
            return self._active.pop(silence_id, None) is not None

    def active(self) -> list[Silence]:
        """The silences in force now, oldest first (ended ones are dropped)."""
        at = self.monotonic()
        with self._lock:
            self._drop_ended(at)
            return [silence for silence, _ in self._active.values()]

    def mutes(self, alert: Alert) -> bool:
        """Whether a silence in force now mutes ``alert``."""
        return any(s.matches(alert) for s in self.active())
