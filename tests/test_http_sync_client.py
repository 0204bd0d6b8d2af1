"""The httpx clients of mesh.http_sync() / mesh.http(): the work they skip a request
leaves requests and responses exactly as httpx's own client makes them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import meshlite as ml
from meshlite.testing import FakeBackend


def _mesh(urls: list[str]) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", urls, balancer="round_robin")])


def _same(ours: httpx.Request, httpx_own: httpx.Request) -> None:
    assert ours.method == httpx_own.method
    assert ours.url == httpx_own.url
    assert ours.headers.raw == httpx_own.headers.raw
    assert ours.extensions == httpx_own.extensions
    assert ours.content == httpx_own.content
    assert type(ours.stream) is type(httpx_own.stream)


@pytest.mark.parametrize("method", ["GET", "post", "PUT", "PATCH", "DELETE", "HEAD"])
def test_requests_from_a_url_alone_are_built_as_httpx_builds_them(method: str) -> None:
    options: dict[str, Any] = {"headers": {"X-Team": "core"}, "timeout": 3.0}
    with _mesh(["http://127.0.0.1:9"]) as mesh, mesh.http_sync("users", **options) as ours, \
            httpx.Client(base_url="http://users", **options) as plain:
        for _ in range(3):  # the first builds through httpx, the next from a copy
            _same(ours.build_request(method, "/u/1"), plain.build_request(method, "/u/1"))
        assert len(ours._built) == 1  # one set of headers kept for the host
        _same(ours.build_request(method, "http://elsewhere:8080/x?q=1"),
              plain.build_request(method, "http://elsewhere:8080/x?q=1"))


def test_built_requests_follow_the_clients_changes() -> None:
    with _mesh(["http://127.0.0.1:9"]) as mesh, mesh.http_sync("users") as ours, \
            httpx.Client(base_url="http://users") as plain:
        first = ours.build_request("GET", "/u/1")
        first.headers["X-Hook"] = "edited"  # an event hook editing a request
        copied = ours.build_request("GET", "/u/1")
        copied.headers["X-Hook"] = "edited"
        assert "X-Hook" not in ours.build_request("GET", "/u/1").headers
        for client in (ours, plain):
            client.headers["X-Added"] = "1"
            client.timeout = httpx.Timeout(1.0)
        _same(ours.build_request("GET", "/u/1"), plain.build_request("GET", "/u/1"))
        for client in (ours, plain):
            client.params = {"page": "2"}
            client.cookies = {"session": "s1"}
        _same(ours.build_request("GET", "/u/1"), plain.build_request("GET", "/u/1"))
        for client in (ours, plain):
            client.params, client.cookies = {}, {}
            client.headers = {"Accept": "text/plain"}
        _same(ours.build_request("GET", "/u/1"), plain.build_request("GET", "/u/1"))


def test_requests_with_their_own_options_are_built_by_httpx() -> None:
    calls: list[dict[str, Any]] = [
        {"headers": {"X-Request": "1"}}, {"params": {"q": "a"}}, {"content": b"body"},
        {"json": {"a": 1}}, {"data": {"f": "v"}}, {"timeout": 2.0},
        {"extensions": {"trace": None}}, {"cookies": {"c": "1"}}]
    with _mesh(["http://127.0.0.1:9"]) as mesh, mesh.http_sync("users") as ours, \
            httpx.Client(base_url="http://users") as plain:
        for options in calls:
            ours.build_request("POST", "/u/1", **options)
            _same(ours.build_request("POST", "/u/1", **options),
                  plain.build_request("POST", "/u/1", **options))


async def test_the_async_client_builds_the_same_requests() -> None:
    async with _mesh(["http://127.0.0.1:9"]) as mesh, mesh.http("users") as ours, \
            httpx.AsyncClient(base_url="http://users") as plain:
        for method in ("GET", "POST"):
            ours.build_request(method, "/u/1")
            _same(ours.build_request(method, "/u/1"), plain.build_request(method, "/u/1"))


def test_requests_built_from_a_copy_reach_the_backend() -> None:
    with FakeBackend() as a, _mesh([a.url]) as mesh, mesh.http_sync("users") as client:
        for i in range(3):
            assert client.get(f"/u/{i}").json()["path"] == f"/u/{i}"
        assert client.delete("/u/1").status_code == 200
        assert client.post("/u").status_code == 200
    assert [r.method for r in a.requests] == ["GET", "GET", "GET", "DELETE", "POST"]
    assert a.requests[-1].headers["content-length"] == "0"
    assert {r.headers["host"] for r in a.requests} == {a.url.removeprefix("http://")}
