"""State-change logging: one log record per change, on the ``meshlite`` loggers.

Every state change meshlite announces (a breaker opening, a backend ejected, panic
mode, a config reload, a store outage, an alert) goes through :func:`announce`,
which logs it here and then hands it to the event hooks. Per-call events (retries,
rejections, cache hits...) are not logged: they are counted in the metrics.

Events are matched by class name (walking the class's bases, as the metrics feed
does), so this module imports none of the modules that define them. Each record
carries the event's fields in ``extra`` (``service``, ``backend``, ``reason``...),
so a JSON formatter or structlog shows them as fields; docs/logging.md lists them.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

from ._events import Event, EventHooks

__all__ = ["LOGGERS", "announce", "log_state_change", "one_line", "unlogged"]

Fields = dict[str, Any]
_Rule = tuple[str, int, Callable[[Any], str], Callable[[Any], Fields]]

_WARN, _INFO, _ERROR = logging.WARNING, logging.INFO, logging.ERROR


def one_line(text: str) -> str:
    """``text`` on one line, for a log record: a journal gives a continuation line no
    logger name or pid, and log shippers split the record there. A parser's
    multi-line explanation (PyYAML: "while parsing ...\\n  at line 3, column 15")
    becomes "while parsing ... at line 3, column 15"; separate lines are joined
    with " | "; a snippet's caret line is dropped."""
    if "\n" not in text and "\r" not in text:
        return text
    parts: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.strip("^") == "":
            continue
        if parts and line[:1].isspace() and stripped.startswith(("at ", "in ")):
            parts[-1] = f"{parts[-1]} {stripped}"
        else:
            parts.append(stripped)
    return " | ".join(parts)


def _seconds(value: float) -> str:
    return "until restored" if math.isinf(value) else f"for {value:g} s"


def _breaker(e: Any) -> Fields:
    return {"breaker": e.name, "previous": e.previous, "state": e.state, "reason": e.reason}


def _backend(e: Any) -> Fields:
    return {"backend": e.address, "reason": getattr(e, "reason", "")}


def _returned(e: Any) -> str:
    if e.healthy:
        return f"service {e.service!r}: backend {e.address} returned to rotation ({e.reason})"
    # Still failing its health check: saying "returned" would send the reader to a
    # backend that gets no traffic.
    return (f"service {e.service!r}: backend {e.address}'s ejection ended ({e.reason}); "
            "it stays out of rotation until it passes its health check")


def _ejected(e: Any) -> Fields:
    return {**_backend(e), "seconds": e.seconds, "ejections": e.ejections}


def _alert(e: Any) -> Fields:
    return {"rule": e.rule, "condition": e.condition, "severity": e.severity,
            "value": e.value, "summary": e.summary}


def _store_down(e: Any) -> str:
    error = f"{type(e.error).__name__}: {e.error}"
    if e.reason:
        where = f"store {e.store}" if e.node is None else f"store {e.store}: node {e.node}"
        return f"{where} {e.reason} ({error})"
    if e.node is None:
        return f"store {e.store} is unavailable ({error}); policies fall back until it recovers"
    return (f"store {e.store}: node {e.node} is unavailable ({error}); decisions on keys "
            "in its slots fall back until it recovers, keys on the other nodes stay shared")


def _store_up(e: Any) -> str:
    after = f"after {e.down_seconds:.1f} s"
    if e.node is None:
        why = f" ({e.reason})" if e.reason else ""
        return f"store {e.store} answers again {after}{why}"
    if e.reason:
        return (f"store {e.store}: keys in node {e.node}'s slots are shared again {after} "
                f"({e.reason})")
    return (f"store {e.store}: node {e.node} answers again {after}; keys in its slots are "
            "shared again")


_REASONS_SHOWN = 5
"""How many backends' reasons a panic-mode line gives (a service of 50 backends gave a
line of several kilobytes, which log shippers cut); the event keeps them all."""


def _some(reasons: tuple[str, ...]) -> str:
    shown = "; ".join(reasons[:_REASONS_SHOWN])
    more = len(reasons) - _REASONS_SHOWN
    return shown if more <= 0 else f"{shown}; and {more} more"


def _alert_level(e: Any) -> int:
    return {"critical": _ERROR, "warning": _WARN}.get(e.severity, _INFO)


