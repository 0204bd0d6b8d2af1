"""FakeBackend on the running loop keeps its word under uvloop as under asyncio.

uvloop (the loop uvicorn[standard] brings, and many suites run on) owns the
listening socket of a server and hands out socket objects without ``shutdown()``:
closing the port and dropping connections must not lean on asyncio's selector loop.
Each test runs on a fresh loop of each kind (``asyncio.Runner(loop_factory=...)``),
with a real httpx client, so the client sees what a real one would.
"""

from __future__ import annotations

import asyncio
import importlib
import ssl
import threading
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import Any

import httpx
import pytest
from _system import on_ci
from testing.test_fake_backend import until

from meshlite.testing import FakeBackend

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # plain HTTP: no certificates to load
LONG = 10.0  # a client timeout no test reaches: a dropped connection ends the call first
SHORT = 0.2  # a client timeout a held or slow answer exceeds
DROPPED = (httpx.RemoteProtocolError, httpx.ReadError)  # FIN or reset, no answer
RUN_TIMEOUT = 30.0  # seconds for a test's coroutine (it takes well under one)
CLOSE_TIMEOUT = 5.0  # seconds for its loop to close after it


def require_module(name: str, package: str) -> ModuleType:
    """Module ``name``, imported; skip (fail on CI) when it is not installed.

    The module twin of ``_system.require_program``: CI installs the dev extra, so a
    skip there would hide a broken setup.

    Args:
        name: The module to import.
        package: The PyPI requirement that provides it, named in the message.

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        message = (f"{name} is not installed: install the Python package {package!r} "
                   f"(pip install '{package}'; the dev extra has it)")
        if on_ci():
            pytest.fail(f"{message}; CI=true requires it", pytrace=False)
        pytest.skip(message)


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_factory(request: pytest.FixtureRequest) -> LoopFactory:
    """A factory of new event loops of each kind (uvloop: skipped when not installed)."""
    if request.param == "asyncio":
        return asyncio.new_event_loop
    factory: LoopFactory = require_module("uvloop", "uvloop").new_event_loop
    return factory


def run(loop_factory: LoopFactory, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main()`` on a new loop from ``loop_factory`` (not the policy's default).

    On a thread of its own: uvloop's close() can hang while a server is left open on
    the loop (where no signal interrupts it, pytest-timeout's neither), and a
    backend that leaks its server must fail its test, not hang the suite.
    """
    ran = threading.Event()
    errors: list[BaseException] = []

    def serve() -> None:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            try:
                runner.run(main())
            except BaseException as error:  # raised again on the test's thread
                errors.append(error)
            finally:
                ran.set()

    thread = threading.Thread(target=serve, name="test-loop", daemon=True)
    thread.start()
    ran.wait(RUN_TIMEOUT)
    thread.join(CLOSE_TIMEOUT)
    if errors:
        raise errors[0]
    if thread.is_alive():
        what = "close" if ran.is_set() else f"finish within {RUN_TIMEOUT} s"
        pytest.fail(f"the loop did not {what}: something the backend opened on it is "
                    "still open", pytrace=False)


def client(timeout: float = LONG, *, close: bool = False) -> httpx.AsyncClient:
    """A plain-HTTP client; ``close=True``: one connection per request, none kept open
    (the server ends its side before the client reads the answer)."""
    headers = {"connection": "close"} if close else None
    return httpx.AsyncClient(verify=NO_TLS, timeout=timeout, headers=headers)


async def assert_refused(url: str) -> None:
    async with client() as fresh:
        with pytest.raises(httpx.ConnectError):
            await fresh.get(url)


def test_the_port_is_refused_after_the_block_ends(loop_factory: LoopFactory) -> None:
    async def main() -> None:
        async with FakeBackend() as b, client(close=True) as c:
            assert (await c.get(b.url)).status_code == 200  # no connection left open
        await assert_refused(b.url)

    run(loop_factory, main)


def test_down_refuses_and_up_serves_again_on_the_same_port(loop_factory: LoopFactory) -> None:
    async def main() -> None:
        async with FakeBackend() as b, client(close=True) as c:
            port = b.port
            assert (await c.get(b.url)).status_code == 200  # no connection left open
            b.set(down=True)  # in effect when it returns: no waiting here
            await assert_refused(b.url)
            b.set(down=False)
            assert b.port == port
            assert (await c.get(b.url)).status_code == 200
        await assert_refused(b.url)

    run(loop_factory, main)


def test_down_drops_a_pooled_connection_before_its_next_request(
        loop_factory: LoopFactory) -> None:
    async def main() -> None:
        async with FakeBackend() as b, client() as c:
            assert (await c.get(b.url)).status_code == 200  # leaves a pooled connection
            b.set(down=True)
            with pytest.raises(httpx.ConnectError):  # seen dead before use, then refused
                await c.get(b.url)
            b.set(down=False)
            assert (await c.get(b.url)).status_code == 200
            assert (await c.get(b.url)).status_code == 200  # pooled again: stop drops it
        await assert_refused(b.url)

    run(loop_factory, main)


@pytest.mark.parametrize("how", ["stop", "down"])
@pytest.mark.parametrize("behaviour", [{"hang": True}, {"latency": LONG}],
                         ids=["hang", "latency"])
def test_a_request_in_progress_is_dropped_without_error(
        loop_factory: LoopFactory, behaviour: dict[str, Any], how: str) -> None:
    async def main() -> None:
        before = asyncio.all_tasks()
        async with FakeBackend(**behaviour) as b, client() as c:
            pending = asyncio.create_task(c.get(b.url))
            await until(lambda: b.request_count)  # read, now held or waiting its latency
            if how == "down":
                b.set(down=True)
                with pytest.raises(DROPPED):
                    await pending
                await assert_refused(b.url)
        if how == "stop":
            with pytest.raises(DROPPED):
                await pending
        assert b.stats.responses == 0
        assert asyncio.all_tasks() == before

    run(loop_factory, main)


@pytest.mark.parametrize("how", ["stop", "down"])
def test_a_request_a_client_timeout_cut_is_dropped_without_error(
        loop_factory: LoopFactory, how: str) -> None:
    async def main() -> None:
        async with FakeBackend(latency=LONG) as b:
            async with client(timeout=SHORT) as c:
                with pytest.raises(httpx.ReadTimeout):
                    await c.get(b.url)
            # the backend still waits out that request's latency, on its connection
            if how == "down":
                b.set(down=True)
                await assert_refused(b.url)
        await assert_refused(b.url)

    run(loop_factory, main)
