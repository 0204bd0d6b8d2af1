"""gunicorn with ``--preload``: the app module, and the mesh it builds, are made once
in the arbiter and forked into every worker. Both worker kinds: uvicorn workers
running an ASGI app (the mesh opened in the lifespan, clients made at import), and
``gthread`` workers running a WSGI app whose mesh the arbiter opened at import (each
worker opens its own in ``post_fork``). The arbiter calls the backend before it
forks; each worker's calls work and are counted once, in its own file."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
from _system import wait_for
from _workers import free_port, fresh, running

from meshlite.testing import FakeBackend

if sys.platform == "win32":  # pragma: no cover
    pytest.skip("pre-fork workers are POSIX", allow_module_level=True)

pytest.importorskip("gunicorn")

N = 24

ASGI_APP = textwrap.dedent('''\
    import os
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    import meshlite as ml
    import meshlite.asgi
    from meshlite.observability import render

    mesh = ml.Mesh.from_config(os.environ["MESH_CONFIG"])
    users = mesh.http("users")          # made at import: in the arbiter
    users_sync = mesh.http_sync("users")
    assert users_sync.get("/warm").status_code == 200  # the arbiter calls, then forks


    @asynccontextmanager
    async def lifespan(app):
        async with mesh:
            app.state.session = mesh.aiohttp("users")
            yield


    async def call(request):
        first = await users.get("/a")
        async with request.app.state.session.get("/b") as second:
            pass
        third = users_sync.get("/c")  # pools the arbiter used, in a worker
        return JSONResponse({"pid": os.getpid(), "status": [
            first.status_code, second.status, third.status_code]})


    async def metrics(request):
        return PlainTextResponse(render(mesh))


    app = meshlite.asgi.MeshMiddleware(
        Starlette(routes=[Route("/call", call), Route("/metrics", metrics)],
                  lifespan=lifespan), mesh=mesh)
    ''')

WSGI_APP = textwrap.dedent('''\
    import json
    import os
    import time

    import meshlite as ml
    from meshlite.observability import render

    mesh = ml.Mesh.from_config(os.environ["MESH_CONFIG"])
    mesh.__enter__()  # opened at import: the arbiter's health checks and writer run
    users = mesh.http_sync("users")
    assert users.get("/warm").status_code == 200  # the arbiter calls, then forks


    def app(environ, start_response):
        if environ["PATH_INFO"] == "/metrics":
            body = render(mesh).encode()
        else:
            checker = mesh.service("users").components[0]
            rounds = checker.rounds
            deadline = time.monotonic() + 5.0  # a round every 100 ms, or later if loaded
            while checker.rounds == rounds and time.monotonic() < deadline:
                time.sleep(0.01)
            body = json.dumps({
                "pid": os.getpid(),
                "status": [users.get("/a").status_code,
                           mesh.call_sync("users", lambda backend: 200)],
                "checking": checker.rounds > rounds,  # this worker's health checks
            }).encode()
        start_response("200 OK", [("content-type", "application/json"),
                                  ("content-length", str(len(body)))])
        return [body]
    ''')

def documented_post_fork_conf() -> str:
    """docs/deploy.md's gunicorn.conf.py for a preloaded app whose mesh the arbiter
    opened: each worker opens its own in ``post_fork``, closes it in ``worker_exit``."""
    doc = (Path(__file__).parents[2] / "docs" / "deploy.md").read_text()
    start = doc.index("# gunicorn.conf.py, for `gunicorn --preload")
    block = doc[start:doc.index("```", start)]
    assert "def post_fork(server, worker):" in block
    return block


def counted(app: str, series: str) -> list[float]:
    """``series`` as twelve scrapes in a row report it (any worker's)."""
    seen = []
    with fresh() as http:
        for _ in range(12):
            text = http.get(app + "/metrics").text
            lines = [x for x in text.splitlines() if x.startswith(series + " ")]
            seen.append(float(lines[0].rsplit(" ", 1)[1]) if lines else -1.0)
    return seen


def serve(tmp_path: Path, app_text: str, backend: FakeBackend, args: list[str]
          ) -> tuple[list[str], dict[str, str], Path]:
    (tmp_path / "app.py").write_text(app_text)
    config = tmp_path / "mesh.yaml"
    config.write_text(textwrap.dedent(f"""\
        services:
          users:
            backends: ["{backend.url}"]
            health_check: {{path: /health, interval: 0.1}}
        inbound:
          routes:
            - {{pattern: "/call"}}
        """))
    shared = tmp_path / "multiproc"
    shared.mkdir()
    env = {**os.environ, "MESH_CONFIG": str(config), "MESHLITE_MULTIPROC_DIR": str(shared)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "gunicorn", "--preload", "-w", "2",
               "--log-level", "warning", *args, "app:app"]
    return command, env, shared


def drive(app: str) -> set[int]:
    pids = set()
    with fresh() as http:  # a new connection each: any worker
        for _ in range(N):
            r = http.get(app + "/call")
            assert r.status_code == 200, r.text
            assert set(r.json()["status"]) == {200}, r.text
            pids.add(r.json()["pid"])
    return pids


@pytest.mark.timeout(120)
def test_uvicorn_workers_of_a_preloaded_app(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn_worker")
    with FakeBackend() as backend:
        port = free_port()
        command, env, shared = serve(tmp_path, ASGI_APP, backend, [
            "-k", "uvicorn_worker.UvicornWorker", "-b", f"127.0.0.1:{port}"])
        app = f"http://127.0.0.1:{port}"
        with running(command, env, tmp_path / "gunicorn.log", cwd=tmp_path):
            wait_for(lambda: len(list(shared.glob("meshlite-*.json"))) == 2, 60,
                     "both workers opened their mesh")
            assert drive(app)
            # Three calls a request, from the workers; the arbiter's call before the
            # fork is in no worker's file (it was in each, counted once per worker).
            calls = 'meshlite_requests_total{service="users"}'
            wait_for(lambda: counted(app, calls) == [3 * N] * 12, 20,
                     "every scrape counts every worker's calls once")
            served = 'meshlite_server_requests_total{route="/call",method="GET",status="200"}'
            assert counted(app, served) == [N] * 12


@pytest.mark.timeout(120)
def test_gthread_workers_of_an_app_whose_mesh_the_arbiter_opened(tmp_path: Path) -> None:
    with FakeBackend() as backend:
        port = free_port()
        (tmp_path / "gunicorn.conf.py").write_text(documented_post_fork_conf())
        command, env, shared = serve(tmp_path, WSGI_APP, backend, [
            "-c", "gunicorn.conf.py", "-k", "gthread", "--threads", "4",
            "-b", f"127.0.0.1:{port}"])
        app = f"http://127.0.0.1:{port}"
        with running(command, env, tmp_path / "gunicorn.log", cwd=tmp_path) as proc:
            wait_for(lambda: len(list(shared.glob("meshlite-*.json"))) == 3, 60,
                     "the arbiter and both workers write their files")
            with fresh() as http:
                for _ in range(N):
                    r = http.get(app + "/call")
                    assert r.status_code == 200, r.text
                    assert r.json()["status"] == [200, 200], r.text
                    assert r.json()["checking"], r.text
            # Two calls a request, and the arbiter's own one (its file: it is open).
            calls = 'meshlite_requests_total{service="users"}'
            wait_for(lambda: counted(app, calls) == [2 * N + 1] * 12, 20,
                     "every scrape counts every process's calls once")
            assert proc.poll() is None
        log = (tmp_path / "gunicorn.log").read_text()  # worker_exit closed each mesh
        assert "Traceback" not in log, log[-3000:]
