"""Prometheus exposition: the text format, the ASGI app, the stdlib server, and a
real Prometheus server (Debian ``prometheus``) scraping a mesh on loopback."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _system import free_port, require_program

import meshlite as ml
from meshlite.observability import (
    CONTENT_TYPE,
    MetricFamily,
    Sample,
    prometheus_app,
    render,
    start_http_server,
)
from meshlite.testing import FakeClock

Parsed = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[Parsed, dict[str, str]]:
    """Samples ``{(name, labels): value}`` and types ``{family: type}`` of exposition
    text (enough of the format for meshlite's output)."""
    samples: Parsed = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line and not line.startswith("#"):
            head, _, number = line.rpartition(" ")
            name, _, rest = head.partition("{")
            labels = frozenset(_labels(rest[:-1])) if rest else frozenset()
            samples[(name, labels)] = float(number)
    return samples, types


def _labels(text: str) -> Iterator[tuple[str, str]]:
    while text:
        key, _, text = text.partition('="')
        out, i = [], 0
        while text[i] != '"':
            if text[i] == "\\":
                i += 1
                out.append({"n": "\n"}.get(text[i], text[i]))
            else:
                out.append(text[i])
            i += 1
        yield key, "".join(out)
        text = text[i + 1:].lstrip(",")


def sample(parsed: Parsed, name: str, **labels: str) -> float | None:
    return parsed.get((name, frozenset(labels.items())))


class Fixed:
    """A collector returning fixed families."""

    def __init__(self, *families: MetricFamily) -> None:
        self.families = families

    def collect(self) -> Iterable[MetricFamily]:
        return self.families


@pytest.fixture
def mesh(clock: FakeClock) -> ml.Mesh:
    service = ml.Service("users", ["127.0.0.1:80", "127.0.0.2:80"], balancer="round_robin",
                         pipeline=ml.Pipeline(ml.Retry(attempts=2,
                                                       backoff=ml.backoff.constant(0.0),
                                                       clock=clock)))
    mesh = ml.Mesh([service], clock=clock)
    for i in range(4):
        if i == 3:  # fails on both attempts: one retry, then the error
            with pytest.raises(ConnectionError):
                mesh.call_sync("users", lambda b: (_ for _ in ()).throw(ConnectionError()))
        else:
            mesh.call_sync("users", lambda b: b.address)
    return mesh


# -- the text format ---------------------------------------------------------------------


def test_text_escapes_labels_and_help_and_formats_numbers() -> None:
    text = render(Fixed(MetricFamily("x_total", "counter", 'a "help"\\ line\nnext', (
        Sample("", (("path", 'C:\\dir "q"\nend'),), 3.0),
        Sample("", (("path", "b"),), 0.25),
    )), MetricFamily("g", "gauge", "gauge", (
        Sample("", (), math.inf), Sample("", (("k", "n"),), math.nan),
        Sample("", (("k", "neg"),), -math.inf), Sample("", (("k", "big"),), 1e20),
    ))))
    lines = text.splitlines()
    assert lines[0] == '# HELP x_total a "help"\\\\ line\\nnext'
    assert lines[1] == "# TYPE x_total counter"
    assert lines[2] == 'x_total{path="C:\\\\dir \\"q\\"\\nend"} 3'
    assert lines[3] == 'x_total{path="b"} 0.25'
    assert lines[6:] == ["g +Inf", 'g{k="n"} NaN', 'g{k="neg"} -Inf', 'g{k="big"} 1e+20']
    assert text.endswith("\n")
    parsed, _ = parse(text)
    assert sample(parsed, "x_total", path='C:\\dir "q"\nend') == 3


def test_mesh_exposition_has_prometheus_names_and_histograms(mesh: ml.Mesh) -> None:
    parsed, types = parse(render(mesh))
    for name, kind in types.items():
        assert name.startswith("meshlite_")
        assert name.endswith("_total") == (kind == "counter"), name
    assert types["meshlite_request_duration_seconds"] == "histogram"
    assert sample(parsed, "meshlite_requests_total", service="users") == 4
    assert sample(parsed, "meshlite_request_errors_total", service="users",
                  error="ConnectionError") == 1
    assert sample(parsed, "meshlite_retries_total", service="users") == 1
    assert sample(parsed, "meshlite_request_duration_seconds_count", service="users") == 4
    assert sample(parsed, "meshlite_request_duration_seconds_bucket", service="users",
                  le="+Inf") == 4
    assert sum(sample(parsed, "meshlite_backend_requests_total", service="users",
                      backend=b) or 0 for b in ("127.0.0.1:80", "127.0.0.2:80")) == 5


def test_promtool_accepts_the_exposition(mesh: ml.Mesh) -> None:
    promtool = require_program("promtool", "prometheus")
    result = subprocess.run([promtool, "check", "metrics"], input=render(mesh),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" or "problem" not in result.stdout.lower()


def test_sources_sharing_names_merge_into_one_family(mesh: ml.Mesh) -> None:
    extra = Fixed(MetricFamily("meshlite_retries_total", "counter", "Retries.", (
        Sample("", (("service", "users"),), 2.0), Sample("", (("service", "other"),), 1.0))))
    text = render([mesh, extra])
    assert text.count("# TYPE meshlite_retries_total counter") == 1
    parsed, _ = parse(text)
    assert sample(parsed, "meshlite_retries_total", service="users") == 3  # 1 + 2
    assert sample(parsed, "meshlite_retries_total", service="other") == 1


def test_render_rejects_what_has_no_metrics() -> None:
    with pytest.raises(ml.ConfigError, match="source"):
        render(42)
    with pytest.raises(ml.ConfigError, match="metrics=False"):
        prometheus_app(ml.Mesh([], metrics=False))


# -- the ASGI app ------------------------------------------------------------------------


async def test_asgi_app_serves_the_text(mesh: ml.Mesh) -> None:
    transport = httpx.ASGITransport(app=prometheus_app(mesh))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"] == CONTENT_TYPE
        parsed, _ = parse(r.text)
        assert sample(parsed, "meshlite_requests_total", service="users") == 4
        mesh.call_sync("users", lambda b: b)
        again, _ = parse((await client.get("/metrics")).text)
        assert sample(again, "meshlite_requests_total", service="users") == 5
        head = await client.head("/metrics")
        assert head.status_code == 200
        assert head.content == b""
        post = await client.post("/metrics")
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, HEAD"


async def test_asgi_app_answers_lifespan(mesh: ml.Mesh) -> None:
    app = prometheus_app(mesh.metrics)
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete",
                                         "lifespan.shutdown.complete"]


# -- the stdlib server -------------------------------------------------------------------


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_start_http_server_serves_and_stops(mesh: ml.Mesh) -> None:
    with start_http_server(mesh) as server:
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        status, ctype, body = _get(server.url)
        assert (status, ctype) == (200, CONTENT_TYPE)
        assert sample(parse(body)[0], "meshlite_requests_total", service="users") == 4
        status, _, body = _get(server.url.replace("/metrics", "/other"))
        assert status == 404
        assert "/metrics" in body
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), 2).close()
    server.stop()  # idempotent


