"""The feed's ``hello`` on a mesh of a realistic size: each piece of state once, a
backend its tick row. It repeated ``/api/services`` (every backend twice, as a
snapshot of 15 named fields and as a health record: about 315 bytes a backend,
4.7 MB at 300 services of 50), then a whole tick said it all again; every viewer
paid it on each connection."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from _ws import connect

import meshlite as ml

SERVICES, BACKENDS = 40, 25  # 1,000 backends
BYTES_A_BACKEND = 64
"""At most, for the hello at this scale: a tick row is its address (here 22 or 23
characters) and six short figures; service fields and balancers are spread over 25
backends each."""


def _answer(backend: Any) -> str:
    return "ok"


def _refuse(backend: Any) -> str:
    raise ConnectionError("refused")


def make_mesh() -> ml.Mesh:
    return ml.Mesh([
        ml.Service(f"service-{i}", [f"http://10.1.{i}.{j + 1}:8080" for j in range(BACKENDS)],
                   balancer="round_robin",
                   pipeline=ml.Pipeline(ml.CircuitBreaker(name=f"db-{i}")))
        for i in range(SERVICES)])


async def test_the_hello_holds_each_backend_once_in_a_few_dozen_bytes() -> None:
    mesh = make_mesh()
    for i in range(SERVICES):  # every backend has figures: calls, failures, a latency
        for _ in range(2 * BACKENDS):
            await mesh.call(f"service-{i}", _answer)
        for _ in range(3):
            with contextlib.suppress(ConnectionError):
                await mesh.call(f"service-{i}", _refuse)
    mesh.service("service-1").eject("http://10.1.1.3:8080")
    server = await mesh.serve_dashboard(port=0)
    try:
        await server.monitor.stop()  # one frame, pushed by hand: the hello holds it
        pushed = server.monitor.tick(time.time())
        await server.monitor.push(pushed)
        async with connect(server.url.replace("http://", "ws://") + "/ws", proxy=None) as ws:
            text = await ws.recv()
    finally:
        await server.stop()
    size = len(text.encode())
    assert size / (SERVICES * BACKENDS) <= BYTES_A_BACKEND, f"{size} bytes"
    addresses = [e.address for s in mesh.services for e in mesh.service(s.name).endpoints]
    assert [a for a in addresses if text.count(f'"{a}"') != 1] == []  # each one once
    hello = json.loads(text)
    assert hello["services"] == json.loads(json.dumps(pushed["services"]))  # the whole mesh
    assert hello["balancers"] == {f"service-{i}": "round_robin" for i in range(SERVICES)}
