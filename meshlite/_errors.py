"""The meshlite error tree: every error meshlite defines is here, and the modules that
raise one import it from here (and re-export it where users met it before).

All errors raised by meshlite itself derive from :class:`MeshliteError`::

    MeshliteError
    ├── ConfigError              (also a ValueError) bad option, bad config file
    ├── RejectedError            the call was refused before it ran
    │   ├── CircuitOpenError
    │   ├── RateLimitedError
    │   ├── BulkheadFullError
    │   ├── MeshClosedError      the mesh is closing or closed
    │   └── ResendRefused        a retry of a call that must not be sent twice (internal)
    ├── TimeoutExceeded          (also a TimeoutError) the call ran out of time
    │   └── ReadTimeoutAtDeadline    also an httpx.ReadTimeout, and the same for Connect,
    │                                Write, Pool: a wire timeout at the call's deadline
    │                                (meshlite/_http/_deadline_errors.py)
    ├── NoHealthyBackendError    routing found nowhere to send the call
    ├── ValidationError          (also a ValueError) a call's arguments or result failed
    │                            ml.Validate
    ├── ResponseStatusError      a backend answered 5xx or 429 (inside the pipeline)
    │   ├── HttpResponseError        also an httpx.TransportError (meshlite/_http/_send.py)
    │   └── AiohttpResponseError     also a ConnectionError (meshlite/_http/_aio_session.py)
    ├── StoreUnavailableError    the shared store did not answer
    │   ├── StoreBusyError           every connection stayed busy (falls back)
    │   └── StoreReplyError          Redis answered one operation with an error
    ├── InboundError             a request the inbound middleware refused (400)
    │   ├── UnauthorizedError        401
    │   ├── ForbiddenError           403
    │   └── RequestTooLargeError     413
    ├── CassetteError            meshlite.testing: a cassette cannot be read or replayed
    │   └── CassetteMiss
    ├── ReplayedError            meshlite.testing: a recorded error replayed
    └── ScriptExhausted          meshlite.testing: a scripted service ran out of steps

The two HTTP answers and the four wire timeouts at a deadline subclass a client
library's error as well, so they live beside that library's code (optional
dependencies stay behind their boundary).

Every error carries ``.service`` and ``.policy`` (either may be ``None``) and
``.retry_after`` (seconds, or ``None`` when unknown). Rejections are never retried
by :class:`meshlite.Retry`'s default predicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "BulkheadFullError",
    "CassetteError",
    "CassetteMiss",
    "CircuitOpenError",
    "ConfigError",
    "ForbiddenError",
    "InboundError",
    "MeshClosedError",
    "MeshliteError",
    "NoHealthyBackendError",
    "RateLimitedError",
    "RejectedError",
    "ReplayedError",
    "RequestTooLargeError",
    "ResendRefused",
    "ResponseStatusError",
    "ScriptExhausted",
    "StoreBusyError",
    "StoreReplyError",
    "StoreUnavailableError",
    "TimeoutExceeded",
    "UnauthorizedError",
    "ValidationError",
]


class MeshliteError(Exception):
    """Base of every error meshlite raises.

    Args:
        message: What happened and what to do about it.
        service: The service the call was for, when known.
        policy: The policy that raised, such as ``"circuit_breaker"``.
        retry_after: Seconds after which a new call may succeed, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        service: str | None = None,
        policy: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.service = service
        self.policy = policy
        self.retry_after = retry_after


class ConfigError(MeshliteError, ValueError):
    """An option or a config file is invalid.

    ``.errors`` lists every problem found (``"path: what is wrong"``), so one
    error reports all of them at once.
    """

    def __init__(
        self,
        message: str,
        *,
        errors: Sequence[str] = (),
        service: str | None = None,
        policy: str | None = None,
    ) -> None:
        super().__init__(message, service=service, policy=policy)
        self.errors: tuple[str, ...] = tuple(errors) or (message,)


class RejectedError(MeshliteError):
    """A policy refused the call before it ran; nothing was sent downstream."""


class CircuitOpenError(RejectedError):
    """The circuit breaker is open (or forced open) and refused the call."""


class RateLimitedError(RejectedError):
    """The rate limit refused the call; ``.retry_after`` says when to try again."""


class BulkheadFullError(RejectedError):
    """The bulkhead had no free slot (and no queue room) for the call."""


class TimeoutExceeded(MeshliteError, TimeoutError):
    """The call did not finish within its deadline."""


