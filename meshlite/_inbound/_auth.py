"""Auth: who a request comes from (API key or bearer token) and whether a route lets
it in. Credentials are never logged, echoed in answers, or kept in plain text."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._arguments import explained
from .._errors import ConfigError
from .._extras import install_command
from .._validate import fail, fail_choice, non_negative
from ._answers import ForbiddenError, UnauthorizedError
from ._keys import ApiKeys
from ._request import PRINCIPAL_KEY, Inbound, Principal

if TYPE_CHECKING:
    from ._routes import Route

__all__ = ["Auth", "Verifier", "check_scopes", "jwt_verifier", "sign_in"]

Verifier = Callable[[str], Any]
"""``verify(token)`` returns a :class:`Principal` (or an awaitable of one), or None
when the token is not valid."""

_log = logging.getLogger("meshlite.inbound")
_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+\Z")  # an HTTP token


@explained
class Auth:
    """How the middleware authenticates requests.

    A request is authenticated by ``X-API-Key`` (looked up in ``api_keys``) or by
    ``Authorization: Bearer <token>`` (given to ``verify``). Routes with ``scopes``
    (or ``auth=True``) answer 401 without valid credentials and 403 when a scope is
    missing; other routes still learn the principal when credentials are sent.

    Args:
        api_keys: An :class:`ApiKeys`, or ``{key: (subject, scopes)}``.
        verify: A function checking a bearer token (see :func:`jwt_verifier`).
        api_key_header: The header carrying API keys.

    Raises:
        ConfigError: neither source given, or one of the wrong kind.
    """

    def __init__(self, *, api_keys: ApiKeys | Mapping[str, tuple[str, Iterable[str]]]
                 | None = None, verify: Verifier | None = None,
                 api_key_header: str = "x-api-key") -> None:
        if api_keys is None and verify is None:
            fail_choice("Auth", "at least one of api_keys= or verify=", [])
        if verify is not None and not callable(verify):
            fail("Auth", "verify", verify, "a function of the bearer token")
        if not isinstance(api_key_header, str) or not _HEADER.match(api_key_header):
            fail("Auth", "api_key_header", api_key_header, "a header name such as 'x-api-key'")
        self.api_keys = api_keys if isinstance(api_keys, ApiKeys | None) else ApiKeys(api_keys)
        self.verify = verify
        self.api_key_header = api_key_header.lower()

    async def authenticate(self, request: Inbound) -> Principal | None:
        """The principal of ``request``'s credentials, or None when it sent none.

        Raises:
            UnauthorizedError: credentials were sent and are not valid.
        """
        key = request.headers.get(self.api_key_header)
        if key is not None and self.api_keys is not None:
            principal = self.api_keys.lookup(key)
            if principal is None:
                raise UnauthorizedError("the API key is not valid")
            return principal
        header = request.headers.get("authorization")
        if header is None or self.verify is None:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError("the Authorization header must be 'Bearer <token>'")
        try:
            found = self.verify(token.strip())
            if inspect.isawaitable(found):
                found = await found
        except Exception as error:  # a verifier's failure is a refusal, never a 500
            _log.debug("bearer token refused: %s", type(error).__name__)
            found = None
        if not isinstance(found, Principal):
            raise UnauthorizedError("the bearer token is not valid")
        return found


async def sign_in(auth: Auth, request: Inbound, route: Route) -> None:
    """Authenticate ``request`` (its principal, if any, in ``request.principal`` and
    in the scope under ``PRINCIPAL_KEY``, for the handler) and hold it to ``route``'s
    scopes when the route requires credentials.

    Raises:
        UnauthorizedError: credentials not valid, or required and missing.
        ForbiddenError: the credentials lack a scope the route requires.
    """
    request.principal = principal = await auth.authenticate(request)
    if principal is not None:
        request.scope[PRINCIPAL_KEY] = principal
    if route.needs_auth:
        check_scopes(principal, route.scopes)


def check_scopes(principal: Principal | None, scopes: tuple[str, ...]) -> None:
    """Raise unless ``principal`` exists and holds every scope in ``scopes``."""
    if principal is None:
        raise UnauthorizedError("credentials are required")
    missing = [s for s in scopes if s not in principal.scopes]
    if missing:
        raise ForbiddenError(f"the credentials lack the scope {missing[0]!r}")


def jwt_verifier(key: Any, *, algorithms: Iterable[str] = ("RS256", "ES256"),
                 audience: str | None = None, issuer: str | None = None,
                 leeway: float = 0.0) -> Verifier:
    """A bearer-token verifier for JWTs, with PyJWT (the ``meshlite-mesh[jwt]`` extra).

    The signature, ``exp``, ``nbf``, and ``aud``/``iss`` when given are checked; the
    principal's subject is ``sub`` and its scopes come from ``scope`` (space
    separated) or ``scp`` (a list, or space separated).

    Args:
        key: The verification key (a PEM public key, or the shared secret for HS*).
        algorithms: Algorithms accepted (never ``none``).
        audience: The required ``aud``; without it, a token carrying ``aud`` is
            refused (it was meant for some service: not necessarily this one).
        issuer: The required ``iss``.
        leeway: Seconds of clock skew tolerated on ``exp``/``nbf``.

    Raises:
        ConfigError: PyJWT is not installed, ``none`` is among ``algorithms``, an
            algorithm PyJWT cannot verify here, an HS* secret shorter than its hash
            (32, 48 or 64 bytes), or a negative ``leeway``.
    """
    try:
        import jwt
    except ImportError:  # (one error: the extra to install, not its cause)
        raise ConfigError(f"jwt_verifier needs PyJWT: {install_command('jwt')}",
                          policy="inbound") from None
    allowed = _algorithms(algorithms, jwt)
    _check_secret(key, allowed)
    leeway = non_negative("jwt_verifier", "leeway", leeway)

    def verify(token: str) -> Principal | None:
        try:
            claims = jwt.decode(token, key, algorithms=allowed, audience=audience,
                                issuer=issuer, leeway=leeway,
                                options={"require": ["exp", "sub"]})
        except jwt.PyJWTError:
            return None
        scope = claims.get("scope", "")
        scopes = scope.split() if isinstance(scope, str) else []
        scp = claims.get("scp")
        if isinstance(scp, list):
            scopes.extend(str(s) for s in scp)
        elif isinstance(scp, str):  # Microsoft Entra ID writes it space separated
            scopes.extend(scp.split())
        return Principal(str(claims["sub"]), frozenset(scopes), "bearer")

    return verify


def _algorithms(algorithms: Any, jwt: Any) -> list[str]:
    """``algorithms`` as a list (one name alone is one algorithm, not letters), each
    one PyJWT can verify here: a token is never checked against a name that would
    refuse every token."""
    names = [algorithms] if isinstance(algorithms, str) else algorithms
    try:
        allowed = list(names)
    except TypeError:
        allowed = []
    if not allowed or not all(isinstance(a, str) and a.lower() != "none" for a in allowed):
        fail("jwt_verifier", "algorithms", algorithms, "signing algorithms (never 'none')")
    known = sorted(set(jwt.algorithms.get_default_algorithms()) - {"none"})
    unknown = [a for a in allowed if a not in known]
    if unknown:
        fail("jwt_verifier", "algorithms", unknown,
             f"among {known} (RS*, PS*, ES* and EdDSA need the cryptography package: "
             + install_command("jwt"))
    return allowed


def _check_secret(key: Any, allowed: list[str]) -> None:
    """Refuse an HMAC secret shorter than the hash of an HS* algorithm allowed (RFC
    7518 section 3.2): any one token would let it be guessed offline. The message
    never holds the key."""
    needed = max((int(a[2:]) // 8 for a in allowed if a.startswith("HS")), default=0)
    secret = key.encode() if isinstance(key, str) else key
    if needed and isinstance(secret, bytes) and len(secret) < needed:
        raise ConfigError(
            f"jwt_verifier: key must be an HMAC secret of at least {needed} bytes for "
            f"{', '.join(a for a in allowed if a.startswith('HS'))}, got {len(secret)} "
            "bytes (python -c 'import secrets; print(secrets.token_urlsafe(64))')",
            policy="inbound")
