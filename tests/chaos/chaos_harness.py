"""The chaos harness (its fixture, ``scenario``, is in conftest.py): real loopback
backends (FakeBackend), a mesh with a full
resilience pipeline, and a steady stream of GETs and POSTs through ``mesh.http``
or ``mesh.aiohttp`` (each scenario runs with both clients), while a scenario
breaks and repairs the backends.

Every request carries a unique ``x-request-id``, so the backends' logs show how
often each one was sent. Each scenario checks:

- no request is lost: every one the load sent ends as a response or a clear error;
- a POST without an ``Idempotency-Key`` reaches the backends at most once;
- the mesh recovers once the fault clears: the breaker closes, ejected backends
  return, and requests succeed again; the time that took is measured.

A run during which the whole process stood still (the event loop woke STALL seconds
or more late: a loaded machine's pause, not the mesh's doing) expires healthy
attempts' deadlines at once, which can open the breaker and sink the success rates
the scenarios assert. Such a run is checked for what no pause excuses (nothing lost,
no POST sent twice) and the scenario runs again on fresh backends and a fresh mesh,
RUNS times at most; the last run is judged whole.

With ``MESHLITE_CHAOS_REPORT=path`` set, each scenario appends its figures to
``path`` as one JSON line (``benchmarks/chaos_report.py`` tables them).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx

import meshlite as ml
from meshlite._events import CircuitOpened, RetryScheduled
from meshlite.routing._events import BackendEjected
from meshlite.testing import FakeBackend

REPORT_ENV = "MESHLITE_CHAOS_REPORT"
BACKENDS = 3
WORKERS = 6
POST_EVERY = 4  # one request in four is a POST without an Idempotency-Key
PAUSE = 0.01  # seconds each worker waits between its requests
STEADY = 0.3  # seconds of normal traffic before the fault and after recovery
FAULT = 1.0  # seconds the fault lasts
RECOVERY_LIMIT = 5.0  # seconds the mesh has to recover
RECOVERED_STREAK = 5  # requests in a row that must succeed after the fault
TICK = 0.01  # seconds between the stall watch's wake-ups
STALL = 0.1  # seconds late a wake-up of the stall watch must be to mark the run
RUNS = 3  # runs at most when the process stalls

ATTEMPT_TIMEOUT = 0.3
TOTAL_TIMEOUT = 2.0
"""Twice what three attempts and their backoff take (about 1 s): with 1 s, a loaded
machine pausing the process for a moment cut healthy calls of the last phase."""
OPEN_SECONDS = 0.2
EJECTION_SECONDS = 0.2

CLEAR_ERRORS = (ml.MeshliteError, httpx.HTTPError, aiohttp.ClientError, TimeoutError,
                ConnectionError)
"""What a failed request may raise: meshlite's errors (open circuit, timeout...),
httpx's or aiohttp's transport errors, or the network's own."""

Send = Callable[[str, str, dict[str, str]], Any]
"""``await send(method, path, headers)`` -> the response's status."""

Build = Callable[[], tuple[ml.Mesh, list[FakeBackend], ml.CircuitBreaker]]
"""A fresh mesh on fresh backends, and the pipeline's breaker."""


@dataclass(slots=True, eq=False)  # identity: outcomes sit in a set while pending
class Outcome:
    """How one request ended."""

    method: str
    rid: str
    phase: str
    started: float
    ended: float | None = None
    status: int | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 400


