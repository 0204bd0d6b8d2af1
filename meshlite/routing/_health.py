"""Active health: probe every backend of a service on an interval, with jitter."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import random as _random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .._arguments import Explained
from .._callables import is_async_callable
from .._clock import Clock
from .._printable import error_shown
from .._tasks import cancel_and_wait
from .._validate import at_least, fail, positive, random_or_shared
from ._backend import Backend
from ._endpoint import Endpoint

__all__ = [
    "DEFAULT_HEALTH_INTERVAL",
    "DEFAULT_HEALTH_JITTER",
    "DEFAULT_HEALTH_PATH",
    "DEFAULT_HEALTH_TIMEOUT",
    "HealthCheck",
    "HealthCheckOptions",
    "HealthChecker",
    "Probe",
]

DEFAULT_HEALTH_PATH = "/healthz"
DEFAULT_HEALTH_INTERVAL = 5.0
DEFAULT_HEALTH_TIMEOUT = 1.0
DEFAULT_HEALTH_JITTER = 0.1
"""Each interval is stretched or shrunk by up to 10%, so the probes of many clients
(and of many services) do not fire in lock step."""

_log = logging.getLogger("meshlite.health")

Probe = Callable[[Backend], Awaitable[str | None]]
"""A session's probe: returns ``None`` when healthy, else why not."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheckOptions:
    """Validated options of :class:`HealthCheck` and :class:`HttpHealthCheck`."""

    interval: float = DEFAULT_HEALTH_INTERVAL
    timeout: float = DEFAULT_HEALTH_TIMEOUT
    healthy_threshold: int = 1
    unhealthy_threshold: int = 2
    jitter: float = DEFAULT_HEALTH_JITTER

    def __post_init__(self) -> None:
        owner = "HealthCheck"
        object.__setattr__(self, "interval", positive(owner, "interval", self.interval))
        object.__setattr__(self, "timeout", positive(owner, "timeout", self.timeout))
        at_least(owner, "healthy_threshold", self.healthy_threshold, 1)
        at_least(owner, "unhealthy_threshold", self.unhealthy_threshold, 1)
        j = self.jitter
        if isinstance(j, bool) or not isinstance(j, int | float) or not 0 <= j < 1:
            fail(owner, "jitter", j, "a number in [0, 1)")


class HealthCheck(Explained):
    """Probe each backend with your own function.

    ``probe(backend)`` is healthy when it returns anything but ``False`` and
    unhealthy when it returns ``False``, raises, or runs past ``timeout``. A
    coroutine function is awaited on the mesh's loop; any other callable runs in a
    worker thread (so a blocking probe never stalls the loop), waiting at most
    ``interval`` for one, with ``timeout`` counted from its start. A backend turns
    unhealthy after ``unhealthy_threshold`` failed probes in a row and healthy again
    after ``healthy_threshold`` good ones. Backends start healthy.

    Args:
        probe: ``probe(backend) -> bool | None`` (or a coroutine function).
        interval: Seconds between rounds, > 0 (jittered by ``jitter``).
        timeout: Seconds one probe may take, > 0.
        healthy_threshold: Good probes in a row that make a backend healthy, >= 1.
        unhealthy_threshold: Failed probes in a row that make it unhealthy, >= 1.
        jitter: Fraction in [0, 1) by which each interval varies at random.

    Raises:
        ConfigError: a bad argument.
    """

    def __init__(
        self,
        probe: Callable[[Backend], Any],
        *,
        interval: float = DEFAULT_HEALTH_INTERVAL,
        timeout: float = DEFAULT_HEALTH_TIMEOUT,
        healthy_threshold: int = 1,
        unhealthy_threshold: int = 2,
        jitter: float = DEFAULT_HEALTH_JITTER,
    ) -> None:
        if not callable(probe):
            fail("HealthCheck", "probe", probe, "a callable taking the backend")
        self.probe = probe
        self.options = HealthCheckOptions(
            interval=interval, timeout=timeout, healthy_threshold=healthy_threshold,
            unhealthy_threshold=unhealthy_threshold, jitter=jitter,
        )

    def for_service(self, service: Any) -> HealthCheck:
        """The check ``service``'s health checker runs: this one, unless a subclass
        needs the service's settings (the HTTP check takes its TLS and headers)."""
        return self

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Probe]:
        """Open what probing needs (an HTTP client, say) and yield the probe."""
        probe, timeout, interval = self.probe, self.options.timeout, self.options.interval
        is_async = is_async_callable(probe)

        async def run(backend: Backend) -> str | None:
            started = [is_async]
            try:
                # A probe in a thread may first wait for one (the loop's executor runs
                # a few at once): it has `interval` for that, and `timeout` from its
                # start (_threaded), so a round of many backends is not a round of
                # timeouts for the probes queued last.
                async with asyncio.timeout(timeout if is_async else interval) as limit:
                    result = probe(backend) if is_async else await _threaded(
                        probe, backend, limit, timeout, started)
                    if inspect.isawaitable(result):
                        result = await result
            except TimeoutError:
                if not started[0]:
                    return (f"probe did not start within {interval} s: every worker "
                            "thread was busy (probes that block longer than timeout?)")
                return f"probe timed out after {timeout} s"
            except Exception as error:  # (its URL's token masked: a reason is shown)
                return f"probe raised {error_shown(error)}"
            return "probe returned False" if result is False else None

        yield run

    def __repr__(self) -> str:
        o = self.options
        return f"HealthCheck({self.probe!r}, interval={o.interval!r})"


