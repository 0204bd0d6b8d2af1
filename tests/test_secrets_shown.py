"""Secrets in URLs a user gives (a Redis password as redis-py's ``?password=``, a
health check's ``?token=``, a request's query, a backend's ``user:password@``, a
webhook's path) stay out of what meshlite shows: log lines, errors, ``repr``,
snapshots and the dashboard's health. Real loopback servers."""

from __future__ import annotations

import asyncio
import logging

import pytest

import meshlite as ml
from meshlite._printable import origin_shown, url_shown
from meshlite.state import RedisStore
from meshlite.testing import FakeBackend

SECRET = "Sekr1t_VALUE"


@pytest.mark.parametrize(("url", "shown"), [
    (f"redis://127.0.0.1:6379/0?password={SECRET}", "redis://127.0.0.1:6379/0?password=***"),
    (f"unix:///run/redis.sock?db=1&password={SECRET}",
     "unix:///run/redis.sock?db=1&password=***"),
    (f"redis://user:{SECRET}@h:6379/0", "redis://user:***@h:6379/0"),
    (f"redis://:ab/{SECRET}@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),  # raw '/'
    (f"/healthz?token={SECRET}&verbose=1", "/healthz?token=***&verbose=1"),
    (f"http://h/x?api-key={SECRET}&page=2", "http://h/x?api-key=***&page=2"),
    ("http://h:9/x?email=a@b", "http://h:9/x?email=a@b"),  # nothing secret: as it is
    # ';' separates fields too (servers reading the older form take two fields)
    (f"/x?page=2;token={SECRET}&v=1", "/x?page=2;token=***&v=1"),
    (f"/x?pass%77ord={SECRET};to=a%40b+c", "/x?pass%77ord=***;to=a%40b+c"),  # rest as given
    # no "://" (the scheme's colon left out), so no URL a parser reads: still masked
    (f"rediss//:{SECRET}@127.0.0.1/0", "rediss//:***@127.0.0.1/0"),
    (f"rediss//:ab/{SECRET}@127.0.0.1/0", "rediss//:***@127.0.0.1/0"),
    (f"user:{SECRET}@host:6379", "user:***@host:6379"),
    ("/users/a@b.com", "/users/a@b.com"),  # nothing secret: as it is
])
def test_a_shown_url_hides_passwords_and_secret_parameters(url: str, shown: str) -> None:
    assert url_shown(url) == shown


def test_a_webhook_is_shown_by_its_host() -> None:
    assert origin_shown(f"https://hooks.example.com/services/T0/B0/{SECRET}") == \
        "https://hooks.example.com/..."
    assert origin_shown(f"http://u:{SECRET}@127.0.0.1:9") == "http://127.0.0.1:9"


def test_a_redis_password_as_a_query_parameter_is_not_shown(
        caplog: pytest.LogCaptureFixture) -> None:
    # redis-py's documented form for unix sockets; nothing listens on port 1
    store = RedisStore(f"redis://127.0.0.1:1/0?password={SECRET}", timeout=0.5)
    limited = ml.Pipeline(ml.RateLimit(10.0, store=store, name="q"))
    with caplog.at_level(logging.DEBUG):
        assert limited.call(lambda: 1) == 1  # fell back: the store is down
    assert not store.available
    assert "is unavailable" in caplog.text
    assert SECRET not in caplog.text
    assert SECRET not in repr(store)
    with pytest.raises(ml.ConfigError) as refused:  # a raw '#' cut the netloc short
        RedisStore(f"redis://:ab#{SECRET}@127.0.0.1:6379/0")
    assert SECRET not in str(refused.value)
    with pytest.raises(ml.ConfigError) as refused:  # the scheme's colon left out
        RedisStore(f"rediss//:{SECRET}@127.0.0.1/0")
    assert SECRET not in str(refused.value)
    assert "rediss//:***@127.0.0.1/0" in str(refused.value)
    store.close()


def test_a_backend_password_is_not_shown_whatever_else_is_wrong() -> None:
    for address in (f"http://svc:{SECRET}@127.0.0.1:80800", f"http://svc:{SECRET}@:8080",
                    f"http://svc:{SECRET}@127.0.0.1:8080",
                    f" http://svc:{SECRET}@127.0.0.1:8080"):  # (a space: taken as it was)
        with pytest.raises(ml.ConfigError) as refused:
            ml.Backend(address)
        assert SECRET not in str(refused.value)


async def test_a_health_check_token_is_not_shown(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeBackend(health_status=503) as backend:
        check = ml.HttpHealthCheck(f"/healthz?token={SECRET}", interval=0.05)
        mesh = ml.Mesh([ml.Service("users", [backend.url], health_check=check)])
        with caplog.at_level(logging.WARNING):
            async with mesh:
                for _ in range(200):
                    if mesh.health()["users"].backends[0].status == "unhealthy":
                        break
                    await asyncio.sleep(0.02)
                snapshot = mesh.snapshot()["users"]
                reason = mesh.health()["users"].backends[0].reason
        assert backend.requests[0].query == f"token={SECRET}"  # sent as given
    assert "GET /healthz?token=*** answered 503" in reason
    assert SECRET not in repr(snapshot) + repr(check) + caplog.text
    assert "failed its health check" in caplog.text


async def test_a_request_query_is_not_shown_in_a_mesh_aiohttp_failure(
        caplog: pytest.LogCaptureFixture) -> None:
    # two backends: outlier detection ejects at most half of them
    async with FakeBackend(status=503) as one, FakeBackend(status=503) as two:
        mesh = ml.Mesh([ml.Service("pay", [one.url, two.url], pipeline=ml.Pipeline(),
                                   outlier_detection=ml.OutlierDetection(
                                       consecutive_failures=1))])
        with caplog.at_level(logging.WARNING):
            async with mesh, mesh.aiohttp("pay") as session, \
                    session.get(f"/charge?token={SECRET}&n=1") as response:
                assert response.status == 503
        (request,) = one.requests + two.requests
        assert request.query == f"token={SECRET}&n=1"
    assert "ejected" in caplog.text
    assert "/charge?token=***&n=1 with 503" in caplog.text
    assert SECRET not in caplog.text


def test_an_otlp_endpoints_credentials_are_not_shown() -> None:
    # The exporter sends user information as Basic authentication: a credential.
    from meshlite import telemetry

    mesh = ml.Mesh([ml.Service("users", ["127.0.0.1:80"])])
    with FakeBackend() as collector:
        url = collector.url.replace("http://", f"http://otlp:{SECRET}@")
        with telemetry.export_metrics(mesh, otlp_endpoint=url, interval=3600.0) as export:
            assert SECRET not in repr(export)
            assert "otlp:***@" in repr(export)
    for bad in (f"http://otlp:{SECRET}@127.0.0.1:notaport",
                f"http://127.0.0.1:4318?token={SECRET}"):
        with pytest.raises(ml.ConfigError) as refused:
            telemetry.export_metrics(mesh, otlp_endpoint=bad)
        assert SECRET not in str(refused.value)
        with pytest.raises(ml.ConfigError) as refused:
            telemetry.configure("probe", otlp_endpoint=bad)
        assert SECRET not in str(refused.value)
