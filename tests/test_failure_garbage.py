"""A failed call leaves no reference cycle behind: its error, its traceback's frames and
the call's context are freed when the caller drops the error, not left for the garbage
collector. During an outage every call fails; each used to leave 25-80 objects in
cycles (a 503 through ``mesh.aiohttp()`` 81), which the collector had to find, and which
a collection during the outage moved to an older generation with what their frames held
(a request, its body) until a full collection."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest

import meshlite as ml
from meshlite._context import CallContext
from meshlite.testing import FakeBackend

CALLS = 20


@contextmanager
def cyclic_garbage() -> Iterator[list[Any]]:
    """The objects in reference cycles made in the block that meshlite's code owns
    (its frames, a call's context), filled in when the block ends."""
    found: list[Any] = []
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found.extend(o for o in gc.garbage if _ours(o))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()


def _ours(thing: Any) -> bool:
    if isinstance(thing, CallContext):
        return True
    code = getattr(thing, "f_code", None)
    return code is not None and "/meshlite/" in code.co_filename and \
        "/meshlite/testing/" not in code.co_filename


def _described(found: list[Any]) -> list[str]:
    return sorted({f"{o.f_code.co_filename.rsplit('/', 2)[-2:]}:{o.f_code.co_name}"
                   if hasattr(o, "f_code") else type(o).__name__ for o in found})


async def _fails(backend: Any) -> None:
    raise ConnectionError("down")


def _fails_sync(backend: Any) -> None:
    raise ConnectionError("down")


def _mesh() -> ml.Mesh:
    return ml.Mesh([ml.Service("svc", ["http://127.0.0.1:1", "http://127.0.0.1:2"],
                               outlier_detection=None)])


async def test_a_failed_mesh_call_leaves_no_cycle() -> None:
    async with _mesh() as mesh:
        with cyclic_garbage() as found:
            for _ in range(CALLS):
                with pytest.raises(ConnectionError):
                    await mesh.call("svc", _fails)
        assert not found, _described(found)


def test_a_failed_sync_mesh_call_leaves_no_cycle() -> None:
    with _mesh() as mesh:
        with cyclic_garbage() as found:
            for _ in range(CALLS):
                with pytest.raises(ConnectionError):
                    mesh.call_sync("svc", _fails_sync)
        assert not found, _described(found)


@pytest.mark.parametrize("pipeline", [
    ml.Pipeline(ml.Timeout(5), ml.Retry(attempts=3, backoff=ml.backoff.constant(0))),
    ml.Pipeline(ml.Fallback(lambda *args, **kwargs: "fallback"),
                ml.Retry(attempts=2, backoff=ml.backoff.constant(0))),
    ml.Pipeline(ml.FaultInjection(rate=1.0, error=ConnectionError("injected"))),
    ml.Pipeline(ml.Cache(ttl=60)),  # a miss whose call fails, no caller waiting on it
], ids=["timeout-retry", "fallback-retry", "fault-injection", "cache-miss"])
async def test_a_pipeline_call_that_failed_leaves_no_cycle(
        pipeline: ml.Pipeline) -> None:
    def fails() -> None:
        raise ConnectionError("down")

    with cyclic_garbage() as found:
        for _ in range(CALLS):
            with suppress(ConnectionError):
                await pipeline.acall(fails)
            with suppress(ConnectionError):
                pipeline.call(fails)
    assert not found, _described(found)


async def test_a_hedged_call_whose_attempts_all_failed_leaves_no_cycle() -> None:
    pipeline = ml.Pipeline(ml.Hedge(delay=0.0, max_hedges=1))

    async def fails() -> None:
        await asyncio.sleep(0)
        raise ConnectionError("down")

    with cyclic_garbage() as found:
        for _ in range(CALLS):
            with suppress(ConnectionError):
                await pipeline.acall(fails)
    assert not found, _described(found)


async def test_failed_http_requests_leave_no_cycle() -> None:
    async with FakeBackend() as backend:
        backend.set(status=503)
        async with ml.Mesh([ml.Service("svc", [backend.url], outlier_detection=None)]) as mesh:
            session = mesh.aiohttp("svc")
            client = mesh.http("svc")
            sync_client = mesh.http_sync("svc")

            def sync_requests() -> None:
                for _ in range(CALLS):
                    assert sync_client.get("/x").status_code == 503

            for _warm in range(2):  # first requests make pools, caches: not garbage
                with cyclic_garbage() as found:
                    for _ in range(CALLS):
                        async with session.get("/x") as response:
                            assert response.status == 503
                            await response.read()
                        assert (await client.get("/x")).status_code == 503
                    await asyncio.to_thread(sync_requests)
            assert not found, _described(found)


async def test_http_requests_cut_by_a_timeout_leave_no_cycle() -> None:
    async with FakeBackend() as backend:
        backend.set(latency=0.05)
        pipeline = ml.Pipeline(ml.Timeout(0.005), ml.Retry(attempts=2))
        async with ml.Mesh([ml.Service("svc", [backend.url], outlier_detection=None,
                                       pipeline=pipeline)]) as mesh:
            session = mesh.aiohttp("svc")
            client = mesh.http("svc")
            for _warm in range(2):
                with cyclic_garbage() as found:
                    for _ in range(5):
                        with pytest.raises(ml.TimeoutExceeded):
                            async with session.get("/x"):
                                pass
                        with pytest.raises(ml.TimeoutExceeded):
                            await client.get("/x")
            assert not found, _described(found)


def test_a_wire_timeout_at_the_deadline_leaves_no_cycle() -> None:
    # The error naming the deadline is made in at_deadline, which raises it: its
    # frame must not keep holding it (the error's traceback holds the frame).
    from meshlite._http._outgoing import at_deadline

    ctx = CallContext(_fails_sync, (), {}, "op", "svc")
    ctx.deadline = ctx.clock.monotonic() - 1.0
    with cyclic_garbage() as found:
        for _ in range(CALLS):
            with pytest.raises(ml.TimeoutExceeded):
                at_deadline(TimeoutError("timed out"), ctx)
    assert not found, _described(found)
