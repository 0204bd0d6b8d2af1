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
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _system import read_page, wait_for
from _workers import APP, free_port, fresh, running, uvicorn_workers

from meshlite.testing import FakeBackend

pytest.importorskip("prometheus_client")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
if sys.platform == "win32":  # pragma: no cover
    pytest.skip("pre-fork workers are POSIX", allow_module_level=True)

N, K, M = 90, 12, 30


def calls_in(text: str) -> float:
    for line in text.splitlines():
        if line.startswith('meshlite_requests_total{service="users"}'):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    with FakeBackend() as backend:
        dash_port = free_port()
        config = tmp_path / "mesh.yaml"
        config.write_text(textwrap.dedent(f"""\
            services:
              users:
                backends: ["{backend.url}"]
            dashboard:
              port: {dash_port}
            """))
        shared = tmp_path / "multiproc"
        with uvicorn_workers(tmp_path, config, shared) as app:
            yield app, f"http://127.0.0.1:{dash_port}", shared


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
    rows: list[list[str]] = read_page(
        dash + "/", "#workers:not([hidden]) #worker-rows tr",
        "rows => rows.map(r => [...r.children].map(td => td.textContent))")
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
    # The worker whose own view the backend rows and breakers are: the one serving.
    assert [w["pid"] for w in host["workers"] if w["serving"]] == [server_pid]
    assert page_worker_rows(dash) == {str(pid): str(n) for pid, n in by_worker.items()}
    # Let the dashboard save a history holding every call (it saves every 5 s), make
    # K calls more (most likely before its next save), then kill the worker serving it.
    saved = shared / "dashboard-history.json"
    wait_for(lambda: sum(slot[1] for slot in json.loads(saved.read_text())["users"]["slots"])
             == N, 60, "the history saved with every call")
    drive(app, K)
    time.sleep(0.7)  # every worker's file holds them (FLUSH_SECONDS)
    with fresh() as http:
        host = http.get(dash + "/api/workers").json()
    by_worker = {w["pid"]: w["services"].get("users", {}).get("calls", 0)
                 for w in host["workers"]}
    before_kill = by_worker.get(server_pid, 0)
    os.kill(server_pid, signal.SIGKILL)
    wait_for(lambda: int(lock.read_text()) != server_pid and httpx.get(
        dash + "/api/health", trust_env=False).status_code == 200, 60,
        "another worker took the dashboard over")
    with fresh() as http:
        history = http.get(dash + "/api/services/users/history?seconds=600").json()
    # The history carried on, with the calls made after its last save counted into
    # the seconds no dashboard recorded.
    assert sum(n for n in history["requests"] if n) == N + K
    drive(app, M)
    time.sleep(1.5)
    every_scrape_says(app, "/metrics", N + K + M)
    every_scrape_says(app, "/prom", N + K + M)
    with fresh() as http:
        host = http.get(dash + "/api/workers").json()
    assert host["services"]["users"]["calls"] == N + K + M
    dead = [w for w in host["workers"] if w["pid"] == server_pid]
    assert dead  # its counts are kept, not double-counted
    assert not dead[0]["alive"]
    assert not dead[0]["serving"]
    assert [w["pid"] for w in host["workers"] if w["serving"]] == [int(lock.read_text())]
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


def documented_app() -> str:
    """docs/deploy.md's app.py: a mesh built at import, opened in the lifespan,
    behind the inbound middleware."""
    doc = (Path(__file__).parents[2] / "docs" / "deploy.md").read_text()
    start = doc.index("# app.py\n")
    block = doc[start:doc.index("```", start)]
    assert "meshlite.asgi.MeshMiddleware(" in block
    return block


@pytest.mark.timeout(120)
def test_the_documented_app_behind_its_middleware_under_two_uvicorn_workers(
        tmp_path: Path) -> None:
    """docs/deploy.md's app under ``uvicorn --workers 2``: each worker builds and
    opens its own mesh, the file's ``inbound:`` routes apply, and a scrape of any
    worker counts every worker's inbound requests and outgoing calls."""
    with FakeBackend() as backend:
        config = tmp_path / "mesh.yaml"
        config.write_text(textwrap.dedent(f"""\
            services:
              users:
                backends: ["{backend.url}"]
            inbound:
              routes:
                - {{pattern: "/users/{{uid}}", rate: 100, key: client}}
            """))
        shared = tmp_path / "multiproc"
        with uvicorn_workers(tmp_path, config, shared, workers=2,
                             app=documented_app()) as app:
            wait_for(lambda: len(worker_files(shared)) == 2, 60, "both workers opened a mesh")
            for uid in range(M):
                with fresh() as http:  # a new connection: any worker
                    r = http.get(f"{app}/users/{uid}")
                assert r.status_code == 200, r.text
                assert r.json()["path"] == f"/users/{uid}"
            served = f'meshlite_server_requests_total{{route="/users/{{uid}}",method="GET",' \
                     f'status="200"}} {M}'

            def every_scrape_serves() -> bool:
                with fresh() as http:
                    return all(served in http.get(app + "/metrics").text for _ in range(6))

            wait_for(every_scrape_serves, 20, "every scrape counts every worker's requests")
            every_scrape_says(app, "/metrics", M)
            assert len(worker_files(shared)) == 2


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
        app = f"http://127.0.0.1:{port}"
        with running([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app",
                      "--log-level", "warning"], env, tmp_path / "gunicorn.log", cwd=tmp_path):
            wait_for(lambda: len(worker_files(shared)) == 3, 60, "every worker opened its mesh")
            drive(app, N)
            time.sleep(1.0)  # every worker writes its file within FLUSH_SECONDS
            every_scrape_says(app, "/metrics", N)
            every_scrape_says(app, "/prom", N)
