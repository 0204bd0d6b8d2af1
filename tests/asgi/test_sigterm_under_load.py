"""SIGTERM to a server under steady load, as an orchestrator stops a pod: a FastAPI
app wrapped in MeshMiddleware, its mesh opened in the lifespan (health checks, hot
reload, the host's dashboard, httpx and aiohttp clients), run by ``uvicorn --workers
2`` and by gunicorn with two ``UvicornWorker``s, a separate client process sending
requests all along. Every request the app handled is answered and its spans reach
the collector, the server exits 0, and its output holds no traceback, unclosed
session or pending task."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _system import wait_for
from _workers import _accepts, free_port, fresh, running
from observability.otlp_receiver import OtlpReceiver

from meshlite.testing import FakeBackend

if sys.platform == "win32":  # pragma: no cover
    pytest.skip("pre-fork workers are POSIX", allow_module_level=True)
pytest.importorskip("fastapi")

APP = textwrap.dedent('''\
    import os
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    import meshlite as ml
    import meshlite.asgi

    mesh = ml.Mesh.from_config(os.environ["MESH_CONFIG"])


    @asynccontextmanager
    async def lifespan(app):
        async with mesh:
            app.state.users = mesh.http("users")
            app.state.aio = mesh.aiohttp("users")
            yield


    api = FastAPI(lifespan=lifespan)


    @api.get("/httpx")
    async def via_httpx():
        return {"status": (await api.state.users.get("/work")).status_code}


    @api.get("/aiohttp")
    async def via_aiohttp():
        async with api.state.aio.get("/work") as r:
            return {"status": r.status}


    app = meshlite.asgi.MeshMiddleware(api, mesh=mesh)
    ''')

# Each of 8 threads sends requests one after the other, each on a new connection,
# until the stop file appears; prints "running" after the first answer, then the
# count of each outcome.
LOAD = textwrap.dedent('''\
    import collections, json, os, sys, threading, httpx
    url, stop = sys.argv[1:]
    outcomes, lock, first = collections.Counter(), threading.Lock(), threading.Event()

    def send(i):
        with httpx.Client(trust_env=False, timeout=60,
                          limits=httpx.Limits(max_keepalive_connections=0)) as client:
            while not os.path.exists(stop):
                try:
                    outcome = str(client.get(url + ("/httpx", "/aiohttp")[i % 2]).status_code)
                except httpx.ConnectError:
                    outcome = "refused"
                except httpx.ReadError:
                    outcome = "reset"
                with lock:
                    outcomes[outcome] += 1
                if outcome == "200" and not first.is_set():
                    first.set()
                    print("running", flush=True)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(outcomes), flush=True)
    ''')

NOISE = ("Traceback", "Task was destroyed", "Unclosed", "unclosed", "never closed",
         "ERROR", "Exception")


def _quiet(output: str, port: int) -> list[str]:
    """The lines of ``output`` that say something went wrong, except uvicorn's own
    parent process leaving its listening socket to the exit (not meshlite's)."""
    parent = f"laddr=('127.0.0.1', {port})>"
    lines = [line for line in output.splitlines()
             if not (parent in line or "Enable tracemalloc" in line)]
    return [line for line in lines if any(word in line for word in NOISE)]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_sigterm_under_load_answers_every_handled_request_and_exits_0_quietly(
        tmp_path: Path, server: str) -> None:
    pytest.importorskip("uvicorn_worker" if server == "gunicorn" else "uvicorn")
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "load.py").write_text(LOAD)
    shared = tmp_path / "shared"
    shared.mkdir()
    port = free_port()
    with FakeBackend(latency=0.2) as backend, OtlpReceiver() as receiver:
        config = tmp_path / "mesh.yaml"
        config.write_text(textwrap.dedent(f"""\
            telemetry: {{service_name: frontend, otlp_endpoint: "{receiver.url}"}}
            hot_reload: true
            dashboard: {{port: 0}}
            services:
              users:
                backends: ["{backend.url}"]
                health_check: {{path: /, interval: 0.1}}
            """))
        env = {**os.environ, "MESH_CONFIG": str(config), "MESHLITE_MULTIPROC_DIR": str(shared),
               "OTEL_BSP_SCHEDULE_DELAY": "600000",  # spans leave at the close only
               "PYTHONWARNINGS": "default"}  # ResourceWarnings shown
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if server == "uvicorn":
            command = [sys.executable, "-m", "uvicorn", "app:app", "--workers", "2",
                       "--host", "127.0.0.1", "--port", str(port)]
        else:
            command = [sys.executable, "-m", "gunicorn", "-w", "2", "-k",
                       "uvicorn_worker.UvicornWorker", "-b", f"127.0.0.1:{port}", "app:app"]
        stop = tmp_path / "stop"
        log = tmp_path / "server.log"
        with running(command, env, log, cwd=tmp_path) as proc:
            wait_for(lambda: _accepts(port, proc), 60, "the server listens")
            with subprocess.Popen([sys.executable, str(tmp_path / "load.py"),
                                   f"http://127.0.0.1:{port}", str(stop)],
                                  stdout=subprocess.PIPE, text=True) as load:
                assert load.stdout is not None
                try:
                    assert load.stdout.readline() == "running\n"
                    proc.send_signal(signal.SIGTERM)
                    code = proc.wait(120)
                finally:
                    stop.touch()
                outcomes = json.loads(load.stdout.read())
        spans = receiver.spans
    assert code == 0
    assert not _quiet(log.read_text(), port), log.read_text()[-4000:]
    assert set(outcomes) <= {"200", "refused", "reset"}, outcomes
    # meshlite's SERVER spans ("GET /aiohttp", or "GET" where the Starlette release sets
    # no route in the scope), not the ones recent FastAPI releases make of their own
    handled = [s for s in spans
               if s.kind == "SERVER" and s.scope == "meshlite.asgi" and s.name.startswith("GET")]
    # Every request the app handled was answered (none cut), and each one's spans
    # reached the collector: its SERVER span and the mesh's CLIENT span of its call.
    assert len(handled) == outcomes["200"] > 0, outcomes
    assert sum(s.kind == "CLIENT" for s in spans) == outcomes["200"]
    assert {f.name for f in shared.iterdir() if f.name.startswith("meshlite-")}, \
        "no worker wrote its metrics"


