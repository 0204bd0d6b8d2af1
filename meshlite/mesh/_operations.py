"""What operators use on a mesh: following a config file, reloading it, the audit
log, alert rules and the live dashboard.

A mixin of :class:`meshlite.Mesh`; each piece lives in its own package (``config``,
``observability``) and is imported when first used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from .._api_audit import ApiAudit
from .._audit import AuditLog
from .._validate import fail
from ..routing._service import Service

if TYPE_CHECKING:
    from .._clock import Clock
    from ..config._mesh_config import ConfigWatcher
    from ..observability._dashboard import Alerts
    from ..observability._dashboard._server import DashboardServer
    from ._mesh import Mesh

__all__ = ["MeshOperations"]


class MeshOperations:
    """Config following, reloads, the audit log, alerts, the dashboard (mixed into
    ``Mesh``)."""

    _services: dict[str, Service]
    _extra: list[Service]
    _alerts: Alerts | None
    clock: Clock

    def watch(self, path: str | os.PathLike[str], *,
              environ: Mapping[str, str] | None = None, profile: str | None = None,
              step_ms: int | None = None) -> ConfigWatcher:
        """Follow a config file: apply it now, then every valid change while the mesh
        is open (as ``hot_reload: true`` does); see :func:`meshlite.config.watch`,
        whose keyword arguments these are.

        A change that fails validation changes nothing: the running config stays, and
        the error is logged, kept in :attr:`reload_errors` and emitted as an event.

        Returns:
            The watcher (a lifecycle component of the mesh).
        """
        from ..config._mesh_config import watch

        return watch(cast("Mesh", self), path, environ=environ, profile=profile,
                     step_ms=step_ms)

    _audit: AuditLog | None = None
    _api_audit: ApiAudit | None = None

    config_record: Any = None
    """What the config loader keeps of the file this mesh follows (its ``Managed``:
    the plan in force, the watcher), or None; not public API. The mesh holds it so
    that it lives as long as the mesh, no longer (see ``config._load.set_managed``)."""

    @property
    def audit(self) -> AuditLog | None:
        """Where admin actions and config changes are recorded (``ml.AuditLog``), or
        None (the default: nothing is recorded). Set it, or ``audit:`` in a config
        file; see docs/config.md, "Audit log".

        Raises:
            ConfigError: (on assignment) neither an ``ml.AuditLog`` nor None.
        """
        return self._audit

    @audit.setter
    def audit(self, log: AuditLog | None) -> None:
        if log is not None and not isinstance(log, AuditLog):
            fail("Mesh", "audit", log, "an ml.AuditLog or None")
        self._audit = log
        # Manual changes made by code (breaker.force_open(), service.eject()...) are
        # recorded with the actor "api" while a log is set.
        if log is None and self._api_audit is not None:
            self._api_audit.close()
            self._api_audit = None
        elif log is not None and self._api_audit is None:
            self._api_audit = ApiAudit(self)
            for service in (*self._services.values(), *self._extra):
                self._api_audit.watch(service)

    async def reload(self) -> bool:
        """Re-read the config file this mesh follows now and apply it if it changed,
        as hot reload would (also without ``hot_reload``); audited with actor
        ``"api"``. Awaited on any loop: on a ``with mesh`` it runs on the mesh's loop
        thread.

        Returns:
            False when the file was rejected: the running config stays, the error is
            logged, kept in :attr:`reload_errors` and emitted as ``ConfigReloadFailed``.
            True when it was applied or had not changed (:attr:`config_version`
            tells which).

        Raises:
            ConfigError: the mesh follows no config file.
        """
        from ..config._reload import reload_now

        outcome = await reload_now(cast("Mesh", self))
        return outcome != "rejected"

    def reload_sync(self) -> bool:
        """Sync twin of :meth:`reload`, for a mesh opened with ``with mesh`` or not
        opened at all.

        Raises:
            ConfigError: the mesh follows no config file, or it is open on an event
                loop (use ``await mesh.reload()``).
        """
        from ..config._reload import reload_blocking

        outcome = reload_blocking(cast("Mesh", self))
        return outcome != "rejected"

    # -- dashboard -------------------------------------------------------------

    @property
    def alerts_made(self) -> bool:
        """Whether :attr:`alerts` has been made (reading it makes it); not public
        API: config clears rules only where there are some."""
        return self._alerts is not None

    @property
    def alerts(self) -> Alerts:
        """The mesh's alert rules and alerts (``mesh.alerts.add(ml.AlertRule(...))``);
        the open mesh evaluates them once a second (with several workers, one worker
        of the host does, on the host's numbers)."""
        if self._alerts is None:
            from ..observability._dashboard import Alerts

            self._alerts = Alerts(clock=self.clock)
        return self._alerts

    async def serve_dashboard(self, host: str = "127.0.0.1", port: int = 8686,
                              token: Any = None, admin_token: Any = None,
                              **options: Any) -> DashboardServer:
        """Start the live dashboard in the background on the running event loop (the
        ``meshlite-mesh[dashboard]`` extra); see docs/dashboard.md.

        Args:
            host: Address to bind; a non-loopback one requires a token.
            port: Port to listen on; 0 picks a free one (``server.url`` has it).
            token: The read token: API, WebSocket and metrics requests must carry it
                (or the admin token). A string, ``{"env": NAME}`` or ``{"file": PATH}``.
            admin_token: The admin token: grants the admin API and reading. Given
                like ``token``; without it the admin API answers 403.
            **options: ``max_clients`` (WebSocket clients at once, default 32),
                ``max_connections`` (100), ``header_timeout`` (10 s),
                ``max_header_bytes`` (16384), ``keep_alive`` (5 s).

        Returns:
            The running server: ``.url``, ``await server.stop()``.

        Raises:
            ConfigError: a bad argument, or a non-loopback host without a token.
            ImportError: the dashboard extra is not installed.
            OSError: the port is in use.
        """
        from ..observability._dashboard import serve_dashboard

        return await serve_dashboard(cast("Mesh", self), host, port, token, admin_token,
                                     **options)
