"""The first wave: a backend that has never answered takes one attempt at a time.

A mixin of :class:`~meshlite.routing.Service` (as :class:`~meshlite.routing._rotation.Rotation`
is), for the ``p2c_ewma`` balancer. A client that starts 32 requests at once picks
32 backends before any answer can arrive; with no estimate, the balancer would
spread them evenly, and a backend 60 times slower than the others would take a
third of them. So, as Envoy's and HAProxy's slow start do for a new backend:

- an endpoint that has not answered yet (:attr:`Endpoint.answered`: no attempt
  finished, no health probe succeeded) takes at most one attempt in flight, its
  probe, while another candidate can take the request;
- when every candidate has not answered and has its probe in flight, an async
  attempt waits for the service's first answer, at most
  ``DEFAULT_FIRST_ANSWER_WAIT_SECONDS`` and at most the call's remaining deadline,
  then picks again (or, if nothing answered, as it would have without the wait);
  a sync attempt does not wait.

While every endpoint has answered (the steady state) routing pays one flag check,
``Service._cold``, recomputed only when an endpoint answers for the first time or
the backend set changes. See docs/routing.md, "The first wave".
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._clock import Clock, SystemClock
from .._context import CallContext
from .._fork import fork_safe
from ._balancers import Balancer, P2CEwma
from ._endpoint import Endpoint

if TYPE_CHECKING:
    import asyncio

__all__ = ["DEFAULT_FIRST_ANSWER_WAIT_SECONDS", "FirstAnswerPending", "FirstWave"]

DEFAULT_FIRST_ANSWER_WAIT_SECONDS = 0.25
"""The longest an async attempt waits for a service's first answer (see the module
docstring): long enough for a first answer that pays a TCP and TLS handshake to a
nearby backend, short enough that a service whose backends all start slowly loses
at most this much on its first requests."""


class FirstAnswerPending(Exception):
    """Raised by ``Service._choose`` when every candidate of the attempt has not
    answered yet and has its probe in flight; the routing handler then waits for
    an answer (async) or picks among ``candidates`` as if none were pending (sync)."""

    def __init__(self, candidates: Sequence[Endpoint]) -> None:
        super().__init__("every candidate's first answer is pending")
        self.candidates = candidates


class FirstWave:
    """The cold-start gate's state and steps (mixed into ``Service``)."""

    balancer: Balancer
    clock: Clock
    _endpoints: tuple[Endpoint, ...]
    _available: tuple[Endpoint, ...]
    _cold: bool
    # Whether the gate applies (a p2c_ewma service) and some endpoint has not
    # answered: the one check routing makes. Always an instance attribute (set by
    # _track): a class default would keep CPython 3.11 from specialising its read.
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] | None = None
    _waiters_lock = fork_safe(threading.Lock())  # (a class default: one for all services)
    _answers = 0  # first answers so far, so a waiter misses none (under the lock)

    def _gated(self) -> bool:
        """Whether the gate applies: only ``p2c_ewma`` learns backends' latencies
        (round robin, random and ring hash spread by design; least requests reads
        requests in flight, known from the start)."""
        return isinstance(self.balancer, P2CEwma)

    def _track(self) -> None:
        """Recompute ``_cold`` (the candidates changed, or one answered first). Only
        the candidates count: a backend out of rotation gets no attempt to answer
        with, and must not keep every call of the service scanning."""
        self._cold = self._gated() and not all(e.answered for e in self._available)

    def _first_answered(self) -> None:
        """An endpoint's first answer (``Endpoint(on_answer=...)``, under its lock):
        recompute ``_cold`` and wake the attempts waiting for an answer."""
        self._track()
        with self._waiters_lock:
            self._answers += 1
            waiters, self._waiters = self._waiters, None
        if not waiters:
            return
        here = _running_loop()
        for loop, future in waiters:
            if loop is here:
                _settle(future)
                continue
            # From another thread: the waiter's loop settles its future (a closed
            # loop raises RuntimeError: nothing waits there any more).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future)

    def _choose_warming(self, candidates: Sequence[Endpoint], ctx: CallContext) -> Endpoint:
        """The pick while a candidate has not answered: the balancer's choice when it
        is not such a candidate busy with its probe (O(1), no scan of the n), else
        its choice among those :meth:`_admit` keeps.

        Raises:
            FirstAnswerPending: every candidate is such a one (see ``_admit``).
        """
        if len(candidates) > 1:
            chosen = self.balancer.pick(candidates, ctx)
            if chosen.answered or not chosen.in_flight:
                return chosen
        candidates = self._admit(candidates)
        if len(candidates) == 1:
            return candidates[0]
        return self.balancer.pick(candidates, ctx)

    def _admit(self, candidates: Sequence[Endpoint]) -> Sequence[Endpoint]:
        """``candidates`` without the endpoints that have not answered and have an
        attempt in flight (their probe).

        Raises:
            FirstAnswerPending: that leaves none of two or more candidates.
        """
        kept = [e for e in candidates if e.answered or not e.in_flight]
        if len(kept) == len(candidates):
            return candidates
        if kept or len(candidates) == 1:
            return kept or candidates
        raise FirstAnswerPending(candidates)

    def _blind(self, pending: FirstAnswerPending, ctx: CallContext) -> Endpoint:
        """The pick without the gate, among every pending candidate."""
        return self.balancer.pick(pending.candidates, ctx)

    async def _hold(self, ctx: CallContext,
                    choose: Callable[[CallContext], Endpoint]) -> Endpoint:
        """Wait for a first answer, then ``choose`` again; after the bound (see the
        module docstring) with none, pick among the pending candidates."""
        clock = self.clock
        bound = DEFAULT_FIRST_ANSWER_WAIT_SECONDS
        remaining = ctx.remaining()
        if remaining is not None and remaining < bound:
            bound = remaining
        give_up = clock.monotonic() + bound
        seen = self._answers
        while True:
            left = give_up - clock.monotonic()
            if left > 0.0:
                await self._answer(left, seen)
            seen = self._answers
            try:
                return choose(ctx)
            except FirstAnswerPending as pending:
                if clock.monotonic() >= give_up:
                    return self._blind(pending, ctx)

    async def _answer(self, seconds: float, seen: int) -> None:
        """Return at once if an endpoint answered first since ``_answers`` was
        ``seen``, else at the next such answer or after ``seconds`` on the clock."""
        import asyncio  # (here: `import meshlite` loads no asyncio)

        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._waiters_lock:
            if self._answers != seen:  # an answer came since the caller looked
                return
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(entry)
        timer: asyncio.TimerHandle | asyncio.Task[None]
        if isinstance(self.clock, SystemClock):  # the loop's own timer: no task
            timer = loop.call_later(seconds, _settle, future)
        else:  # another clock (a FakeClock): a task sleeps on it
            timer = loop.create_task(self.clock.asleep(seconds))
            timer.add_done_callback(lambda _: _settle(future))
        try:
            await future
        finally:
            timer.cancel()
            with self._waiters_lock:
                waiters = self._waiters
                if waiters is not None and entry in waiters:
                    waiters.remove(entry)


def _running_loop() -> Any:
    import asyncio  # (loaded already: something waits on a loop)

    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a thread without a loop (a sync call's answer)
        return None


def _settle(future: Any) -> None:
    if not future.done():
        future.set_result(None)
