"""The WebSocket feed over a real loopback socket: a viewer gets the whole mesh once
(in its ``hello``, or in a ``tick`` when it connected before the first frame), then
each second only what changed since the frame it got before (a ``delta``): changed
fields, changed or added backend rows, removed rows and services. Applying the
deltas to the whole mesh gives the whole mesh, second by second.

Frames are pushed by hand (``monitor.push(monitor.tick(now))``, the once-a-second
loop stopped) so that each one holds exactly this test's changes."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _ws import connect

import meshlite as ml
from meshlite.observability._dashboard import _frames
from meshlite.observability._dashboard._frames import Feed, delta_frame
from meshlite.observability._dashboard._monitor import dumps
from meshlite.observability._dashboard._server import DashboardServer

WAIT = 10.0  # seconds: a bound for a loaded machine, not an expectation

CONFIG = """
services:
  users: {backends: ["http://127.0.0.1:80", "http://127.0.0.2:80"]}
  orders: {backends: ["http://127.0.0.3:80"]}
  search: {backends: ["http://127.0.0.4:80"]}
"""
RELOADED = """
services:
  users: {backends: ["http://127.0.0.1:80", "http://127.0.0.2:80"]}
  orders: {backends: ["http://127.0.0.3:80"]}
  billing: {backends: ["http://127.0.0.6:80", "http://127.0.0.7:80"]}
"""


def merge(frame: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """A viewer's view: ``frame`` (a whole tick) with ``delta`` applied, as the
    format's documentation says to."""
    out = copy.deepcopy(frame)
    out["second"] = delta["second"]
    out["firing"] = delta.get("firing", frame["firing"])
    for name in delta.get("removed", []):
        del out["services"][name]
    for name, entry in delta["services"].items():
        if name not in out["services"]:
            out["services"][name] = entry
            continue
        service = out["services"][name]
        rows = {row[0]: row for row in service["backends"]}
        for row in entry.get("backends", []):
            rows[row[0]] = row
        for address in entry.get("removed", []):
            del rows[address]
        service.update({k: v for k, v in entry.items() if k not in ("backends", "removed")})
        service["backends"] = list(rows.values())
    return out


def without_events(frame: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in frame.items() if k not in ("type", "alerts", "refusals")}


def the_mesh(frame: dict[str, Any]) -> dict[str, Any]:
    """What a whole frame (a tick, or a hello that holds the mesh) says of the mesh."""
    return {k: frame[k] for k in ("second", "firing", "services")}


async def ok(backend: Any) -> str:
    return "ok"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[DashboardServer]:
    path = tmp_path / "mesh.yaml"
    path.write_text(CONFIG)
    srv = await ml.Mesh.from_config(str(path)).serve_dashboard(port=0)
    await srv.monitor.stop()  # frames are pushed by hand
    yield srv
    await srv.stop()


async def joined(server: DashboardServer, viewers: int) -> None:
    deadline = time.monotonic() + WAIT
    while len(server.monitor.clients) < viewers:
        assert time.monotonic() < deadline, "the viewer never joined"
        await asyncio.sleep(0.01)


