"""A deadline that passed while nothing awaited (the loop held by a blocking call, or
the clock moved): the policies inside find no time left and raise at once, before
the Timeout's own timer can fire. The caller still gets the Timeout's own error,
with what the inside raised as its cause, as a sync call does
(docs/policies/timeout.md, "Nested timeouts"), on each of the async runners."""

from __future__ import annotations

import time

import pytest

import meshlite as ml
from meshlite.testing import FakeBackend, FakeClock


def _outer_error(raised: pytest.ExceptionInfo[ml.TimeoutExceeded], seconds: float) -> None:
    error = raised.value
    assert error.policy == "timeout"
    assert f"timed out after {seconds} s" in str(error), error
    assert isinstance(error.__cause__, ml.TimeoutExceeded)  # what the inside raised


async def test_an_inner_timeout_finding_no_time_left_is_the_outer_timeouts() -> None:
    @ml.Timeout(5.0)
    async def inner() -> int:
        return 1

    @ml.Timeout(0.01)
    async def outer() -> int:
        time.sleep(0.02)  # holds the loop past the deadline  # noqa: ASYNC251
        return await inner()

    with pytest.raises(ml.TimeoutExceeded) as raised:
        await outer()
    _outer_error(raised, 0.01)
    assert "an outer deadline left it 0 s" in str(raised.value.__cause__)


@pytest.mark.parametrize("pessimistic", [False, True])
async def test_on_a_fake_clock_too(pessimistic: bool) -> None:
    clock = FakeClock()

    @ml.Timeout(5.0, clock=clock)
    async def inner() -> int:
        return 1

    @ml.Timeout(1.0, clock=clock, pessimistic=pessimistic)
    async def outer() -> int:
        clock.advance(2.0)  # the deadline passes while nothing awaits
        return await inner()

    with pytest.raises(ml.TimeoutExceeded) as raised:
        await outer()
    _outer_error(raised, 1.0)


async def test_a_mesh_call_refused_for_lack_of_time_is_the_callers_timeout() -> None:
    backend = FakeBackend()
    async with backend, ml.Mesh([ml.Service("users", [backend.url])]) as mesh:
        client = mesh.http("users")
        assert (await client.get("/")).status_code == 200  # warm: nothing lazy left

        @ml.Timeout(0.01)
        async def handler() -> None:
            time.sleep(0.02)  # holds the loop past the deadline  # noqa: ASYNC251
            await client.get("/users/1")

        with pytest.raises(ml.TimeoutExceeded) as raised:
            await handler()
    _outer_error(raised, 0.01)
    assert raised.value.__cause__ is not None
    assert raised.value.__cause__.policy == "routing"  # type: ignore[attr-defined]
    assert "passed before attempt 1 could start" in str(raised.value.__cause__)
    assert backend.request_count == 1  # the warm-up only: nothing was sent
