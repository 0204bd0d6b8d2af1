"""Run the schema over a document, recording every problem under its path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._fieldset import with_fields
from ._placement import misplaced_service
from ._problems import Problems
from ._schema import MeshConfig, ServiceSection
from ._steps import Steps, drain
from ._walk import FAILED, convert_struct

__all__ = ["validate_document", "validate_steps"]


def validate_document(data: dict[str, Any], problems: Problems) -> MeshConfig | None:
    """``data`` as a :class:`MeshConfig`, each problem recorded. Each service is
    checked on its own and values in error are left out, so the result (partial
    when there were problems) can still be built to find the other problems."""
    return drain(validate_steps(data, problems))


def validate_steps(data: dict[str, Any], problems: Problems,
                   reuse: Mapping[str, ServiceSection] | None = None,
                   ) -> Steps[MeshConfig | None]:
    """:func:`validate_document` a service at a time (yielding before each).
    The services in ``reuse`` are taken as they are, unchecked: their data is the
    same as when they were checked (their value in ``data`` is not read)."""
    top = convert_struct(MeshConfig, {k: v for k, v in data.items() if k != "services"}, (),
                         problems)
    services: dict[str, ServiceSection] = {}
    raw = data.get("services")
    if isinstance(raw, dict):
        for name, section in raw.items():
            yield
            if reuse is not None and (known := reuse.get(str(name))) is not None:
                services[str(name)] = known
                continue
            if not isinstance(section, dict | type(None)):
                problems.add(("services", str(name)), "must be a mapping (backends, "
                             f"balancer, policies...), got {section!r}"
                             + misplaced_service(str(name)))
                continue
            built = convert_struct(ServiceSection, section or {}, ("services", str(name)),
                                   problems)
            if built is not FAILED:
                services[str(name)] = built
    elif raw is not None:
        problems.add(("services",), "must be a mapping of service names to services")
    if top is FAILED:
        return None
    config: MeshConfig = with_fields(top, services=services)
    return config