_RULES: dict[str, _Rule] = {
    "CircuitOpened": ("meshlite.breaker", _WARN, lambda e: (
        f"circuit {e.name!r} opened ({e.reason}); calls are rejected for "
        f"{e.open_seconds:g} s"), lambda e: {**_breaker(e), "open_seconds": e.open_seconds}),
    "CircuitHalfOpened": ("meshlite.breaker", _INFO, lambda e: (
        f"circuit {e.name!r} half-opened; trial calls are admitted"), _breaker),
    "CircuitClosed": ("meshlite.breaker", _INFO, lambda e: (
        f"circuit {e.name!r} closed ({e.reason or 'trial calls succeeded'})"), _breaker),
    "CircuitStateChanged": ("meshlite.breaker", _WARN, lambda e: (
        f"circuit {e.name!r} is now {e.state} (was {e.previous})"), _breaker),
    "BackendEjected": ("meshlite.routing", _WARN, lambda e: (
        f"service {e.service!r}: backend {e.address} ejected {_seconds(e.seconds)} "
        f"({e.reason})"), _ejected),
    "EjectionSkipped": ("meshlite.routing", _WARN, lambda e: (
        f"service {e.service!r}: backend {e.address} stays in rotation though it met "
        f"its ejection criteria ({e.reason}): max_ejection_percent of the backends are "
        "ejected already (said once per backend until the rotation changes)"), _backend),
    "BackendReturned": ("meshlite.routing", _INFO, _returned,
                        lambda e: {**_backend(e), "healthy": e.healthy}),
    "HealthCheckFailed": ("meshlite.routing", _WARN, lambda e: (
        f"service {e.service!r}: backend {e.address} failed its health check "
        f"({e.reason})"), _backend),
    "HealthCheckRecovered": ("meshlite.routing", _INFO, lambda e: (
        f"service {e.service!r}: backend {e.address} passes its health check again"),
        _backend),
    "PanicModeEntered": ("meshlite.routing", _ERROR, lambda e: (
        f"service {e.service!r}: every backend is out, panic mode routes to all "
        f"{e.backends} ({_some(e.reasons)})"),
        lambda e: {"backends": e.backends, "reason": _some(e.reasons)}),
    "PanicModeExited": ("meshlite.routing", _INFO, lambda e: (
        f"service {e.service!r}: panic mode over, {e.available} backend(s) available"),
        lambda e: {"available": e.available}),
    "BackendsChanged": ("meshlite.routing", _INFO, lambda e: (
        f"service {e.service!r}: backends changed (added {list(e.added)}, removed "
        f"{list(e.removed)})"), lambda e: {"added": e.added, "removed": e.removed}),
    # Each worker process reloads on its own: its pid tells their lines apart.
    "ConfigReloaded": ("meshlite.config", _INFO, lambda e: (
        f"config {e.path} applied by pid {os.getpid()} (version {e.version}"
        + (f", sha256 {e.sha256[:12]}" if e.sha256 else "") + "): added "
        f"{list(e.added)}, removed {list(e.removed)}, changed {list(e.changed)}"
        + (f"; sections changed {list(e.sections)}" if e.sections else "")), lambda e: {
            "path": e.path, "version": e.version, "sha256": e.sha256, "added": e.added,
            "removed": e.removed, "changed": e.changed, "sections": e.sections,
            "pid": os.getpid()}),
    "ConfigReloadFailed": ("meshlite.config", _ERROR, lambda e: (
        f"config {e.path} rejected by pid {os.getpid()}, the previous config keeps "
        f"running: {'; '.join(e.errors)}"), lambda e: {
            "path": e.path, "errors": e.errors, "reason": "; ".join(map(one_line, e.errors)),
            "pid": os.getpid()}),
    "StoreUnavailable": ("meshlite.state", _WARN, _store_down,
                         lambda e: {"store": e.store, "node": e.node,
                                    "reason": e.reason or f"{type(e.error).__name__}: "
                                                          f"{e.error}"}),
    "StoreRecovered": ("meshlite.state", _INFO, _store_up, lambda e: {
        "store": e.store, "node": e.node, "down_seconds": e.down_seconds,
        "reason": e.reason}),
    "AlertFired": ("meshlite.alerts", -1, lambda e: f"alert fired: {e.summary}", _alert),
    "AlertResolved": ("meshlite.alerts", _INFO, lambda e: f"alert resolved: {e.summary}",
                      lambda e: {**_alert(e), "duration": e.duration}),
}

LOGGERS: tuple[str, ...] = tuple(sorted({r[0] for r in _RULES.values()}))
"""The logger names state changes are logged on."""

_found: dict[type, _Rule | None] = {}


def _rule(kind: type) -> _Rule | None:
    if kind not in _found:
        _found[kind] = next(
            (_RULES[c.__name__] for c in kind.__mro__ if c.__name__ in _RULES), None)
    return _found[kind]


def log_state_change(event: Event) -> None:
    """Log ``event`` when it is a state change (see the module docstring); other
    events are ignored. Never raises: a broken event must not break the caller."""
    rule = _rule(type(event))
    if rule is None:
        return
    name, level, message, fields = rule
    logger = logging.getLogger(name)
    if level < 0:
        level = _alert_level(event)
    if not logger.isEnabledFor(level):
        return
    try:
        extra = {"meshlite_event": type(event).__name__, "service": event.service,
                 "policy": event.policy, **fields(event)}
        # One line per record, whatever an error's text holds (see one_line).
        logger.log(level, one_line(message(event)), extra=extra)
    except Exception:
        logging.getLogger("meshlite.events").exception("logging %r failed", event)


_UNLOGGED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "meshlite_unlogged", default=False)


@contextlib.contextmanager
def unlogged() -> Iterator[None]:
    """Within it, :func:`announce` delivers state changes to hooks without logging
    them: for a change whose caller logs it in its own words (a reload carrying a
    breaker forced open by hand to the breaker of its new section, whose own event
    would say "was closed")."""
    token = _UNLOGGED.set(True)
    try:
        yield
    finally:
        _UNLOGGED.reset(token)


def announce(hooks: EventHooks | None, event: Event) -> None:
    """Log a state change, then deliver it to ``hooks`` (when anyone listens).

    State changes are rare, so their events are built whether or not anyone
    listens; per-call events keep checking ``hooks.active`` first.
    """
    if not _UNLOGGED.get():
        log_state_change(event)
    if hooks is not None and hooks.active:
        hooks.emit(event)
