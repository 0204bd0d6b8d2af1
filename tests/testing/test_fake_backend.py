"""FakeBackend: a real loopback HTTP server, exercised with a real httpx client.

Real sockets and a little real time are the point here, so latencies are small
(<= 0.3 s) and nothing asserts how long a call took.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

import meshlite as ml
from meshlite.testing import BackendStats, FakeBackend, ReceivedRequest

SHORT = 0.2  # a client timeout that a hanging or slow backend exceeds
# Plain-HTTP clients: skipping the default TLS setup (certificate loading) saves
# a good part of a second per client.
NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def sync_client() -> httpx.Client:
    return httpx.Client(verify=NO_TLS)


def async_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=NO_TLS)


async def until_hanging(b: FakeBackend) -> None:
    """Wait until the backend holds a request (polling: the hang happens in its loop)."""
    await until(lambda: b.stats.hangs)


async def until(check: Callable[[], object]) -> None:
    """Wait until ``check()`` is true: what the backend does happens in its loop."""
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the request never reached the backend")


def backend_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "FakeBackend" in t.name]


# -- normal answers ------------------------------------------------------------------------


def test_get_echoes_method_and_path() -> None:
    with FakeBackend() as b, sync_client() as client:
        r = client.get(f"{b.url}/users/1?full=yes")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"backend": b.url, "method": "GET", "path": "/users/1"}


def test_requests_are_recorded_with_headers_and_body() -> None:
    with FakeBackend() as b, sync_client() as client:
        r = client.post(f"{b.url}/orders?x=1", json={"qty": 2}, headers={"X-Trace": "abc"})
        assert r.json()["method"] == "POST"
    (request,) = b.requests
    assert isinstance(request, ReceivedRequest)
    assert (request.method, request.path, request.query) == ("POST", "/orders", "x=1")
    assert request.target == "/orders?x=1"
    assert request.headers["x-trace"] == "abc"  # names in lower case
    assert request.json() == {"qty": 2}
    assert request.body == r.request.content  # the bytes sent
    assert isinstance(request.time, float)
    assert b.request_count == 1


async def test_async_context_manager_serves_on_the_running_loop() -> None:
    async with FakeBackend() as b, async_client() as client:
        r = await client.post(f"{b.url}/a", content=b"hello")
        assert r.json()["path"] == "/a"
        assert b.requests[-1].body == b"hello"
        assert b.running


def test_keep_alive_connection_is_reused() -> None:
    with FakeBackend() as b, sync_client() as client:
        for _ in range(3):
            assert client.get(b.url).status_code == 200
        # HEAD has no body, so the next response on the same connection still parses
        head = client.head(f"{b.url}/x")
        assert head.content == b""
        assert int(head.headers["content-length"]) > 0
        assert client.get(b.url).status_code == 200
    assert b.stats.responses == 5


def test_connection_close_is_honoured() -> None:
    with FakeBackend() as b, sync_client() as client:
        r = client.get(b.url, headers={"Connection": "close"})
    assert r.headers["connection"] == "close"


def test_status_body_and_headers_can_be_set() -> None:
    with FakeBackend(status=201, body={"id": 7}, headers={"X-Version": "2"}) as b, \
            sync_client() as client:
        r = client.get(b.url)
        assert (r.status_code, r.json(), r.headers["x-version"]) == (201, {"id": 7}, "2")
        b.set(body=b"\x00raw", headers={"Content-Type": "application/octet-stream"})
        r = client.get(b.url)
        assert r.content == b"\x00raw"
        assert r.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize("status", [204, 304])
def test_a_status_without_body_sends_none_and_keeps_the_connection_usable(status: int) -> None:
    # HTTP/1.1 forbids a body on 204 and 304: a client reads none, so bytes sent after
    # the head would be taken for the start of the next response on the connection.
    with FakeBackend(status=status) as b, sync_client() as client:
        first = client.get(f"{b.url}/a")
        second = client.get(f"{b.url}/b")
        b.set(status=200)
        third = client.get(f"{b.url}/c")
    assert (first.status_code, first.content) == (status, b"")
    assert (second.status_code, second.content) == (status, b"")
    assert "content-length" not in first.headers or first.headers["content-length"] == "0"
    assert third.json()["path"] == "/c"
    assert b.stats.responses == 3


def test_body_callable_sees_the_request() -> None:
    with FakeBackend(body=lambda request: {"echo": request.query}) as b, \
            sync_client() as client:
        assert client.get(f"{b.url}/?q=42").json() == {"echo": "q=42"}


def test_failing_body_callable_answers_500() -> None:
    def broken(request: ReceivedRequest) -> bytes:
        raise KeyError("missing")

    with FakeBackend(body=broken) as b, sync_client() as client:
        r = client.get(b.url)
    assert r.status_code == 500
    assert "KeyError" in r.text


# -- latency -------------------------------------------------------------------------------


async def test_latency_delays_answers_and_orders_them() -> None:
    async with FakeBackend(latency=0.3) as slow, FakeBackend() as fast, \
            async_client() as client:
        done: list[str] = []

        async def get(b: FakeBackend, name: str) -> None:
            await client.get(b.url)
            done.append(name)

        await asyncio.gather(get(slow, "slow"), get(fast, "fast"))
        assert done == ["fast", "slow"]
        with pytest.raises(httpx.ReadTimeout):
            await client.get(slow.url, timeout=0.05)


@pytest.mark.parametrize(("change", "outcome"), [
    ({"status": 418}, 418), ({"error_rate": 1.0}, 503), ({"reset": True}, "reset")])
async def test_a_set_during_a_requests_latency_answers_it(change: dict[str, object],
                                                          outcome: object) -> None:
    # "In effect when set() returns": a request still waiting out its latency is
    # answered with the behaviour in force when the wait ends.
    async with FakeBackend(latency=0.3) as b, async_client() as client:
        pending = asyncio.create_task(client.get(b.url))
        await until(lambda: b.requests)
        b.set(**change)
        if outcome == "reset":
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                await pending
        else:
            assert (await pending).status_code == outcome


def test_latency_callable_is_drawn_per_request() -> None:
    draws = itertools.count()

    def latency() -> float:
        next(draws)
        return 0.0

    with FakeBackend(latency=latency) as b, sync_client() as client:
        for _ in range(3):
            client.get(b.url)
    assert next(draws) == 3


def test_failing_latency_callable_answers_500_and_the_backend_keeps_serving() -> None:
    def broken() -> float:
        return 1 / 0   # e.g. random.expovariate(0)

    with FakeBackend(latency=broken) as b, sync_client() as client:
        r = client.get(f"{b.url}/a")
        b.set(latency=0.0)
        after = client.get(f"{b.url}/b")
    assert r.status_code == 500
    assert "latency callable raised ZeroDivisionError" in r.text
    assert after.json()["path"] == "/b"
    assert b.stats.responses == 2


# -- errors --------------------------------------------------------------------------------


def test_error_rate_one_fails_every_request_with_the_status() -> None:
    with FakeBackend(error_rate=1.0, error_status=500, retry_after=2) as b, \
            sync_client() as client:
        responses = [client.get(b.url) for _ in range(5)]
    assert {r.status_code for r in responses} == {500}
    assert responses[0].json()["error"] == "injected by FakeBackend"
    assert responses[0].headers["retry-after"] == "2"
    assert b.stats.errors == 5


def test_seeded_error_rate_is_repeatable() -> None:
    def statuses(seed: int) -> list[int]:
        with FakeBackend(error_rate=0.5, seed=seed) as b, sync_client() as client:
            return [client.get(b.url).status_code for _ in range(20)]

    first = statuses(3)
    assert first == statuses(3)
    assert {200, 503} <= set(first)


def test_healthz_has_its_own_status() -> None:
    with FakeBackend(error_rate=1.0) as b, sync_client() as client:
        assert client.get(f"{b.url}/healthz").json()["status"] == "ok"
        b.set(health_status=503)
        r = client.get(f"{b.url}/healthz")
        assert (r.status_code, r.json()["status"]) == (503, "unhealthy")
        assert client.get(f"{b.url}/other").status_code == 503  # error_rate still applies


def test_set_from_another_thread_takes_effect_when_it_returns() -> None:
    with FakeBackend() as b, sync_client() as client:
        assert client.get(b.url).status_code == 200
        worker = threading.Thread(target=b.set, kwargs={"status": 418})
        worker.start()
        worker.join()
        assert client.get(b.url).status_code == 418


async def test_set_from_a_thread_on_an_async_backend() -> None:
    async with FakeBackend() as b, async_client() as client:
        await asyncio.to_thread(b.set, error_rate=1.0)
        assert (await client.get(b.url)).status_code == 503


def test_reset_drops_the_connection_without_answer() -> None:
    with FakeBackend(reset=True) as b, sync_client() as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.get(b.url)
        b.set(reset=False)
        assert client.get(b.url).status_code == 200
    assert b.stats.resets == 1


def test_hang_reads_the_request_and_never_answers() -> None:
    with FakeBackend(hang=True) as b, sync_client() as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get(f"{b.url}/slow", timeout=SHORT)
        assert b.requests[-1].path == "/slow"
        b.set(hang=False)
        assert client.get(b.url).status_code == 200


async def test_unsetting_hang_releases_waiting_requests() -> None:
    async with FakeBackend(hang=True) as b, async_client() as client:
        pending = asyncio.create_task(client.get(b.url))
        await until_hanging(b)
        assert not pending.done()
        b.set(hang=False, status=202)
        assert (await pending).status_code == 202  # answered with the behaviour now


def test_down_refuses_connections_and_up_listens_on_the_same_port() -> None:
    with FakeBackend() as b, sync_client() as client:
        port = b.port
        assert client.get(b.url).status_code == 200  # leaves a pooled keep-alive connection
        b.set(down=True)
        with pytest.raises(httpx.ConnectError):
            client.get(b.url)
        b.set(down=False)
        assert b.port == port
        assert client.get(b.url).status_code == 200


async def test_down_and_up_on_an_async_backend() -> None:
    async with FakeBackend() as b, async_client() as client:
        assert (await client.get(b.url)).status_code == 200
        b.set(down=True)
        with pytest.raises(httpx.ConnectError):
            await client.get(b.url)
        b.set(down=False)
        assert (await client.get(b.url)).status_code == 200


async def test_down_before_start_knows_its_port_but_refuses() -> None:
    async with FakeBackend(down=True) as b, async_client() as client:
        assert b.port > 0
        with pytest.raises(httpx.ConnectError):
            await client.get(b.url)


# -- lifecycle -----------------------------------------------------------------------------


def test_sync_exit_stops_the_thread_and_closes_the_port() -> None:
    before = backend_threads()
    with FakeBackend() as b:
        assert len(backend_threads()) == len(before) + 1
        url = b.url
    assert backend_threads() == before
    assert not b.running
    with sync_client() as client, pytest.raises(httpx.ConnectError):
        client.get(url)


async def test_async_exit_leaves_no_task_even_with_hung_requests() -> None:
    before = asyncio.all_tasks()
    async with FakeBackend(hang=True, latency=0.0) as b, async_client() as client:
        pending = asyncio.create_task(client.get(b.url))
        await until_hanging(b)
    with pytest.raises(httpx.HTTPError):
        await pending
    assert asyncio.all_tasks() == before


async def test_sync_backend_can_be_used_from_async_code() -> None:
    with FakeBackend() as b:
        async with async_client() as client:
            assert (await client.get(b.url)).status_code == 200


def test_two_backends_listen_on_different_ports() -> None:
    with FakeBackend() as one, FakeBackend() as two, sync_client() as client:
        client.get(f"{one.url}/1")
        client.get(f"{two.url}/2")
    assert one.port != two.port
    assert [r.path for r in one.requests] == ["/1"]
    assert [r.path for r in two.requests] == ["/2"]


def test_a_stopped_backend_restarts_on_its_port() -> None:
    b = FakeBackend()
    with b:
        port = b.port
    with b, sync_client() as client:
        assert b.port == port
        assert client.get(b.url).status_code == 200


def test_a_taken_port_is_an_os_error_and_leaves_no_thread() -> None:
    before = backend_threads()
    with FakeBackend() as b:
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{b.port}"):
            FakeBackend(port=b.port).start_sync()
        assert len(backend_threads()) == len(before) + 1
    assert backend_threads() == before


def test_misuse_is_reported() -> None:
    b = FakeBackend()
    with pytest.raises(RuntimeError, match="no port yet"):
        _ = b.url
    with b, pytest.raises(RuntimeError, match="already running"):
        b.start_sync()


async def test_stop_sync_on_an_async_backend_is_refused() -> None:
    async with FakeBackend() as b:
        with pytest.raises(RuntimeError, match="await stop"):
            b.stop_sync()


async def test_await_stop_on_a_thread_backend_is_refused_and_it_still_stops() -> None:
    b = FakeBackend().start_sync()
    try:
        with pytest.raises(RuntimeError, match="stop_sync"):
            await b.stop()
        assert b.running
        async with async_client() as client:
            assert (await client.get(b.url)).status_code == 200
    finally:
        b.stop_sync()  # joins its thread (it hung before: stop() had closed its server)
    assert not b.running
    with b:  # and it starts again
        assert b.running


def test_stats_snapshot() -> None:
    with FakeBackend() as b, sync_client() as client:
        client.get(b.url)
    assert b.stats == BackendStats(requests=1, responses=1)


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "named"),
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"latency": -1}, "latency"),
        ({"status": 99}, "status"),
        ({"status": 100}, "status"),          # a 1xx is never a final answer: clients wait on
        ({"error_status": 103}, "error_status"),
        ({"health_status": 199}, "health_status"),
        ({"health_status": "ok"}, "health_status"),
        ({"hang": 1}, "hang"),
        ({"headers": {"a": 1}}, "headers"),
        ({"headers": {"X-Price": "5 €"}}, "headers"),        # not latin-1: cannot be sent
        ({"headers": {"X-A": "a\r\nSet-Cookie: x"}}, "headers"),  # would inject a header
        ({"headers": {"X A": "1"}}, "headers"),               # not an HTTP token
        ({"headers": {"": "1"}}, "headers"),
        ({"retry_after": "1\r\nX-B: b"}, "retry_after"),
        ({"retry_after": "€"}, "retry_after"),
        ({"body": object()}, "body"),
        ({"retry_after": -2}, "retry_after"),
        ({"port": 70000}, "port"),
    ],
)
def test_bad_behaviour_is_a_config_error_naming_it(behaviour: dict[str, object],
                                                   named: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"FakeBackend: {named}"):
        FakeBackend(**behaviour)  # type: ignore[arg-type]


def test_unknown_behaviour_lists_the_valid_names_and_changes_nothing() -> None:
    with FakeBackend() as b, sync_client() as client:
        with pytest.raises(ml.ConfigError, match=r"unknown behaviour slow.*valid names.*hang"):
            b.set(status=500, slow=True)
        assert client.get(b.url).status_code == 200


async def _raw_exchange(b: FakeBackend, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", b.port)
    writer.write(data)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


async def test_malformed_requests_are_refused() -> None:
    async with FakeBackend() as b:
        assert (await _raw_exchange(b, b"NONSENSE\r\n\r\n")).startswith(b"HTTP/1.1 400")
        chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        assert (await _raw_exchange(b, chunked + b"zz\r\n")).startswith(b"HTTP/1.1 400")
        assert (await _raw_exchange(b, chunked + b"2\r\nabc\r\n")).startswith(
            b"HTTP/1.1 400")  # a chunk longer than its size
    assert b.requests == []


async def test_a_chunked_upload_is_read_recorded_and_answered() -> None:
    # A streamed upload (httpx with an iterator, mesh.http() over its httpcore path)
    # is sent chunked: it was answered 501 and neither recorded nor counted.
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"ab", b"", b"cd" * 40_000):
            yield part

    async with FakeBackend() as b:
        async with httpx.AsyncClient() as client:
            r = await client.post(b.url + "/upload", content=parts())
        assert r.status_code == 200
        mesh = ml.Mesh([ml.Service("users", [b.url], pipeline=ml.Pipeline())])
        async with mesh:
            r = await mesh.http("users").post("/upload", content=parts())
        assert r.status_code == 200
        raw = (b"POST /raw HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n3;ext=1\r\nxyz\r\n0\r\nTrailer: t\r\n\r\n")
        assert (await _raw_exchange(b, raw)).startswith(b"HTTP/1.1 200")
    first, second, third = b.requests
    assert first.body == second.body == b"ab" + b"cd" * 40_000
    assert first.headers["transfer-encoding"] == "chunked"
    assert third.body == b"xyz"


async def test_http_1_0_closes_after_the_answer() -> None:
    async with FakeBackend() as b:
        answer = await _raw_exchange(b, b"GET /old HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in answer


def test_the_port_is_really_a_tcp_listener() -> None:
    with FakeBackend() as b, socket.create_connection(("127.0.0.1", b.port), timeout=1):
        pass


def test_importing_meshlite_testing_loads_no_httpx() -> None:
    code = "import sys, meshlite.testing; print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_a_backend_a_test_never_stops_ends_with_its_loop_quietly() -> None:
    # asyncio.run() cancels the open connection's handler at shutdown; Python 3.11's
    # stream callback logged that cancellation with a traceback.
    code = """if True:
        import asyncio, httpx
        from meshlite.testing import FakeBackend

        async def main():
            b = await FakeBackend().start()  # never stopped
            async with httpx.AsyncClient() as client:
                print((await client.get(b.url)).status_code)

        asyncio.run(main())
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "200"
    assert "CancelledError" not in out.stderr, out.stderr


async def test_a_client_expecting_100_continue_is_told_to_send_its_body() -> None:
    import aiohttp

    async with FakeBackend() as b, aiohttp.ClientSession() as session, session.post(
            f"{b.url}/upload", data=b"x" * 10, expect100=True,
            timeout=aiohttp.ClientTimeout(total=10)) as response:
        assert response.status == 200
    assert b.requests[0].body == b"x" * 10
    assert b.requests[0].headers["expect"] == "100-continue"
