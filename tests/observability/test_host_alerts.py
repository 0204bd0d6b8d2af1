"""The alert engine runs while a mesh is open, with no dashboard anywhere, and once
per host: ``uvicorn --workers 3`` with a config holding ``alerts:`` (no
``dashboard:``) and ``MESHLITE_MULTIPROC_DIR`` set. A webhook receiver on loopback
gets exactly one notification per change for the host (not one per worker), and
after the evaluating worker is killed with SIGKILL another takes over."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from _system import wait_for
from _workers import fresh, uvicorn_workers

import meshlite as ml
from meshlite.observability._dashboard._monitor import Monitor
from meshlite.observability._worker_files import alive
from meshlite.state import MemoryStore
from meshlite.testing import FakeBackend

pytest.importorskip("prometheus_client")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
if sys.platform == "win32":  # pragma: no cover
    pytest.skip("pre-fork workers are POSIX", allow_module_level=True)

class Receiver:
    """A webhook receiver on loopback: keeps every POSTed JSON body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def statuses(self) -> list[str]:
        return [b["status"] for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()




def alerts_config(path: Path, backend: str, webhook: str) -> None:
    # resolve_seconds: a quiet second in the middle of a burst does not resolve it.
    path.write_text(textwrap.dedent(f"""\
        services:
          users:
            backends: ["{backend}"]
        alerts:
          webhook: {webhook}
          rules:
            - {{name: users-errors, condition: error_rate, threshold: 0.5, window: 1,
               min_requests: 1, resolve_seconds: 2, service: users}}
        """))


def test_rules_run_without_a_dashboard_in_one_process(receiver: Receiver,
                                                      tmp_path: Path) -> None:
    """A plain ``with mesh`` (no dashboard) evaluates its rules and notifies."""
    with FakeBackend(error_rate=1.0) as backend:
        config = tmp_path / "mesh.yaml"
        alerts_config(config, backend.url, receiver.url)
        mesh = ml.Mesh.from_config(str(config))
        with mesh, mesh.http_sync("users") as users:
            for _ in range(10):
                assert users.get("/work").status_code == 503
            wait_for(lambda: receiver.statuses() == ["firing"], 10, "the alert fired")
            wait_for(lambda: receiver.statuses() == ["firing", "resolved"], 10,
                     "the alert resolved once the errors stopped")
        [fired, resolved] = receiver.bodies
        assert fired["alert"]["rule"] == "users-errors"
        assert resolved["alert"]["state"] == "resolved"


def test_a_file_rule_fires_on_a_service_registered_in_code(receiver: Receiver,
                                                           tmp_path: Path) -> None:
    """A service with a store or a key function exists only in code; the file's rule
    naming it loads (it used to be refused: "'alpha' is not a service") and fires
    on that service's failures."""
    with FakeBackend(error_rate=1.0) as failing, FakeBackend() as fine:
        config = tmp_path / "mesh.yaml"
        config.write_text(textwrap.dedent(f"""\
            services:
              gamma:
                backends: ["{fine.url}"]
            alerts:
              webhook: {receiver.url}
              rules:
                - {{name: alpha-errors, condition: error_rate, threshold: 0.5, window: 1,
                   min_requests: 1, service: alpha}}
            """))
        mesh = ml.Mesh.from_config(str(config))
        mesh.register(ml.Service("alpha", [failing.url],
                                 pipeline=ml.Pipeline(ml.RateLimit(rate=1000.0,
                                                                   store=MemoryStore()))))
        with mesh, mesh.http_sync("alpha") as alpha:
            for _ in range(10):
                assert alpha.get("/work").status_code == 503
            wait_for(lambda: receiver.statuses()[:1] == ["firing"], 10, "the alert fired")
        alert = receiver.bodies[0]["alert"]
        assert (alert["rule"], alert["service"]) == ("alpha-errors", "alpha")


async def test_a_dashboard_shares_the_mesh_monitor(receiver: Receiver,
                                                   tmp_path: Path) -> None:
    """A dashboard served on a mesh with rules uses the mesh's monitor: one
    evaluation, one notification per change."""
    with FakeBackend(error_rate=1.0) as backend:
        config = tmp_path / "mesh.yaml"
        alerts_config(config, backend.url, receiver.url)
        mesh = ml.Mesh.from_config(str(config))
        async with mesh:
            server = await mesh.serve_dashboard(port=0)
            assert server.monitor is mesh._host.monitor
            async with mesh.http("users") as users:
                for _ in range(10):
                    assert (await users.get("/work")).status_code == 503
            for _ in range(100):
                if receiver.statuses():
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)  # a second evaluator would have notified by now
            # (a loaded machine may have seen the firing late: its resolution, 2 s after
            # the errors stopped, can be in too; a second evaluator's firing cannot)
            assert receiver.statuses() in (["firing"], ["firing", "resolved"])
            await server.stop()
            assert mesh._host.monitor is not None  # the rules are still evaluated


