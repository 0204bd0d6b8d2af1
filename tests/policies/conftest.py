"""Fixtures of the policy tests that share state through a real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _system import require_program


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """The URL of a redis-server on a free loopback port, one per test module."""
    from state.redis_server import RedisServer

    server = RedisServer(require_program("redis-server", "redis-server")).start()
    try:
        yield server.url
    finally:
        server.close()
