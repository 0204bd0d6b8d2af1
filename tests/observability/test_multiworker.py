"""Many workers, one picture: ``uvicorn app:app --workers 3`` on loopback, each
worker opening a mesh from one config file in the app's lifespan, with
``MESHLITE_MULTIPROC_DIR`` set. Every scrape of any worker (meshlite's exposition
and a prometheus_client registry with ``PrometheusCollector``) and the one
dashboard of the host count exactly the calls sent; after one worker is killed,
nothing is lost or counted twice, another worker takes the dashboard over and the
history carries on."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _system import require_program, wait_for

from meshlite.testing import FakeBackend

pytest.importorskip("prometheus_client")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
if sys.platform == "win32":  # pragma: no cover
    pytest.skip("pre-fork workers are POSIX", allow_module_level=True)

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

N, M = 90, 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port




def fresh() -> httpx.Client:
    # No keep-alive: each request is a new connection, which any worker may accept.
    return httpx.Client(trust_env=False, timeout=10.0,
                        limits=httpx.Limits(max_keepalive_connections=0))


def calls_in(text: str) -> float:
    for line in text.splitlines():
        if line.startswith('meshlite_requests_total{service="users"}'):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    with FakeBackend() as backend:
        app_port, dash_port = free_port(), free_port()
        (tmp_path / "app.py").write_text(APP)
        config = tmp_path / "mesh.yaml"
        config.write_text(textwrap.dedent(f"""\
            services:
              users:
                backends: ["{backend.url}"]
            dashboard:
              port: {dash_port}
            """))
        shared = tmp_path / "multiproc"
        env = {**os.environ, "MESH_CONFIG": str(config), "MESHLITE_MULTIPROC_DIR": str(shared)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log = (tmp_path / "uvicorn.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app:app", "--workers", "3", "--host",
             "127.0.0.1", "--port", str(app_port), "--app-dir", str(tmp_path),
             "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{dash_port}", shared
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
            print((tmp_path / "uvicorn.log").read_text()[-3000:])


def worker_files(shared: Path) -> list[Path]:
    return sorted(shared.glob("meshlite-*.json"))


def every_scrape_says(app: str, path: str, expected: float) -> None:
    """Twelve scrapes in a row (each on a new connection, so on any worker) all
    report ``expected``. Workers write their files every half second: a busy
    machine may need a few rounds before the last file is current, never more."""
    deadline = time.monotonic() + 20.0
    while True:
        with fresh() as http:
            seen = [calls_in(http.get(app + path).text) for _ in range(12)]
        assert max(seen) <= expected, (path, seen)  # never counted twice
        if seen == [expected] * 12:
            return
        assert time.monotonic() < deadline, (path, seen)
        time.sleep(0.5)


def drive(app: str, n: int) -> set[int]:
    pids = set()
    with fresh() as http:
        for _ in range(n):
            r = http.get(app + "/call")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["status"] == 200
            pids.add(body["pid"])
    return pids


def page_worker_rows(dash: str) -> dict[str, str]:
    """The page's Workers table, read in the system Chromium: pid -> calls."""
    chromium = require_program("chromium", "chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - depends on the environment
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("playwright is not installed; CI=true, so this is a failure")
        pytest.skip("playwright is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page()
            page.goto(dash + "/")
            page.wait_for_selector("#workers:not([hidden]) #worker-rows tr", timeout=10000)
            rows: list[list[str]] = page.eval_on_selector_all(
                "#worker-rows tr",
                "rows => rows.map(r => [...r.children].map(td => td.textContent))")
        finally:
            browser.close()
    return {row[0]: row[2] for row in rows}


@pytest.mark.timeout(180)
def test_three_workers_one_picture(workers: tuple[str, str, Path]) -> None:
    app, dash, shared = workers
    wait_for(lambda: len(worker_files(shared)) == 3, 60, "every worker opened its mesh")
    wait_for(lambda: httpx.get(dash + "/api/health", trust_env=False).status_code == 200,
             30, "the host's dashboard serves")
    lock = shared / "dashboard.lock"
    server_pid = int(lock.read_text())
    pids = drive(app, N)
    time.sleep(1.5)  # every worker writes its file within FLUSH_SECONDS
    every_scrape_says(app, "/metrics", N)
    every_scrape_says(app, "/prom", N)
    with fresh() as http:
        host = http.get(dash + "/api/workers").json()
    assert host["services"]["users"]["calls"] == N
    by_worker = {w["pid"]: w["services"].get("users", {}).get("calls", 0)
                 for w in host["workers"]}
    assert sum(by_worker.values()) == N
    assert {pid for pid, n in by_worker.items() if n} == pids  # the breakdown is real
    assert page_worker_rows(dash) == {str(pid): str(n) for pid, n in by_worker.items()}
    # Let the dashboard save a history holding every call (it saves every 5 s), then
    # kill the worker serving it.
    saved = shared / "dashboard-history.json"
    wait_for(lambda: sum(slot[1] for slot in json.loads(saved.read_text())["users"]["slots"])
             == N, 60, "the history saved with every call")
    before_kill = by_worker.get(server_pid, 0)
    os.kill(server_pid, signal.SIGKILL)
    wait_for(lambda: int(lock.read_text()) != server_pid and httpx.get(
        dash + "/api/health", trust_env=False).status_code == 200, 60,
        "another worker took the dashboard over")
    with fresh() as http:
        history = http.get(dash + "/api/services/users/history?seconds=600").json()
    assert sum(n for n in history["requests"] if n) == N  # the history carried on
    drive(app, M)
    time.sleep(1.5)
    every_scrape_says(app, "/metrics", N + M)
    every_scrape_says(app, "/prom", N + M)
    with fresh() as http:
        host = http.get(dash + "/api/workers").json()
    assert host["services"]["users"]["calls"] == N + M
    dead = [w for w in host["workers"] if w["pid"] == server_pid]
    assert dead  # its counts are kept, not double-counted
    assert not dead[0]["alive"]
    assert dead[0]["services"].get("users", {}).get("calls", 0) == before_kill
    gauges = [line for line in httpx.get(app + "/metrics", trust_env=False).text.splitlines()
              if line.startswith("meshlite_requests_in_flight{")]
    assert gauges
    assert all("pid=" in line for line in gauges)
    assert not any(f'pid="{server_pid}"' in line for line in gauges)


def documented_gunicorn_conf(shared: Path, port: int) -> str:
    """docs/deploy.md's gunicorn.conf.py, with this test's directory and port."""
    doc = (Path(__file__).parents[2] / "docs" / "deploy.md").read_text()
    start = doc.index("# gunicorn.conf.py\n")
    block = doc[start:doc.index("```", start)]
    assert 'worker_class = "uvicorn_worker.UvicornWorker"' in block
    return (block.replace("/run/app/meshlite", str(shared))
            .replace('"0.0.0.0:8000"', f'"127.0.0.1:{port}"')
            .replace("workers = 4", "workers = 3"))


@pytest.mark.timeout(120)
def test_gunicorn_with_uvicorn_workers(tmp_path: Path) -> None:
    """The documented gunicorn command: every scrape of any worker reports every
    worker's calls, exactly."""
    pytest.importorskip("gunicorn")
    pytest.importorskip("uvicorn_worker")
    with FakeBackend() as backend:
        port = free_port()
        shared = tmp_path / "multiproc"
        shared.mkdir()
        (shared / "meshlite-999999999-1.json").write_text("[]")  # on_starting empties it
        (tmp_path / "app.py").write_text(APP)
        (tmp_path / "gunicorn.conf.py").write_text(documented_gunicorn_conf(shared, port))
        config = tmp_path / "mesh.yaml"
        config.write_text(f'services:\n  users:\n    backends: ["{backend.url}"]\n')
        env = {**os.environ, "MESH_CONFIG": str(config)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.pop("MESHLITE_MULTIPROC_DIR", None)  # the config file's raw_env sets it
        log = (tmp_path / "gunicorn.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app",
             "--log-level", "warning"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        app = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: len(worker_files(shared)) == 3, 60, "every worker opened its mesh")
            drive(app, N)
            time.sleep(1.0)  # every worker writes its file within FLUSH_SECONDS
            every_scrape_says(app, "/metrics", N)
            every_scrape_says(app, "/prom", N)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
            print((tmp_path / "gunicorn.log").read_text()[-3000:])
