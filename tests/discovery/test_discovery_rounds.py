"""A round of the discovery driver (the wait on the provider's watch, then the resolve)
that fails emits one ``DiscoveryFailed``, however many of its parts failed, and a
streak of failed rounds is logged once, its end once."""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

import meshlite as ml
from meshlite.discovery import (
    BaseProvider,
    Discovery,
    DiscoveryFailed,
    DiscoveryRecovered,
    Resolution,
)
from meshlite.routing import Backend
from meshlite.testing import FakeClock

DAY = 86400.0
ROUNDS = 4


class Down(BaseProvider):
    """A source down for ``ROUNDS`` resolves once armed: its watch fails while it is
    down (at once, as a subscription to a Redis that is down does), and so does its
    resolve."""

    def __init__(self, watch_error: str) -> None:
        self.armed = False
        self.watch_error = watch_error
        self.failed = 0

    @property
    def down(self) -> bool:
        return self.armed and self.failed < ROUNDS

    async def resolve(self) -> Resolution:
        if self.down:
            self.failed += 1
            raise ConnectionError("source down")
        return Resolution((Backend("http://127.0.0.1:8001"),))

    async def changed(self) -> None:
        if self.down:
            raise ConnectionError(self.watch_error)
        await super().changed()


async def until_recovered(provider: Down | WatchBroken) -> list[ml.Event]:
    """Run a service discovered through ``provider``, armed once the mesh is open, day
    by day of a fake clock until discovery recovers; returns the service's events.
    Only advance() moves the clock: each makes one wait due (a clock jumping by itself
    whenever the loop is quiet ran the driver's rounds on without end)."""
    clock = FakeClock(autojump_threshold=math.inf)
    service = ml.Service("users")
    events: list[ml.Event] = []
    service.add_hook(events.append)
    service.attach(Discovery(service, provider, interval=DAY, retry_interval=DAY))
    async with ml.Mesh([service], clock=clock):
        provider.armed = True
        async with asyncio.timeout(10.0):  # each advance makes the next wait due
            while not any(isinstance(e, DiscoveryRecovered) for e in events):
                clock.advance(DAY)
                await asyncio.sleep(0.001)
    return events


@pytest.mark.parametrize("watch_error", ["source down", "watch refused"])
async def test_a_round_failing_twice_is_one_event(watch_error: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    provider = Down(watch_error)
    with caplog.at_level(logging.DEBUG, logger="meshlite.discovery"):
        events = await until_recovered(provider)
    failed = [e for e in events if isinstance(e, DiscoveryFailed)]
    assert len(failed) == ROUNDS  # not one more for each broken watch
    # The first failed round's watch was fine (its interval ended); in the next ones
    # both failed, and one event says what each said, once when they agree.
    assert failed[0].error == "ConnectionError: source down"
    both = "ConnectionError: source down" + (
        "" if watch_error == "source down"
        else "; watching for changes failed too: ConnectionError: watch refused")
    assert [e.error for e in failed[1:]] == [both] * (ROUNDS - 1)
    shown = [r for r in caplog.records
             if r.name == "meshlite.discovery" and r.levelno >= logging.INFO]
    assert [r.levelname for r in shown] == ["WARNING", "INFO"]
    assert f"after {ROUNDS} failed rounds" in shown[-1].getMessage()


class WatchBroken(BaseProvider):
    """A source whose resolves work and whose watch fails ``ROUNDS`` times once armed
    (a subscription refused while reads are served)."""

    def __init__(self) -> None:
        self.armed = False
        self.refused = 0

    async def resolve(self) -> Resolution:
        return Resolution((Backend("http://127.0.0.1:8001"), Backend("http://127.0.0.1:8002")))

    async def changed(self) -> None:
        if self.armed and self.refused < ROUNDS:
            self.refused += 1
            raise ConnectionError("subscribe refused")
        await super().changed()


async def test_a_round_whose_watch_alone_broke_says_its_backends_are_current(
        caplog: pytest.LogCaptureFixture) -> None:
    # Its resolve succeeded: "keeping its last known backends" would tell an operator
    # that discovery is stale when only the push of changes is.
    provider = WatchBroken()
    with caplog.at_level(logging.INFO, logger="meshlite.discovery"):
        events = await until_recovered(provider)
    failed = [e for e in events if isinstance(e, DiscoveryFailed)]
    assert [e.error for e in failed] == ["ConnectionError: subscribe refused"] * ROUNDS
    warning, recovered = [r.getMessage() for r in caplog.records
                          if r.name == "meshlite.discovery" and r.levelno >= logging.INFO]
    assert ("discovery (custom) of service 'users': watching for changes failed, its 2 "
            "backends are as just resolved: ConnectionError: subscribe refused") in warning
    assert "last known" not in warning
    assert "succeeds again" in recovered
