"""Injected latency in a sync call ends at the call's deadline, as a slow backend's
answer through the sync wire does (and an async call's injected latency does): it
used to block for the whole latency, then time out."""

from __future__ import annotations

import asyncio

import pytest

import meshlite as ml
from meshlite.testing import FakeClock


def test_sync_latency_past_the_deadline_is_cut_there() -> None:
    clock = FakeClock()
    called: list[int] = []
    timed = ml.Pipeline(ml.Timeout(0.2, clock=clock),
                        ml.FaultInjection(1.0, latency=1.5, clock=clock))
    with pytest.raises(ml.TimeoutExceeded) as cut:
        timed.call(lambda: called.append(1))
    assert clock.monotonic() == pytest.approx(0.2, abs=1e-5)  # not 1.5
    assert called == []
    assert "injected by meshlite FaultInjection" in repr(cut.value.__cause__.__notes__)


def test_sync_latency_within_the_deadline_is_waited_in_full() -> None:
    clock = FakeClock()
    timed = ml.Pipeline(ml.Timeout(2.0, clock=clock),
                        ml.FaultInjection(1.0, latency=1.5, clock=clock))
    assert timed.call(lambda: "ok") == "ok"
    assert clock.monotonic() == pytest.approx(1.5)


def test_the_async_twin_already_did() -> None:
    clock = FakeClock(autojump_threshold=0.0)
    timed = ml.Pipeline(ml.Timeout(0.2, clock=clock),
                        ml.FaultInjection(1.0, latency=1.5, clock=clock))

    async def fn() -> str:
        return "ok"

    async def main() -> None:
        with pytest.raises(ml.TimeoutExceeded):
            await timed.acall(fn)

    asyncio.run(main())
    assert clock.monotonic() == pytest.approx(0.2)
