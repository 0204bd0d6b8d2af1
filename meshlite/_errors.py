"""The meshlite error tree.

All errors raised by meshlite itself derive from :class:`MeshliteError`::

    MeshliteError
    ├── ConfigError              (also a ValueError) bad option, bad config file
    ├── RejectedError            the call was refused before it ran
    │   ├── CircuitOpenError
    │   ├── RateLimitedError
    │   └── BulkheadFullError
    │   └── MeshClosedError      (meshlite.routing) the mesh is closing or closed
    ├── TimeoutExceeded          (also a TimeoutError) the call ran out of time
    ├── NoHealthyBackendError    routing found nowhere to send the call
    └── ValidationError          (also a ValueError) a call's arguments or result failed
                                 ml.Validate

Every error carries ``.service`` and ``.policy`` (either may be ``None``) and
``.retry_after`` (seconds, or ``None`` when unknown). Rejections are never retried
by :class:`meshlite.Retry`'s default predicate.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "ConfigError",
    "MeshliteError",
    "NoHealthyBackendError",
    "RateLimitedError",
    "RejectedError",
    "TimeoutExceeded",
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
