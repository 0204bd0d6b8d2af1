"""Recording a streamed HTTP response: the body reaches the client as it arrives, and a
body past ``max_body`` is refused instead of being held whole in memory."""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import threading
import time
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
    sending the rest (``held`` records whether that came in time). ``/events`` is a
    server-sent event stream that never ends; ``/broken`` promises 100 bytes, sends
    ``partial`` and closes the connection."""

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
        if self.path.startswith("/events"):
            return self._events()
        if self.path.startswith("/broken"):
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"partial")
            self.close_connection = True  # 93 bytes short: the client sees a broken body
            return None
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

    def _events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for n in itertools.count():
                event = f"data: {n}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
                time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left: the only way this stream ends

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


def test_a_body_closed_early_is_recorded_as_read_and_marked_cut(download: Download,
                                                                tmp_path: Path) -> None:
    # The rest of the body was read for the cassette when the client closed it early:
    # what the client had not read went into the cassette as if it had.
    cassette, size = tmp_path / "partial.json", 4 * CHUNK
    url = f"{download.url}/bytes?size={size}"
    with Recorder(cassette) as rec, recording(rec) as client, \
            client.stream("GET", url) as response:
        first = next(response.iter_bytes())
    [stored_response] = stored(cassette)
    assert len(stored_response["body"]["text"]) == len(first) < size  # what it read
    assert stored_response["body_cut"] is True
    player = replay(cassette, repeat=True)
    with httpx.Client(transport=player.transport(), verify=NO_TLS) as client:
        with client.stream("GET", url) as response:
            assert next(response.iter_bytes()) == first  # the same, then it leaves
        with pytest.raises(CassetteError, match=rf"was cut after {len(first)} bytes when "
                           r"it was recorded \(the client closed it early\)"):
            client.get(url)  # reading on: the cassette has no more, and says so


async def read_events(client: httpx.AsyncClient, url: str, wanted: int) -> list[str]:
    """The first ``wanted`` events of the stream at ``url``; then leave it."""
    events: list[str] = []
    async with client.stream("GET", url) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                events.append(line)
                if len(events) == wanted:
                    break
    return events


async def test_leaving_an_endless_stream_while_recording_returns_at_once(
        download: Download, tmp_path: Path) -> None:
    # Leaving the stream read its endless rest for the cassette: the block never
    # returned (or only once 10 MiB of events had come, max_body).
    cassette, url = tmp_path / "events.json", f"{download.url}/events"
    rec = Recorder(cassette, max_body=None)
    transport = rec.transport(httpx.AsyncHTTPTransport(verify=NO_TLS))
    async with rec, httpx.AsyncClient(transport=transport) as client:
        started = time.monotonic()
        events = await asyncio.wait_for(read_events(client, url, 2), 10)
        assert time.monotonic() - started < 5
    assert events == ["data: 0", "data: 1"]
    [stored_response] = stored(cassette)
    assert stored_response["body_cut"] is True
    async with httpx.AsyncClient(transport=replay(cassette).transport()) as client:
        assert await read_events(client, url, 2) == events  # what the client saw


def read_broken(client: httpx.Client, url: str) -> list[object]:
    seen: list[object] = []
    try:
        with client.stream("GET", url) as response:
            seen.append(("status", response.status_code))
            for chunk in response.iter_bytes():
                seen.append(("chunk", chunk))
    except Exception as error:
        seen.append(("error", type(error).__name__, str(error)))
    return seen


async def aread_broken(client: httpx.AsyncClient, url: str) -> list[object]:
    seen: list[object] = []
    try:
        async with client.stream("GET", url) as response:
            seen.append(("status", response.status_code))
            async for chunk in response.aiter_bytes():
                seen.append(("chunk", chunk))
    except Exception as error:
        seen.append(("error", type(error).__name__, str(error)))
    return seen


def test_a_body_failing_midway_replays_its_response_then_the_error(
        download: Download, tmp_path: Path) -> None:
    # The failure was recorded alone: replay raised it before any response, so code
    # that handles a broken body (after reading the status) was never exercised.
    cassette, url = tmp_path / "broken.json", f"{download.url}/broken"
    with Recorder(cassette) as rec, recording(rec) as client:
        recorded = read_broken(client, url)
    assert recorded[:2] == [("status", 200), ("chunk", b"partial")]
    assert recorded[2][:2] == ("error", "RemoteProtocolError")
    with httpx.Client(transport=replay(cassette).transport(), verify=NO_TLS) as client:
        assert read_broken(client, url) == recorded


async def test_an_async_body_failing_midway_replays_its_response_then_the_error(
        download: Download, tmp_path: Path) -> None:
    cassette, url = tmp_path / "broken.json", f"{download.url}/broken"
    rec = Recorder(cassette)
    async with rec, httpx.AsyncClient(
            transport=rec.transport(httpx.AsyncHTTPTransport(verify=NO_TLS))) as client:
        recorded = await aread_broken(client, url)
    assert recorded[:2] == [("status", 200), ("chunk", b"partial")]
    async with httpx.AsyncClient(transport=replay(cassette).transport()) as client:
        assert await aread_broken(client, url) == recorded


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True])
def test_max_body_must_be_a_positive_integer_or_none(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ml.ConfigError, match="Recorder: max_body must be"):
        Recorder(tmp_path / "x.json", max_body=bad)  # type: ignore[arg-type]
    assert Recorder(tmp_path / "x.json", max_body=None).max_body is None
