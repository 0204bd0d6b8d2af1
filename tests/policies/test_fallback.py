from __future__ import annotations

import asyncio

import pytest

import meshlite as ml


def boom() -> int:
    raise ConnectionError("down")


def test_value_returned_on_failure() -> None:
    assert ml.Pipeline(ml.Fallback(7)).call(boom) == 7


def test_success_passes_through() -> None:
    assert ml.Pipeline(ml.Fallback(7)).call(lambda: 1) == 1


def test_handler_sees_the_error() -> None:
    seen: list[BaseException] = []

    def handler(error: BaseException) -> str:
        seen.append(error)
        return "cached"

    assert ml.Fallback(handler=handler)(boom)() == "cached"
    assert isinstance(seen[0], ConnectionError)


def test_on_filters_errors() -> None:
    fb = ml.Pipeline(ml.Fallback(0, on=(ml.CircuitOpenError,)))
    with pytest.raises(ConnectionError):
        fb.call(boom)


async def test_async_handler_awaited() -> None:
    async def handler(error: BaseException) -> str:
        return "async"

    async def aboom() -> str:
        raise ConnectionError

    assert await ml.Pipeline(ml.Fallback(handler=handler)).acall(aboom) == "async"


def test_async_handler_on_a_sync_call_is_refused_when_decorating() -> None:
    # A sync caller cannot await the handler: it would get a coroutine object as the
    # answer (and a "never awaited" warning) instead of the fallback value.
    async def handler(error: BaseException) -> str:
        return "async"

    pipeline = ml.Pipeline(ml.Fallback(handler=handler))
    with pytest.raises(ml.ConfigError, match=r"^Fallback: handler .*coroutine function.*sync"):
        pipeline(boom)
    with pytest.raises(ml.ConfigError, match=r"^Fallback: handler "):
        pipeline.call(boom)


async def test_cancellation_never_swallowed() -> None:
    @ml.Fallback(0)
    async def slow() -> int:
        await asyncio.sleep(10)
        return 1

    task = asyncio.ensure_future(slow())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_keyboard_interrupt_propagates() -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ml.Pipeline(ml.Fallback(0)).call(interrupted)


def test_event_emitted() -> None:
    events: list[ml.Event] = []
    fb = ml.Fallback(0)
    fb.add_hook(events.append)
    ml.Pipeline(fb).call(boom)
    assert [type(e).__name__ for e in events] == ["FallbackUsed"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({}, "give exactly one of value= or handler=; none was given"),
     ({"value": 1, "handler": str},
      "give exactly one of value= or handler=; value= and handler= were given"),
     ({"value": 1, "on": 3}, "on"), ({"handler": 5}, "handler")],
)
def test_bad_options(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"Fallback: {field}"):
        ml.Fallback(**kwargs)  # type: ignore[arg-type]
