"""What reaches a backend through mesh.http(), mesh.http_sync() and mesh.aiohttp(),
and what the caller gets back, compared byte for byte with the same plain httpx or
aiohttp client talking to the backend directly (a raw loopback server records it)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import urllib3
from _raw_http import CLOSE, RawServer
from _versions import older_than

import meshlite as ml


@pytest.fixture
def server() -> Iterator[RawServer]:
    made = RawServer()
    yield made
    made.close()


def _mesh(server: RawServer) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", [server.url], pipeline=ml.Pipeline())])


async def _three_ways(answer: Any) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
    """``GET /`` from a server answering with ``answer``: plain httpx's response,
    ``mesh.http()``'s and ``mesh.http_sync()``'s."""
    server = RawServer(answer)
    try:
        async with httpx.AsyncClient(base_url=server.url) as plain:
            expected = await plain.get("/")
        async with _mesh(server) as mesh:
            routed = await mesh.http("users").get("/")
        with _mesh(server).http_sync("users") as client:
            sync = client.get("/")
    finally:
        server.close()
    return expected, routed, sync


def _framing(head: bytes) -> list[bytes]:
    """The lines of a request head that frame its body."""
    return sorted(line.lower() for line in head.split(b"\r\n")[1:]
                  if line.lower().startswith((b"content-length", b"transfer-encoding")))


def test_sync_multipart_upload_is_framed_as_httpx_frames_it(server: RawServer) -> None:
    files = {"f": ("n.txt", b"data")}
    with httpx.Client(base_url=server.url) as plain:
        plain.post("/p", files=files)
    with _mesh(server).http_sync("users") as client:
        client.post("/p", files=files)
        client.post("/p", content=iter([b"ab", b"cd"]))  # a generator: chunked, once
    (plain_head, plain_body), (head, body), (_, chunked) = server.take()
    # Content-Length only (urllib3 added Transfer-Encoding: chunked too, and chunked
    # the body: a request no server may accept, RFC 9112 6.3)
    assert _framing(head) == _framing(plain_head) == [b"content-length: 168"]
    assert len(body) == len(plain_body) == 168
    assert chunked == b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"


BODYLESS = ["DELETE", "PURGE", "OPTIONS", "POST", "PUT", "PATCH", "GET"]


async def test_async_bodyless_requests_are_framed_as_httpx_frames_them(
        server: RawServer) -> None:
    # httpx gives POST, PUT and PATCH a Content-Length: 0 and no other method one;
    # aiohttp, below mesh.http(), added it to every method outside GET, HEAD, OPTIONS,
    # CONNECT and TRACE (a DELETE with a length, which some servers refuse).
    async with httpx.AsyncClient(base_url=server.url) as plain:
        for method in BODYLESS:
            await plain.request(method, "/r")
    expected = [_framing(head) for head, _ in server.take()]
    assert expected[0] == []  # DELETE
    assert expected[3] == [b"content-length: 0"]  # POST
    async with _mesh(server) as mesh:
        for method in BODYLESS:
            await mesh.http("users").request(method, "/r")
    assert [_framing(head) for head, _ in server.take()] == expected


def test_sync_bodyless_requests_are_framed_as_httpx_frames_them_but_for_other_methods(
        server: RawServer) -> None:
    with httpx.Client(base_url=server.url) as plain:
        for method in BODYLESS:
            plain.request(method, "/r")
    expected = [_framing(head) for head, _ in server.take()]
    with _mesh(server).http_sync("users") as client:
        for method in BODYLESS:
            client.request(method, "/r")
    sent = [_framing(head) for head, _ in server.take()]
    # urllib3's rule, documented in docs/mesh.md: a method outside the standard ones
    # carries Content-Length: 0
    assert sent[1] == [b"content-length: 0"]
    assert sent[:1] + sent[2:] == expected[:1] + expected[2:]


def _targets(server: RawServer) -> list[bytes]:
    return [head.split(b" ")[1] for head, _ in server.take()]


TARGETS = ["/a%2Fb/c?x=%2f", "/q?a=1&a=2&b=&c", "/s%20p?x=a+b&y=a%20b", "/caf%C3%A9/ü?n=ü",
           "/files/100%?filter[name]=x&q=%e2%9c%93", "/a/%2e%2e/b|{x}?`^"]


def test_sync_request_target_is_sent_as_httpx_encodes_it(server: RawServer) -> None:
    with httpx.Client(base_url=server.url) as plain:
        for target in TARGETS:
            plain.get(target)
    expected = _targets(server)
    with _mesh(server).http_sync("users") as client:
        for target in TARGETS:
            client.get(target)
    # urllib3 re-encoded: %2f -> %2F, [ -> %5B, and after a stray % every escape
    # encoded again (%e2 -> %25E2: another resource)
    assert _targets(server) == expected
    assert expected[4] == b"/files/100%?filter[name]=x&q=%e2%9c%93"
    with urllib3.PoolManager() as others:  # other urllib3 users: encoded as before
        others.request("GET", f"{server.url}/a b?q=%e2")
    assert _targets(server) == [b"/a%20b?q=%E2"]


async def test_async_request_target_is_sent_as_httpx_encodes_it(server: RawServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as plain:
        for target in TARGETS:
            await plain.get(target)
    expected = _targets(server)
    async with _mesh(server) as mesh:
        for target in TARGETS:
            await mesh.http("users").get(target)
    assert _targets(server) == expected


def _early_hints(head: bytes, body: bytes) -> bytes:
    if head.startswith(b"GET /hints "):
        return (b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                b"HTTP/1.1 102 Processing\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
    return b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"


def test_sync_informational_answers_are_skipped_as_httpx_skips_them() -> None:
    server = RawServer(_early_hints)
    try:
        with httpx.Client(base_url=server.url) as plain:
            expected = plain.get("/hints")
        with _mesh(server).http_sync("users") as client:
            response = client.get("/hints")
            following = client.get("/next")  # on the same connection
    finally:
        server.close()
    # http.client skips 100 alone: the 103 was the answer, the 200 left unread
    # on the connection for the next request
    assert (response.status_code, response.content) == (expected.status_code,
                                                        expected.content) == (200, b"final")
    assert following.content == b"next"


def _header_lines(head: bytes, *names: bytes) -> list[bytes]:
    return [line for line in head.split(b"\r\n")[1:] if line.split(b":")[0].lower() in names]


def test_sync_repeated_request_headers_reach_the_backend_each_on_its_line(
        server: RawServer) -> None:
    headers = [("X-Forwarded-For", "10.0.0.1"), ("X-Forwarded-For", "10.0.0.2"),
               ("X-Tag", "a, b"), ("x-tag", "c"), ("X-Tag", "d")]
    with httpx.Client(base_url=server.url) as plain:
        plain.get("/h", headers=headers)
    with _mesh(server).http_sync("users") as client:
        client.get("/h", headers=headers)
        client.get("/h", headers=headers)  # from the transport's remembered sets
    names = (b"x-forwarded-for", b"x-tag")
    heads = [head for head, _ in server.take()]
    assert [_header_lines(head, b"host") for head in heads[1:]] == [
        [f"host: 127.0.0.1:{server.port}".encode()]] * 2
    expected, *sent = (_header_lines(head, *names) for head in heads)
    # joined with ", " they were one X-Tag "a, b, c, d": four values, not three
    assert expected == [b"X-Forwarded-For: 10.0.0.1", b"X-Forwarded-For: 10.0.0.2",
                        b"X-Tag: a, b", b"x-tag: c", b"X-Tag: d"]
    # the values and their order as httpx sends them; a repeated name is spelled as
    # its first (names are case-insensitive, RFC 9110 5.1)
    assert [[line.lower() for line in lines] for lines in sent] == [
        [line.lower() for line in expected]] * 2


def _large_head(head: bytes, body: bytes) -> bytes:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    return (b"HTTP/1.1 200 OK\r\n" + many + b"X-Big: " + b"a" * 20000
            + b"\r\nContent-Length: 2\r\n\r\nok")


async def test_async_large_response_head_is_read_as_httpx_reads_it() -> None:
    server = RawServer(_large_head)
    try:
        async with httpx.AsyncClient(base_url=server.url) as plain:
            expected = await plain.get("/")
        async with _mesh(server) as mesh:
            response = await mesh.http("users").get("/")
    finally:
        server.close()
    # aiohttp's defaults (8190 bytes a line, 128 headers) refused it: RemoteProtocolError
    assert list(response.headers.multi_items()) == list(expected.headers.multi_items())
    assert len(response.headers["x-big"]) == 20000


class _FirstBusy:
    """Answers 503 to the first request it sees, then 200 (shared by two servers)."""

    def __init__(self) -> None:
        self.busy = True

    def __call__(self, head: bytes, body: bytes) -> bytes:
        if self.busy:
            self.busy = False
            return b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class _Pipe:
    """A file that cannot be rewound (a pipe, a socket)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, size: int = -1) -> bytes:
        data, self._data = self._data, b""
        return data


