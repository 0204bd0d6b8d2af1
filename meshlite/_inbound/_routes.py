"""Route: the inbound policies of the requests whose path matches a pattern, and
the compiled table the middleware looks requests up in."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

from .._arguments import explained
from .._pipeline import Pipeline
from .._policy import Policy
from .._validate import at_least, fail, optional_positive, positive
from ._patterns import matcher
from ._request import Inbound

__all__ = ["DEFAULT_MAX_DEADLINE", "DEFAULT_VALIDATED_BODY", "INBOUND", "KEYS", "CompiledRoute",
           "DOTTED", "Route", "RouteTable", "dot_segments"]

DEFAULT_MAX_DEADLINE = 300.0
"""The longest budget (seconds) a caller's deadline header may grant a request."""

INBOUND = "inbound:"
"""The prefix of a route's name (``inbound:/orders/{id}``): the ``service`` of its
policies' calls, events and errors, and its quota's name in a shared store (no
mesh service name has a colon, so none is taken for a route)."""

KeyFn = Callable[[Inbound], Hashable]


def _api_key(r: Inbound) -> Hashable:
    # A digest, never the key: quota keys end up in a shared store's key names.
    raw = r.headers.get(r.api_key_header)
    return "key:" + hashlib.sha256(raw.encode()).hexdigest()[:16] if raw else "ip:" + r.ip


MAX_KEY_CHARS = 64
"""A key function's string longer than this is kept as a digest (``key:<sha256>``)."""


def _bounded(key: KeyFn) -> KeyFn:
    """``key``, a function of the request, whose long string keys are digests: a
    header a client sends (``x-tenant``) may be kilobytes, and the limiter keeps
    each key it sees (up to its cap of keys) and names a shared store's keys after it."""

    def bounded(request: Inbound) -> Hashable:
        value = key(request)
        if isinstance(value, str) and len(value) > MAX_KEY_CHARS:
            return "key:" + hashlib.sha256(value.encode(errors="surrogatepass")).hexdigest()
        return value

    return bounded


KEYS: dict[str, KeyFn] = {
    "client": lambda r: r.client,
    "ip": lambda r: "ip:" + r.ip,
    "subject": lambda r: r.client,
    "api_key": _api_key,
}
"""Named quota keys: ``client`` (the principal's subject when authenticated, else the
address; ``subject`` is the same), ``ip``, ``api_key`` (a digest of the API key header,
``X-API-Key`` unless ``Auth(api_key_header=...)`` names another)."""


