"""``inbound:`` the routes and credentials of the service's ``meshlite.asgi``
middleware, checked by building them; a middleware made with ``mesh=`` and no
``routes`` follows them, hot reloads included.

::

    inbound:
      max_deadline: 30
      store: redis://127.0.0.1:6379/0 # quotas shared by every worker and replica
      api_keys_file: keys.txt        # lines "SUBJECT KEY [SCOPE ...]", re-read on change
      routes:
        - {pattern: "/orders/*", rate: 50, key: client, max_concurrent: 64, timeout: 2}
        - {pattern: "/admin/*", scopes: [admin]}
      jwt: {key_file: jwt-public.pem, algorithms: [RS256], audience: shop}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigError
from ._fieldset import field_names
from ._problems import Problems, construct, map_config_error
from ._sections import Section

__all__ = [
    "InboundJwtSection",
    "InboundPlan",
    "InboundRouteSection",
    "InboundSection",
    "check_inbound",
]


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
    store: str | None = None


class InboundJwtSection(Section, frozen=True):
    """``jwt:`` bearer tokens checked by ``meshlite.asgi.jwt_verifier`` (PyJWT); the
    key from a file (a PEM public key, or an HS* secret) or an environment variable."""

    key_file: str | None = None
    key_env: str | None = None
    algorithms: list[str] | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway: float | None = None


class InboundSection(Section, frozen=True):
    """``inbound:`` routes (first match wins), the deadline cap, API keys, JWTs."""

    routes: list[InboundRouteSection] = []  # noqa: RUF012 - msgspec copies defaults
    store: str | None = None
    max_deadline: float | None = None
    trace: bool | None = None
    api_keys_file: str | None = None
    api_keys_env: str | None = None
    jwt: InboundJwtSection | None = None


@dataclass(frozen=True)
class InboundPlan:
    """The built routes and auth, for the middleware."""

    section: InboundSection
    routes: tuple[Any, ...]
    auth: Any
    max_deadline: float | None


LOCAL_STORE = "local"
"""A route's ``store:`` value keeping its quota in the process."""

_stores: dict[str, Any] = {}  # one RedisStore per URL in a process, across reloads


def _store(url: str | None, problems: Problems, path: tuple[Any, ...]) -> Any:
    """The shared store named by ``url`` (a ``meshlite.state.RedisStore``; made once
    per URL, so a reload keeps its connections), or None for ``local``/unset."""
    if url is None or url == LOCAL_STORE:
        return None
    store = _stores.get(url)
    if store is None:
        from ..state import RedisStore

        try:
            store = RedisStore(url)
        except ConfigError as error:
            map_config_error(problems, path, error, ())
            return None
        _stores[url] = store
    return store


def _route(i: int, section: InboundRouteSection, problems: Problems, shared: Any) -> Any:
    from ..asgi import Route  # only configs with an inbound section pay for it

    args = section.arguments()
    for name in ("methods", "scopes"):
        if args.get(name) is not None:
            args[name] = tuple(args[name])
    path = ("inbound", "routes", i)
    args["store"] = shared if section.store is None else _store(
        section.store, problems, (*path, "store"))
    return construct(Route, args, problems, path, field_names(InboundRouteSection))


def _keys(section: InboundSection, problems: Problems, base: str,
          environ: Mapping[str, str]) -> Any:
    from ..asgi import ApiKeys

    if section.api_keys_file is None and section.api_keys_env is None:
        return None
    try:
        if section.api_keys_file is not None:
            return ApiKeys.from_file(os.path.join(base, section.api_keys_file))
        return ApiKeys.from_env(section.api_keys_env or "", environ)
    except ConfigError as error:
        field = "api_keys_file" if section.api_keys_file is not None else "api_keys_env"
        map_config_error(problems, ("inbound", field), error, ())
        return None


def _jwt_key(section: InboundJwtSection, problems: Problems, base: str,
             environ: Mapping[str, str]) -> str | None:
    path = ("inbound", "jwt")
    if (section.key_file is None) == (section.key_env is None):
        problems.add(path, "give exactly one of key_file or key_env")
        return None
    if section.key_env is not None:
        key = environ.get(section.key_env)
        if key is None:
            problems.add((*path, "key_env"), f"the environment variable {section.key_env} "
                                             "is not set")
        return key
    try:
        with open(os.path.join(base, section.key_file or ""), encoding="utf-8") as f:
            return f.read().strip()
    except OSError as error:
        problems.add((*path, "key_file"), f"cannot read {section.key_file!r}: "
                                          f"{error.strerror or error}")
        return None


def _verifier(section: InboundJwtSection, problems: Problems, base: str,
              environ: Mapping[str, str]) -> Any:
    from ..asgi import jwt_verifier

    key = _jwt_key(section, problems, base, environ)
    if key is None:
        return None
    args = section.arguments()
    for name in ("key_file", "key_env"):
        args.pop(name, None)
    if args.get("leeway") is None:
        args.pop("leeway", None)
    return construct(lambda **kw: jwt_verifier(key, **kw), args, problems,
                     ("inbound", "jwt"), field_names(InboundJwtSection))


def _auth(section: InboundSection, problems: Problems, base: str,
          environ: Mapping[str, str]) -> Any:
    from ..asgi import Auth

    keys = _keys(section, problems, base, environ)
    verify = (None if section.jwt is None
              else _verifier(section.jwt, problems, base, environ))
    if keys is None and verify is None:
        return None
    return Auth(api_keys=keys, verify=verify)


def check_inbound(section: InboundSection, problems: Problems, base: str,
                  environ: Mapping[str, str] | None = None) -> InboundPlan | None:
    """Build the section's routes and auth, or None with each problem recorded;
    ``environ`` (default ``os.environ``) is where ``*_env`` keys are read."""
    before = len(problems.errors)
    shared = _store(section.store, problems, ("inbound", "store"))
    routes = tuple(_route(i, r, problems, shared) for i, r in enumerate(section.routes))
    auth = _auth(section, problems, base, os.environ if environ is None else environ)
    if section.max_deadline is not None and not 0 < section.max_deadline < float("inf"):
        problems.add(("inbound", "max_deadline"), f"must be > 0, got {section.max_deadline}")
    if auth is None and any(r is not None and r.needs_auth for r in routes):
        problems.add(("inbound",), "a route requires credentials (scopes or auth: true): "
                                   "set api_keys_file, api_keys_env or jwt")
    if len(problems.errors) > before:
        return None
    return InboundPlan(section, routes, auth, section.max_deadline)
