"""prometheus_client interop: ``PrometheusCollector(mesh)`` puts meshlite's series
in a ``prometheus_client`` registry (text and OpenMetrics exposition, its ASGI app),
and a real ``prometheus`` server scrapes them from that app; the ``service`` label
can be renamed (in code and in a config file)."""

from __future__ import annotations

import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from _system import free_port, require_program
from test_prometheus import _wait_for

import meshlite as ml
from meshlite.observability import PrometheusCollector

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.openmetrics import exposition as openmetrics  # noqa: E402
from prometheus_client.openmetrics.parser import (  # noqa: E402
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def busy_mesh(calls: int = 4, failures: int = 1) -> ml.Mesh:
    mesh = ml.Mesh([ml.Service("users", ["127.0.0.1:80"], pipeline=ml.Pipeline())])
    for _ in range(calls):
        mesh.call_sync("users", lambda b: b.address)
    for _ in range(failures):
        with pytest.raises(KeyError):
            mesh.call_sync("users", lambda b: {}["missing"])
    return mesh


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == name}


def test_registry_exposes_meshlite_series_beside_its_own() -> None:
    mesh = busy_mesh()
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(mesh))
    own = prometheus_client.Counter("app_jobs_total", "The app's own.", registry=registry)
    own.inc(2)
    text = generate_latest(registry).decode()
    assert samples(text, "meshlite_requests_total") == {(("service", "users"),): 5.0}
    assert samples(text, "meshlite_request_errors_total") == {
        (("error", "KeyError"), ("service", "users")): 1.0}
    assert samples(text, "app_jobs_total") == {(): 2.0}
    count = samples(text, "meshlite_request_duration_seconds_count")
    assert count == {(("service", "users"),): 5.0}
    buckets = samples(text, "meshlite_request_duration_seconds_bucket")
    assert buckets[(("le", "+Inf"), ("service", "users"))] == 5.0
    # The next scrape reads the mesh again.
    mesh.call_sync("users", lambda b: b.address)
    text = generate_latest(registry).decode()
    assert samples(text, "meshlite_requests_total") == {(("service", "users"),): 6.0}


def test_openmetrics_exposition_parses() -> None:
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(busy_mesh()))
    text = openmetrics.generate_latest(registry).decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(text)}  # strict: raises if invalid
    assert families["meshlite_requests"].type == "counter"
    assert families["meshlite_request_duration_seconds"].type == "histogram"
    assert any(s.value == 5.0 and s.name == "meshlite_requests_total"
               for s in families["meshlite_requests"].samples)


def test_service_label_renamed_in_code_and_validated() -> None:
    mesh = busy_mesh()
    assert mesh.metrics is not None
    mesh.metrics.service_label = "mesh_service"
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(mesh))
    text = generate_latest(registry).decode()
    assert samples(text, "meshlite_requests_total") == {(("mesh_service", "users"),): 5.0}
    assert 'service="' not in text.replace('mesh_service="', "")
    for bad in ("backend", "9lives", "__name", "", 3):
        with pytest.raises(ml.ConfigError, match="service_label"):
            mesh.metrics.service_label = bad  # type: ignore[assignment]
    assert mesh.metrics.service_label == "mesh_service"


def test_service_label_from_config(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(textwrap.dedent("""\
        metrics:
          service_label: mesh_service
        services:
          users:
            backends: ["127.0.0.1:80"]
        """))
    mesh = ml.Mesh.from_config(str(path))
    mesh.call_sync("users", lambda b: b.address)
    text = ml.observability.render(mesh)
    assert 'meshlite_requests_total{mesh_service="users"} 1' in text
    path.write_text(path.read_text().replace("mesh_service", "le"))
    with pytest.raises(ml.ConfigError, match=r"metrics\.service_label"):
        ml.Mesh.from_config(str(path))


def test_a_mesh_without_metrics_is_refused() -> None:
    with pytest.raises(ml.ConfigError, match="metrics=False"):
        PrometheusCollector(ml.Mesh([], metrics=False))


@pytest.fixture
def app_server() -> Iterator[tuple[ml.Mesh, int]]:
    mesh = busy_mesh()
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(mesh))
    app = prometheus_client.make_asgi_app(registry)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield mesh, port
    server.should_exit = True
    thread.join(10)


@pytest.mark.timeout(180)
def test_prometheus_scrapes_make_asgi_app(app_server: tuple[ml.Mesh, int],
                                          tmp_path: Path) -> None:
    binary = require_program("prometheus", "prometheus")
    mesh, app_port = app_server
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: app\n    metrics_path: /\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{app_port}']\n")
    log = tmp_path / "prometheus.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(base, 'up{job="app"}', 1, log)
        _wait_for(base, 'meshlite_requests_total{service="users"}', 5, log)
        _wait_for(base, 'meshlite_request_errors_total{service="users",error="KeyError"}',
                  1, log)
        mesh.call_sync("users", lambda b: b.address)
        _wait_for(base, 'meshlite_requests_total{service="users"}', 6, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_service_label_follows_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    base = 'services:\n  users:\n    backends: ["127.0.0.1:80"]\n'
    path.write_text(base)
    mesh = ml.Mesh.from_config(str(path))
    mesh.call_sync("users", lambda b: b.address)
    assert 'meshlite_requests_total{service="users"} 1' in ml.observability.render(mesh)
    path.write_text("metrics:\n  service_label: mesh_service\n" + base)
    assert mesh.reload_sync()
    assert 'meshlite_requests_total{mesh_service="users"} 1' in ml.observability.render(mesh)
    path.write_text(base)
    assert mesh.reload_sync()
    assert 'meshlite_requests_total{service="users"} 1' in ml.observability.render(mesh)