@explained
@dataclass(frozen=True, slots=True)
class Route:
    """Inbound policies for the requests whose path matches ``pattern``.

    Args:
        pattern: ``"/orders/{id}"`` (``{name}`` matches one path segment) or
            ``"/api/*"`` (``*`` matches anything, slashes included); exact otherwise.
        methods: The methods it applies to (``("POST",)``), or None for all; naming
            ``GET`` names ``HEAD`` too, which frameworks answer with the GET handler.
        rate: Requests allowed per ``per`` seconds for each client key (429 past it).
        per: The rate's period in seconds.
        burst: Requests a client may send back to back (default: ``rate``).
        key: The quota key: ``"client"``, ``"ip"``, ``"subject"``, ``"api_key"`` or a
            function of the :class:`Inbound` request.
        store: A shared store (``meshlite.state.RedisStore``) so that every worker and
            replica shares the quotas; when it does not answer, the quota falls back
            as its ``on_error`` says and announces it (``StoreFallback``).
        max_concurrent: Requests handled at once (503 past it).
        adaptive: Shed load with :class:`meshlite.AdaptiveConcurrency` (``True`` for
            its defaults, or an instance): 503 once latency says the service is full.
        max_body: Largest request body in bytes (413 past it); a route with
            ``validate`` and no ``max_body`` takes :data:`DEFAULT_VALIDATED_BODY`.
        timeout: Seconds a handler may run (504 past it).
        scopes: Scopes a caller needs (403 without; 401 without credentials).
        auth: Require credentials; None means "when ``scopes`` are given".
        validate: A :class:`meshlite.Validate` with ``args`` keyed by ``body``,
            ``query`` and ``headers``, or a spec for the JSON body alone (a pydantic
            model, a function): 422 with the errors.
        policies: More policies (outermost first), run inside the built-in ones.

    Raises:
        ConfigError: an option is out of range (named).
    """

    pattern: str = "/*"
    _: KW_ONLY
    methods: tuple[str, ...] | None = None
    rate: float | None = None
    per: float = 1.0
    burst: int | None = None
    key: str | KeyFn = "client"
    store: Any = None
    max_concurrent: int | None = None
    adaptive: Any = False
    max_body: int | None = None
    timeout: float | None = None
    scopes: tuple[str, ...] = ()
    auth: bool | None = None
    validate: Any = None
    policies: tuple[Policy, ...] = field(default=())

    if TYPE_CHECKING:
        # The constructor as type checkers see it (the dataclass makes the real one, with
        # the same parameters: tests/test_typing.py compares them). ``methods`` and
        # ``scopes`` also take one name or a list (as documented); __post_init__ makes
        # ``methods`` a tuple, and one scope a tuple of one.
        def __init__(self, pattern: str = "/*", *, methods: str | Sequence[str] | None = None,
                     rate: float | None = None, per: float = 1.0, burst: int | None = None,
                     key: str | KeyFn = "client", store: Any = None,
                     max_concurrent: int | None = None, adaptive: Any = False,
                     max_body: int | None = None, timeout: float | None = None,
                     scopes: str | Sequence[str] = (), auth: bool | None = None,
                     validate: Any = None, policies: tuple[Policy, ...] = ()) -> None: ...

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str) or not self.pattern.startswith("/"):
            fail("Route", "pattern", self.pattern, "a path pattern starting with '/'")
        if _CONVERTED.search(self.pattern):  # {p:path} would cover one segment only
            fail("Route", "pattern", self.pattern, "'{name}' for one path segment or "
                 "'*' for any rest of the path (no ':' convertors such as {p:path})")
        if "//" in self.pattern:
            fail("Route", "pattern", self.pattern, "a path without empty segments ('//')")
        if self.methods is not None:
            object.__setattr__(self, "methods", _methods(self.methods))
        optional_positive("Route", "rate", self.rate)
        positive("Route", "per", self.per)
        if self.burst is not None:
            at_least("Route", "burst", self.burst, 1)
        if not callable(self.key) and self.key not in KEYS:
            fail("Route", "key", self.key, "one of " + ", ".join(sorted(KEYS)) + " or a function")
        if self.max_concurrent is not None:
            at_least("Route", "max_concurrent", self.max_concurrent, 1)
        if self.max_body is not None:
            at_least("Route", "max_body", self.max_body, 0)
        optional_positive("Route", "timeout", self.timeout)
        scopes: Any = (self.scopes,) if isinstance(self.scopes, str) else self.scopes
        try:
            scopes = tuple(scopes)  # (a list given is kept as the tuple the field says)
        except TypeError:
            fail("Route", "scopes", self.scopes, "a scope name or a sequence of them")
        if not all(isinstance(s, str) and s for s in scopes):
            fail("Route", "scopes", self.scopes, "non-empty strings")
        object.__setattr__(self, "scopes", scopes)
        for p in self.policies:
            if not isinstance(p, Policy):
                fail("Route", "policies", p, "meshlite policies")

    @property
    def needs_auth(self) -> bool:
        """Whether requests on this route must carry verified credentials."""
        return bool(self.scopes) if self.auth is None else self.auth


DEFAULT_VALIDATED_BODY = 1 << 20
"""The ``max_body`` of a route with ``validate`` and none of its own: validation reads
the whole body into memory before the app runs, so it is bounded (413 past it)."""


class CompiledRoute:
    """A route, its matcher and its built pipelines (made once per middleware)."""

    __slots__ = ("admits", "counted", "direct", "label", "match", "max_body", "methods",
                 "pipeline", "route", "series", "timed", "validator")

    def __init__(self, route: Route, label: str | None = None) -> None:
        self.route = route
        self.label = label
        """The ``http.route`` of its requests (its pattern), or None for the default."""
        self.series = label or "*"
        """The route label of its requests' metrics."""
        self.counted: dict[str, Any] = {}
        """Method -> its ``InboundStats`` series, kept by the middleware."""
        self.methods = None if route.methods is None else frozenset(route.methods)
        if self.methods is not None and "GET" in self.methods:
            # Starlette, FastAPI and Django answer HEAD with the GET handler: a GET
            # route that let HEAD by would run its handler unchecked.
            self.methods |= {"HEAD"}
        self.match = matcher(route.pattern)
        policies = _policies(route)
        name = None if label is None else INBOUND + label
        self.pipeline: Pipeline | None = (Pipeline(*policies, service=name) if policies
                                          else None)
        self.timed = route.timeout is not None
        """Whether its pipeline has a ``Timeout`` (which also holds a request to its
        caller's deadline; without one the middleware does: ``run_by``)."""
        self.validator = _validator(route.validate)
        self.max_body = route.max_body
        """The body limit enforced: the route's, else, where validation reads the body
        into memory, :data:`DEFAULT_VALIDATED_BODY`."""
        if self.max_body is None and self.validator is not None:
            self.max_body = DEFAULT_VALIDATED_BODY
        self.admits = (route.needs_auth or self.max_body is not None
                       or self.validator is not None)
        """Whether admission has work besides the middleware's auth."""
        self.direct = self.pipeline is None and not self.admits
        """Whether a request without a deadline and auth runs the app directly, with
        nothing between (decided here once, not per request)."""


