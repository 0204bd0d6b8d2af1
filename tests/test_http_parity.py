"""mesh.http(), mesh.http_sync() and mesh.aiohttp() against the bare httpx and aiohttp
clients talking to the same loopback server: malformed framing, proxies from the
environment and proxies given to the client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest
from _raw_http import CLOSE, RawServer

import meshlite as ml

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[RawServer]:
    """A loopback server as ``HTTP_PROXY`` (it answers 200 to whatever it is sent), the
    environment's own proxy settings cleared."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    proxy = RawServer()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    yield proxy
    proxy.close()


@pytest.fixture
def backend() -> Iterator[RawServer]:
    made = RawServer()
    yield made
    made.close()


def _mesh(url: str) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", [url], pipeline=ml.Pipeline())])


def _targets(server: RawServer) -> list[bytes]:
    """The request lines ``server`` got since last asked."""
    return [head.split(b"\r\n")[0] for head, _ in server.take()]


_CODED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
          b"3\r\nabc\r\n0\r\n\r\n" + CLOSE)
_BAD_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nabc" + CLOSE


@pytest.mark.parametrize("answer", [_CODED, _BAD_LENGTH], ids=["gzip-chunked", "length-1"])
def test_sync_a_body_framed_as_httpx_refuses_is_refused(answer: bytes) -> None:
    server = RawServer(lambda head, body: answer)
    try:
        with httpx.Client(base_url=server.url) as plain, pytest.raises(
                httpx.RemoteProtocolError):
            plain.get("/")
        # the sync wire read the body up to the close, the chunks' framing in it
        # (b"3\r\nabc\r\n0\r\n\r\n"), or none at all for the length of -1
        with _mesh(server.url).http_sync("users") as client, pytest.raises(
                httpx.RemoteProtocolError, match="backend"):
            client.get("/")
    finally:
        server.close()


@pytest.mark.parametrize("answer", [_CODED, _BAD_LENGTH], ids=["gzip-chunked", "length-1"])
async def test_async_a_body_framed_as_httpx_refuses_is_refused(answer: bytes) -> None:
    server = RawServer(lambda head, body: answer)
    try:
        async with httpx.AsyncClient(base_url=server.url) as plain:
            with pytest.raises(httpx.RemoteProtocolError):
                await plain.get("/")
        async with _mesh(server.url) as mesh:
            # the async wire took gzip, chunked for chunked: the body still gzipped
            with pytest.raises(httpx.RemoteProtocolError, match="backend"):
                await mesh.http("users").get("/")
    finally:
        server.close()


async def test_a_proxy_given_to_a_mesh_client_is_refused(proxy_env: RawServer) -> None:
    mesh = _mesh("http://127.0.0.1:9")
    # httpx mounted a proxy transport for every URL: the routed requests went to the
    # proxy as GET http://users/..., past the mesh, its pipeline and its backends
    with pytest.raises(ml.ConfigError, match=r"^mesh\.http\('users'\): proxy= cannot"):
        mesh.http("users", proxy=proxy_env.url)
    with pytest.raises(ml.ConfigError, match=r"http_pool=\{'proxy'"):
        mesh.http_sync("users", proxy=proxy_env.url)
    assert _targets(proxy_env) == []


@pytest.mark.parametrize(("option", "value", "instead"), [
    ("verify", False, "tls=ml.TLS("), ("verify", "/etc/ssl/ca.pem", "tls=ml.TLS("),
    ("cert", "client.pem", "tls=ml.TLS(client_cert"),
    ("limits", httpx.Limits(max_connections=4), "http_pool={'limits'"),
    ("http2", True, "http_pool={'http2'"),
])
async def test_a_transport_option_given_to_a_mesh_client_is_refused(
        option: str, value: Any, instead: str) -> None:
    # httpx applies them to the transport it makes, and makes none when given one:
    # verify=False for a self-signed backend was dropped, and the request failed
    # verifying the certificate the caller had asked not to verify.
    mesh = _mesh("https://127.0.0.1:9")
    for make in (mesh.http, mesh.http_sync):
        with pytest.raises(ml.ConfigError) as raised:
            make("users", **{option: value})
        assert f"{option}= would not be used" in str(raised.value)
        assert instead in str(raised.value)
    # httpx's own defaults, given as such, change nothing: accepted
    client = mesh.http("users", verify=True, cert=None, http2=False, limits=httpx.Limits(
        max_connections=100, max_keepalive_connections=20))
    await client.aclose()


async def test_a_service_reaches_its_backends_through_its_pools_proxy(
        proxy_env: RawServer, backend: RawServer) -> None:
    mesh = ml.Mesh([ml.Service("users", [backend.url], pipeline=ml.Pipeline(),
                               http_pool={"proxy": proxy_env.url})])
    async with mesh:
        assert (await mesh.http("users").get("/x")).status_code == 200
    assert _targets(proxy_env) == [f"GET {backend.url}/x HTTP/1.1".encode()]
    assert _targets(backend) == []