@pytest.mark.parametrize("sync", [False, True], ids=["http", "http_sync"])
async def test_multipart_upload_of_bytes_or_a_seekable_file_is_retried(sync: bool) -> None:
    answer = _FirstBusy()
    servers = [RawServer(answer), RawServer(answer)]
    mesh = ml.Mesh([ml.Service("users", [s.url for s in servers], balancer="round_robin")])

    async def put(**files: Any) -> int:
        answer.busy = True
        if sync:
            with mesh.http_sync("users") as client:
                return client.put("/m", files=files).status_code
        return (await mesh.http("users").put("/m", files=files)).status_code

    try:
        async with mesh:
            # PUT is retried (docs/mesh.md); httpx renders a multipart body again each
            # time it is sent, from the start of each file
            assert await put(f=("n.txt", b"data"), g=("m.txt", io.BytesIO(b"file"))) == 200
            sent = [body for s in servers for _, body in s.take()]
            assert len(sent) == 2
            assert sent[0] == sent[1]
            assert b"file" in sent[0]
            assert await put(f=("n.txt", _Pipe(b"data"))) == 503  # read once: not resent
            assert len([body for s in servers for _, body in s.take()]) == 1
    finally:
        for s in servers:
            s.close()


def _odd_headers(head: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nX-Latin: caf\xe9\r\nX-Utf8: caf\xc3\xa9\r\n"
            b"set-cookie: a=1\r\nSet-Cookie: b=2\r\nX-Space:   padded  \r\nX-Empty:\r\n"
            b"Content-Length: 2\r\n\r\nok")


