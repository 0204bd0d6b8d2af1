"""Fixtures of the policy tests that share state through a real Redis."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from _system import require_program

if TYPE_CHECKING:
    from meshlite.state import RedisStore


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """The URL of a redis-server on a free loopback port, one per test module."""
    from state.redis_server import RedisServer

    server = RedisServer(require_program("redis-server", "redis-server")).start()
    try:
        yield server.url
    finally:
        server.close()


_prefixes = itertools.count()


@pytest.fixture
def replicas(redis_url: str) -> Iterator[tuple[RedisStore, RedisStore]]:
    """Two replicas' stores on one Redis, under a key prefix of their own."""
    from meshlite.state import RedisStore

    prefix = f"replicas{next(_prefixes)}"
    one = RedisStore(redis_url, prefix=prefix, timeout=2.0)
    two = RedisStore(redis_url, prefix=prefix, timeout=2.0)
    try:
        yield one, two
    finally:
        one.close()
        two.close()