def test_start_http_server_bad_arguments(mesh: ml.Mesh) -> None:
    for port in (-1, 70000, "80", True):
        with pytest.raises(ml.ConfigError, match="port"):
            start_http_server(mesh, port=port)  # type: ignore[arg-type]
    with pytest.raises(ml.ConfigError, match="host"):
        start_http_server(mesh, host="")


# -- a real Prometheus server ------------------------------------------------------------


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            payload = json.load(r)
    except OSError:
        return []  # not up yet
    assert payload["status"] == "success", payload
    result: list[dict[str, Any]] = payload["data"]["result"]
    return result


def _wait_for(base: str, promql: str, expected: float, log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 60.0
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = _query(base, promql)
        if result and float(result[0]["value"][1]) == expected:
            return result[0]
        time.sleep(0.5)  # a real server scraping once a second: polling is the point
    pytest.fail(f"{promql} never returned {expected} (last: {result}); prometheus log:\n"
                + log.read_text()[-3000:])


@pytest.mark.timeout(180)
def test_prometheus_scrapes_the_mesh(tmp_path: Path) -> None:
    binary = require_program("prometheus", "prometheus")
    service = ml.Service("users", ["127.0.0.1:80"], pipeline=ml.Pipeline())
    mesh = ml.Mesh([service])
    for _ in range(3):
        mesh.call_sync("users", lambda b: b.address)
    with pytest.raises(KeyError):
        mesh.call_sync("users", lambda b: {}["missing"])
    server = start_http_server(mesh)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: meshlite\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n")
    log = tmp_path / "prometheus.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(base, 'up{job="meshlite"}', 1, log)
        found = _wait_for(base, 'meshlite_requests_total{service="users"}', 4, log)
        assert found["metric"]["job"] == "meshlite"
        errors = _wait_for(base, 'sum by (error) (meshlite_request_errors_total)', 1, log)
        assert errors["metric"] == {"error": "KeyError"}
        _wait_for(base, 'meshlite_backend_request_duration_seconds_count'
                        '{service="users",backend="127.0.0.1:80"}', 4, log)
        mesh.call_sync("users", lambda b: b.address)  # the next scrape sees it
        _wait_for(base, 'meshlite_requests_total{service="users"}', 5, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        server.stop()
