"""The circuit breaker's state machine in Redis: every change is one Lua script.

The scripts mirror :class:`meshlite.state._circuit_local.LocalCircuitState`
(same permits, epochs, window arithmetic and reasons), on Redis's clock:

- ``<key>`` (a hash): ``st`` state, ``ep`` epoch, ``ou``/``oa`` open-until and
  opened-at (microseconds of Redis ``TIME``), ``rs`` reason, ``c``/``f``/``s`` the
  window's running totals, ``hd`` its head, ``ta``/``td``/``tf``/``ts`` the trial
  calls admitted, done, failed and slow, ``ig`` when the hash was written first
  (Redis ``TIME``; absent, read as 0, in a hash older scripts wrote).
- ``<key>:w``: the window: one byte per call (count window), or per-bucket counts
  in a hash (time window).

``<key>`` carries the breaker's name as a ``{hash tag}``, so both keys live in one
Redis Cluster slot. Every write sets both keys' TTL to the store's ``state_ttl``
(at least twice the open period and the time window): a breaker whose state has
not changed for that long is forgotten, which is closed. That includes a breaker
forced open: it stays forced open ``state_ttl`` (default a day) after the
``force_open()``, then closes unless forced again.

One script per call: while the circuit is closed, the permit a process was last
handed (``2 * epoch``) stays good for ``RedisStore(circuit_cache=...)`` seconds
(default 1 s), and every recorded outcome returns the state and epoch anew, so a
closed-circuit call costs only its ``RECORD``. A process learns that another one
opened the circuit at its next recorded outcome, or within ``circuit_cache``;
outcomes recorded with an outdated permit are ignored, as always. A refusal of an
open circuit is remembered until its open period ends, for ``circuit_cache`` at
most (a ``reset()`` in another process is seen that soon).
``circuit_cache=0`` asks Redis before every call. An outcome that cannot reach
Redis drops what the process trusted: the next call asks Redis, which is refused
at once while Redis (or, on a Cluster, the breaker's primary) is down, so the
breaker falls back to its in-process state at the next call instead of admitting
calls on a closed state it can no longer confirm for up to ``circuit_cache``.

Batch mode (``RedisStore(circuit_batch=seconds)``): closed-circuit outcomes are
queued in the process and sent together (:mod:`._redis_circuit_batch`).

Order of events: every change raises the epoch, and a script reporting a change
ends its reply with the epoch and ``ig`` (the circuit's life: a forgotten circuit
starts again at epoch 0 with another ``ig``), so no round trip is added. Threads
receive replies in any order; :class:`~._circuit_seen.SeenChanges` orders their
events by epoch within a life, drops a stale one and folds in the changes this
process did not see. Replies that report no change (a closed circuit's outcomes)
are read as before.

After an operation the store could not answer (the breaker then decides with its
in-process state, and tells hooks that state's changes: :meth:`RedisCircuit.told`),
the next reply is compared with what hooks last heard, and a different shared
state is told them (:meth:`SeenChanges.rejoin`): a Redis that restarted empty reads
closed, and without it the last word of the in-process state (``opened``) stood for
as long as the circuit stayed closed. One attribute read per reply otherwise.

Because acquiring a trial permit and recording an outcome are single scripts, the
half-open trials are global (``half_open_calls`` across all processes), and the
process whose outcome crosses a threshold is the one that opens the circuit for
all. Every process must use the same breaker options for one name.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .._errors import StoreUnavailableError
from ._circuit_records import (
    CLOSED,
    DISABLED,
    FORCED_OPEN,
    HALF_OPEN,
    OPEN,
    Admission,
    CircuitMetrics,
    Transition,
    admitted_state,
)
from ._circuit_seen import SeenChanges
from ._redis_circuit_batch import OutcomeBatch
from ._redis_circuit_lua import ACQUIRE, CONTROL, READ, RECORD, RECORD_MANY, RELEASE, script_options

if TYPE_CHECKING:
    from .._clock import Clock
    from ._base import CircuitConfig
    from ._redis import RedisStore

__all__ = ["RedisCircuit"]

# The breaker compares states by identity (``state is OPEN``): hand out its constants.
_STATES = {s: s for s in (CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _state(value: Any) -> str:
    text = _text(value)
    return _STATES.get(text, text)


class RedisCircuit:
    """The shared state of one breaker (see :class:`~meshlite.state.SharedCircuit`)."""

    __slots__ = ("__weakref__", "_apart", "_batch", "_clock", "_config", "_fresh", "_keys",
                 "_known", "_seen", "_store")

    def __init__(self, store: RedisStore, key: str, options: CircuitConfig,
                 clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._keys = (key, f"{key}:w")
        self._config = script_options(options, store.state_ttl)
        self._fresh = store.circuit_cache
        # What this process last learned: (admission to hand out, trusted until,
        # the open period's end for a refusal).
        self._known: tuple[Admission, float, float] | None = None
        # Closed-circuit outcomes queued to be sent together (batch mode), or None.
        self._batch = (OutcomeBatch(store.circuit_batch) if store.circuit_batch > 0
                       else None)
        self._seen = SeenChanges()  # orders the events of the changes replies report
        self._apart = False  # an operation failed since the last reply (module doc)

    def _changed(self, reply: list[Any], at: int = 0) -> Transition | None:
        """The event to announce of the change ``reply`` reports from ``reply[at]``
        (a reply reporting one ends with the circuit's epoch and life), if any and
        due (see :mod:`._circuit_seen`)."""
        if len(reply) < at + 3 or not reply[at]:
            return None
        return self._seen.order(_state(reply[at]), _state(reply[at + 1]),
                                _text(reply[at + 2]), int(reply[-1]), int(reply[-2]))

    def _admission(self, reply: list[Any]) -> Admission:
        permit = int(reply[0])
        transition = self._changed(reply, 1)
        if permit >= -1:
            admission = Admission(permit, transition)
        else:
            retry = int(reply[6])
            admission = Admission(None, transition, _state(reply[4]), _text(reply[5]),
                                  retry / 1e6 if retry >= 0 else None)
        if self._apart:
            self._apart = False
            if transition is None:  # (a change reported is told from the last heard)
                return admission._replace(transition=self._seen.rejoin(
                    admitted_state(admission)))
        return admission

    def told(self, state: str) -> None:
        """The breaker's in-process state told hooks ``state`` (a call the store could
        not decide): the next reply tells them the shared state if it differs."""
        self._apart = True
        self._seen.told(state)

    def apart(self, state: str) -> Transition | None:
        """The store did not answer a decision, which the breaker's in-process state,
        ``state``, makes instead: the change to tell hooks when they last heard
        another (the shared circuit open, this process's closed), else None. The
        next reply tells them the shared state again if it differs."""
        self._apart = True
        return self._seen.apart(state)

    def _failed(self) -> None:
        """An operation the store did not answer: drop what the process trusted (see
        the module doc), and compare the next reply with what hooks last heard."""
        self._known = None
        self._apart = True

    def _cached(self) -> Admission | None:
        known = self._known
        if known is None:
            return None
        admission, until, ends = known
        now = time.monotonic()
        if now >= until:
            self._known = None
            return None
        if admission.permit is None:
            return Admission(None, None, admission.state, admission.reason, ends - now)
        return admission

    def _learn(self, admission: Admission) -> Admission:
        now = time.monotonic()
        if admission.permit is not None and admission.permit >= 0 and not admission.permit & 1:
            if self._fresh > 0:  # closed: the permit holds until the next outcome says
                self._known = (Admission(admission.permit), now + self._fresh, 0.0)
        elif (admission.permit is None and admission.state == OPEN and self._fresh > 0
              and admission.retry_after):
            # Open: refused here until the period ends, or a reset elsewhere is seen.
            ends = now + admission.retry_after
            self._known = (Admission(None, None, OPEN, admission.reason),
                           min(ends, now + self._fresh), ends)
        else:
            self._known = None
        return admission

    def _recorded(self, reply: list[Any]) -> Transition | None:
        if len(reply) >= 5:
            if _text(reply[3]) == CLOSED and self._fresh > 0:
                self._known = (Admission(2 * int(reply[4])), time.monotonic() + self._fresh,
                               0.0)
            else:
                self._known = None
        transition = self._changed(reply) if reply[0] else None  # a change (rare)
        if self._apart and len(reply) >= 5:
            self._apart = False
            if transition is None:
                return self._seen.rejoin(_state(reply[3]))
        return transition

    def acquire(self) -> Admission:
        """Admit a call: a permit, or why not (see ``LocalCircuitState.acquire``)."""
        cached = self._cached()
        if cached is not None:
            return cached
        try:
            reply = self._store.eval(ACQUIRE, 2, *self._keys, *self._config)
        except StoreUnavailableError:
            self._failed()
            raise
        return self._learn(self._admission(reply))

    async def aacquire(self) -> Admission:
        """The async twin of :meth:`acquire`."""
        cached = self._cached()
        if cached is not None:
            return cached
        try:
            reply = await self._store.aeval(ACQUIRE, 2, *self._keys, *self._config)
        except StoreUnavailableError:
            self._failed()
            raise
        return self._learn(self._admission(reply))

    def record(self, permit: int, failed: bool, slow: bool) -> Transition | None:
        """Record the outcome of the call holding ``permit`` (batched for a closed
        circuit with ``circuit_batch``)."""
        queue = self._batch
        try:
            if queue is not None and permit >= 0 and not permit & 1:
                batch = queue.add(permit, failed, slow)
                if batch is None:
                    return None
                return self._recorded(self._store.eval(RECORD_MANY, 2, *self._keys,
                                                       *self._config, *batch))
            return self._recorded(self._store.eval(RECORD, 2, *self._keys, *self._config,
                                                   permit, int(failed), int(slow)))
        except StoreUnavailableError:
            self._failed()
            raise

    async def arecord(self, permit: int, failed: bool, slow: bool) -> Transition | None:
        """The async twin of :meth:`record`."""
        queue = self._batch
        try:
            if queue is not None and permit >= 0 and not permit & 1:
                batch = queue.add(permit, failed, slow)
                if batch is None:
                    return None
                return self._recorded(await self._store.aeval(RECORD_MANY, 2, *self._keys,
                                                              *self._config, *batch))
            return self._recorded(await self._store.aeval(
                RECORD, 2, *self._keys, *self._config, permit, int(failed), int(slow)))
        except StoreUnavailableError:
            self._failed()
            raise

    def release(self, permit: int) -> None:
        """Give back a trial permit whose call counts as neither outcome."""
        if permit >= 0 and permit & 1:
            self._store.eval(RELEASE, 2, *self._keys, *self._config, permit)

    async def arelease(self, permit: int) -> None:
        """The async twin of :meth:`release`."""
        if permit >= 0 and permit & 1:
            await self._store.aeval(RELEASE, 2, *self._keys, *self._config, permit)

    def control(self, action: str) -> Transition | None:
        """``"force_open"``, ``"reset"`` or ``"disable"``, for every process."""
        self._known = None
        return self._changed(self._store.eval(CONTROL, 2, *self._keys, *self._config, action))

    def start_open(self, elapsed: float, reason: str) -> None:
        """Open the circuit as if it had opened ``elapsed`` seconds ago."""
        self._known = None
        self._store.eval(CONTROL, 2, *self._keys, *self._config, "start_open",
                         round(elapsed * 1e6), reason)

    def metrics(self) -> CircuitMetrics:
        """A snapshot of the shared state and window."""
        state, calls, failures, slow, ago, retry, trials, reason = self._store.eval(
            READ, 2, *self._keys, *self._config)
        state = _state(state)
        calls, failures, slow = int(calls), int(failures), int(slow)
        return CircuitMetrics(
            state=state, calls=calls, failures=failures, slow_calls=slow,
            failure_rate=failures / calls if calls else 0.0,
            slow_call_rate=slow / calls if calls else 0.0,
            opened_at=None if int(ago) < 0 else self._clock.monotonic() - int(ago) / 1e6,
            retry_after=int(retry) / 1e6 if int(retry) >= 0 and state == OPEN else None,
            trial_calls=int(trials) if state == HALF_OPEN else 0,
            reason=_text(reason))
