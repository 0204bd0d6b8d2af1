"""What a reload tells: the audit record of each reload, a rejection kept in
``mesh.reload_errors`` and emitted as :class:`ConfigReloadFailed`, and the mesh-level
events (:func:`emit_mesh_event`) the watcher sends to the mesh's hooks and the
process-wide ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._audit import ACTOR_WATCHER
from .._errors import ConfigError
from .._events import Event, EventHooks
from .._statelog import log_state_change
from .._validate import clip
from ._events import ConfigReloadFailed
from ._load import Managed
from ._problems import MAX_MESSAGE

if TYPE_CHECKING:
    from ..mesh._mesh import Mesh

__all__ = ["MAX_RELOAD_ERRORS", "audit_reload", "emit_mesh_event", "failure_of", "reject"]

MAX_RELOAD_ERRORS = 50
"""``mesh.reload_errors`` keeps this many of the latest rejected reloads."""

_process_hooks = EventHooks()  # no hooks of its own: emits to the process-wide ones


def emit_mesh_event(mesh: Mesh, event: Event) -> None:
    """Deliver a mesh-level event to the hooks added with ``mesh.add_hook`` and to the
    process-wide hooks, after logging it (see ``meshlite._statelog``)."""
    log_state_change(event)
    mesh.emit_event(event)
    if _process_hooks.active:
        _process_hooks.emit(event)


def failure_of(path: str, error: Exception) -> ConfigError:
    """The ConfigError of a reload that could not be read or applied."""
    if isinstance(error, ConfigError):
        return error
    reason = f"dashboard: cannot be served: {clip(str(error), MAX_MESSAGE)}" \
        if isinstance(error, OSError) else \
        f"cannot be applied: {type(error).__name__}: {clip(str(error), MAX_MESSAGE)}"
    return ConfigError(f"{path}: 1 problem in the config\n  - {reason}", errors=[reason],
                       policy="config")


def audit_reload(mesh: Mesh, managed: Managed, actor: str, result: str,
                 new_sha: str | None, *, error: ConfigError | None = None,
                 details: dict[str, Any] | None = None) -> None:
    """Record a reload of ``managed``'s file in ``mesh.audit``, when it has a log."""
    log = getattr(mesh, "audit", None)
    if log is None:
        return
    log.record(actor=actor, action="config.reload", target=managed.path,
               result=result, error=None if error is None else str(error),
               old_sha256=managed.sha256 or None, new_sha256=new_sha,
               details=details, mask=managed.plan.document.secrets.mask)


def reject(mesh: Mesh, managed: Managed, error: ConfigError, actor: str = ACTOR_WATCHER,
           new_sha: str | None = None) -> None:
    """A reload rejected with ``error``: kept in ``mesh.reload_errors`` (the latest
    :data:`MAX_RELOAD_ERRORS`), audited, and emitted as :class:`ConfigReloadFailed`."""
    mesh.reload_errors.append(error)
    del mesh.reload_errors[:-MAX_RELOAD_ERRORS]
    mesh.reload_failures += 1
    audit_reload(mesh, managed, actor, "rejected", new_sha, error=error,
                 details={"errors": list(error.errors)})
    emit_mesh_event(mesh, ConfigReloadFailed(policy="config", path=managed.path,
                                             errors=error.errors))