class NoHealthyBackendError(MeshliteError):
    """A service has no backend to route the call to."""


class ResponseStatusError(MeshliteError):
    """A backend answered with a failure status (5xx or 429).

    Raised inside a service's pipeline by meshlite's HTTP transport so that retry,
    circuit breakers and outlier detection count the answer as a failure. The
    transport never lets it reach your code: when the pipeline gives up, the last
    response is returned, so ``response.raise_for_status()`` works as usual. Use it
    in ``on=`` / ``failure_on=`` filters.

    Attributes:
        response: The ``httpx.Response`` (body already read).
        status_code: Its status code.
        address: The backend that answered.
        retry_after: Seconds from its ``Retry-After`` header, or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        response: Any,
        status_code: int,
        address: str,
        service: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, service=service, policy="routing", retry_after=retry_after)
        self.response = response
        self.status_code = status_code
        self.address = address


class MeshClosedError(RejectedError):
    """The mesh is closing (draining) or closed, so it refused a new call."""


class ValidationError(MeshliteError, ValueError):
    """A call's arguments or result failed :class:`meshlite.Validate`'s check.

    The message names each failing field and what was expected, never the value
    (which may be a secret). Not a transient error: :class:`meshlite.Retry` does not
    retry it by default.

    Attributes:
        stage: ``"args"`` or ``"result"``.
        operation: The operation whose call failed.
        fields: The failing field paths (``"user.email"``; ``""`` is the whole value).
        errors: Every problem as ``"path: what was expected"``.
    """

    def __init__(self, message: str, *, service: str | None, operation: str | None,
                 stage: str, problems: tuple[tuple[str, str], ...]) -> None:
        super().__init__(message, service=service, policy="validate")
        self.stage = stage
        self.operation = operation
        self.fields: tuple[str, ...] = tuple(path for path, _ in problems)
        self.errors: tuple[str, ...] = tuple(
            f"{path or '<' + stage + '>'}: {expected}" for path, expected in problems)


class StoreUnavailableError(MeshliteError):
    """The shared store did not answer (down, slow, restarting, or refusing).

    Policies catch it and fall back; it reaches the caller only with
    ``on_error="raise"``. The driver's own error is chained as ``__cause__``.
    """


class StoreBusyError(StoreUnavailableError):
    """Every connection of the process (or event loop) stayed busy for
    ``pool_timeout``: this decision falls back, the store is not marked down."""


class StoreReplyError(StoreUnavailableError):
    """Redis answered one operation with an error (``WRONGTYPE``, ``OOM``, a script
    error, ``READONLY``...): that decision falls back; the store is not marked down."""


class CassetteError(MeshliteError):
    """A cassette cannot be read, written or replayed."""


class CassetteMiss(CassetteError):
    """A replayed call or request has no (unused) recording in the cassette.

    Attributes:
        asked: The call or request that missed, as text.
        available: Every interaction of the cassette, as text.
    """

    def __init__(self, message: str, *, asked: str, available: list[str]) -> None:
        super().__init__(message)
        self.asked = asked
        self.available = available


class ReplayedError(MeshliteError):
    """Stands in for a recorded error whose class cannot be rebuilt at replay.

    Attributes:
        error_type: The recorded class, ``"module.QualName"``.
    """

    def __init__(self, message: str, *, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class InboundError(MeshliteError):
    """A request the inbound side refused itself; ``status`` is its HTTP status, and
    the message is safe to show the caller."""

    status = 400
    kind = "bad_request"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, policy="inbound", retry_after=retry_after)


class UnauthorizedError(InboundError):
    """No credentials, or credentials that do not verify (401)."""

    status = 401
    kind = "unauthorized"


class ForbiddenError(InboundError):
    """Verified credentials without a scope the route requires (403)."""

    status = 403
    kind = "forbidden"


class RequestTooLargeError(InboundError):
    """A request body over the route's ``max_body`` bytes (413)."""

    status = 413
    kind = "too_large"


class ResendRefused(RejectedError):
    """A retry of a call that must not be sent twice; ``error`` is the first failure.

    A rejection, so retry's default predicate stops at once; meshlite's HTTP
    transport unwraps it and returns (or raises) the original outcome.
    """

    def __init__(self, message: str, *, error: BaseException | None,
                 service: str | None) -> None:
        super().__init__(message, service=service, policy="routing")
        self.error = error


class ScriptExhausted(MeshliteError):
    """A :class:`meshlite.testing.ScriptedService` was called more often than its
    script has steps."""
