"""One alert rule on one service, from one evaluation to the next: the condition
pending for ``for_seconds``, the alert firing, the ``resolve_seconds`` delay once the
condition clears, and the alert resolved.

Two clocks: ``now`` (wall time) only stamps what is shown (``started_at``,
``resolved_at``); every duration (``for_seconds``, ``resolve_seconds``, the resolved
event's ``duration``) is measured on ``at``, a monotonic clock, so a wall clock
stepped by NTP or a resumed VM neither fires an alert early nor holds it back.

The engine (``_alerts``) keeps one :class:`Track` per (rule, service), holds the
lock, and keeps the resolved alerts; what a rule measures is read in ``_measure``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ._history import ServiceSecond
from ._measure import detail, value_now
from ._rules import Alert, AlertFired, AlertResolved, AlertRule

__all__ = ["Track", "event"]


@dataclass(slots=True)
class Track:
    """The state of one rule on one service between evaluations."""

    since: float | None = None  # monotonic instant the condition started holding
    clear_since: float | None = None  # monotonic instant a firing alert's condition stopped
    fired: float = 0.0  # monotonic instant the firing alert fired
    alert: Alert | None = None  # the firing alert
    label: str = ""  # "service: condition in words", for the resolved summary

    def step(self, rule: AlertRule, name: str, now: float, at: float,
             value: float | None, holds: bool, latest: ServiceSecond) -> Alert | None:
        """Move on with this evaluation's measurement (``value``, and whether the
        condition ``holds``) at wall time ``now`` and monotonic instant ``at``;
        returns the alert that fired or resolved, if one did."""
        if not holds:
            self.since = None
            if self.alert is not None and self.clear_since is None:
                self.clear_since = at
            if self.clear_since is not None and at - self.clear_since < rule.resolve_seconds:
                return None  # the resolve delay: a brief clear does not resolve it
            return self.resolve(now, value)
        self.clear_since = None
        if self.since is None:
            self.since = at
        if self.alert is None and at - self.since >= rule.for_seconds:
            self.fired = at
            self.label = f"{name}: {detail(rule, latest)}"
            self.alert = Alert(
                rule=rule.name, service=name, condition=rule.condition,
                severity=rule.severity, state="firing", value=value,
                threshold=rule.threshold, started_at=now, resolved_at=None,
                summary=self.label + value_now(rule.condition, value))
            return self.alert
        return None

    def duration(self, at: float) -> float:
        """Seconds the firing alert has fired, on the monotonic clock."""
        return max(0.0, at - self.fired)

    def resolve(self, now: float, value: float | None) -> Alert | None:
        """Resolve the firing alert, if any; returns it resolved."""
        alert = self.alert
        if alert is None:
            return None
        self.alert = self.clear_since = None
        return replace(alert, state="resolved", value=value, resolved_at=now,
                       summary=f"{self.label}: resolved{value_now(alert.condition, value)}")


def event(alert: Alert, duration: float) -> AlertFired | AlertResolved:
    """The event telling the service's hooks that ``alert`` fired or resolved
    (``duration``: seconds it fired, for a resolved one)."""
    if alert.state == "firing":
        return AlertFired(policy="alerts", service=alert.service, rule=alert.rule,
                          condition=alert.condition, severity=alert.severity,
                          value=alert.value, threshold=alert.threshold, summary=alert.summary)
    return AlertResolved(policy="alerts", service=alert.service, rule=alert.rule,
                         condition=alert.condition, severity=alert.severity,
                         value=alert.value, duration=duration,
                         summary=alert.summary)