@pytest.mark.parametrize("trust_env", [False, True])
async def test_mesh_http_clients_send_past_the_environments_proxy(
        proxy_env: RawServer, backend: RawServer, trust_env: bool) -> None:
    async with httpx.AsyncClient() as plain:  # trust_env=True: through the proxy
        await plain.get(f"{backend.url}/x")
    assert _targets(proxy_env) == [f"GET {backend.url}/x HTTP/1.1".encode()]
    async with _mesh(backend.url) as mesh:
        client = mesh.http("users", trust_env=trust_env)
        await client.get("/x")  # routed
        await client.get(f"{backend.url}/y")  # another host: the passthrough
    with _mesh(backend.url).http_sync("users", trust_env=trust_env) as sync:
        sync.get("/x")
        sync.get(f"{backend.url}/y")
    assert _targets(proxy_env) == []
    assert _targets(backend) == [b"GET /x HTTP/1.1", b"GET /y HTTP/1.1"] * 2


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "users", ""])
async def test_aiohttp_trust_env_proxies_each_attempt_as_for_its_backends_url(
        proxy_env: RawServer, backend: RawServer, monkeypatch: pytest.MonkeyPatch,
        no_proxy: str) -> None:
    monkeypatch.setenv("NO_PROXY", no_proxy)
    async with aiohttp.ClientSession(trust_env=True) as plain, plain.get(
            f"{backend.url}/x") as response:
        await response.read()
    expected = (_targets(proxy_env), _targets(backend))
    async with _mesh(backend.url) as mesh:
        session = mesh.aiohttp("users", trust_env=True)
        async with session.get("/x") as response:
            await response.read()
    # NO_PROXY was matched against the service's host (users), not the backend's: a
    # backend NO_PROXY names was sent to through the proxy, and with NO_PROXY=users
    # the proxy a plain session would use was skipped
    assert (_targets(proxy_env), _targets(backend)) == expected
    assert expected == (([], [b"GET /x HTTP/1.1"]) if no_proxy == "127.0.0.1"
                        else ([f"GET {backend.url}/x HTTP/1.1".encode()], []))


async def test_aiohttp_proxy_given_stays_for_every_attempt(
        proxy_env: RawServer, backend: RawServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with _mesh(backend.url) as mesh:
        session = mesh.aiohttp("users", trust_env=True)
        async with session.get("/x", proxy=proxy_env.url) as response:
            await response.read()
        other = mesh.aiohttp("users")  # without trust_env: no proxy of the environment
        async with other.get("/y") as response:
            await response.read()
    assert _targets(proxy_env) == [f"GET {backend.url}/x HTTP/1.1".encode()]
    assert _targets(backend) == [b"GET /y HTTP/1.1"]


def _sets_a_cookie(head: bytes, body: bytes) -> bytes:
    if head.startswith(b"GET /set "):
        return b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=abc; Path=/\r\nContent-Length: 0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


async def test_aiohttp_urls_and_cookies_are_the_services() -> None:
    server = RawServer(_sets_a_cookie)
    try:
        async with aiohttp.ClientSession(base_url=server.url) as plain:
            async with plain.get("/set"):
                pass
            assert len(plain.cookie_jar) == 0  # a cookie of an IP address: dropped
        async with _mesh(server.url) as mesh:
            session = mesh.aiohttp("users")
            async with session.get("/set") as response:
                assert str(response.url) == str(response.real_url) == "http://users/set"
                info = response.request_info
                assert (str(info.url), str(info.real_url)) == (f"{server.url}/set",
                                                               "http://users/set")
                assert info.headers["Host"] == server.url.removeprefix("http://")
            assert [cookie["domain"] for cookie in session.cookie_jar] == ["users"]
            async with session.get("/next"):
                pass
    finally:
        server.close()
    assert b"\r\nCookie: sid=abc" in server.take()[-1][0]


def _head_coded(head: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"


async def test_a_head_answer_of_a_transfer_encoding_httpx_refuses_is_refused() -> None:
    server = RawServer(_head_coded)
    try:
        async with httpx.AsyncClient(base_url=server.url) as plain:
            with pytest.raises(httpx.RemoteProtocolError):
                await plain.head("/")  # (the header itself: no body is read)
        async with _mesh(server.url) as mesh:
            with pytest.raises(httpx.RemoteProtocolError):
                await mesh.http("users").head("/")
        with _mesh(server.url).http_sync("users") as client, pytest.raises(
                httpx.RemoteProtocolError):
            client.head("/")
    finally:
        server.close()


async def test_event_hooks_see_the_services_request_once_per_request() -> None:
    def answer(head: bytes, body: bytes) -> bytes:
        return b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"

    server = RawServer(answer)
    seen: list[tuple[str, str, int | None]] = []

    async def on_request(request: httpx.Request) -> None:
        seen.append((str(request.url), request.headers["Host"], None))

    async def on_response(response: httpx.Response) -> None:
        seen.append((str(response.url), response.request.headers["Host"],
                     response.status_code))

    try:
        mesh = ml.Mesh([ml.Service("users", [server.url], pipeline=ml.Pipeline(
            ml.Retry(attempts=3, backoff=ml.backoff.constant(0.0))))])
        async with mesh:
            client = mesh.http("users", event_hooks={"request": [on_request],
                                                     "response": [on_response]})
            assert (await client.get("/u")).status_code == 503
    finally:
        server.close()
    assert len(server.take()) == 3
    assert seen == [("http://users/u", "users", None), ("http://users/u", "users", 503)]
