"""Processes whose stores encode cached values with different codecs (a deploy that
changes ``codec=``, one process at a time) against one real Redis: each keeps its own
entries, none serves a value another codec wrote, and an entry that cannot be decoded
is a miss that is logged once per window, not once per call."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import redis
from redis_server import RedisServer

import meshlite as ml
from meshlite.state import RedisStore


class Runs:
    """A service whose calls are counted; returns what it was given."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: Any) -> Any:
        self.calls += 1
        return x


class SmallInts:
    """A codec that writes an integer below 128 as one byte, as msgpack does: the JSON
    ``5`` (the byte ``0x35``) reads back as 53 with it, without an error."""

    name = "small-ints"

    def dumps(self, value: Any) -> bytes:
        if isinstance(value, int) and 0 <= value < 128:
            return bytes([value])
        return json.dumps(value).encode()

    def loads(self, data: bytes) -> Any:
        return data[0] if len(data) == 1 else json.loads(data)


def test_processes_with_two_codecs_keep_their_entries_apart(redis_server: RedisServer,
                                                           prefix: str) -> None:
    runs = Runs()
    old = RedisStore(redis_server.url, prefix=prefix, timeout=2.0)  # json
    new = RedisStore(redis_server.url, prefix=prefix, timeout=2.0, codec="pickle")
    before, after = ml.Cache(ttl=30.0, store=old), ml.Cache(ttl=30.0, store=new)
    a, b = before(runs), after(runs)
    for _ in range(10):  # the old and the new process take turns
        assert list(a((1, 2))) == [1, 2]  # JSON gives a tuple back as a list
        assert b((1, 2)) == (1, 2)
    assert runs.calls == 2  # one per codec, not one per call (each overwrote the other)
    assert before.invalidate((1, 2)) == 2  # the index names both: either drops both
    a((1, 2))
    b((1, 2))
    assert runs.calls == 4
    old.close()
    new.close()


async def test_a_value_another_codec_would_misread_is_not_served(
        redis_server: RedisServer, prefix: str) -> None:
    runs = Runs()

    async def fetch(x: int) -> int:
        return int(runs(x))

    old = RedisStore(redis_server.url, prefix=prefix, timeout=2.0)
    new = RedisStore(redis_server.url, prefix=prefix, timeout=2.0, codec=SmallInts())
    assert await ml.Cache(ttl=30.0, store=old)(fetch)(5) == 5  # stored as JSON: b"5"
    assert await ml.Cache(ttl=30.0, store=new)(fetch)(5) == 5  # not the 53 it would read
    assert await ml.Cache(ttl=30.0, store=new)(fetch)(5) == 5  # its own entry, a hit
    assert runs.calls == 2
    await old.aclose()
    await new.aclose()


def test_an_entry_that_cannot_be_decoded_is_logged_once_per_window(
        redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    runs = Runs()
    store = RedisStore(redis_server.url, prefix=prefix, timeout=2.0)
    call = ml.Cache(ttl=30.0, store=store)(runs)
    assert call(1) == 1
    raw = redis.Redis.from_url(redis_server.url)
    (key,) = raw.keys(f"{prefix}:cache:default:e:*")
    with caplog.at_level(logging.WARNING, logger="meshlite.state"):
        for _ in range(20):  # another program keeps writing there
            raw.set(key, b"\x80not json")
            assert call(1) == 1  # a miss, never an error
    assert runs.calls == 21
    warned = [r.getMessage() for r in caplog.records if "could not be decoded" in r.getMessage()]
    assert len(warned) == 1, warned
    assert "JsonCodec()" in warned[0]
    assert "UnicodeDecodeError" in warned[0] or "JSONDecodeError" in warned[0]
    raw.close()
    store.close()
