"""A reply Redis sent in time but that the store's event loop reads late (the loop was
held past ``timeout``) is an answer: the decision gets it and the store stays up.

uvloop (the loop uvicorn installs) runs its due timers before it polls the sockets, so
after a stall the request's timer comes first while the reply waits in the socket: the
store counted it a timeout and marked a healthy Redis down for every decision of the
process (``store ... is unavailable (TimeoutError: no reply within 0.05 s)``, then
``answers again after 0.0 s``, a dozen times a minute under load). Each test runs on
asyncio's loop and on uvloop's; a Redis that sends nothing still times out."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
from _loop_kinds import LOOP_KINDS, use_loop_kind
from redis_server import RedisServer
from reply_gate import ReplyGate

from meshlite.state import RedisStore, StoreRecovered, StoreUnavailable, StoreUnavailableError

HELD = 0.3
"""Seconds the loop is held: well past the store's timeout (0.05 s)."""


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    return use_loop_kind(request.param)


@pytest.fixture
def gate(fresh_server: RedisServer) -> Iterator[ReplyGate]:
    gate = ReplyGate(fresh_server.port)
    try:
        yield gate
    finally:
        gate.close()


def _outage_events(store: RedisStore) -> list[object]:
    seen: list[object] = []
    store.add_hook(lambda event: seen.append(event)
                   if isinstance(event, StoreUnavailable | StoreRecovered) else None)
    return seen


async def _held_while_the_reply_arrives(store: RedisStore, gate: ReplyGate) -> object:
    """One PING whose reply reaches the store's socket while the loop is held (in a
    reader callback, as a protocol's data_received would hold it) until past the
    request's timeout."""
    loop = asyncio.get_running_loop()
    wake, ring = socket.socketpair()

    def hold_the_loop() -> None:
        wake.recv(1)
        loop.remove_reader(wake.fileno())
        gate.release()  # the reply is in the store's socket now
        time.sleep(HELD)  # the point: the loop is late to read it

    loop.add_reader(wake.fileno(), hold_the_loop)
    gate.hold(on_held=lambda: ring.send(b"!"))  # Redis answered: the loop is held now
    try:
        return await store.acommand("PING")
    except StoreUnavailableError as error:
        return error
    finally:
        wake.close()
        ring.close()


def test_a_reply_read_late_by_a_held_loop_is_an_answer(loop_kind: str,
                                                        gate: ReplyGate) -> None:
    async def main() -> tuple[object, bool, dict[tuple[str, str], int], list[object]]:
        store = RedisStore(gate.url, timeout=0.05)
        events = _outage_events(store)
        assert await store.acommand("PING") == b"PONG"  # connected
        try:
            reply = await _held_while_the_reply_arrives(store, gate)
            return reply, store.available, dict(store.fallbacks), events
        finally:
            await store.aclose()

    reply, available, fallbacks, events = asyncio.run(main())
    assert reply == b"PONG", reply  # was: did not answer: TimeoutError (uvloop)
    assert available
    assert events == []  # no StoreUnavailable / StoreRecovered pair
    assert fallbacks == {}


def test_a_reply_that_never_comes_still_times_out(loop_kind: str, gate: ReplyGate) -> None:
    # The grace is for a reply that came: Redis holding its reply (hung) sends nothing.
    async def main() -> tuple[object, bool]:
        store = RedisStore(gate.url, timeout=0.05, retry_interval=10.0)
        assert await store.acommand("PING") == b"PONG"
        gate.hold()
        try:
            await store.acommand("PING")
        except StoreUnavailableError as error:
            return error, store.available
        finally:
            gate.release()
            await store.aclose()
        return None, store.available

    error, available = asyncio.run(main())
    assert isinstance(error, StoreUnavailableError)
    assert "no reply within 0.05 s" in str(error)
    assert not available
