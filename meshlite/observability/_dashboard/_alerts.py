"""Alerts: the rules of a mesh and the engine that fires and resolves them.

``mesh.alerts`` is an :class:`Alerts`; while the mesh is open its monitor
(``meshlite.observability._host``; one worker per host) calls
:meth:`Alerts.evaluate` once a second with that second's measurements. Each
transition is recorded (``firing()`` / ``recent()``), logged and emitted as an
``AlertFired`` / ``AlertResolved`` event through the service's hooks, and the
transitions of one service in one evaluation are POSTed to the webhook as one
notification (:meth:`Alerts.notifications`), unless a silence mutes them. What a
rule measures in one evaluation is read in ``_measure``; one rule's state on one
service (pending, firing, resolving) is an ``_alert_track.Track``.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..._clock import SYSTEM_CLOCK, Clock
from ..._errors import ConfigError
from ..._fork import fork_safe
from ..._validate import at_least, clip, fail, positive
from ._alert_track import Track, event
from ._history import ServiceSecond
from ._measure import Counted, counted, measure, targets
from ._rules import MAX_WINDOW_SECONDS, Alert, AlertRule
from ._silences import Silences

__all__ = ["DEFAULT_KEEP_RESOLVED", "DEFAULT_WEBHOOK_TIMEOUT", "MISSING_SERVICE_SECONDS",
           "Alerts"]

DEFAULT_WEBHOOK_TIMEOUT = 5.0
"""Seconds a webhook POST may take before it is abandoned (and logged)."""

DEFAULT_KEEP_RESOLVED = 100
"""Resolved alerts kept for the page and ``/api/alerts``."""

MISSING_SERVICE_SECONDS = 30.0
"""A rule naming a service the mesh has not had for this long since the rule was
first evaluated is logged, once (a typo, or a service the application no longer
registers). Until then a service registered in code after the mesh opened is
not warned about; the rule is evaluated from the moment the service exists."""

_log = logging.getLogger("meshlite.alerts")


class Alerts:
    """The alert rules of a mesh, and the alerts they raised.

    Args:
        rules: The rules (``ml.AlertRule``); names must be unique.
        webhook: An ``http://`` or ``https://`` URL that receives a JSON POST
            (``{"status": "firing"|"resolved", "alert": {...}}``) per transition, or
            ``None``.
        webhook_timeout: Seconds each POST may take, > 0; failures are logged.
        keep_resolved: Resolved alerts remembered, >= 0.
        clock: The clock silences end on (a mesh passes its own; default the
            system clock).

    Attributes:
        silences: The :class:`~._silences.Silences` muting notifications.

    Raises:
        ConfigError: a duplicate rule name, a non-rule, or a bad webhook.
    """

    def __init__(self, rules: Iterable[AlertRule] = (), *, webhook: str | None = None,
                 webhook_timeout: float = DEFAULT_WEBHOOK_TIMEOUT,
                 keep_resolved: int = DEFAULT_KEEP_RESOLVED,
                 clock: Clock | None = None) -> None:
        self._lock = fork_safe(threading.Lock())
        self._rules: dict[str, AlertRule] = {}
        self._tracks: dict[tuple[str, str], Track] = {}
        self._resolved: deque[Alert] = deque(
            maxlen=at_least("Alerts", "keep_resolved", keep_resolved, 0))
        self._windows: dict[str, deque[Counted]] = {}
        # Rule name -> when its service was first missed; None once the service was
        # seen or the miss was logged (see MISSING_SERVICE_SECONDS).
        self._absent: dict[str, float | None] = {}
        self.webhook_timeout = positive("Alerts", "webhook_timeout", webhook_timeout)
        self.webhook = _webhook(webhook)
        self.silences = Silences(monotonic=(clock or SYSTEM_CLOCK).monotonic)
        self.replace(rules)

    # -- rules -----------------------------------------------------------------

    @property
    def rules(self) -> tuple[AlertRule, ...]:
        """The rules, in the order added."""
        return tuple(self._rules.values())

    def add(self, rule: AlertRule) -> AlertRule:
        """Add ``rule``; returns it.

        Raises:
            ConfigError: not an ``AlertRule``, or its name is taken.
        """
        if not isinstance(rule, AlertRule):
            fail("Alerts", "rule", rule, "an ml.AlertRule")
        with self._lock:
            if rule.name in self._rules:
                raise ConfigError(f"Alerts: a rule named {rule.name!r} exists; rule names "
                                  "must be unique (remove it first)", policy="alerts")
            self._rules[rule.name] = rule
        return rule

    def remove(self, name: str) -> None:
        """Remove the rule called ``name`` (no error if absent); its firing alerts
        resolve at the next evaluation."""
        with self._lock:
            self._rules.pop(name, None)
            self._absent.pop(name, None)

    def replace(self, rules: Iterable[AlertRule], *, webhook: Any = ...,
                webhook_timeout: float | None = None) -> None:
        """Swap in a new rule set (config reload). A firing alert whose rule keeps
        its name carries on under the new definition (and resolves when that stops
        holding); alerts of removed rules resolve at the next evaluation. Pending
        conditions of changed rules start over. ``webhook`` is replaced when given
        (``None`` removes it), ``webhook_timeout`` when not ``None``.

        Raises:
            ConfigError: a duplicate name, a non-rule, a bad webhook or timeout
                (nothing is changed).
        """
        new: dict[str, AlertRule] = {}
        for rule in rules:
            if not isinstance(rule, AlertRule):
                fail("Alerts", "rules", rule, "ml.AlertRule objects")
            if rule.name in new:
                raise ConfigError(f"Alerts: two rules are named {rule.name!r}; rule names "
                                  "must be unique", policy="alerts")
            new[rule.name] = rule
        hook = self.webhook if webhook is ... else _webhook(webhook)
        timeout = self.webhook_timeout if webhook_timeout is None else positive(
            "Alerts", "webhook_timeout", webhook_timeout)
        with self._lock:
            for key in [k for k in self._tracks if self._rules.get(k[0]) != new.get(k[0])]:
                if self._tracks[key].alert is None:
                    del self._tracks[key]
            for name in [n for n in self._absent if self._rules.get(n) != new.get(n)]:
                del self._absent[name]
            self._rules = new
            self.webhook = hook
            self.webhook_timeout = timeout

    # -- state -----------------------------------------------------------------

    def firing(self) -> list[Alert]:
        """The alerts firing now, oldest first."""
        with self._lock:
            found = [t.alert for t in self._tracks.values() if t.alert is not None]
        return sorted(found, key=lambda a: a.started_at)

    def recent(self) -> list[Alert]:
        """Resolved alerts, newest first (at most ``keep_resolved``)."""
        with self._lock:
            return list(reversed(self._resolved))

    def as_dict(self) -> dict[str, Any]:
        """Rules, firing and recently resolved alerts, silences, JSON-ready."""
        return {"rules": [r.as_dict() for r in self.rules],
                "firing": [{**a.as_dict(), "silenced": self.silences.mutes(a)}
                           for a in self.firing()],
                "resolved": [a.as_dict() for a in self.recent()],
                "silences": [s.as_dict() for s in self.silences.active()],
                "webhook": self.webhook is not None}

    def notifications(self, changed: Iterable[Alert]) -> list[tuple[str, list[Alert]]]:
        """``changed`` (what :meth:`evaluate` returned) grouped by service, in order,
        without the alerts a silence mutes: one webhook notification each."""
        groups: dict[str, list[Alert]] = {}
        for alert in changed:
            if not self.silences.mutes(alert):
                groups.setdefault(alert.service, []).append(alert)
        return list(groups.items())

    # -- evaluation --------------------------------------------------------------

    def evaluate(self, now: float, seconds: Iterable[ServiceSecond],
                 emit: Callable[[str, Any], None] | None = None,
                 at: float | None = None) -> list[Alert]:
        """Apply every rule to this second's measurements.

        Args:
            now: Wall-clock time (seconds since the epoch): stamps the alerts.
            seconds: One measurement per service, for the second that just ended.
            emit: ``emit(service_name, event)`` delivers the AlertFired /
                AlertResolved events (the dashboard passes the service's hooks).
            at: The instant on a monotonic clock (the mesh's ``clock.monotonic()``)
                that ``for_seconds``, ``resolve_seconds`` and durations are measured
                on, so that a wall clock stepped by NTP or a resumed VM moves none of
                them; default ``now`` (one clock for both).

        Returns:
            The alerts that fired or resolved, in order.
        """
        at = now if at is None else at
        latest = {s.name: s for s in seconds}
        with self._lock:
            self._remember(latest)
            rules = tuple(self._rules.values())
            out = [t for rule in rules for name in targets(rule, latest)
                   if (t := self._step(rule, name, now, at, latest[name])) is not None]
            out.extend(self._orphans(now, at, latest))
            missing = self._missing(rules, latest, at)
        for rule in missing:
            _log.warning("alert rule %r names service %r, which this mesh has not had in "
                         "%g s of evaluation (services: %s); the rule is evaluated once a "
                         "service of that name is registered", rule.name, rule.service,
                         MISSING_SERVICE_SECONDS, clip(", ".join(sorted(latest)) or "none"),
                         extra={"rule": rule.name, "service": rule.service})
        if emit is not None:
            for alert, duration in out:
                emit(alert.service, event(alert, duration))
        return [alert for alert, _ in out]

    def _remember(self, latest: Mapping[str, ServiceSecond]) -> None:
        keep = max((r.window for r in self._rules.values()), default=1)
        keep = min(keep, MAX_WINDOW_SECONDS)
        latencies = any(r.condition == "p99" for r in self._rules.values())
        for name, second in latest.items():
            window = self._windows.get(name)
            if window is None or window.maxlen != keep:
                window = self._windows[name] = deque(window or (), maxlen=keep)
            window.append(counted(second, latencies))
        for name in [n for n in self._windows if n not in latest]:
            del self._windows[name]

    def _missing(self, rules: Iterable[AlertRule], latest: Mapping[str, ServiceSecond],
                 at: float) -> list[AlertRule]:
        """The rules whose service has been absent for MISSING_SERVICE_SECONDS (on
        the monotonic clock), each returned once; a rule whose service was seen is
        never returned."""
        out = []
        for rule in rules:
            if rule.service is None or rule.service in latest:
                self._absent[rule.name] = None
                continue
            since = self._absent.setdefault(rule.name, at)
            if since is not None and at - since >= MISSING_SERVICE_SECONDS:
                self._absent[rule.name] = None
                out.append(rule)
        return out

    def _step(self, rule: AlertRule, name: str, now: float, at: float,
              latest: ServiceSecond) -> tuple[Alert, float] | None:
        value, holds = measure(rule, self._windows[name], latest)
        track = self._tracks.setdefault((rule.name, name), Track())
        return self._kept(track.step(rule, name, now, at, value, holds, latest), track, at)

    def _kept(self, alert: Alert | None, track: Track,
              at: float) -> tuple[Alert, float] | None:
        """``alert`` with the seconds it fired, remembered among the recent ones
        when it resolved."""
        if alert is None:
            return None
        if alert.state == "resolved":
            self._resolved.append(alert)
        return alert, track.duration(at)

    def _orphans(self, now: float, at: float,
                 latest: Mapping[str, ServiceSecond]) -> list[tuple[Alert, float]]:
        # Firing alerts whose rule was removed or replaced, or whose service is gone.
        out = []
        for key, track in list(self._tracks.items()):
            rule = self._rules.get(key[0])
            if rule is None or key[1] not in latest or (
                    rule.service is not None and rule.service != key[1]):
                t = self._kept(track.resolve(now, None), track, at)
                self._tracks.pop(key, None)
                if t is not None:
                    out.append(t)
        return out


def _webhook(url: Any) -> str | None:
    if url is None:
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        fail("Alerts", "webhook", url, "an http:// or https:// URL or None")
    return url
