"""The ``discovery:`` section of a service: ``type`` picks a registered provider, the
driver's options (``interval``, ``min_interval``, ``retry_interval``,
``resolve_timeout``) go
to :class:`~meshlite.discovery.Discovery`, the rest to the provider's constructor.

Provider options are checked against the constructor's signature (types through
the same lax conversion as the schema, so environment overrides are coerced), then
by the constructor itself. Only the provider a config names is imported.
"""

from __future__ import annotations

import functools
import inspect
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from ._fieldset import field_names
from ._problems import Path, Problems, construct
from ._sections import Section
from ._walk import FAILED, convert_struct, convert_value

if TYPE_CHECKING:
    from ..discovery._driver import Discovery
    from ..discovery._provider import ProviderFactory

__all__ = ["DRIVER_OPTIONS", "DiscoverySpec", "build_discovery"]


class _DriverSection(Section, frozen=True):
    interval: float | None = None
    min_interval: float | None = None
    retry_interval: float | None = None
    resolve_timeout: float | None = None


DRIVER_OPTIONS = field_names(_DriverSection)
"""Options of every ``discovery:`` section, whatever its type."""


@dataclass
class DiscoverySpec:
    """A built discovery: the driver, bound to its service when the plan is applied."""

    kind: str
    driver: Discovery


@functools.cache
def _options(factory: ProviderFactory) -> dict[str, tuple[Any, bool]]:
    """The constructor's options: name -> (type hint, required)."""
    target: Any = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        hints = {}
    options: dict[str, tuple[Any, bool]] = {}
    for name, p in inspect.signature(factory).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        options[name] = (hints.get(name, Any), p.default is p.empty)
    return options


def _values(options: dict[str, tuple[Any, bool]], data: dict[str, Any], path: Path,
            problems: Problems) -> dict[str, Any] | None:
    values: dict[str, Any] = {}
    ok = True
    for name, (hint, required) in options.items():
        if name not in data:
            if required:
                problems.add((*path, name), "required option is missing")
                ok = False
            continue
        value = convert_value(hint, data[name], (*path, name), problems)
        if value is FAILED:
            ok = False
        else:
            values[name] = value
    return values if ok else None


def build_discovery(section: dict[str, Any], path: Path, problems: Problems, base_dir: str,
                    redact: Callable[[str], str]) -> DiscoverySpec | None:
    """Build the discovery of one service (the driver's service is set on apply)."""
    # Imported here: a config whose services all have static backends never loads
    # the discovery driver (start-up time); each provider loads with its kind.
    from ..discovery._driver import Discovery
    from ..discovery._provider import provider_factory, provider_kinds

    options = dict(section)
    kind = options.pop("type", "static")
    try:
        factory = provider_factory(kind)
    except ConfigError:
        problems.add((*path, "type"), f"must be one of {', '.join(provider_kinds())}, "
                                      f"got {kind!r}")
        return None
    accepted = _options(factory)
    unknown = [k for k in options if k not in accepted and k not in DRIVER_OPTIONS]
    for key in unknown:
        valid = ", ".join([*accepted, *DRIVER_OPTIONS])
        problems.add((*path, key), f"unknown option of {kind!r} discovery; valid options: "
                                   f"{valid}")
    driver = convert_struct(_DriverSection, {k: v for k, v in options.items()
                                             if k in DRIVER_OPTIONS}, path, problems)
    kwargs = _values(accepted, options, path, problems)
    if driver is FAILED or kwargs is None:
        return None
    if isinstance(kwargs.get("path"), str) and not os.path.isabs(kwargs["path"]):
        kwargs["path"] = os.path.join(base_dir, kwargs["path"])  # next to the config file
    provider = construct(factory, kwargs, problems, path, accepted)
    if provider is None or unknown:
        return None
    built = construct(Discovery, {"service": None, "provider": provider, "redact": redact,
                                  **driver.arguments()},
                      problems, path, DRIVER_OPTIONS)
    if built is None:
        return None
    return DiscoverySpec(kind, built)
