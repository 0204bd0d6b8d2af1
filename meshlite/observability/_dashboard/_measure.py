"""What an alert rule sees in a service's seconds: the value it measures, whether its
condition holds, and the words its alert uses. The engine (``_alerts``) keeps the
state between evaluations; these read one evaluation's measurements."""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from ...routing._endpoint import percentile
from ._history import OPEN_STATES, ServiceSecond
from ._rules import AlertRule, format_value

__all__ = ["Counted", "counted", "detail", "measure", "targets", "value_now"]


@dataclass(frozen=True, slots=True)
class Counted:
    """What a rule's window keeps of one service's second: its calls, failed calls
    and, for ``p99`` rules, its attempt latencies (8 bytes each). Not the whole
    :class:`ServiceSecond`: its snapshot and health, which only the latest second
    is read for, and its latencies as float objects, held some 16 MB a service of
    50 backends under a 300 s ``p99`` rule."""

    requests: int
    errors: int
    samples: array[float] | tuple[()] = ()


def counted(second: ServiceSecond, latencies: bool) -> Counted:
    """``second`` as a window keeps it; its latencies only when ``latencies``."""
    return Counted(second.requests, second.errors,
                   array("d", second.samples) if latencies and second.samples else ())


def value_now(condition: str, value: float | None) -> str:
    """`` (now 12.5%)`` for the conditions with a measured value, else nothing."""
    if value is None or condition not in ("error_rate", "p99"):
        return ""
    return f" (now {format_value(condition, value)})"


def detail(rule: AlertRule, latest: ServiceSecond) -> str:
    """The rule in words, naming the open breakers or the backends left."""
    if rule.condition == "breaker_open":
        names = sorted(n for n, s in latest.snapshot.breakers.items() if s in OPEN_STATES)
        return f"circuit breaker {', '.join(names)} is open"
    if rule.condition == "no_healthy_backend":
        h = latest.health
        return f"no healthy backend ({h.status}, {h.total} configured)"
    return rule.describe()


def targets(rule: AlertRule, latest: Mapping[str, ServiceSecond]) -> list[str]:
    """The services of ``latest`` that ``rule`` applies to."""
    if rule.service is None:
        return list(latest)
    return [rule.service] if rule.service in latest else []


def measure(rule: AlertRule, window: deque[Counted],
             latest: ServiceSecond) -> tuple[float | None, bool]:
    """The rule's value now, and whether its condition holds."""
    if rule.condition == "breaker_open":
        is_open = any(s in OPEN_STATES for s in latest.snapshot.breakers.values())
        return (1.0 if is_open else 0.0), is_open
    if rule.condition == "no_healthy_backend":
        none = latest.health.status in ("down", "panic")
        return (1.0 if none else 0.0), none
    recent = list(window)[-rule.window:]
    requests = sum(s.requests for s in recent)
    if requests < rule.min_requests or requests == 0:
        return None, False
    threshold = rule.threshold or 0.0
    if rule.condition == "error_rate":
        rate = sum(s.errors for s in recent) / requests
        return rate, rate > threshold
    p99 = percentile(sorted(x for s in recent for x in s.samples), 0.99)
    if p99 is None:
        return None, False
    return p99, p99 > threshold
