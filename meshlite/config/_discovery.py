"""The ``discovery:`` section of a service: ``type`` picks a registered provider, the
driver's options (``interval``, ``min_interval``, ``retry_interval``,
``resolve_timeout``) go
to :class:`~meshlite.discovery.Discovery`, the rest to the provider's constructor.

Provider options are checked against the constructor's signature (types through
pydantic, so environment overrides are coerced), then by the constructor itself.
"""

from __future__ import annotations

import functools
import inspect
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from .._errors import ConfigError
from ..discovery import Discovery, ProviderFactory, provider_factory, provider_kinds
from ._check_schema import record_validation_errors
from ._problems import Path, Problems, construct
from ._sections import Section

__all__ = ["DRIVER_OPTIONS", "DiscoverySpec", "build_discovery"]


class _DriverSection(Section):
    interval: float | None = None
    min_interval: float | None = None
    retry_interval: float | None = None
    resolve_timeout: float | None = None


DRIVER_OPTIONS = tuple(_DriverSection.model_fields)
"""Options of every ``discovery:`` section, whatever its type."""


@dataclass
class DiscoverySpec:
    """A built discovery: the driver, bound to its service when the plan is applied."""

    kind: str
    driver: Discovery


def _annotation(hint: Any) -> Any:
    try:
        TypeAdapter(hint)
    except Exception:  # a type pydantic cannot check (os.PathLike[str]...): any value
        return Any
    return hint


@functools.cache
def _options_model(factory: ProviderFactory) -> type[BaseModel]:
    target: Any = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        hints = {}
    fields: dict[str, Any] = {}
    for name, p in inspect.signature(factory).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = ... if p.default is p.empty else p.default
        fields[name] = (_annotation(hints.get(name, Any)), default)
    model: type[BaseModel] = create_model(
        f"{getattr(factory, '__name__', 'Provider')}Options",
        __config__=ConfigDict(extra="ignore", arbitrary_types_allowed=True), **fields)
    return model


def _validate(model: type[BaseModel], data: dict[str, Any], path: Path,
              problems: Problems) -> BaseModel | None:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        record_validation_errors(problems, path, error, model)
        return None


def build_discovery(section: dict[str, Any], path: Path, problems: Problems, base_dir: str,
                    redact: Callable[[str], str]) -> DiscoverySpec | None:
    """Build the discovery of one service (the driver's service is set on apply)."""
    options = dict(section)
    kind = options.pop("type", "static")
    try:
        factory = provider_factory(kind)
    except ConfigError:
        problems.add((*path, "type"), f"must be one of {', '.join(provider_kinds())}, "
                                      f"got {kind!r}")
        return None
    model = _options_model(factory)
    unknown = [k for k in options if k not in model.model_fields and k not in DRIVER_OPTIONS]
    for key in unknown:
        valid = ", ".join([*model.model_fields, *DRIVER_OPTIONS])
        problems.add((*path, key), f"unknown option of {kind!r} discovery; valid options: "
                                   f"{valid}")
    driver = _validate(_DriverSection, {k: v for k, v in options.items()
                                        if k in DRIVER_OPTIONS}, path, problems)
    values = _validate(model, {k: v for k, v in options.items()
                               if k in model.model_fields}, path, problems)
    if driver is None or values is None:
        return None
    kwargs = {k: getattr(values, k) for k in values.model_fields_set}
    if isinstance(kwargs.get("path"), str) and not os.path.isabs(kwargs["path"]):
        kwargs["path"] = os.path.join(base_dir, kwargs["path"])  # next to the config file
    provider = construct(factory, kwargs, problems, path, model.model_fields)
    if provider is None or unknown:
        return None
    built = construct(Discovery, {"service": None, "provider": provider, "redact": redact,
                                  **typing.cast(_DriverSection, driver).arguments()},
                      problems, path, DRIVER_OPTIONS)
    if built is None:
        return None
    return DiscoverySpec(kind, built)
