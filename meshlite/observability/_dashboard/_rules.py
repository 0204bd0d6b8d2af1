"""Alert rules, the alerts they raise, and the events announcing them.

An :class:`AlertRule` is immutable configuration (validated when built); an
:class:`Alert` is one firing or resolved instance of a rule for one service;
:class:`AlertFired` / :class:`AlertResolved` are the events emitted through the
service's hooks (so ``mesh.add_hook`` subscribers see them).
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass
from typing import Any

from ..._arguments import explained
from ..._events import Event
from ..._validate import at_least, fail, non_negative, positive

__all__ = [
    "CONDITIONS",
    "DEFAULT_MIN_REQUESTS",
    "DEFAULT_WINDOW_SECONDS",
    "MAX_WINDOW_SECONDS",
    "SEVERITIES",
    "Alert",
    "AlertFired",
    "AlertResolved",
    "AlertRule",
]

CONDITIONS = ("error_rate", "p99", "breaker_open", "no_healthy_backend")
"""What a rule can watch."""

SEVERITIES = ("info", "warning", "critical")

DEFAULT_WINDOW_SECONDS = 10
"""Seconds of traffic ``error_rate`` and ``p99`` rules look at."""

MAX_WINDOW_SECONDS = 300
"""The longest window: a rule's window of raw latencies is kept in memory."""

DEFAULT_MIN_REQUESTS = 1
"""Requests a window needs before ``error_rate`` / ``p99`` can hold."""

_THRESHOLD = {"error_rate", "p99"}


@explained
@dataclass(frozen=True, slots=True)
class AlertRule:
    """When to raise an alert, for one service or for each service.

    The open mesh evaluates every rule once a second, with or without a dashboard. A rule's
    condition must hold continuously for ``for_seconds`` before the alert fires
    (the hold-down), and stop holding continuously for ``resolve_seconds`` before
    it resolves (the resolve delay): a breaker cycling open / half-open / open, or
    an error rate hovering at the threshold, then makes one alert, not one per
    cycle.

    Conditions:
        ``"error_rate"``: failed calls / calls over the last ``window`` seconds
        is above ``threshold`` (a fraction, ``0.05`` is 5%).
        ``"p99"``: the 99th percentile of attempt latency over the last ``window``
        seconds is above ``threshold`` seconds.
        ``"breaker_open"``: a circuit breaker of the service's pipeline is open or
        forced open (``threshold`` unused).
        ``"no_healthy_backend"``: every backend is ejected or unhealthy (panic mode)
        or there is none (``threshold`` unused).

    A window with fewer than ``min_requests`` calls never holds (no traffic is
    no evidence), so an ``error_rate`` or ``p99`` alert resolves when traffic stops.

    Args:
        name: Unique name of the rule (shown on the page, in events and webhooks).
        condition: One of ``"error_rate"``, ``"p99"``, ``"breaker_open"``,
            ``"no_healthy_backend"``.
        threshold: Required by ``error_rate`` (in [0, 1)) and ``p99`` (seconds, > 0);
            must be omitted for the others.
        for_seconds: How long the condition must hold before firing, >= 0.
        resolve_seconds: How long the condition must stop holding before a firing
            alert resolves, >= 0 (Prometheus: ``keep_firing_for``).
        window: Seconds of traffic ``error_rate`` and ``p99`` look at, an integer in
            [1, 300].
        min_requests: Calls the window needs for the condition to hold, >= 1.
        service: The service to watch; ``None`` watches every service (one alert
            per service).
        severity: ``"info"``, ``"warning"`` or ``"critical"``.

    Raises:
        ConfigError: a bad argument (the message names it).

    Example::

        ml.AlertRule("users-errors", "error_rate", threshold=0.05, for_seconds=30,
                     resolve_seconds=60, service="users", severity="critical")
    """

    name: str
    condition: str
    _: KW_ONLY
    threshold: float | None = None
    for_seconds: float = 0.0
    resolve_seconds: float = 0.0
    window: int = DEFAULT_WINDOW_SECONDS
    min_requests: int = DEFAULT_MIN_REQUESTS
    service: str | None = None
    severity: str = "warning"

    def __post_init__(self) -> None:
        owner = "AlertRule"
        if not isinstance(self.name, str) or not self.name.strip():
            fail(owner, "name", self.name, "a non-empty string")
        owner = f"AlertRule {self.name!r}"
        if self.condition not in CONDITIONS:
            fail(owner, "condition", self.condition, "one of " + ", ".join(CONDITIONS))
        object.__setattr__(self, "threshold", _threshold(owner, self.condition, self.threshold))
        object.__setattr__(self, "for_seconds",
                           non_negative(owner, "for_seconds", self.for_seconds))
        object.__setattr__(self, "resolve_seconds",
                           non_negative(owner, "resolve_seconds", self.resolve_seconds))
        window = at_least(owner, "window", self.window, 1)
        if window > MAX_WINDOW_SECONDS:
            fail(owner, "window", window, f"<= {MAX_WINDOW_SECONDS} seconds")
        at_least(owner, "min_requests", self.min_requests, 1)
        if self.service is not None and (not isinstance(self.service, str)
                                         or not self.service):
            fail(owner, "service", self.service, "a service name or None")
        if self.severity not in SEVERITIES:
            fail(owner, "severity", self.severity, "one of " + ", ".join(SEVERITIES))

    def describe(self) -> str:
        """The condition in words: ``"error rate > 5.0% over 10s"``."""
        if self.condition == "error_rate":
            return f"error rate > {self.threshold:.1%} over {self.window}s"
        if self.condition == "p99":
            return f"p99 > {_ms(self.threshold)} over {self.window}s"
        if self.condition == "breaker_open":
            return "a circuit breaker is open"
        return "no healthy backend"

    def as_dict(self) -> dict[str, Any]:
        """This rule as JSON-ready data."""
        return {"name": self.name, "condition": self.condition, "threshold": self.threshold,
                "for_seconds": self.for_seconds, "resolve_seconds": self.resolve_seconds,
                "window": self.window,
                "min_requests": self.min_requests, "service": self.service,
                "severity": self.severity, "description": self.describe()}


