"""``inbound:`` the routes and credentials of the service's ``meshlite.asgi``
middleware, checked by building them; a middleware made with ``mesh=`` and no
``routes`` follows them, hot reloads included.

::

    inbound:
      max_deadline: 30
      api_keys_file: keys.txt        # lines "SUBJECT KEY [SCOPE ...]", re-read on change
      routes:
        - {pattern: "/orders/*", rate: 50, key: client, max_concurrent: 64, timeout: 2}
        - {pattern: "/admin/*", scopes: [admin]}
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigError
from ._problems import Problems, construct, map_config_error
from ._sections import Section
from ._walk import field_names

__all__ = ["InboundPlan", "InboundRouteSection", "InboundSection", "check_inbound"]


class InboundRouteSection(Section, frozen=True):
    """One route: the arguments of ``meshlite.asgi.Route`` (``key`` by name only)."""

    pattern: str
    methods: list[str] | None = None
    rate: float | None = None
    per: float | None = None
    burst: int | None = None
    key: str | None = None
    max_concurrent: int | None = None
    adaptive: bool | None = None
    max_body: int | None = None
    timeout: float | None = None
    scopes: list[str] | None = None
    auth: bool | None = None


class InboundSection(Section, frozen=True):
    """``inbound:`` routes (first match wins), the deadline cap, API keys."""

    routes: list[InboundRouteSection] = []  # noqa: RUF012 - msgspec copies defaults
    max_deadline: float | None = None
    trace: bool | None = None
    api_keys_file: str | None = None
    api_keys_env: str | None = None


@dataclass(frozen=True)
class InboundPlan:
    """The built routes and auth, for the middleware."""

    section: InboundSection
    routes: tuple[Any, ...]
    auth: Any
    max_deadline: float | None


def _route(i: int, section: InboundRouteSection, problems: Problems) -> Any:
    from ..asgi import Route  # only configs with an inbound section pay for it

    args = section.arguments()
    for name in ("methods", "scopes"):
        if args.get(name) is not None:
            args[name] = tuple(args[name])
    path = ("inbound", "routes", i)
    return construct(Route, args, problems, path, field_names(InboundRouteSection))


def _auth(section: InboundSection, problems: Problems, base: str) -> Any:
    from ..asgi import ApiKeys, Auth

    if section.api_keys_file is None and section.api_keys_env is None:
        return None
    try:
        if section.api_keys_file is not None:
            keys = ApiKeys.from_file(os.path.join(base, section.api_keys_file))
        else:
            keys = ApiKeys.from_env(section.api_keys_env or "")
    except ConfigError as error:
        field = "api_keys_file" if section.api_keys_file is not None else "api_keys_env"
        map_config_error(problems, ("inbound", field), error, ())
        return None
    return Auth(api_keys=keys)


def check_inbound(section: InboundSection, problems: Problems, base: str
                  ) -> InboundPlan | None:
    """Build the section's routes and auth, or None with each problem recorded."""
    before = len(problems.errors)
    routes = tuple(_route(i, r, problems) for i, r in enumerate(section.routes))
    auth = _auth(section, problems, base)
    if section.max_deadline is not None and not 0 < section.max_deadline < float("inf"):
        problems.add(("inbound", "max_deadline"), f"must be > 0, got {section.max_deadline}")
    if auth is None and any(r is not None and r.needs_auth for r in routes):
        problems.add(("inbound",), "a route requires credentials (scopes or auth: true): "
                                   "set api_keys_file or api_keys_env")
    if len(problems.errors) > before:
        return None
    return InboundPlan(section, routes, auth, section.max_deadline)
