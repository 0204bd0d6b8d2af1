"""meshlite.config: a mesh from a YAML or TOML file, env-aware, hot reloaded.

``ml.Mesh.from_config("mesh.yaml")`` reads services (backends, balancer, policies,
health checks, discovery), telemetry, dashboard, alerts and hot reload from one
file; ``${VAR}`` / ``${VAR:-default}`` are interpolated, the ``MESHLITE_ENV``
profile is overlaid and ``MESHLITE_SECTION__KEY=value`` variables override single
values. Every problem is reported at once, under its path, as one
:class:`meshlite.ConfigError`; values from the environment are masked (``***``).
See ``docs/config.md``.

Importing this package is cheap: msgspec and PyYAML load with the first name that
needs them (:func:`load_config`, :func:`mesh_from_config`...), so ``meshlite`` can
re-export the event records without importing either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from ._events import ConfigReloaded, ConfigReloadFailed

if TYPE_CHECKING:
    from ._load import config_of, load_config, masked_config
    from ._mesh_config import mesh_from_config, watch
    from ._schema import (
        AlertRuleSection,
        AlertsSection,
        AuditSection,
        BackendSection,
        DashboardSection,
        HealthCheckSection,
        HotReloadSection,
        MeshConfig,
        OutlierDetectionSection,
        ServiceSection,
        TelemetrySection,
        TLSSection,
    )
    from ._watcher import ConfigWatcher

__all__ = [
    "load_config",
    "mesh_from_config",
    "watch",
    "config_of",
    "masked_config",
    "ConfigWatcher",
    "ConfigReloaded",
    "ConfigReloadFailed",
    # the schema
    "MeshConfig",
    "ServiceSection",
    "BackendSection",
    "HealthCheckSection",
    "OutlierDetectionSection",
    "TelemetrySection",
    "TLSSection",
    "DashboardSection",
    "AlertsSection",
    "AlertRuleSection",
    "HotReloadSection",
    "AuditSection",
]

_LAZY = {
    "load_config": "._load",
    "config_of": "._load",
    "masked_config": "._load",
    "mesh_from_config": "._mesh_config",
    "watch": "._mesh_config",
    "ConfigWatcher": "._watcher",
    "MeshConfig": "._schema",
    "ServiceSection": "._schema",
    "BackendSection": "._schema",
    "HealthCheckSection": "._schema",
    "OutlierDetectionSection": "._schema",
    "TelemetrySection": "._schema",
    "TLSSection": "._schema",
    "DashboardSection": "._schema",
    "AlertsSection": "._schema",
    "AlertRuleSection": "._schema",
    "HotReloadSection": "._schema",
    "AuditSection": "._schema",
}


if not TYPE_CHECKING:  # type checkers see the imports above, and no other name
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
