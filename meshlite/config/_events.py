"""Events of config reloads (no msgspec here: ``meshlite`` may re-export them)."""

from __future__ import annotations

from dataclasses import dataclass

from .._events import Event

__all__ = ["ConfigReloadFailed", "ConfigReloaded"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigReloaded(Event):
    """A changed config file was applied; the mesh's ``config_version`` is ``version``.

    ``added``, ``removed`` and ``changed`` name the services concerned; ``sections``
    the other sections that changed (``dashboard``, ``telemetry``, ``metrics``,
    ``inbound``, ``alerts``). ``sha256`` is the SHA-256 of the text applied (as the
    audit record's and ``meshlite_mesh_config_info``'s), which tells the workers of a
    host apart where ``version`` (counted per process) does not; ``""`` when not known.
    """

    path: str
    version: int
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()
    sha256: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigReloadFailed(Event):
    """A changed config file was rejected; the previous config keeps running.

    ``errors`` lists every problem (``"path: what is wrong"``, secrets masked).
    """

    path: str
    errors: tuple[str, ...]
