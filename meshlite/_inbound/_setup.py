"""What a :class:`MeshMiddleware` is set up with, outside its request path: its
options checked, its place on the mesh, and its routes replaced at once (by hand
with ``configure``, or by following the ``inbound:`` section of the mesh's config
file across hot reloads)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .._validate import fail
from ._admission import check_auth
from ._auth import Auth
from ._follow import ConfigFollower
from ._relay import EventRelay
from ._routes import Route, RouteTable
from ._stats import InboundStats

if TYPE_CHECKING:
    from .._events import Event
    from ..observability._mesh_metrics import MeshMetrics

__all__ = ["InboundMesh", "MiddlewareSetup", "check_options"]


class InboundMesh(Protocol):
    """What the middleware uses of its mesh: an ``ml.Mesh`` (the inbound side sits
    below the mesh, so it names the mesh by what it reads, not by its class)."""

    @property
    def name(self) -> str | None:
        """The mesh's own service name."""

    @property
    def metrics(self) -> MeshMetrics | None:
        """The mesh's metrics registry, which the middleware's series join."""

    def emit_event(self, event: Event, /) -> None:
        """Deliver an event to the mesh's hooks."""


class MiddlewareSetup:
    """The routes, auth and mesh attachment a :class:`MeshMiddleware` serves with;
    the middleware's constructor sets these attributes, its ``__call__`` reads them."""

    table: RouteTable
    auth: Auth | None
    trace: bool
    max_deadline: float
    stats: InboundStats
    _own: tuple[float, bool]
    _relay: EventRelay | None
    _config: ConfigFollower | None
    _unregister: Callable[[], None] | None

    def _attach(self, mesh: Any) -> None:
        previous = getattr(mesh, "inbound", None)
        if previous is not None and previous._unregister is not None:
            previous._unregister()  # one middleware's series per mesh: the latest
        mesh.inbound = self  # the dashboard reads the callers from here
        if getattr(mesh, "metrics", None) is not None:
            # The same registry: every exposition of the mesh (its /metrics,
            # PrometheusCollector, OTLP export, the workers' shared directory).
            self._unregister = mesh.metrics.register(self.stats)

    def configure(self, routes: Sequence[Route], auth: Auth | None = None) -> None:
        """Replace the routes (and auth) at once, for requests that start from now
        (a hot reload). Rate-limit and concurrency state starts afresh.

        Raises:
            ConfigError: an invalid route; nothing is replaced.
        """
        table = RouteTable(routes)
        check_auth("MeshMiddleware.configure", auth, table)
        if self._relay is not None:
            self._relay.follow(table)
        self.table, self.auth = table, auth
        self.stats.keep(r.series for r in table.routes)  # a removed route's series go

    def _follow(self) -> None:
        assert self._config is not None
        plan = self._config.changed()
        if plan is False:
            return
        self.max_deadline, self.trace = self._own  # unless the section sets them
        if plan is None:
            self.configure((), None)
            return
        if plan.max_deadline is not None:
            self.max_deadline = plan.max_deadline
        if plan.section.trace is not None:
            self.trace = plan.section.trace
        self.configure(plan.routes, plan.auth)


def check_options(mesh: Any, trace: Any, audit: Any) -> None:
    """Refuse a ``mesh`` that is no mesh, a ``trace`` that is no bool and an ``audit``
    that cannot record (refusals would silently go unaudited)."""
    if mesh is not None and not (hasattr(mesh, "metrics") and hasattr(mesh, "name")):
        fail("MeshMiddleware", "mesh", mesh, "an ml.Mesh or None")
    if not isinstance(trace, bool):
        fail("MeshMiddleware", "trace", trace, "True or False")
    if audit is not None and not callable(getattr(audit, "record", None)):
        fail("MeshMiddleware", "audit", audit, "an ml.AuditLog or None")