FORGETFUL = textwrap.dedent('''\
    import os
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    import meshlite as ml
    import meshlite.asgi

    mesh = ml.Mesh.from_config(os.environ["MESH_CONFIG"])


    @asynccontextmanager
    async def lifespan(app):
        await mesh.start()        # and no aclose(): forgotten
        yield


    async def call(request):
        r = await mesh.http("users").get("/work")
        return JSONResponse({"status": r.status_code})


    app = meshlite.asgi.MeshMiddleware(Starlette(routes=[Route("/call", call)],
                                                 lifespan=lifespan), mesh=mesh)
    ''')


@pytest.mark.timeout(120)
def test_a_mesh_the_lifespan_left_open_is_closed_on_sigterm_and_named(
        tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    (tmp_path / "app.py").write_text(FORGETFUL)
    port = free_port()
    with FakeBackend() as backend, OtlpReceiver() as receiver:
        config = tmp_path / "mesh.yaml"
        config.write_text(textwrap.dedent(f"""\
            telemetry: {{service_name: frontend, otlp_endpoint: "{receiver.url}"}}
            services:
              users: {{backends: ["{backend.url}"]}}
            """))
        env = {**os.environ, "MESH_CONFIG": str(config), "OTEL_BSP_SCHEDULE_DELAY": "600000",
               "PYTHONWARNINGS": "default"}
        command = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1",
                   "--port", str(port), "--log-level", "warning"]
        log = tmp_path / "server.log"
        with running(command, env, log, cwd=tmp_path) as proc:
            wait_for(lambda: _accepts(port, proc), 60, "the server listens")
            with fresh() as http:
                for _ in range(5):
                    assert http.get(f"http://127.0.0.1:{port}/call").status_code == 200
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)  # (uvicorn ends itself by SIGTERM again: -15, its choice)
        spans = receiver.spans
    # uvicorn raised SIGTERM again as soon as the lifespan had shut down, on its loop:
    # the mesh, never closed, never flushed, and the 5 calls' spans were lost unsaid.
    assert sum(s.kind == "CLIENT" for s in spans) == 5, log.read_text()
    assert ("ResourceWarning: Mesh(['users'], state='open') was left open when the app's "
            "lifespan that opened it shut down; meshlite closed it then.") in log.read_text()