class _Target(Protocol):
    """What the checker needs of a service."""

    @property
    def endpoints(self) -> Sequence[Endpoint]: ...

    def _set_healths(self, changes: Iterable[tuple[Endpoint, bool, str]]) -> None: ...


class HealthChecker:
    """Runs one service's health check on the mesh's lifecycle.

    ``start`` opens the probe session and runs a first round before returning (so a
    service started after its dependencies sees their health), then probes in the
    background until ``stop``.
    """

    def __init__(self, target: _Target, check: HealthCheck, clock: Clock,
                 random: _random.Random | None = None) -> None:
        self.target = target
        self.check = check
        self.clock = clock
        self.rounds = 0
        self._rng = random_or_shared(random)
        self._stack: contextlib.AsyncExitStack | None = None
        self._probe: Probe | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the session, probe once, and keep probing in the background."""
        await self.open()
        await self.run_once()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def open(self) -> None:
        """Open the probe session without starting the background loop (``run_once``
        then probes on demand; ``stop`` closes it)."""
        stack = contextlib.AsyncExitStack()
        self._probe = await stack.enter_async_context(self.check.session())
        self._stack = stack

    async def stop(self) -> None:
        """Stop probing and close the session."""
        task, self._task = self._task, None
        stack, self._stack = self._stack, None
        self._probe = None
        try:
            if task is not None:
                await cancel_and_wait(task)
        finally:  # (also when the caller is cancelled meanwhile)
            if stack is not None:
                await stack.aclose()

    async def run_once(self) -> None:
        """Probe every backend once, concurrently, and apply the results."""
        probe = self._probe
        if probe is None:
            raise RuntimeError("HealthChecker.run_once: start() the checker first")
        endpoints = tuple(self.target.endpoints)
        reasons = await asyncio.gather(*(self._timed(probe, e) for e in endpoints))
        changes = [change for endpoint, reason in zip(endpoints, reasons, strict=True)
                   if (change := self._apply(endpoint, reason)) is not None]
        if changes:  # one rotation rebuild for the round's transitions
            self.target._set_healths(changes)
        self.rounds += 1

    async def _timed(self, probe: Probe, endpoint: Endpoint) -> str | None:
        # A healthy probe's latency is the endpoint's prior (Endpoint.probed).
        start = self.clock.monotonic()
        reason = await probe(endpoint.backend)
        if reason is None:
            endpoint.probed(self.clock.monotonic() - start)
        return reason

    def _apply(self, endpoint: Endpoint, reason: str | None
               ) -> tuple[Endpoint, bool, str] | None:
        """Count one probe's result; returns the transition it makes, if any."""
        o = self.check.options
        if reason is None:
            endpoint.health_failures = 0
            endpoint.health_successes += 1
            if not endpoint.healthy and endpoint.health_successes >= o.healthy_threshold:
                return endpoint, True, ""
            return None
        endpoint.health_successes = 0
        endpoint.health_failures += 1
        endpoint.health_reason = reason
        if endpoint.healthy and endpoint.health_failures >= o.unhealthy_threshold:
            return endpoint, False, reason
        return None

    async def _loop(self) -> None:
        o = self.check.options
        # The first wait is anywhere from half an interval to a jittered one:
        # services started together (start_waves) would otherwise probe in lock step,
        # every backend of the mesh in the same second of each interval.
        spread = (self._rng.random() * (0.5 + o.jitter) - 0.5)
        while True:
            await self.clock.asleep(o.interval * (1.0 + spread))
            spread = o.jitter * (2.0 * self._rng.random() - 1.0)
            try:
                await self.run_once()
            except Exception:
                _log.exception("health check round of %r failed; will try again", self.target)


async def _threaded(probe: Callable[[Backend], Any], backend: Backend,
                    limit: asyncio.Timeout, seconds: float, started: list[bool]) -> Any:
    """``probe(backend)`` in the loop's executor (in a copy of the caller's context, as
    ``asyncio.to_thread``), with ``limit`` moved to ``seconds`` after the thread
    starts it (``started[0]`` is then True)."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()

    def begin() -> None:  # on the loop, before the probe's result can arrive
        started[0] = True
        with contextlib.suppress(RuntimeError):  # given up on meanwhile (limit passed)
            limit.reschedule(loop.time() + seconds)

    def call() -> Any:
        loop.call_soon_threadsafe(begin)
        return context.run(probe, backend)

    return await loop.run_in_executor(None, call)
