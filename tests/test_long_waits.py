"""Sync waits of a huge duration (a backoff, a rate limit's slot, a deadline of
centuries) behave: the system clock sleeps in waits the platform accepts
(``time.sleep`` and socket timeouts refuse more than ``threading.TIMEOUT_MAX``, about
292 years, with ``OverflowError``), and a store timeout no socket can take is refused
when given. Nothing here sleeps for real: ``time.sleep`` is replaced by a recorder
that refuses what the platform refuses."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

import meshlite as ml
from meshlite._clock import SYSTEM_CLOCK
from meshlite.testing import FakeBackend

HUGE = 1e10  # about 317 years: more than any one platform wait


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """``time.sleep`` recording its argument, refusing what the platform refuses."""
    calls: list[float] = []

    def sleep(seconds: float) -> None:
        if seconds > threading.TIMEOUT_MAX:
            raise OverflowError("timestamp out of range for platform time_t")
        calls.append(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    return calls


def test_the_system_clock_sleeps_a_huge_duration_in_waits_the_platform_takes(
        slept: list[float]) -> None:
    SYSTEM_CLOCK.sleep(HUGE)
    assert len(slept) == 2
    assert all(s <= threading.TIMEOUT_MAX for s in slept)
    assert sum(slept) == pytest.approx(HUGE)


def test_a_retry_backoff_of_centuries_sleeps_then_retries(slept: list[float]) -> None:
    calls = []

    @ml.Retry(attempts=2, backoff=ml.backoff.constant(HUGE))
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("first attempt fails")
        return "ok"

    assert flaky() == "ok"
    assert sum(slept) == pytest.approx(HUGE)


def test_a_rate_limit_slot_centuries_away_is_waited_for(slept: list[float]) -> None:
    limit = ml.Pipeline(ml.RateLimit(rate=1.0, per=HUGE, burst=1, mode="wait"))
    assert limit.call(lambda: 1) == 1
    assert limit.call(lambda: 2) == 2  # the next slot is HUGE seconds away
    assert sum(slept) == pytest.approx(HUGE, rel=1e-6)


@pytest.mark.parametrize("http_pool", [None, {"retries": 1}], ids=["urllib3", "httpcore"])
def test_a_sync_request_under_a_deadline_of_centuries_is_sent(
        http_pool: dict[str, object] | None) -> None:
    # (`retries` is an option only httpcore's transport honours: the other wire.)
    with FakeBackend() as backend:
        mesh = ml.Mesh([ml.Service("users", [backend.url], http_pool=http_pool,
                                   pipeline=ml.Pipeline(ml.Timeout(HUGE)))])
        with mesh, mesh.http_sync("users", timeout=None) as client:  # the deadline's alone
            response = client.get("/users/1")
    assert response.status_code == 200


def test_a_sync_request_with_a_timeout_of_centuries_is_sent() -> None:
    with FakeBackend() as backend:
        mesh = ml.Mesh([ml.Service("users", [backend.url])])
        with mesh.http_sync("users", timeout=httpx.Timeout(HUGE)) as client:
            response = client.get("/users/1")
    assert response.status_code == 200


@pytest.mark.parametrize("field", ["timeout", "connect_timeout", "pool_timeout"])
def test_a_store_timeout_no_socket_can_take_is_refused_when_given(field: str) -> None:
    pytest.importorskip("redis")
    from meshlite.state import RedisStore

    with pytest.raises(ml.ConfigError, match=f"RedisStore: {field} must be"):
        RedisStore("redis://127.0.0.1:6379/0", **{field: HUGE})


def test_a_metrics_export_interval_no_thread_can_wait_is_refused_when_given() -> None:
    from meshlite import telemetry

    mesh = ml.Mesh([])
    with pytest.raises(ml.ConfigError, match="export_metrics: interval must be > 0 and at "
                                             "most"):
        telemetry.export_metrics(mesh, otlp_endpoint="http://127.0.0.1:4318",
                                 interval=HUGE)