async def test_response_headers_arrive_as_httpx_reads_them() -> None:
    # (the sync client raised UnicodeEncodeError on the byte \xe9)
    expected, routed, sync = await _three_ways(_odd_headers)
    if older_than("aiohttp", "3.14.4"):  # it kept a value's trailing spaces ("padded  ")
        routed.headers = httpx.Headers([(k, v.rstrip()) for k, v in routed.headers.raw])
    assert routed.headers.raw == expected.headers.raw
    assert [(k.lower(), v) for k, v in sync.headers.raw] == [
        (k.lower(), v) for k, v in expected.headers.raw]
    assert (sync.headers["x-latin"], sync.headers["x-utf8"]) == (
        expected.headers["x-latin"], expected.headers["x-utf8"]) == ("café", "cafÃ©")


async def test_async_request_header_bytes_reach_the_backend_as_given(
        server: RawServer) -> None:
    headers = {"X-Utf8": "café".encode(), "X-Latin": b"caf\xe9", "X-Plain": b"ok"}
    async with httpx.AsyncClient(base_url=server.url) as plain:
        await plain.get("/", headers=headers)
    async with _mesh(server) as mesh:
        await mesh.http("users").get("/", headers=headers)  # routed
        async with httpx.AsyncClient() as direct:  # (built as a plain client would)
            request = direct.build_request("GET", f"{server.url}/", headers=headers)
        await mesh.http("users").send(request)  # another host: passed through
    names = (b"x-utf8", b"x-latin", b"x-plain")
    expected, *sent = (_header_lines(head, *names) for head, _ in server.take())
    # aiohttp wrote latin-1-decoded text as UTF-8: b"caf\xc3\xa9" arrived as
    # b"caf\xc3\x83\xc2\xa9"
    assert expected == [b"X-Utf8: caf\xc3\xa9", b"X-Latin: caf\xe9", b"X-Plain: ok"]
    assert sent == [expected, expected]


def _http10(head: bytes, body: bytes) -> bytes:
    return b"HTTP/1.0 200 Fine\r\nContent-Length: 2\r\n\r\nok" + CLOSE


async def test_http_version_is_the_one_the_backend_answered_with() -> None:
    expected, routed, sync = await _three_ways(_http10)
    # both wires said HTTP/1.1 whatever the server said
    assert expected.http_version == routed.http_version == sync.http_version == "HTTP/1.0"
    assert expected.reason_phrase == routed.reason_phrase == sync.reason_phrase == "Fine"


BROKEN = {
    "/nothing": CLOSE,  # closed before answering
    "/head-cut": b"HTTP/1.1 200 OK\r\nX-A: b" + CLOSE,
    "/body-cut": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort" + CLOSE,
    "/chunk-cut": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab" + CLOSE,
    "/two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok" + CLOSE,
    "/bad-status": b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\nok" + CLOSE,
}