def _threshold(owner: str, condition: str, value: Any) -> float | None:
    if condition not in _THRESHOLD:
        if value is not None:
            fail(owner, "threshold", value, f"None for condition {condition!r}")
        return None
    if value is None:
        fail(owner, "threshold", value, f"a number for condition {condition!r}")
    if condition == "p99":
        return positive(owner, "threshold", value)
    rate = non_negative(owner, "threshold", value)
    if rate >= 1.0:
        fail(owner, "threshold", value, "an error rate in [0, 1)")
    return rate


def _ms(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "n/a"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.2f} ms"


def format_value(condition: str, value: float | None) -> str:
    """A measured value as the page and summaries show it."""
    if value is None:
        return "n/a"
    if condition == "error_rate":
        return f"{value:.1%}"
    if condition == "p99":
        return _ms(value)
    return "yes" if value else "no"


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One alert: a rule that fired for a service.

    Attributes:
        rule: The rule's name.
        service: The service it fired for.
        condition: The rule's condition.
        severity: The rule's severity.
        state: ``"firing"`` or ``"resolved"``.
        value: The measured value when it fired (or resolved); for
            ``breaker_open`` / ``no_healthy_backend`` 1.0 (holds) or 0.0.
        threshold: The rule's threshold, or ``None``.
        started_at: Wall-clock time (seconds since the epoch) it fired.
        resolved_at: Wall-clock time it resolved, or ``None`` while firing.
        summary: One line for humans.
    """

    rule: str
    service: str
    condition: str
    severity: str
    state: str
    value: float | None
    threshold: float | None
    started_at: float
    resolved_at: float | None
    summary: str

    def as_dict(self) -> dict[str, Any]:
        """This alert as JSON-ready data."""
        return {"rule": self.rule, "service": self.service, "condition": self.condition,
                "severity": self.severity, "state": self.state, "value": self.value,
                "threshold": self.threshold, "started_at": self.started_at,
                "resolved_at": self.resolved_at, "summary": self.summary}


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertFired(Event):
    """An alert rule's condition held for its ``for_seconds``: the alert fired.

    ``policy`` is ``"alerts"``; ``service`` the service it fired for.
    """

    rule: str
    condition: str
    severity: str
    value: float | None
    threshold: float | None
    summary: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertResolved(Event):
    """A firing alert's condition stopped holding; it lasted ``duration`` seconds."""

    rule: str
    condition: str
    severity: str
    value: float | None
    duration: float
    summary: str
