"""An attempt cut by ``ml.Timeout`` after its request left: a POST without an
Idempotency-Key must not be sent again, a GET is retried on another backend (the
deterministic core of the hanging-backend and latency-spike scenarios)."""

from __future__ import annotations

import random

import httpx
import pytest

import meshlite as ml
from meshlite.testing import BackendFactory, FakeBackend, MeshFactory

ATTEMPT = 1.0  # seconds each attempt may take: the hanging backend never answers


def stuck_first(mesh: MeshFactory, stuck: FakeBackend, healthy: FakeBackend) -> ml.Mesh:
    """A mesh whose round robin sends the first attempt to ``stuck``, the retry to
    ``healthy``, each attempt limited to ATTEMPT seconds."""
    with httpx.Client() as warm:  # first-use costs (imports, pools) must not eat the limit
        warm.get(healthy.url)
    healthy.requests.clear()
    seed = 7
    first = random.Random(seed).randrange(1 << 16) % 2  # RoundRobin's random start
    urls = [stuck.url, healthy.url] if first == 0 else [healthy.url, stuck.url]
    pipeline = ml.Pipeline(ml.Retry(attempts=2, backoff=ml.backoff.constant(0.0)),
                           ml.Timeout(ATTEMPT))
    return mesh(ml.Service("users", urls, balancer=ml.RoundRobin(random=random.Random(seed)),
                           pipeline=pipeline, outlier_detection=None))


async def test_a_post_cut_by_the_attempt_timeout_is_not_resent(
        fake_backend: BackendFactory, mesh: MeshFactory) -> None:
    stuck, healthy = fake_backend(hang=True), fake_backend()
    async with stuck_first(mesh, stuck, healthy).http("users") as client:
        with pytest.raises(ml.TimeoutExceeded):
            await client.post("/orders", json={"qty": 1})
    assert (stuck.request_count, healthy.request_count) == (1, 0)


async def test_a_get_cut_by_the_attempt_timeout_is_retried(
        fake_backend: BackendFactory, mesh: MeshFactory) -> None:
    stuck, healthy = fake_backend(hang=True), fake_backend()
    async with stuck_first(mesh, stuck, healthy).http("users") as client:
        assert (await client.get("/orders/1")).status_code == 200
    assert (stuck.request_count, healthy.request_count) == (1, 1)


async def test_a_post_with_an_idempotency_key_is_retried(
        fake_backend: BackendFactory, mesh: MeshFactory) -> None:
    stuck, healthy = fake_backend(hang=True), fake_backend()
    async with stuck_first(mesh, stuck, healthy).http("users") as client:
        r = await client.post("/orders", json={"qty": 1}, headers={"Idempotency-Key": "k1"})
    assert r.status_code == 200
    assert [q.headers["idempotency-key"] for q in (*stuck.requests, *healthy.requests)] == [
        "k1", "k1"]


def test_a_sync_post_cut_by_the_deadline_is_not_resent(
        fake_backend: BackendFactory, mesh: MeshFactory) -> None:
    stuck, healthy = fake_backend(hang=True), fake_backend()
    with stuck_first(mesh, stuck, healthy).http_sync("users") as client, \
            pytest.raises((ml.TimeoutExceeded, httpx.TimeoutException)):
        client.post("/orders", json={"qty": 1})
    assert (stuck.request_count, healthy.request_count) == (1, 0)