def _broken(head: bytes, body: bytes) -> bytes:
    return BROKEN[head.split(b" ")[1].decode()]


def _raised(call: Any) -> type[BaseException] | None:
    try:
        call()
    except Exception as error:
        return type(error)
    return None


@pytest.mark.parametrize("path", list(BROKEN))
async def test_a_broken_answer_raises_what_httpx_raises(path: str) -> None:
    server = RawServer(_broken)
    try:
        with httpx.Client(base_url=server.url) as plain:
            expected = _raised(lambda: plain.get(path))
        with _mesh(server).http_sync("users") as client:
            sync = _raised(lambda: client.get(path))
        async with _mesh(server) as mesh:
            try:
                await mesh.http("users").get(path)
                routed = None
            except Exception as error:
                routed = type(error)
    finally:
        server.close()
    # the sync wire answered a head cut short with a 200 and no body, and raised
    # ReadError where httpx raises RemoteProtocolError
    assert expected is httpx.RemoteProtocolError
    assert sync is routed is expected


def _moved(head: bytes, body: bytes) -> bytes:
    path = head.split(b" ")[1]
    if path.startswith(b"/v1/old"):  # an absolute path, the backend's prefix in it
        return b"HTTP/1.1 301 Moved\r\nLocation: /v1/new?x=1\r\nContent-Length: 0\r\n\r\n"
    if path == b"/v1/out":  # outside the prefix: left as it is
        return b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path)


async def test_redirect_to_a_path_under_the_backends_prefix_stays_under_it() -> None:
    server = RawServer(_moved)

    def prefixed() -> ml.Mesh:
        return ml.Mesh([ml.Service("users", [f"{server.url}/v1"], pipeline=ml.Pipeline())])

    try:
        async with httpx.AsyncClient(base_url=f"{server.url}/v1",
                                     follow_redirects=True) as plain:
            assert (await plain.get("/old")).text == "/v1/new?x=1"
        async with prefixed() as mesh:
            client = mesh.http("users", follow_redirects=True)
            followed = await client.get("/old")
            moved = await client.get("/old", follow_redirects=False)
            out = await client.get("/out", follow_redirects=False)
            session = mesh.aiohttp("users")
            async with session.get("/old") as answer:
                assert await answer.text() == "/v1/new?x=1"
            await session.close()
        with prefixed().http_sync("users", follow_redirects=True) as sync:
            assert sync.get("/old").text == "/v1/new?x=1"
    finally:
        server.close()
    # the prefix was sent twice: GET /v1/v1/new
    assert followed.text == "/v1/new?x=1"
    assert str(followed.url) == "http://users/new?x=1"
    assert moved.headers["location"] == "/new?x=1"  # in the service's URLs
    assert out.headers.raw[0] == (b"location", b"/elsewhere")


def _without_defaults(client: httpx.Client | httpx.AsyncClient) -> None:
    for name in ("User-Agent", "Accept-Encoding", "Accept"):
        del client.headers[name]


async def test_sync_request_without_default_headers_gets_none_added(
        server: RawServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as plain:
        _without_defaults(plain)
        await plain.get("/")
    with _mesh(server).http_sync("users") as client:
        _without_defaults(client)
        client.get("/")  # routed
        client.get(f"{server.url}/")  # passed through
    static = ml.Service("users", [server.url], headers={"User-Agent": "static/1"})
    with ml.Mesh([static]).http_sync("users") as client:
        _without_defaults(client)
        client.get("/")
    expected, routed, passed, stamped = (
        [line.lower() for line in head.split(b"\r\n")[1:]
         if not line.lower().startswith(b"host:")] for head, _ in server.take())
    # urllib3 added User-Agent: python-urllib3/..., http.client Accept-Encoding: identity
    assert expected == [b"connection: keep-alive"]
    assert routed == passed == expected
    assert sorted(stamped) == [b"connection: keep-alive", b"user-agent: static/1"]


def _no_continue(head: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def test_async_expect_continue_sends_the_body_at_once_as_httpx_does() -> None:
    server = RawServer(_no_continue)
    server.continues = False  # a server that never answers 100 Continue
    try:
        async with _mesh(server) as mesh:
            response = await mesh.http("users", timeout=5).post(
                "/", content=b"body", headers={"Expect": "100-continue"})
    finally:
        server.close()
    # aiohttp waited for a 100 Continue before sending the body: both sides waited
    # until the server gave up
    assert response.content == b"body"
    assert response.elapsed.total_seconds() < 4