@dataclass
class Scenario:
    """One chaos run: the mesh, its backends, the load and what it observed."""

    name: str
    build: Build
    client: str = "http"  # the mesh client the load goes through: "http" or "aiohttp"
    mesh: ml.Mesh = field(init=False)
    backends: list[FakeBackend] = field(init=False)
    breaker: ml.CircuitBreaker = field(init=False)
    outcomes: list[Outcome] = field(default_factory=list)
    pending: set[Outcome] = field(default_factory=set)
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    phase: str = "before"
    issued: int = 0
    recovery: float | None = None
    stalls: list[tuple[str, float]] = field(default_factory=list)
    """(phase, seconds late) of each stall of this run's event loop."""
    runs: int = 0
    """Runs made: more than one when the process stalled."""
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: Any = field(default_factory=itertools.count)
    _changes: int = 0  # fault() and clear() calls made

    def __post_init__(self) -> None:
        self.mesh, self.backends, self.breaker = self.build()

    # -- the load ---------------------------------------------------------------

    async def _worker(self, send: Send) -> None:
        while not self._stop.is_set():
            i = next(self._ids)
            method = "POST" if i % POST_EVERY == POST_EVERY - 1 else "GET"
            rid = f"{self.name}-{i}"
            self.issued += 1
            outcome = Outcome(method, rid, self.phase, time.monotonic())
            self.pending.add(outcome)
            try:
                outcome.status = await send(method, f"/items/{i}", {"x-request-id": rid})
            except Exception as error:
                outcome.error = error
            outcome.ended = time.monotonic()
            self.pending.discard(outcome)
            self.outcomes.append(outcome)
            await asyncio.sleep(PAUSE)

    async def _watch(self) -> None:
        while not self._stop.is_set():
            before, changes = time.monotonic(), self._changes
            await asyncio.sleep(TICK)
            late = time.monotonic() - before - TICK
            # The scenario's own fault() or clear() ran on the loop in between: its
            # time is the scenario's, not a stall of the process.
            if late >= STALL and changes == self._changes:
                self.stalls.append((self.phase, round(late, 3)))

    async def run(self, fault: Callable[[], Any], clear: Callable[[], Any]) -> None:
        """Steady traffic, then ``fault()`` for FAULT seconds, then ``clear()``, then
        traffic until the mesh recovered, then steady traffic again; again on fresh
        backends (``fault`` and ``clear`` must reach them through ``self``) when the
        process stalled, RUNS times at most."""
        for run in range(1, RUNS + 1):
            if run > 1:
                self._fresh()
            self.runs = run
            try:
                await self._run(fault, clear)
            except AssertionError:  # not recovered in time
                if not self.stalls or run == RUNS:
                    raise
            if not self.stalls or run == RUNS:
                return
            self.check_sent()  # what no pause excuses
            print(f"{self.name}: run {run} of {RUNS} discarded: the process stood still "
                  f"(the event loop woke late, by phase and seconds: {self.stalls})")

    def _fresh(self) -> None:
        self.mesh, self.backends, self.breaker = self.build()
        self.outcomes, self.pending, self.stalls = [], set(), []
        self.events.clear()
        self.phase, self.issued, self.recovery = "before", 0, None
        self._stop = asyncio.Event()

    async def _run(self, fault: Callable[[], Any], clear: Callable[[], Any]) -> None:
        # The test process's heap (pytest's, earlier tests') is left out of the
        # collector's full passes for the run: scanning it paused the process for
        # 0.1 s and more, past healthy attempts' deadlines on a loaded machine. What
        # the run itself leaves is still collected.
        gc.collect()
        gc.freeze()
        try:
            await self._load(fault, clear)
        finally:
            gc.unfreeze()

    async def _load(self, fault: Callable[[], Any], clear: Callable[[], Any]) -> None:
        remove = self.mesh.add_hook(self._count)
        async with self._sender() as send:
            workers = [asyncio.create_task(self._worker(send)) for _ in range(WORKERS)]
            workers.append(asyncio.create_task(self._watch()))
            try:
                await asyncio.sleep(STEADY)
                self.phase = "fault"
                await self._change(fault)
                await asyncio.sleep(FAULT)
                await self._change(clear)
                self.phase = "recovery"
                self.recovery = await self._recovered(time.monotonic())
                self.phase = "after"
                await asyncio.sleep(STEADY)
            finally:
                self._stop.set()
                await asyncio.gather(*workers)
        remove()

    async def _change(self, change: Callable[[], Any]) -> None:
        value = change()
        if asyncio.iscoroutine(value):
            await value
        self._changes += 1

    @contextlib.asynccontextmanager
    async def _sender(self) -> AsyncIterator[Send]:
        if self.client == "aiohttp":
            async with self.mesh.aiohttp("users") as session:

                async def send_aiohttp(method: str, path: str, headers: dict[str, str]) -> int:
                    async with session.request(method, path, headers=headers) as response:
                        await response.read()
                        return response.status

                yield send_aiohttp
            return
        async with self.mesh.http("users") as client:

            async def send_httpx(method: str, path: str, headers: dict[str, str]) -> int:
                return (await client.request(method, path, headers=headers)).status_code

            yield send_httpx

    def _count(self, event: ml.Event) -> None:
        if isinstance(event, RetryScheduled):
            self.events["retries"] += 1
        elif isinstance(event, BackendEjected):
            self.events["ejections"] += 1
        elif isinstance(event, CircuitOpened):
            self.events["breaker_opens"] += 1

    def _healthy(self, since: float) -> bool:
        """Recovered: no request of the fault period is still running, the breaker
        is closed, every backend is back, and the last RECOVERED_STREAK requests
        started since the fault cleared all succeeded."""
        if any(o.started <= since for o in self.pending):
            return False
        if self.breaker.state != "closed":
            return False
        if self.mesh.health()["users"].status != "healthy":
            return False
        recent = [o for o in self.outcomes if o.started > since][-RECOVERED_STREAK:]
        return len(recent) == RECOVERED_STREAK and all(o.ok for o in recent)

    async def _recovered(self, since: float) -> float:
        while not self._healthy(since):
            if time.monotonic() - since > RECOVERY_LIMIT:
                health = self.mesh.health()["users"]
                raise AssertionError(
                    f"{self.name}: not recovered {RECOVERY_LIMIT} s after the fault "
                    f"cleared: breaker {self.breaker.state}, health {health}, last "
                    f"outcomes {[(o.status, repr(o.error)) for o in self.outcomes[-5:]]}")
            await asyncio.sleep(0.01)
        return time.monotonic() - since

    # -- what it showed ---------------------------------------------------------

    def sent_counts(self) -> collections.Counter[str]:
        """How often each request id reached a backend."""
        return collections.Counter(
            r.headers["x-request-id"] for b in self.backends for r in b.requests
            if "x-request-id" in r.headers)

    def rate(self, phase: str | None = None, method: str | None = None) -> float:
        chosen = [o for o in self.outcomes
                  if (phase is None or o.phase == phase) and (method is None or o.method == method)]
        return sum(o.ok for o in chosen) / len(chosen) if chosen else 1.0

    def check_sent(self) -> None:
        """What every run must keep, however the machine behaved: nothing lost or
        unexplained, no POST sent twice, nothing answered that no backend saw."""
        # No request lost: the load waited for each one, and each ended with an
        # answer or an error that says what happened.
        assert len(self.outcomes) == self.issued, (len(self.outcomes), self.issued)
        for o in self.outcomes:
            assert (o.status is None) != (o.error is None), f"{o}"
            if o.error is not None:
                assert isinstance(o.error, CLEAR_ERRORS), f"unclear error: {o.error!r}"
                # Said by the message, by notes (FaultInjection's, Retry's), or by
                # the class of httpx's errors, which may have none (ReadError('')),
                # or by the cause aiohttp wraps an OSError raised beneath it in.
                cause = o.error.__cause__
                assert (str(o.error) or getattr(o.error, "__notes__", None)
                        or isinstance(o.error, httpx.TransportError)
                        or (isinstance(o.error, aiohttp.ClientOSError) and cause is not None
                            and (str(cause) or getattr(cause, "__notes__", None)))), (
                    f"an error that says nothing: {o.error!r}")
        sent = self.sent_counts()
        # A POST without an idempotency key is never sent twice.
        twice = [(o.rid, sent[o.rid]) for o in self.outcomes
                 if o.method == "POST" and sent[o.rid] > 1]
        assert twice == [], f"POSTs sent more than once: {twice[:10]}"
        # Whatever succeeded was really answered by a backend.
        unseen = [o.rid for o in self.outcomes if o.ok and sent[o.rid] < 1]
        assert unseen == [], f"answered but never received: {unseen[:10]}"

    def check(self) -> None:
        """The invariants every scenario must keep."""
        self.check_sent()
        # Recovered: the breaker is closed, every backend is back, GETs succeed.
        assert self.recovery is not None, "not recovered"
        assert self.breaker.state == "closed", self.breaker.state
        # An ejection the load itself caused after recovery (an attempt past its
        # deadline on a busy machine) ends by itself within its short time: a health
        # read returns the backend once it is over.
        deadline = time.monotonic() + 10.0
        health = self.mesh.health()["users"]
        while health.status != "healthy" and time.monotonic() < deadline and all(
                b.status in ("up", "ejected") for b in health.backends):
            time.sleep(0.05)
            health = self.mesh.health()["users"]
        assert health.status == "healthy", health
        failed = [(o.method, o.status, repr(o.error)) for o in self.outcomes
                  if o.phase == "after" and o.method == "GET" and not o.ok]
        assert failed == [], f"GETs failed after recovery: {failed[:5]}"

    def figures(self) -> dict[str, Any]:
        sent = self.sent_counts()
        return {
            "scenario": self.name,
            "requests": len(self.outcomes),
            "success_rate": round(self.rate(), 4),
            "fault_get_success_rate": round(self.rate("fault", "GET"), 4),
            "fault_post_success_rate": round(self.rate("fault", "POST"), 4),
            "retries": self.events["retries"],
            "ejections": self.events["ejections"],
            "breaker_opens": self.events["breaker_opens"],
            "recovery_seconds": round(self.recovery or 0.0, 3),
            "runs": self.runs,
            "posts_sent_twice": sum(1 for o in self.outcomes
                                    if o.method == "POST" and sent[o.rid] > 1),
        }

    def report(self) -> None:
        path = os.environ.get(REPORT_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps(self.figures()) + "\n")




def pipeline() -> tuple[ml.Pipeline, ml.CircuitBreaker]:
    """The pipeline under test, outermost first, with short open and backoff times."""
    breaker = ml.CircuitBreaker(failure_rate=0.5, window=20, min_calls=10,
                                open_seconds=OPEN_SECONDS, half_open_calls=2)
    return ml.Pipeline(
        ml.Timeout(TOTAL_TIMEOUT),
        ml.Retry(attempts=3, backoff=ml.backoff.exponential(initial=0.01, maximum=0.05)),
        breaker,
        ml.Timeout(ATTEMPT_TIMEOUT),
    ), breaker
