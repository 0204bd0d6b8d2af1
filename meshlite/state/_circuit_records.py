"""The records the breaker's state object hands out: state names, transitions,
admissions and metrics snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .._inorder import Turn

__all__ = [
    "CLOSED",
    "DISABLED",
    "FORCED_OPEN",
    "HALF_OPEN",
    "OPEN",
    "UNRECORDED",
    "Admission",
    "admitted_state",
    "CircuitMetrics",
    "Transition",
]

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
FORCED_OPEN = "forced_open"
DISABLED = "disabled"

UNRECORDED = -1
"""The permit of calls admitted while disabled: their outcome is not recorded."""


class Transition(NamedTuple):
    """A state change, returned by the state object for the policy to announce.

    ``turn`` is its place in the line of its state's changes (``None``: a state that
    does not order them): the policy hands its event to ``turn.take`` (or calls
    ``turn.skip``), so hooks get a state's events in the order of its changes."""

    previous: str
    state: str
    reason: str
    turn: Turn | None = None


class Admission(NamedTuple):
    """The answer of :meth:`LocalCircuitState.acquire`.

    ``permit`` is ``None`` when the call is rejected; ``state``, ``reason`` and
    ``retry_after`` then say why and for how long.
    """

    permit: int | None
    transition: Transition | None = None
    state: str = CLOSED
    reason: str = ""
    retry_after: float | None = None


def admitted_state(admission: Admission) -> str:
    """The state ``admission`` was given in: its permit's (even: closed, odd: a
    half-open trial, :data:`UNRECORDED`: disabled), or the refusing state."""
    permit = admission.permit
    if permit is None:
        return admission.state
    if permit == UNRECORDED:
        return DISABLED
    return HALF_OPEN if permit & 1 else CLOSED


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitMetrics:
    """A consistent snapshot of a breaker, for dashboards and tests.

    Attributes:
        state: As :attr:`CircuitBreaker.state`.
        calls: Calls recorded in the current window.
        failures: Failed calls among them.
        slow_calls: Slow calls among them (failed or not).
        failure_rate: ``failures / calls`` (0.0 with no calls).
        slow_call_rate: ``slow_calls / calls`` (0.0 with no calls).
        opened_at: When the circuit last opened, on the breaker's clock
            (``clock.monotonic()``), or ``None`` when closed or disabled.
        retry_after: Seconds until an open circuit turns half-open, else ``None``.
        trial_calls: Half-open trial calls admitted so far in this half-open period.
        reason: Why the circuit is open (``"12 of 20 calls failed"``), else ``""``.
    """

    state: str
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float
    slow_call_rate: float
    opened_at: float | None
    retry_after: float | None
    trial_calls: int
    reason: str
