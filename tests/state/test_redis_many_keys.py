"""Per-key quotas with many keys refused at once (one quota per client address under
attack): what a process remembers of Redis's refusals and leases stays bounded,
and forgetting one never admits a call Redis would refuse."""

from __future__ import annotations

from typing import Any

import pytest
from redis_server import RedisServer

import meshlite as ml
from meshlite.state import RedisStore, _redis_gcra

SMALL = 64
"""The bound under test (4,096 in production; smaller keeps the test quick)."""


def test_remembered_refusals_stay_bounded(store: RedisStore,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_redis_gcra, "_MAX_LOCAL_KEYS", SMALL)
    gcra: Any = store.rate_limit("login", 1000.0, 0.0)  # one call per 1,000 s and key
    for n in range(10 * SMALL):
        assert gcra.reserve(f"10.0.{n}", 0.0)[0] == 0  # admitted
        assert gcra.reserve(f"10.0.{n}", 0.0)[0] > 0  # refused, and remembered
    # Every refusal is still pending: before, none could be dropped, so the table
    # grew with each one and was copied whole at every refusal past the bound.
    assert len(gcra._refused) <= SMALL
    for n in range(10 * SMALL):  # remembered or forgotten, each one is still refused
        assert gcra.reserve(f"10.0.{n}", 0.0)[0] > 0


def test_a_keyed_limit_refuses_as_before(store: RedisStore,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_redis_gcra, "_MAX_LOCAL_KEYS", SMALL)
    call = ml.RateLimit(0.001, burst=1, store=store, name="ip", mode="reject",
                        key=lambda address: address)(lambda address: address)
    for n in range(4 * SMALL):
        assert call(f"10.1.{n}") == f"10.1.{n}"
    for n in range(4 * SMALL):
        with pytest.raises(ml.RateLimitedError):
            call(f"10.1.{n}")
    assert store.fallbacks == {}


def test_leases_stay_bounded(redis_server: RedisServer, prefix: str,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_redis_gcra, "_MAX_LOCAL_KEYS", SMALL)
    store = RedisStore(redis_server.url, prefix=prefix, timeout=2.0, rate_lease=4)
    gcra: Any = store.rate_limit("api", 100.0, 300.0)  # a burst of 4, leased at once
    try:
        for n in range(10 * SMALL):
            assert gcra.reserve(f"t{n}", 0.0)[0] == 0  # takes 4 slots, keeps 3 for later
        assert len(gcra._leases) <= SMALL
    finally:
        store.close()
