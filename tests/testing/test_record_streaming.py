"""Recording a streamed HTTP response: the body reaches the client as it arrives, and a
body past ``max_body`` is refused instead of being held whole in memory."""

from __future__ import annotations

import json
import ssl
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import meshlite as ml
from meshlite.testing import DEFAULT_MAX_BODY, CassetteError, Recorder, replay

NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # plain-HTTP clients start much faster
CHUNK = 64 * 1024
MiB = 1024 * 1024


class Download(ThreadingHTTPServer):
    """A loopback server sending ``/bytes?size=N`` in 64 KiB chunks. With ``?hold=1`` it
    sends the first chunk, then waits until the test says the client has it before
    sending the rest (``held`` records whether that came in time)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Sender)
        self.first_chunk_seen = threading.Event()
        self.held: list[bool] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _Sender(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Download

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        size, hold = int(query["size"][0]), "hold" in query
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        sent = 0
        try:
            while sent < size:
                piece = min(CHUNK, size - sent)
                self.wfile.write(b"x" * piece)
                self.wfile.flush()
                if hold and sent == 0:
                    self.server.held.append(self.server.first_chunk_seen.wait(10.0))
                sent += piece
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def download() -> Iterator[Download]:
    server = Download()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def recording(rec: Recorder) -> httpx.Client:
    return httpx.Client(transport=rec.transport(httpx.HTTPTransport(verify=NO_TLS)))


def read_all(client: httpx.Client, url: str, on_chunk: Callable[[bytes], None]) -> None:
    """Stream ``url``'s body, handing each chunk to ``on_chunk`` as it comes."""
    with client.stream("GET", url) as response:
        for chunk in response.iter_bytes():
            on_chunk(chunk)


def read_one(client: httpx.Client, url: str) -> None:
    with client.stream("GET", url) as response:
        next(response.iter_bytes())  # the client stops after one chunk


def stored(cassette: Path) -> list[dict[str, object]]:
    data = json.loads(cassette.read_text())
    return [i["response"] for i in data["interactions"]]


def test_a_recorded_download_reaches_the_client_as_it_streams(download: Download,
                                                             tmp_path: Path) -> None:
    cassette, size = tmp_path / "download.json", 2 * MiB
    url = f"{download.url}/bytes?size={size}&hold=1"
    got: list[int] = []

    def on_chunk(chunk: bytes) -> None:
        got.append(len(chunk))
        download.first_chunk_seen.set()  # the server sends the rest only now

    with Recorder(cassette) as rec, recording(rec) as client:
        read_all(client, url, on_chunk)
    # the first chunk reached the client while the server still held the rest back
    assert download.held == [True]
    assert sum(got) == size
    with httpx.Client(transport=replay(cassette).transport(), verify=NO_TLS) as client:
        assert client.get(url).content == b"x" * size  # recorded whole, replayed whole


async def test_an_async_recorded_download_reaches_the_client_as_it_streams(
        download: Download, tmp_path: Path) -> None:
    cassette, size = tmp_path / "download.json", 3 * CHUNK
    url = f"{download.url}/bytes?size={size}&hold=1"
    rec = Recorder(cassette)
    transport = rec.transport(httpx.AsyncHTTPTransport(verify=NO_TLS))
    async with rec, httpx.AsyncClient(transport=transport) as client:
        got = 0
        async with client.stream("GET", url) as response:
            async for chunk in response.aiter_bytes():
                got += len(chunk)
                download.first_chunk_seen.set()
    assert download.held == [True]
    assert got == size
    assert stored(cassette)[0]["body"] == {"text": "x" * size}


def test_a_body_past_max_body_is_refused_without_holding_it(download: Download,
                                                           tmp_path: Path) -> None:
    cassette, size = tmp_path / "big.json", 50 * MiB
    url = f"{download.url}/bytes?size={size}"
    got: list[int] = []
    tracemalloc.start()
    try:
        with Recorder(cassette) as rec, recording(rec) as client, pytest.raises(
                CassetteError, match=rf"passed max_body={DEFAULT_MAX_BODY} bytes while "
                r"recording.*Recorder\(max_body=\.\.\.\)"):
            read_all(client, url, lambda chunk: got.append(len(chunk)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the client had the body up to the cap, as it came, and the rest was never read
    assert DEFAULT_MAX_BODY - CHUNK <= sum(got) <= DEFAULT_MAX_BODY
    assert peak < DEFAULT_MAX_BODY + 8 * MiB  # not the 50 MiB body
    [response] = stored(cassette)  # status and headers, and why the body is not there
    assert (response["status"], response["body_refused"]) == (200, DEFAULT_MAX_BODY)
    assert "body" not in response
    with httpx.Client(transport=replay(cassette).transport(), verify=NO_TLS) as client, \
            pytest.raises(CassetteError, match=r"passed max_body=.* when it was recorded"):
        client.get(url)


def test_a_body_closed_early_is_recorded_whole(download: Download, tmp_path: Path) -> None:
    cassette, size = tmp_path / "partial.json", 4 * CHUNK
    url = f"{download.url}/bytes?size={size}"
    with Recorder(cassette, max_body=size) as rec, recording(rec) as client:
        read_one(client, url)
    assert stored(cassette)[0]["body"] == {"text": "x" * size}
    with Recorder(tmp_path / "cut.json", max_body=size - 1) as rec, recording(rec) as client:
        read_one(client, url)  # the rest passes the cap: refused, not raised here
    assert stored(tmp_path / "cut.json")[0]["body_refused"] == size - 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True])
def test_max_body_must_be_a_positive_integer_or_none(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ml.ConfigError, match="Recorder: max_body must be"):
        Recorder(tmp_path / "x.json", max_body=bad)  # type: ignore[arg-type]
    assert Recorder(tmp_path / "x.json", max_body=None).max_body is None
