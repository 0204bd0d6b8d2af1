"""The shared directory of several workers, one process at a time: what a worker
writes, how a scrape merges the files (counters and histograms summed, dead
workers kept; gauges per live pid), prometheus_client's multiprocess mode, and
``meshlite dashboard`` attached to the workers' files."""

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

import meshlite as ml
from meshlite.observability._worker_files import ENV_VARS, multiproc_dir, read_workers

CLI = "import sys; from meshlite.cli import main; sys.exit(main())"


def one_mesh(calls: int) -> ml.Mesh:
    mesh = ml.Mesh([ml.Service("users", ["127.0.0.1:80"], pipeline=ml.Pipeline())])
    for _ in range(calls):
        mesh.call_sync("users", lambda b: b.address)
    return mesh


@pytest.fixture
def sleeper() -> Iterator[int]:
    """A live process standing for another worker (its pid is alive)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def as_worker(shared: Path, mesh: ml.Mesh, pid: int) -> None:
    """Make ``mesh``'s file (written by a scrape) look like worker ``pid``'s."""
    assert mesh.metrics is not None
    assert mesh.metrics.shared is not None
    os.replace(mesh.metrics.shared.path, shared / f"meshlite-{pid}-1.json")


def value(text: str, prefix: str) -> list[str]:
    return sorted(line for line in text.splitlines() if line.startswith(prefix))


def test_the_directory_variables_in_order() -> None:
    assert multiproc_dir({}) is None
    assert multiproc_dir({"PROMETHEUS_MULTIPROC_DIR": "/p"}) == "/p"
    assert multiproc_dir({"PROMETHEUS_MULTIPROC_DIR": "/p", "MESHLITE_MULTIPROC_DIR": "/m"}) \
        == "/m"
    assert multiproc_dir({"MESHLITE_MULTIPROC_DIR": " "}) is None
    assert ENV_VARS[0] == "MESHLITE_MULTIPROC_DIR"


def test_two_meshes_of_one_process_write_two_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(tmp_path))
    first, second = one_mesh(2), one_mesh(3)
    ml.observability.render(first)
    assert value(ml.observability.render(second), "meshlite_requests_total{") == [
        'meshlite_requests_total{service="users"} 5']
    (worker,) = read_workers(str(tmp_path))
    assert worker.pid == os.getpid()


def test_meshes_of_one_process_given_together_count_each_call_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each mesh's view is the directory's, the other mesh's file included: read for
    # each of them and summed, every call counted twice (render, PrometheusCollector).
    client = pytest.importorskip("prometheus_client")
    from meshlite.observability import PrometheusCollector

    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(tmp_path))
    first, second = one_mesh(2), one_mesh(3)
    expected = ['meshlite_requests_total{service="users"} 5']
    assert value(ml.observability.render([first, second]), "meshlite_requests_total{") \
        == expected
    registry = client.CollectorRegistry()
    registry.register(PrometheusCollector([first, second]))
    text = client.generate_latest(registry).decode()
    assert value(text, "meshlite_requests_total{") == [expected[0] + ".0"]
    second.call_sync("users", lambda b: b.address)  # read current: its file written first
    assert value(ml.observability.render([first, second]), "meshlite_requests_total{") == [
        'meshlite_requests_total{service="users"} 6']


def test_counters_summed_dead_workers_kept_gauges_per_live_pid(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleeper: int) -> None:
    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(tmp_path))
    other = one_mesh(3)
    ml.observability.render(other)  # a scrape writes this mesh's file
    as_worker(tmp_path, other, sleeper)  # worker `sleeper`: 3 calls, alive
    dead = one_mesh(5)
    ml.observability.render(dead)
    as_worker(tmp_path, dead, 2**22 + 7)  # a pid no process has: a dead worker
    mesh = one_mesh(2)
    text = ml.observability.render(mesh)
    assert value(text, "meshlite_requests_total{") == [
        'meshlite_requests_total{service="users"} 10']
    assert value(text, "meshlite_request_duration_seconds_count{") == [
        'meshlite_request_duration_seconds_count{service="users"} 10']
    assert value(text, "meshlite_requests_in_flight{") == sorted([
        f'meshlite_requests_in_flight{{service="users",pid="{os.getpid()}"}} 0',
        f'meshlite_requests_in_flight{{service="users",pid="{sleeper}"}} 0'])
    workers = {w.pid: w.alive for w in read_workers(str(tmp_path))}
    assert workers == {os.getpid(): True, sleeper: True, 2**22 + 7: False}
    assert mesh.metrics is not None
    assert mesh.metrics.call_counts("users")[:3] == (10, 0, 0)


def test_prometheus_client_multiprocess_mode_includes_meshlite(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleeper: int) -> None:
    client = pytest.importorskip("prometheus_client")
    from prometheus_client import multiprocess

    from meshlite.observability import PrometheusCollector

    monkeypatch.delenv("MESHLITE_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    other = one_mesh(4)
    ml.observability.render(other)
    as_worker(tmp_path, other, sleeper)
    mesh = one_mesh(1)
    registry = client.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(PrometheusCollector(mesh))
    text = client.generate_latest(registry).decode()
    assert 'meshlite_requests_total{service="users"} 5.0' in text


def test_a_mesh_writes_its_file_while_open_and_when_it_closes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(tmp_path / "new"))
    mesh = one_mesh(0)
    assert mesh.metrics is not None
    assert mesh.metrics.shared is not None
    path = Path(mesh.metrics.shared.path)
    assert path.parent == tmp_path / "new"
    with mesh:
        mesh.call_sync("users", lambda b: b.address)
        deadline = time.monotonic() + 5
        while not path.exists():
            assert time.monotonic() < deadline, "never written while open"
            time.sleep(0.05)
        mesh.call_sync("users", lambda b: b.address)
    families = {f[0]: f for f in json.loads(path.read_text())}
    assert families["meshlite_requests_total"][3] == [["", [["service", "users"]], 2]]


@pytest.mark.timeout(60)
def test_meshlite_dashboard_attaches_to_the_workers_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleeper: int) -> None:
    pytest.importorskip("uvicorn")
    shared = tmp_path / "shared"
    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(shared))
    worker = one_mesh(7)
    ml.observability.render(worker)
    as_worker(shared, worker, sleeper)
    config = tmp_path / "mesh.yaml"
    config.write_text(textwrap.dedent("""\
        services:
          users:
            backends: ["127.0.0.1:80"]
        """))
    with socket_port() as port:
        proc = subprocess.Popen([sys.executable, "-c", CLI, "dashboard", str(config),
                                 "--port", str(port)], env={**os.environ},
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/api/workers"
        deadline = time.monotonic() + 30
        while True:
            try:
                host = httpx.get(url, trust_env=False).json()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "meshlite dashboard did not start"
                time.sleep(0.2)
        assert host["services"]["users"]["calls"] == 7
        assert [w["pid"] for w in host["workers"]] == [sleeper]  # it wrote no file
    finally:
        proc.terminate()
        proc.wait(10)


class socket_port:
    """A free loopback port (closed on entering the block)."""

    def __enter__(self) -> int:
        return free_port()

    def __exit__(self, *exc: object) -> None:
        return None


def test_extra_series_registered_in_the_mesh_registry_travel_with_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleeper: int) -> None:
    from meshlite.observability import Counters

    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(tmp_path))
    declared = {"app_inbound_requests_total": ("counter", "Requests served.",
                                               ("service", "route"))}
    other = one_mesh(0)
    assert other.metrics is not None
    inbound = Counters(declared)
    inbound.add("app_inbound_requests_total", ("users", "/u"), 2)
    other.metrics.register(inbound)
    ml.observability.render(other)
    as_worker(tmp_path, other, sleeper)
    mesh = one_mesh(0)
    assert mesh.metrics is not None
    mine = Counters(declared)
    mine.add("app_inbound_requests_total", ("users", "/u"), 3)
    remove = mesh.metrics.register(mine)
    mesh.metrics.service_label = "mesh_service"
    text = ml.observability.render(mesh)
    assert 'app_inbound_requests_total{mesh_service="users",route="/u"} 5' in text
    remove()
    assert 'route="/u"} 2' in ml.observability.render(mesh)  # the other worker's only
    with pytest.raises(ml.ConfigError, match="collector"):
        mesh.metrics.register(object())  # type: ignore[arg-type]


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")
def test_a_killed_worker_not_yet_reaped_counts_as_dead() -> None:
    from meshlite.observability._worker_files import alive

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert alive(child.pid)
        child.kill()
        deadline = time.monotonic() + 5.0
        while alive(child.pid) and time.monotonic() < deadline:  # a zombie until reaped
            time.sleep(0.01)
        assert not alive(child.pid)
        assert child.poll() is not None  # reaped only now: it was a zombie above
    finally:
        child.kill()
        child.wait()


def test_a_symlink_planted_in_the_shared_directory_is_not_written_through(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another user of a shared directory could plant the next temporary file as a
    # link to a file of ours; flushing must replace the link, not write through it.
    import threading

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(shared))
    mesh = one_mesh(2)
    assert mesh.metrics is not None
    assert mesh.metrics.shared is not None
    path = mesh.metrics.shared.path
    os.symlink(victim, f"{path}.{threading.get_ident()}.tmp")
    mesh.metrics.shared.flush()
    assert victim.read_text() == "precious\n"
    assert not os.path.islink(path)
    assert json.loads(Path(path).read_text())


def test_a_symlink_planted_as_the_host_lock_is_not_written_through(tmp_path: Path) -> None:
    from meshlite.observability._multiproc import HostLock

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(victim, tmp_path / "dashboard.lock")
    lock = HostLock(str(tmp_path / "dashboard.lock"))
    assert lock.acquire() is False  # refused, not followed
    assert victim.read_text() == "precious\n"
