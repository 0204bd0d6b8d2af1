"""A Cache on a RedisStore given results its codec cannot encode: whatever the codec
raises, the caller gets the result, it is not cached, and the log names the result's
type and the function. A real redis-server on loopback."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest

import meshlite as ml
from meshlite.state import RedisStore

pytest.importorskip("redis")


_prefixes = itertools.count()


def store_on(url: str, **options: Any) -> RedisStore:
    return RedisStore(url, prefix=f"values{next(_prefixes)}", timeout=2.0, **options)


def holding_itself() -> list[Any]:
    value: list[Any] = ["a"]
    value.append(value)
    return value


def dict_holding_itself() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


def nested_too_deep() -> list[Any]:
    value: list[Any] = []
    inner = value
    for _ in range(5000):  # past the recursion limit of json.dumps
        inner.append([])
        inner = inner[0]
    return value


@pytest.mark.parametrize("make", [holding_itself, dict_holding_itself, nested_too_deep])
def test_a_result_json_refuses_is_returned_not_cached(
        redis_url: str, make: Any, caplog: pytest.LogCaptureFixture) -> None:
    # A value holding itself was walked forever by the check for non-string dict
    # keys (the call never returned); one nested too deep raised RecursionError
    # from json.dumps to a caller whose call had succeeded.
    made: list[Any] = []

    def build(x: int) -> Any:
        made.append(make())
        return made[-1]

    build.__qualname__ = f"build_{make.__name__}"  # logged once per function name
    call = ml.Cache(ttl=30.0, store=store_on(redis_url), name="json")(build)
    with caplog.at_level(logging.WARNING, logger="meshlite.state"):
        assert call(1) is made[0]
        assert call(1) is made[1]  # not cached: computed again
    kind = type(made[0]).__name__
    assert f"Cache: a {kind} result cannot be stored with the store's JsonCodec()" in caplog.text
    assert f"that result of {__name__}.{build.__qualname__} is not cached" in caplog.text


async def test_async_a_result_holding_itself_is_returned_not_cached(redis_url: str) -> None:
    made: list[Any] = []

    async def build(x: int) -> Any:
        made.append(holding_itself())
        return made[-1]

    call = ml.Cache(ttl=30.0, store=store_on(redis_url), name="ajson")(build)
    assert await call(1) is made[0]
    assert await call(1) is made[1]


def local_function_holder() -> dict[str, Any]:
    def local() -> None:
        """Pickle refuses a function defined in another (AttributeError on 3.11 and
        3.13, PicklingError on 3.14): neither a TypeError nor a ValueError."""

    return {"callback": local}


def test_a_result_pickle_refuses_whatever_it_raises_is_returned_not_cached(
        redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    made: list[Any] = []

    def build(x: int) -> Any:
        made.append(local_function_holder())
        return made[-1]

    call = ml.Cache(ttl=30.0, store=store_on(redis_url, codec="pickle"), name="pickle")(build)
    with caplog.at_level(logging.WARNING, logger="meshlite.state"):
        assert call(1) is made[0]
        assert call(1) is made[1]
    assert "Cache: a dict result cannot be stored with the store's codec 'pickle'" in caplog.text
    assert "local_function_holder.<locals>.local" in caplog.text  # what pickle said


class Refusing:
    """A codec of one's own whose dumps raises something of its own."""

    name = "refusing"

    def dumps(self, value: Any) -> bytes:
        raise LookupError("no encoder registered for this type")

    def loads(self, data: bytes) -> Any:
        raise AssertionError("nothing was stored")


def test_a_codec_of_ones_own_raising_anything_leaves_the_call_alone(redis_url: str) -> None:
    calls: list[int] = []

    def fetch(x: int) -> int:
        calls.append(x)
        return x

    call = ml.Cache(ttl=30.0, store=store_on(redis_url, codec=Refusing()))(fetch)
    assert call(1) == call(1) == 1
    assert calls == [1, 1]
