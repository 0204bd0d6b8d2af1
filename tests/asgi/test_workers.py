"""The inbound side as an operator runs it: ``uvicorn app:app --workers 2`` on
loopback, a Starlette app wrapped in MeshMiddleware in each worker, the workers
sharing ``MESHLITE_MULTIPROC_DIR``. A scrape of either worker counts every worker's
requests once, and a SIGTERM lets a request in flight finish, counted."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from _system import wait_for
from _workers import free_port, fresh, running

from meshlite.observability._worker_files import merge_workers, read_workers

if sys.platform == "win32":  # pragma: no cover
    pytest.skip("pre-fork workers are POSIX", allow_module_level=True)

APP = textwrap.dedent('''\
    import asyncio
    import os
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    import meshlite as ml
    from meshlite.asgi import MeshMiddleware
    from meshlite.asgi import Route as MeshRoute
    from meshlite.observability import render

    mesh = ml.Mesh([], name="orders")


    @asynccontextmanager
    async def lifespan(app):
        async with mesh:  # closing it writes this worker's last numbers
            yield


    async def order(request):
        if "mark" in request.query_params:  # tells the test the request is in a worker
            open(request.query_params["mark"], "w").close()
        await asyncio.sleep(float(request.query_params.get("sleep", "0")))
        return JSONResponse({"pid": os.getpid()})


    async def metrics(request):
        return PlainTextResponse(render(mesh))


    app = MeshMiddleware(Starlette(routes=[Route("/orders/{id}", order),
                                           Route("/metrics", metrics)], lifespan=lifespan),
                         mesh=mesh, routes=[MeshRoute("/orders/{id}")])
    ''')
SERIES = 'meshlite_server_requests_total{route="/orders/{id}",method="GET",status="200"}'
N = 40


def orders_counted(url: str) -> float:
    with fresh() as client:
        text = client.get(url + "/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(SERIES + " "))


def test_two_workers_count_every_request_once_and_drain_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    shared = tmp_path / "multiproc"
    shared.mkdir()
    port = free_port()
    env = {**os.environ, "MESHLITE_MULTIPROC_DIR": str(shared)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "app:app", "--workers", "2", "--host",
               "127.0.0.1", "--port", str(port), "--app-dir", str(tmp_path),
               "--log-level", "warning"]
    with running(command, env, tmp_path / "uvicorn.log") as server:
        wait_for(lambda: fresh().get(url + "/metrics").status_code == 200, 30, "uvicorn up")
        pids: set[int] = set()
        sent = 0
        with fresh() as client:
            while sent < N or (len(pids) < 2 and sent < 50 * N):  # until both answered
                pids.add(client.get(f"{url}/orders/{sent}").json()["pid"])
                sent += 1
        if len(pids) < 2:
            pytest.skip("the kernel gave every connection to one worker")
        # Every scrape, whichever worker answers it, counts both workers' requests.
        wait_for(lambda: all(orders_counted(url) == sent for _ in range(4)), 10,
                 f"{sent} requests counted by every scrape")
        slow: dict[str, int] = {}
        mark = tmp_path / "slow-arrived"

        def wait_long() -> None:
            with fresh() as client:
                slow["status"] = client.get(f"{url}/orders/slow",
                                            params={"sleep": 1.5, "mark": str(mark)}
                                            ).status_code

        caller = threading.Thread(target=wait_long)
        caller.start()
        wait_for(mark.exists, 30, "the slow request in a worker")
        server.send_signal(signal.SIGTERM)
        caller.join(10)
        assert server.wait(20) == 0
    assert slow == {"status": 200}  # drained, not cut
    # The workers' files, written as each one's mesh closed, hold all N + 1 requests.
    (family,) = [f for f in merge_workers(read_workers(str(shared)))
                 if f.name == "meshlite_server_requests_total"]
    counted = {dict(s.labels)["route"]: s.value for s in family.samples}
    assert counted["/orders/{id}"] == sent + 1  # and the scrapes under "*"
