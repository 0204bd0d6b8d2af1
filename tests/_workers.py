"""A Starlette app served by ``uvicorn --workers N`` on loopback, each worker
opening a mesh from one config file in its lifespan, with
``MESHLITE_MULTIPROC_DIR`` set: the deployment the multi-worker tests check."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from _system import free_port, wait_for

__all__ = ["APP", "free_port", "fresh", "running", "uvicorn_workers"]

APP = textwrap.dedent('''\
    import os
    from contextlib import asynccontextmanager

    from prometheus_client import CollectorRegistry, generate_latest
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    import meshlite as ml
    from meshlite.observability import PrometheusCollector, render

    state = {}


    @asynccontextmanager
    async def lifespan(app):
        mesh = ml.Mesh.from_config(os.environ["MESH_CONFIG"])
        async with mesh:
            registry = CollectorRegistry()
            registry.register(PrometheusCollector(mesh))
            state.update(mesh=mesh, registry=registry, client=mesh.http("users"))
            yield
            await state["client"].aclose()


    async def call(request):
        r = await state["client"].get("/work")
        return JSONResponse({"pid": os.getpid(), "status": r.status_code})


    async def metrics(request):
        return PlainTextResponse(render(state["mesh"]))


    async def prom(request):
        return Response(generate_latest(state["registry"]), media_type="text/plain")


    app = Starlette(routes=[Route("/call", call), Route("/metrics", metrics),
                            Route("/prom", prom)], lifespan=lifespan)
    ''')


def fresh() -> httpx.Client:
    """A client without keep-alive: each request is a new connection, which any
    worker may accept."""
    return httpx.Client(trust_env=False, timeout=10.0,
                        limits=httpx.Limits(max_keepalive_connections=0))


@contextmanager
def running(command: list[str], env: dict[str, str], log_path: Path,
            cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` in a session of its own, its output in ``log_path``; on exit
    stop it (SIGTERM, then SIGKILL to the group) and print the end of its log."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            print(log_path.read_text()[-3000:])


@contextmanager
def uvicorn_workers(tmp_path: Path, config: Path, shared: Path,
                    workers: int = 3, app: str = APP) -> Iterator[str]:
    """Serve ``app`` (the module's text; :data:`APP` by default) with ``workers``
    uvicorn workers on a free loopback port, the mesh config at ``config`` and the
    multi-process directory ``shared``; yield the app's URL."""
    port = free_port()
    (tmp_path / "app.py").write_text(app)
    env = {**os.environ, "MESH_CONFIG": str(config), "MESHLITE_MULTIPROC_DIR": str(shared)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "uvicorn", "app:app", "--workers", str(workers),
               "--host", "127.0.0.1", "--port", str(port), "--app-dir", str(tmp_path),
               "--log-level", "warning"]
    with running(command, env, tmp_path / "uvicorn.log") as proc:
        # uvicorn's parent binds the socket and its workers listen on it once their
        # lifespan has started: a worker's mesh file appears before that, and a
        # connection in between is refused.
        wait_for(lambda: _accepts(port, proc), 60, "a uvicorn worker listens")
        yield f"http://127.0.0.1:{port}"


def _accepts(port: int, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"uvicorn exited with {proc.returncode} before listening")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
