"""A watcher of a RedisRegistry while its Redis is down: one ``DiscoveryFailed`` per
failed round (the subscription and the resolve fail together; one event says both),
the streak logged once and its end once."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from redis_server import RedisServer

import meshlite as ml
from meshlite.discovery import Discovery, DiscoveryFailed, DiscoveryRecovered, Resolution
from meshlite.discovery._redis import RedisRegistry

RETRY = 0.05


class Counted(RedisRegistry):
    """A registry counting its failed resolves and its broken watches."""

    failed_resolves = 0
    broken_watches = 0

    async def resolve(self) -> Resolution:
        try:
            return await super().resolve()
        except Exception:
            self.failed_resolves += 1
            raise

    async def changed(self) -> None:
        try:
            await super().changed()
        except Exception:
            self.broken_watches += 1
            raise


async def until(condition: object, what: str, seconds: float = 30.0) -> None:
    """Await ``condition()`` (a bound on a wait, not a timed assertion)."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: not reached"
        await asyncio.sleep(0.01)


async def test_an_outage_is_one_event_per_failed_round(fresh_server: RedisServer, prefix: str,
                                                       caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    service = ml.Service("users", backends=["http://127.0.0.9:80"])
    failed: list[DiscoveryFailed] = []
    recovered: list[DiscoveryRecovered] = []
    service.add_hook(lambda e: failed.append(e) if isinstance(e, DiscoveryFailed) else None)
    service.add_hook(lambda e: recovered.append(e) if isinstance(e, DiscoveryRecovered)
                     else None)
    watcher = Counted("users", fresh_server.url, prefix=prefix, ttl=30.0)
    member = RedisRegistry("users", fresh_server.url, prefix=prefix, ttl=30.0)
    await member.aregister("http://127.0.0.1:80")
    discovery = Discovery(service, watcher, min_interval=60.0, retry_interval=RETRY)
    with caplog.at_level(logging.DEBUG, logger="meshlite.discovery"):
        await discovery.start()
        try:
            assert [b.address for b in service.backends] == ["http://127.0.0.1:80"]
            fresh_server.kill()
            await until(lambda: watcher.failed_resolves >= 4, "four failed rounds")
            fresh_server.start()  # empty: the member registers again
            await member.aregister("http://127.0.0.1:80")
            await until(lambda: recovered, "the recovery")
        finally:
            await discovery.stop()
            await member.stop()
    # One event per failed resolve (each round's), not one more per broken watch.
    assert watcher.broken_watches >= 1
    assert len(failed) == watcher.failed_resolves
    # Both parts of the first round (the subscription broke, then the resolve
    # failed) say what they saw, in its one event.
    assert failed[0].error.startswith("StoreUnavailableError: store "), failed[0].error
    assert "watching for changes failed too" in failed[0].error
    assert "subscription to" in failed[0].error
    assert [b.address for b in service.backends] == ["http://127.0.0.1:80"]
    records = [r for r in caplog.records if r.name == "meshlite.discovery"]
    warnings = [r for r in records if r.levelno >= logging.WARNING]
    ends = [r for r in records if r.levelno == logging.INFO and "succeeds again" in
            r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "subscription to" in warnings[0].getMessage()
    assert len(ends) == 1
    assert f"after {len(failed)} failed rounds" in ends[0].getMessage()
    assert len(recovered) == 1