_METHOD = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+\Z")  # an HTTP token


def _methods(methods: Any) -> tuple[str, ...]:
    """``methods`` upper-cased; one name alone (``"POST"``) is one method, not letters."""
    names = (methods,) if isinstance(methods, str) else methods
    try:
        valid = tuple(names) if names else ()
    except TypeError:
        valid = ()
    if not valid or not all(isinstance(m, str) and _METHOD.match(m) for m in valid):
        fail("Route", "methods", methods, "HTTP method names such as ('GET', 'POST'), or None")
    return tuple(m.upper() for m in valid)


_CONVERTED = re.compile(r"\{[^}/]*:[^}/]*\}")
_SLASHES = re.compile(r"//+")
_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|\Z)")


DOTTED = "the path has a '.' or '..' segment"
"""What a request refused for :func:`dot_segments` is told."""


def dot_segments(path: str) -> bool:
    """Whether ``path`` has a ``.`` or ``..`` segment, which clients remove before
    sending (RFC 3986, 5.2.4) and which would let a path that normalising code (static
    files, ``os.path.normpath``) serves elsewhere miss the route that guards it."""
    return "/." in path and _DOT_SEGMENT.search(path) is not None


def _policies(route: Route) -> list[Policy]:
    policies: list[Policy] = []
    if route.rate is not None:
        from ..policies._rate_limit import RateLimit

        key = KEYS[route.key] if isinstance(route.key, str) else _bounded(route.key)
        policies.append(RateLimit(route.rate, per=route.per, burst=route.burst,
                                  mode="reject", key=key, store=route.store,
                                  name=INBOUND + route.pattern))
    if route.max_concurrent is not None:
        from ..policies._bulkhead import Bulkhead

        policies.append(Bulkhead(route.max_concurrent))
    if route.adaptive is not False and route.adaptive is not None:
        from ..policies._adaptive import AdaptiveConcurrency

        policies.append(AdaptiveConcurrency() if route.adaptive is True else route.adaptive)
    policies.extend(route.policies)
    if route.timeout is not None:
        from ..policies._timeout import Timeout

        policies.append(Timeout(route.timeout))
    return policies


def _validator(spec: Any) -> Pipeline | None:
    if spec is None:
        return None
    from ..policies._validate_policy import Validate

    check = spec if isinstance(spec, Validate) else Validate(args={"body": spec})
    return Pipeline(check)


class RouteTable:
    """Routes in order; a request takes the first that matches its path and method
    (a request no route matches runs with no inbound policy)."""

    __slots__ = ("plain", "routes")

    def __init__(self, routes: Sequence[Route]) -> None:
        compiled = []
        for route in routes:
            if not isinstance(route, Route):
                fail("MeshMiddleware", "routes", route, "meshlite.asgi.Route objects")
            compiled.append(CompiledRoute(route, route.pattern))
        self.routes = tuple(compiled)
        """The compiled routes, in order."""
        self.plain = CompiledRoute(Route())
        """The policy-free route of requests no route matches."""

    def policies(self) -> Iterator[Policy]:
        """Every policy of the routes' pipelines, once each."""
        seen: set[int] = set()
        for r in self.routes:
            for policy in () if r.pipeline is None else r.pipeline.walk():
                if id(policy) not in seen:
                    seen.add(id(policy))
                    yield policy

    def find(self, path: str, method: str, root_path: str | None = None) -> CompiledRoute:
        """The route of a request (a policy-free default when none matches).

        Patterns match the path the app routes on: less the ASGI ``root_path``
        (``uvicorn --root-path /svc`` behind a proxy that strips ``/svc``), as
        Starlette's ``get_route_path`` takes it off.
        """
        if root_path and path.startswith(root_path) and (
                path[len(root_path):len(root_path) + 1] in ("/", "")):
            path = path[len(root_path):]
        if "//" in path:  # static files and normalising apps serve /a//b as /a/b
            path = _SLASHES.sub("/", path)
        for r in self.routes:
            if r.match(path) and (r.methods is None or method in r.methods or (
                    method.upper() in r.methods)):  # (Django upper-cases the method)
                return r
        return self.plain
