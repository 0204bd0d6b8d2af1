"""The httpx clients of mesh.http_sync() / mesh.http(): the work they skip a request
leaves requests and responses exactly as httpx's own client makes them."""

from __future__ import annotations

import gc
import gzip
import logging
import socket
import threading
import weakref
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


# -- sending and reading ---------------------------------------------------------------------

class _Truncating:
    """A loopback server that promises 100 bytes of body, sends 10 and closes, on
    every connection."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")

    def close(self) -> None:
        self._listener.close()


def test_bodies_read_whole_streamed_and_decoded() -> None:
    large = bytes(range(256)) * 4096  # 1 MiB
    with FakeBackend() as a, _mesh([a.url]) as mesh, mesh.http_sync("users") as client:
        a.set(body=large, headers={"content-type": "application/octet-stream"})
        response = client.get("/large")
        assert response.content == large
        assert response.num_bytes_downloaded == len(large)
        assert response.is_stream_consumed
        assert response.is_closed
        assert response.elapsed.total_seconds() > 0
        with client.stream("GET", "/large") as streamed:
            assert not streamed.is_stream_consumed
            chunks = list(streamed.iter_raw())
        assert b"".join(chunks) == large
        assert len(chunks) > 1
        assert streamed.elapsed.total_seconds() > 0  # set when the stream closed
        a.set(body=gzip.compress(b"zipped " * 100), headers={"content-encoding": "gzip"})
        assert client.get("/gz").text == "zipped " * 100  # decoded by httpx, as before
        a.set(body=None, headers={})
        assert [client.get(f"/k/{i}").json()["path"] for i in range(3)] == [
            "/k/0", "/k/1", "/k/2"]
        (target,) = mesh.http_pools(mesh.service("users"), False)._targets.values()
        (pool,) = target.transport._pools.values()
        assert pool.num_connections == 1  # every body read to the end: one connection


def test_a_body_cut_short_raises_and_its_connection_is_not_reused() -> None:
    server = _Truncating()
    try:
        with _mesh([server.url]) as mesh, mesh.http_sync("users") as client:
            for _ in range(2):
                with pytest.raises(httpx.RemoteProtocolError):
                    client.get("/cut")
                with pytest.raises(httpx.RemoteProtocolError), client.stream(
                        "GET", "/cut") as response:
                    response.read()
    finally:
        server.close()
    assert server.connections == 4  # a half-read connection is never sent on again


def test_responses_closed_before_their_end_give_their_pool_slots_back() -> None:
    # urllib3's close() closed the connection and kept its slot: after max_connections
    # such responses every request waited out the pool timeout (PoolTimeout).
    with FakeBackend(body=b"x" * 200_000) as backend, ml.Mesh([ml.Service(
            "users", [backend.url], http_pool={"limits": httpx.Limits(max_connections=2)},
    )]) as mesh, mesh.http_sync("users", timeout=httpx.Timeout(5.0, pool=1.0)) as client:
        for _ in range(3):
            with client.stream("GET", "/big") as response:  # one chunk, then close
                next(response.iter_bytes())
            with client.stream("GET", "/big") as response:  # the status alone
                assert response.status_code == 200
            with client.stream("HEAD", "/big") as response:
                assert response.status_code == 200
        assert client.get("/big").content == b"x" * 200_000


def test_auth_hooks_redirects_and_logging_still_as_httpx(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    with FakeBackend() as a, _mesh([a.url]) as mesh, mesh.http_sync(
            "users", auth=("u", "p"),
            event_hooks={"request": [lambda r: seen.append(f"> {r.url.path}")],
                         "response": [lambda r: seen.append(f"< {r.status_code}")]}
            ) as client:
        with caplog.at_level(logging.INFO, logger="httpx"):
            assert client.get("/a").status_code == 200
        assert a.requests[-1].headers["authorization"] == "Basic dTpw"
        client.auth = None
        client.get("/b", auth=("x", "y"))
        assert a.requests[-1].headers["authorization"] == "Basic eDp5"
        client.get("http://w:z@users/c")  # credentials in the URL
        assert a.requests[-1].headers["authorization"] == "Basic dzp6"
        client.get("/d")
        assert "authorization" not in a.requests[-1].headers
        a.set(status=302, headers={"location": "/e"})
        redirect = client.get("/redirected")
        assert redirect.status_code == 302
        assert redirect.next_request is not None
        assert seen == ["> /a", "< 200", "> /b", "< 200", "> /c", "< 200", "> /d", "< 200",
                        "> /redirected", "< 302"]
    assert 'HTTP Request: GET http://users/a "HTTP/1.1 200 OK"' in caplog.messages
    with pytest.raises(RuntimeError, match="client has been closed"):
        client.get("/after")


def test_a_sent_client_cannot_be_opened_again() -> None:
    with FakeBackend() as a, _mesh([a.url]) as mesh:
        client = mesh.http_sync("users")
        client.get("/x")
        with pytest.raises(RuntimeError, match="more than once"), client:
            pass
        client.close()


def test_cookies_and_headers_of_each_request_still_reach_the_backend() -> None:
    with FakeBackend() as a, _mesh([a.url]) as mesh, mesh.http_sync("users") as client:
        a.set(headers={"Set-Cookie": "session=s1; Path=/"})
        client.get("/login")
        a.set(headers={})
        client.get("/me", headers={"X-Call": "1"})
        client.get("/me", headers={"X-Call": "2"})  # other headers, converted afresh
        client.get("/me", headers={"X-Call": "1"})
        client.cookies = {"other": "o"}
        client.get("/again")
    assert client.cookies["other"] == "o"
    sent = [r.headers for r in a.requests]
    assert [h.get("cookie") for h in sent] == [
        None, "session=s1", "session=s1", "session=s1", "other=o"]
    assert [h.get("x-call") for h in sent] == [None, "1", "2", "1", None]


def test_a_read_response_is_freed_without_the_garbage_collector() -> None:
    # A response and its body stream refer to each other until the body is closed:
    # left as a cycle, every request's objects wait for a collection (170 young
    # collections in 5,000 requests, each scanning them all).
    with FakeBackend() as a, _mesh([a.url]) as mesh, mesh.http_sync("users") as client:
        client.get("/warm")
        gc.disable()
        try:
            response = client.get("/x")
            with client.stream("GET", "/y") as streamed:
                streamed.read()
            refs = [weakref.ref(response), weakref.ref(streamed),
                    weakref.ref(response.request)]
            del response, streamed
            assert [ref() for ref in refs] == [None, None, None]
        finally:
            gc.enable()


def test_responses_of_an_override_transport_are_timed_and_freed() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/read":  # read already: httpx's client never times it
            return httpx.Response(200, content=b"ok")
        return httpx.Response(200, stream=httpx.ByteStream(b"streamed"))

    with _mesh(["http://127.0.0.1:9"]) as mesh, \
            mesh.override("users", httpx.MockTransport(answer)), \
            mesh.http_sync("users") as client, \
            httpx.Client(transport=httpx.MockTransport(answer)) as plain:
        gc.disable()
        try:
            for path in ("/read", "/s"):
                ours, theirs = client.get(path), plain.get(f"http://users{path}")
                assert ours.content == theirs.content
                assert _elapsed(ours) == _elapsed(theirs)
                ref = weakref.ref(ours)
                del ours
                assert ref() is None
        finally:
            gc.enable()


def _elapsed(response: httpx.Response) -> str:
    try:
        return "timed" if response.elapsed.total_seconds() >= 0 else "negative"
    except RuntimeError as error:
        return str(error)


async def test_async_responses_are_timed_and_freed_without_the_garbage_collector() -> None:
    async with FakeBackend() as a, _mesh([a.url]) as mesh, mesh.http("users") as client:
        await client.get("/warm")
        gc.disable()
        try:
            response = await client.get("/x")
            async with client.stream("GET", "/y") as streamed:
                assert (await streamed.aread()) == (await client.get("/y")).content
            assert response.elapsed.total_seconds() > 0
            assert streamed.elapsed.total_seconds() > 0
            refs = [weakref.ref(response), weakref.ref(streamed)]
            del response, streamed
            assert [ref() for ref in refs] == [None, None]
        finally:
            gc.enable()


def test_a_timeout_policy_raises_timeout_exceeded_for_a_backend_that_hangs() -> None:
    # The attempt's read timeout is what the deadline left (an httpx.ReadTimeout,
    # which is no builtin TimeoutError): the caller gets TimeoutExceeded, as the
    # async client's caller does.
    with FakeBackend(hang=True) as backend:
        service = ml.Service("users", [backend.url], pipeline=ml.Pipeline(ml.Timeout(0.2)))
        with ml.Mesh([service]) as mesh, mesh.http_sync("users") as client:
            with pytest.raises(ml.TimeoutExceeded) as info:
                client.get("/slow")
            assert isinstance(info.value.__cause__, httpx.ReadTimeout)
        backend.set(hang=False)