def leader(lock: Path) -> int:
    text = lock.read_text().strip()
    return int(text) if text else 0


@pytest.mark.timeout(180)
def test_three_workers_notify_once_and_take_over(receiver: Receiver,
                                                 tmp_path: Path) -> None:
    with FakeBackend(error_rate=1.0) as backend:
        config = tmp_path / "mesh.yaml"
        alerts_config(config, backend.url, receiver.url)
        shared = tmp_path / "multiproc"
        lock = shared / "dashboard.lock"
        with uvicorn_workers(tmp_path, config, shared) as app:
            wait_for(lambda: len(list(shared.glob("meshlite-*.json"))) == 3, 60,
                     "every worker opened its mesh")
            first = wait_for(lambda: leader(lock), 10, "one worker evaluates the rules")

            def burst() -> None:
                with fresh() as http:
                    for _ in range(30):
                        assert http.get(app + "/call").json()["status"] == 503

            burst()
            wait_for(lambda: receiver.statuses() == ["firing"], 15, "the alert fired")
            wait_for(lambda: receiver.statuses() == ["firing", "resolved"], 15,
                     "the alert resolved")
            time.sleep(2.5)  # long enough for another worker's duplicate to arrive
            assert receiver.statuses() == ["firing", "resolved"]

            os.kill(first, signal.SIGKILL)
            second = wait_for(lambda: (p := leader(lock)) != first and alive(p) and p, 30,
                              "another worker took the evaluation over")
            assert second != first
            burst()
            wait_for(lambda: receiver.statuses()[2:] == ["firing", "resolved"], 20,
                     "the new leader notified the next change")
            time.sleep(2.5)
            assert receiver.statuses() == ["firing", "resolved", "firing", "resolved"]


async def test_a_worker_is_named_in_the_lock_only_once_it_evaluates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock file names the leading worker only once its monitor has taken its
    baseline: every call counted after the name appears is evaluated. (Named first,
    a worker taking over under load was still importing and reading the saved
    history while the others' calls went into its baseline, never evaluated.)"""
    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(tmp_path / "multiproc"))
    lock = tmp_path / "multiproc" / "dashboard.lock"
    named_at_baseline: list[str] = []
    start = Monitor.start

    def spied(monitor: Monitor) -> None:
        named_at_baseline.append(lock.read_text())
        start(monitor)

    monkeypatch.setattr(Monitor, "start", spied)
    lock.parent.mkdir()
    lock.write_text("999999999\n")  # a leader that died
    mesh = ml.Mesh()
    mesh.alerts.add(ml.AlertRule("errors", "error_rate", threshold=0.5))
    async with mesh:
        for _ in range(100):
            if mesh._host.monitor is not None:
                break
            await asyncio.sleep(0.05)
        assert mesh._host.monitor is not None
        assert named_at_baseline == [""]  # neither the dead leader nor this one yet
        assert lock.read_text() == f"{os.getpid()}\n"


async def test_two_meshes_of_one_process_both_evaluate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's lock is the process's: every mesh of the leading process runs its
    rules, and the lock is let go when the last of them closes."""
    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(tmp_path / "multiproc"))
    rule = ml.AlertRule("errors", "error_rate", threshold=0.5)
    first, second = ml.Mesh(), ml.Mesh()
    first.alerts.add(rule)
    second.alerts.add(rule)
    lock = tmp_path / "multiproc" / "dashboard.lock"
    async with first:
        async with second:
            await asyncio.sleep(0.1)
            assert first._host.monitor is not None
            assert second._host.monitor is not None
        assert second._host.monitor is None
        assert first._host.leading  # still held for the first mesh
    assert not first._host.leading
    import fcntl

    with lock.open("a") as f:  # free again: another process could take it now
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