async def test_one_whole_frame_then_only_changes(server: DashboardServer,
                                                 tmp_path: Path) -> None:
    monitor, mesh = server.monitor, server.monitor.mesh
    url = server.url.replace("http://", "ws://") + "/ws"
    now = time.time()
    pushed: list[dict[str, Any]] = []

    async def push(seconds: int) -> None:
        pushed.append(monitor.tick(now + seconds))
        await monitor.push(pushed[-1])

    async with contextlib.AsyncExitStack() as stack:
        ws = await stack.enter_async_context(connect(url, proxy=None))
        hello = json.loads(await ws.recv())
        assert (hello["type"], hello["version"]) == ("hello", 3)
        assert "services" not in hello  # no frame yet: a whole tick comes first
        assert hello["balancers"] == dict.fromkeys(("users", "orders", "search"), "p2c_ewma")
        await joined(server, 1)

        async def recv() -> dict[str, Any]:
            frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            return frame

        await push(1)
        first = await recv()
        assert first["type"] == "tick"
        assert first == json.loads(json.dumps(pushed[-1]))  # the whole mesh
        assert [len(s["backends"]) for s in first["services"].values()] == [2, 1, 1]

        await push(2)  # nothing happened
        assert await recv() == {"type": "delta", "second": pushed[-1]["second"],
                                "services": {}}

        for _ in range(3):
            await mesh.call("users", ok)
        await push(3)
        delta = await recv()
        assert list(delta["services"]) == ["users"]
        users = delta["services"]["users"]
        # only what moved: the calls and the latencies, and the rows of the backends
        # that took them; not its status, breakers, backends available...
        assert set(users) <= {"requests", "attempts", "p50", "p99", "backends"}
        assert (users["requests"], users["attempts"]) == (3, 3)
        assert 1 <= len(users["backends"]) <= 2
        assert sum(row[4] for row in users["backends"]) == 3

        view = merge(first, delta)

        mesh.service("orders").set_backends(["http://127.0.0.3:80", "http://127.0.0.5:80"])
        await push(4)
        delta = await recv()
        orders = delta["services"]["orders"]
        assert [row[0] for row in orders["backends"]] == ["http://127.0.0.5:80"]  # added
        assert orders["total"] == 2
        assert "removed" not in orders
        view = merge(view, delta)

        (tmp_path / "mesh.yaml").write_text(RELOADED)
        assert await mesh.reload()
        mesh.service("orders").set_backends(["http://127.0.0.5:80"])
        # a second viewer, connecting now, gets the whole mesh in its hello: the last
        # frame pushed (it predates the reload), which the next delta is taken from
        late = await stack.enter_async_context(connect(url, proxy=None))
        hello = json.loads(await late.recv())
        assert hello["type"] == "hello"
        assert the_mesh(hello) == the_mesh(json.loads(json.dumps(pushed[-1])))
        assert list(hello["balancers"]) == ["users", "orders", "billing"]  # as it is now
        await joined(server, 2)
        await push(5)
        delta, second = await recv(), json.loads(await asyncio.wait_for(late.recv(), WAIT))
        assert second == delta  # the same delta as the viewer that got every frame
        whole = json.loads(json.dumps(pushed[-1]))
        assert without_events(merge(the_mesh(hello), delta)) == without_events(whole)
        assert delta["type"] == "delta"
        assert delta["removed"] == ["search"]
        assert len(delta["services"]["billing"]["backends"]) == 2  # new: whole
        assert delta["services"]["orders"]["removed"] == ["http://127.0.0.3:80"]
        assert "backends" not in delta["services"]["orders"]  # the other row stayed
        assert "users" not in delta["services"]  # idle since: its figures went to 0 before
        view = merge(view, delta)
        assert without_events(view) == without_events(whole)  # deltas add up to the mesh

        await push(6)
        assert (await recv())["services"] == {}
        assert json.loads(await asyncio.wait_for(late.recv(), WAIT))["type"] == "delta"


async def test_a_delta_carries_state_changes_and_alerts() -> None:
    breaker = ml.CircuitBreaker(name="db")
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:80", "http://127.0.0.2:80"],
                               pipeline=ml.Pipeline(breaker))])
    mesh.alerts.add(ml.AlertRule("breaker", "breaker_open"))
    server = await mesh.serve_dashboard(port=0)
    monitor = server.monitor
    await monitor.stop()
    now = time.time()
    try:
        async with connect(server.url.replace("http://", "ws://") + "/ws", proxy=None) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            await joined(server, 1)
            await monitor.push(monitor.tick(now + 1))
            first = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert (first["firing"], "alerts" in first) == (0, False)

            breaker.force_open()
            mesh.service("users").eject("http://127.0.0.2:80")
            await monitor.push(monitor.tick(now + 2))
            delta = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            users = delta["services"]["users"]
            assert users["breakers"] == {"db": "forced_open"}
            assert users["status"] == "failing"
            assert users["available"] == 1
            assert [row[:2] for row in users["backends"]] == [["http://127.0.0.2:80",
                                                                "ejected"]]
            assert delta["firing"] == 1  # it changed
            assert [a["rule"] for a in delta["alerts"]["firing"]] == ["breaker"]

            await monitor.push(monitor.tick(now + 3))  # the same state: nothing to say
            assert json.loads(await asyncio.wait_for(ws.recv(), WAIT)) == {
                "type": "delta", "second": monitor.feed.previous["second"], "services": {}}
    finally:
        await server.stop()


def test_a_viewer_greeted_while_a_frame_is_sent_gets_the_next_delta() -> None:
    # The hello holds the last frame; a viewer joining while that frame is still
    # being sent to the others (between frames() and sent()) has it too.
    feed = Feed()
    ticks = [{"type": "tick", "second": s, "firing": 0, "services": {
        "users": {"requests": s, "backends": [["http://a", "up", 0, 0.0, s, 0, None]]}}}
        for s in range(3)]
    feed.frames(ticks[0], ["old"], dumps)
    feed.sent(["old"])
    feed.frames(ticks[1], ["old"], dumps)  # being sent to "old"
    assert feed.greet("new") is ticks[1]
    feed.sent(["old"])
    delta = dumps(delta_frame(ticks[1], ticks[2]))
    assert feed.frames(ticks[2], ["old", "new"], dumps) == [delta, delta]
    assert Feed().greet("first") is None  # before any frame: a whole tick follows


def test_the_page_reads_the_version_the_server_sends() -> None:
    # A page reading another version refuses the feed (it loads itself again once).
    script = (Path(_frames.__file__).parent / "static" / "feed.js").read_text()
    assert f"const VERSION = {_frames.FEED_VERSION};" in script
