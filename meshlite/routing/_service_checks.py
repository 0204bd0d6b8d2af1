"""A Service's arguments: their checks and defaults, and the Lifecycle protocol of
the components (health checkers, discovery, config watchers) a service runs.

Used once, when a :class:`~meshlite.routing.Service` is made or given a component;
nothing here runs per call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from types import EllipsisType
from typing import Any, Protocol, runtime_checkable

from .._pipeline import Pipeline
from .._policy import Policy
from .._validate import fail
from ._health import HealthCheck
from ._outlier import OutlierDetection

__all__ = [
    "DEFAULT_RETRY_ATTEMPTS",
    "NAME",
    "Lifecycle",
    "check_arguments",
    "check_component",
    "default_pipeline",
    "service_names",
]

DEFAULT_RETRY_ATTEMPTS = 2
"""The default pipeline (``pipeline=None``) is ``Pipeline(Retry(attempts=2))``: one
retry, on another backend, for errors Retry's default predicate deems transient."""

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
"""What a service's name matches: letters, digits, ``.``, ``_`` or ``-``."""


def check_component(owner: str, component: Any) -> Lifecycle:
    """``component`` when it has ``start()`` and ``stop()``.

    Raises:
        ConfigError: it has not.
    """
    if not isinstance(component, Lifecycle):
        fail(owner, "component", component, "an object with async start() and async stop()")
    return component


@runtime_checkable
class Lifecycle(Protocol):
    """What a mesh starts and stops: health checkers, discovery, config watchers."""

    async def start(self) -> None:
        """Begin (the mesh awaits it, in dependency order)."""
        ...

    async def stop(self) -> None:
        """End (the mesh awaits it, in reverse order)."""
        ...


def default_pipeline() -> Pipeline:
    """The pipeline of a service given ``pipeline=None``: one retry."""
    from ..policies._retry import Retry

    return Pipeline(Retry(attempts=DEFAULT_RETRY_ATTEMPTS))


def check_arguments(owner: str, pipeline: Any, health_check: Any, outlier_detection: Any,
                    retry_non_idempotent: Any, panic_mode: Any) -> OutlierDetection | None:
    """Validate a Service's arguments; returns its outlier detection (``...`` is
    the default ``OutlierDetection()``).

    Raises:
        ConfigError: a bad argument (naming it).
    """
    if pipeline is not None and not isinstance(pipeline, Policy):
        fail(owner, "pipeline", pipeline, "an ml.Pipeline, a policy, or None")
    if health_check is not None and not isinstance(health_check, HealthCheck):
        fail(owner, "health_check", health_check, "an HttpHealthCheck, a HealthCheck or None")
    for flag, value in (("retry_non_idempotent", retry_non_idempotent),
                        ("panic_mode", panic_mode)):
        if not isinstance(value, bool):
            fail(owner, flag, value, "True or False")
    if isinstance(outlier_detection, EllipsisType):
        return OutlierDetection()
    if outlier_detection is not None and not isinstance(outlier_detection, OutlierDetection):
        fail(owner, "outlier_detection", outlier_detection, "an OutlierDetection or None")
    return outlier_detection


def service_names(owner: str, value: Any) -> tuple[str, ...]:
    """``depends_on`` as a tuple of service names.

    Raises:
        ConfigError: it is not a name or an iterable of non-empty names.
    """
    if not isinstance(value, str | Iterable):
        fail(owner, "depends_on", value, "service names")
    items = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        if not isinstance(item, str) or not item:
            fail(owner, "depends_on", value, "service names")
    return items
