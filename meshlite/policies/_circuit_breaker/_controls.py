"""A circuit breaker's reading and manual controls: its state, name and metrics,
and ``force_open`` / ``reset`` / ``disable``, which a dashboard, the admin API and
code call outside the per-call path. With a store they read and change the shared
state, falling back to the in-process one when the store does not answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from ..._context import CallContext
from ..._policy import Policy
from ...state._base import SharedCircuit, Store, StoreUnavailableError, fall_back
from ...state._circuit_local import LocalCircuitState
from ...state._circuit_records import CircuitMetrics, Transition

__all__ = ["BreakerControls"]


class BreakerControls:
    """The reading and manual controls of :class:`~meshlite.CircuitBreaker`, its base;
    the breaker's constructor sets these attributes. (Not a :class:`Policy` itself,
    which would make it a policy without a kind; the casts below say the breaker is.)"""

    _core: LocalCircuitState
    _label: str
    _shared_store: Store | None
    _shared: SharedCircuit | None
    _announce: Callable[[CallContext | None, Transition | None], None]  # (the policy's)

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"``, ``"half_open"``, ``"forced_open"`` or ``"disabled"``.

        Transitions are driven by the clock when read: once ``open_seconds`` have
        passed, an open circuit reads ``"half_open"``.
        """
        if self._shared is not None:
            return self._read().state
        return self._core.state()

    @property
    def name(self) -> str:
        """``name=``, else the service (or operation) of the last call that changed
        the state or was rejected, else ``"circuit_breaker"``."""
        return self._label

    def metrics(self) -> CircuitMetrics:
        """A snapshot of the state and the window (calls, failures, slow calls...).

        With a store, the shared ones (this process's if the store does not answer).
        """
        if self._shared is not None:
            return self._read()
        return self._core.metrics()

    def force_open(self) -> None:
        """Reject every call (state ``"forced_open"``) until :meth:`reset`; with a
        store, in every process.

        Raises:
            StoreUnavailableError: the store did not answer and its ``on_error`` is
                ``"raise"`` (otherwise this process alone is forced open).
        """
        self._control("force_open", self._core.force_open)

    def reset(self) -> None:
        """Close the circuit with an empty window (also ends forced-open and disabled);
        with a store, in every process.

        Raises:
            StoreUnavailableError: as for :meth:`force_open`.
        """
        self._control("reset", self._core.reset)

    def disable(self) -> None:
        """Admit every call and record nothing (state ``"disabled"``) until :meth:`reset`;
        with a store, in every process.

        Raises:
            StoreUnavailableError: as for :meth:`force_open`.
        """
        self._control("disable", self._core.disable)

    def _control(self, action: str, local: Callable[[], Transition | None]) -> None:
        # The in-process state follows too, so a fallback to it keeps the intent.
        transition = local()
        if self._shared is not None and self._shared_store is not None:
            try:
                shared = self._shared.control(action)
            except StoreUnavailableError as error:
                fall_back(cast("Policy", self), self._shared_store, None, error, step="manage")
                told = getattr(self._shared, "told", None)  # (a store of before: none)
                if transition is not None and told is not None:  # the in-process state's
                    told(transition.state)  # change, told below
            else:  # the shared change is the one announced
                if transition is not None and transition.turn is not None:
                    transition.turn.skip()
                transition = shared
        self._announce(None, transition)

    def _read(self) -> CircuitMetrics:
        assert self._shared is not None
        assert self._shared_store is not None
        try:
            return self._shared.metrics()
        except StoreUnavailableError as error:
            fall_back(cast("Policy", self), self._shared_store, None, error, step="read")
            return self._core.metrics()
