"""Discovery: runs a provider for one service and keeps its backends current."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .._clock import SYSTEM_CLOCK, Clock
from .._tasks import cancel_and_wait
from .._validate import fail, optional_positive, positive
from ..routing._backend import Backend
from ._provider import DiscoveryFailed, DiscoveryProvider, DiscoveryRecovered, Resolution

__all__ = [
    "DEFAULT_MIN_INTERVAL",
    "DEFAULT_RESOLVE_TIMEOUT",
    "DEFAULT_RETRY_INTERVAL",
    "Discovery",
]

DEFAULT_MIN_INTERVAL = 1.0
"""Floor of the re-resolve delay taken from a TTL, so a TTL of 0 cannot spin."""

DEFAULT_RETRY_INTERVAL = 5.0
"""Seconds between attempts while the provider is failing."""

DEFAULT_RESOLVE_TIMEOUT = 10.0
"""Seconds one resolve may take before it counts as failed."""

_log = logging.getLogger("meshlite.discovery")


def _unique(backends: tuple[Backend, ...]) -> list[Backend]:
    seen: dict[str, Backend] = {}
    for b in backends:
        seen.setdefault(b.address, b)
    return list(seen.values())


class Discovery:
    """Keep ``service``'s backends in step with ``provider``, as a lifecycle component
    of the mesh: ``service.attach(Discovery(service, provider))``.

    The first resolve runs when the mesh opens, before calls need the backends.
    Then the provider is resolved again when it reports a change, when ``interval``
    passes, or (without ``interval``) when the answer's TTL runs out. A failure, or an
    answer with no backend, keeps the last known backends and emits
    :class:`DiscoveryFailed`; the provider is tried again every ``retry_interval``.
    A round is a wait for the next change (the provider's watch) and the resolve
    after it: a failed round emits one event, whose ``error`` says what each part
    said when both failed (a Redis outage breaks the watch and the resolve alike),
    and its first failure of a streak is logged once, as is the streak's end.
    These waits are slept on the service's clock (the mesh's, unless the service was
    given its own), as health checks' are: on a ``FakeClock``, moving the clock past
    one re-resolves. ``resolve_timeout`` bounds a real lookup, in real time.

    Args:
        service: The service whose backends are replaced (``set_backends``).
        provider: Where the backends come from.
        interval: Seconds between resolves; ``None`` means at the answer's TTL, or
            only on reported changes when the provider gives no TTL.
        min_interval: Floor of a TTL-driven delay, > 0.
        retry_interval: Seconds between tries while failing, > 0.
        resolve_timeout: Seconds one resolve may take, > 0.
        redact: Applied to error messages before they are logged or emitted (the
            config loader masks values that came from ``${VAR}`` references).

    Raises:
        ConfigError: a bad argument.
    """

    def __init__(
        self,
        service: Any,
        provider: DiscoveryProvider,
        *,
        interval: float | None = None,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        resolve_timeout: float = DEFAULT_RESOLVE_TIMEOUT,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        if not isinstance(provider, DiscoveryProvider):
            fail("Discovery", "provider", provider,
                 "a discovery provider (resolve, changed, start, stop)")
        self.service = service
        self.provider = provider
        self.interval = optional_positive("Discovery", "interval", interval)
        self.min_interval = positive("Discovery", "min_interval", min_interval)
        self.retry_interval = positive("Discovery", "retry_interval", retry_interval)
        self.resolve_timeout = positive("Discovery", "resolve_timeout", resolve_timeout)
        self._redact: Callable[[str], str] = redact or (lambda text: text)
        self.last_error: str | None = None
        """The message of the last failed round, ``None`` once a round (the watch and
        the resolve) succeeds again."""
        self._failing = 0  # failed rounds in a row
        self.resolves = 0
        """Successful resolves so far."""
        self._ttl: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the provider, resolve once, and keep resolving in the background."""
        await self.provider.start()
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop resolving and stop the provider."""
        task, self._task = self._task, None
        try:
            if task is not None:
                await cancel_and_wait(task)
        finally:  # (also when the caller is cancelled meanwhile)
            await self.provider.stop()

    async def refresh(self) -> bool:
        """Resolve now and install the answer; returns whether it succeeded."""
        return await self._resolve(None)

    async def _resolve(self, broken: Exception | None) -> bool:
        """One round's resolve; ``broken`` is the error of the round's watch, if it
        broke. A round that failed (its watch, its resolve or both: Redis down breaks
        both) emits one :class:`DiscoveryFailed`, saying what each failure said."""
        try:
            answer: Resolution = await asyncio.wait_for(self.provider.resolve(),
                                                       self.resolve_timeout)
            if not answer.backends:
                raise LookupError("the provider returned no backends")
            self.service.set_backends(_unique(answer.backends))
        except Exception as error:
            self._failed(error, broken)
            return False
        self._ttl = answer.ttl
        self.resolves += 1
        if broken is not None:
            # The backends are current, the watch is not: the next round comes after
            # retry_interval, and the streak ends once a round passes whole.
            self._failed(broken, None, resolved=True)
        elif self.last_error is not None:
            self._recovered()
        return True

    def _failed(self, error: Exception, also: Exception | None, *,
                resolved: bool = False) -> None:
        # `resolved`: the round's resolve succeeded, only its watch (`error`) broke.
        message = self._message(error)
        if also is not None and (other := self._message(also)) != message:
            message = f"{message}; watching for changes failed too: {other}"
        kept = tuple(b.address for b in self.service.backends)
        self.last_error = message
        self._failing += 1
        # The first failed round of a streak is logged, the rest held back until one
        # succeeds (each retry_interval of an outage was another WARNING).
        log = _log.warning if self._failing == 1 else _log.debug
        if resolved:  # (its backends are current: none is "kept")
            log("discovery (%s) of service %r: watching for changes failed, its %d "
                "backends are as just resolved: %s; resolved again every %g s until the "
                "watch works, logged again once it does", self.provider.kind,
                self.service.name, len(kept), message, self.retry_interval)
        else:
            log("discovery (%s) of service %r failed, keeping its %d last known backends: "
                "%s; retried every %g s, logged again once it succeeds", self.provider.kind,
                self.service.name, len(kept), message, self.retry_interval)
        self._emit(DiscoveryFailed(policy="discovery", service=self.service.name,
                                   provider=self.provider.kind, error=message,
                                   backends=tuple(self._redact(a) for a in kept)))

    def _recovered(self) -> None:
        backends = tuple(b.address for b in self.service.backends)
        _log.info("discovery (%s) of service %r succeeds again after %d failed rounds, "
                  "%d backends", self.provider.kind, self.service.name, self._failing,
                  len(backends))
        self.last_error = None
        self._failing = 0
        self._emit(DiscoveryRecovered(policy="discovery", service=self.service.name,
                                      provider=self.provider.kind, backends=backends))

    def _message(self, error: Exception) -> str:
        return self._redact(f"{type(error).__name__}: {error}")

    def _emit(self, event: DiscoveryFailed | DiscoveryRecovered) -> None:
        hooks = getattr(self.service, "hooks", None)
        if hooks is not None and hooks.active:
            hooks.emit(event)

    def _delay(self) -> float | None:
        if self.last_error is not None:
            return self.retry_interval
        if self.interval is not None:
            return self.interval
        if self._ttl is not None:
            return max(self.min_interval, self._ttl)
        return None

    def _clock(self) -> Clock:
        # Read at each wait: a service takes the mesh's clock when it joins the mesh
        # (Service._use_clock), which may be after this driver was made.
        clock: Clock = getattr(self.service, "clock", SYSTEM_CLOCK)
        return clock

    async def _wait(self, delay: float | None) -> None:
        """Return when the provider reports a change, or after ``delay`` seconds on
        the service's clock (``None``: no limit).

        Raises:
            Exception: the provider's ``changed()`` failed.
        """
        if delay is None:
            await self.provider.changed()
            return
        changed = asyncio.ensure_future(self.provider.changed())
        timer = asyncio.ensure_future(self._clock().asleep(delay))
        try:
            await asyncio.wait((changed, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            changed.cancel()
            # A cancelled watch finishes unwinding (a Redis subscription's read)
            # before the provider is asked again; its failure is taken (also when
            # this driver is being stopped: asyncio would log it as never retrieved).
            await asyncio.wait((changed,))
            failure = None if changed.cancelled() else changed.exception()
        if failure is not None:
            raise failure

    async def _loop(self) -> None:
        while True:
            broken = None
            try:
                await self._wait(self._delay())
            except Exception as error:  # a broken watch: resolve after retry_interval
                broken = error
                await self._clock().asleep(self.retry_interval)
            await self._resolve(broken)

    def __repr__(self) -> str:
        return f"Discovery({self.service.name!r}, {self.provider!r})"
