"""``meshlite dashboard`` attached to running workers (their shared directory) shows
the workers' state only: backend rows, breakers, health and the live feed come from
their files, never from the idle mesh of the attached process, and it takes no
admin action on that idle mesh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _system import free_port
from _ws import sync_connect as connect

import meshlite as ml

CLI = "import sys; from meshlite.cli import main; sys.exit(main())"
GOOD, BAD = "http://127.0.0.1:81", "http://127.0.0.2:82"
ADMIN = "attached-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN}"}  # (the admin token reads too)


@pytest.fixture
def sleeper() -> Iterator[int]:
    """A live process standing for a worker (its pid is alive)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def worker_in_an_outage(shared: Path, pid: int) -> None:
    """The file of worker ``pid``: one backend ejected, the breaker forced open."""
    breaker = ml.CircuitBreaker(name="users-db", failure_rate=0.5, window=10, min_calls=5,
                                open_seconds=60.0, half_open_calls=1)
    mesh = ml.Mesh([ml.Service("users", [GOOD, BAD], pipeline=ml.Pipeline(breaker),
                               balancer="round_robin")])
    for _ in range(6):
        mesh.call_sync("users", lambda b: b.address)
    mesh.service("users").eject(BAD)
    breaker.force_open()
    ml.observability.render(mesh)  # a scrape writes the mesh's file
    assert mesh.metrics is not None
    assert mesh.metrics.shared is not None
    os.replace(mesh.metrics.shared.path, shared / f"meshlite-{pid}-1.json")


@pytest.fixture
def attached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleeper: int) -> Iterator[str]:
    pytest.importorskip("uvicorn")
    shared = tmp_path / "shared"
    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(shared))
    worker_in_an_outage(shared, sleeper)
    config = tmp_path / "mesh.yaml"  # the same services; its mesh makes no call
    config.write_text(textwrap.dedent(f"""\
        services:
          users:
            backends: ["{GOOD}", "{BAD}", "http://127.0.0.3:83"]
            circuit_breaker: {{failure_rate: 0.5, window: 10, min_calls: 5}}
        """))
    port = free_port()
    env = {**os.environ, "MESHLITE_DASHBOARD_ADMIN_TOKEN": ADMIN}
    proc = subprocess.Popen([sys.executable, "-c", CLI, "dashboard", str(config),
                             "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/api/health", trust_env=False)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "meshlite dashboard did not start"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def statuses(rows: list[dict[str, str]]) -> dict[str, str]:
    return {row["address"]: row["status"] for row in rows}


@pytest.mark.timeout(60)
def test_an_attached_dashboard_shows_the_workers_state_only(attached: str) -> None:
    health = httpx.get(attached + "/api/health", headers=AUTH, trust_env=False).json()
    users = health["services"]["users"]
    assert statuses(users["backends"]) == {GOOD: "up", BAD: "ejected"}  # not its own
    assert (users["status"], users["available"], users["total"]) == ("degraded", 1, 2)
    assert health["status"] == "failing"  # the workers' breaker is forced open
    service = httpx.get(attached + "/api/services/users", headers=AUTH, trust_env=False).json()
    assert service["breakers"] == {"users-db": "forced_open"}
    assert statuses(service["backends"]) == {GOOD: "up", BAD: "ejected"}
    assert [b["requests"] for b in service["backends"]] == [3, 3]
    assert service["status"] == "failing"
    with connect(attached.replace("http", "ws") + "/ws", proxy=None,
                 additional_headers=AUTH) as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert list(hello["balancers"]) == ["users"]
        # the mesh: in the hello, or (connected before the first second) in a tick
        whole = hello if "services" in hello else json.loads(ws.recv(timeout=10))
    assert whole["type"] in ("hello", "tick")
    row = whole["services"]["users"]
    assert {r[0]: r[1] for r in row["backends"]} == {GOOD: "up", BAD: "ejected"}
    assert row["breakers"] == {"users-db": "forced_open"}
    assert row["status"] == "failing"


@pytest.mark.timeout(60)
def test_an_attached_dashboard_takes_no_admin_action(attached: str) -> None:
    r = httpx.post(attached + "/api/admin/services/users/breakers/1/reset",
                   headers=AUTH, trust_env=False)
    assert r.status_code == 403
    assert "attached" in r.json()["error"]


def test_where_live_workers_disagree_the_worst_shows_and_dead_workers_only_count(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meshlite.observability._dashboard._attached import host_states
    from meshlite.observability._worker_files import WorkerFile

    monkeypatch.delenv("MESHLITE_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)

    def worker(pid: int, alive: bool, eject: bool, calls: int) -> WorkerFile:
        mesh = ml.Mesh([ml.Service("users", [GOOD, BAD], balancer="round_robin")])
        for _ in range(calls):
            mesh.call_sync("users", lambda b: b.address)
        if eject:
            mesh.service("users").eject(BAD)
        assert mesh.metrics is not None
        return WorkerFile(pid, alive, tuple(mesh.metrics.collect_local()))

    config = ml.Service("users", [GOOD, BAD, "http://127.0.0.3:83"])
    workers = [worker(1, True, True, 2), worker(2, True, False, 4),
               worker(3, False, True, 6)]  # the dead one's ejection is not news
    snapshot, health = host_states(workers, [config])["users"]
    rows = {b.address: b for b in snapshot.backends}
    assert list(rows) == [GOOD, BAD]  # the workers' backends, not the config's third
    assert (rows[BAD].status, rows[BAD].reason) == ("ejected", "ejected in 1 of 2 live workers")
    assert rows[GOOD].requests == 1 + 2 + 3  # every worker's attempts, the dead one's too
    assert (health.status, health.available, health.total) == ("degraded", 1, 2)
    nobody = host_states([workers[2]], [config])["users"][1]
    assert (nobody.status, nobody.total) == ("down", 0)  # no live worker serves it
