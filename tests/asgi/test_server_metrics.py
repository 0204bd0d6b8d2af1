"""The middleware's server-side metrics are in its mesh's registry: the same
exposition everywhere the mesh's metrics go (its Prometheus text, a
prometheus_client registry, the OTLP export, the workers' shared directory),
counted once. Real uvicorn servers, real HTTP clients, a real OTLP receiver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from observability.otlp_receiver import OtlpReceiver

import meshlite as ml
import meshlite.asgi
from meshlite import telemetry
from meshlite.asgi import MeshMiddleware
from meshlite.testing import AsgiServer

LINE = 'meshlite_server_requests_total{route="*",method="GET",status="200"}'


async def ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def drive(app: Any, n: int) -> None:
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        for _ in range(n):
            assert (await client.get(server.url + "/")).status_code == 200


def lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


async def test_workers_sharing_a_directory_report_every_workers_requests(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(tmp_path))
    one, two = ml.Mesh([], name="orders"), ml.Mesh([], name="orders")  # two workers
    await drive(MeshMiddleware(ok, mesh=one, trace=False), 2)
    await drive(MeshMiddleware(ok, mesh=two, trace=False), 3)
    ml.observability.render(one)  # a scrape writes this worker's file
    text = ml.observability.render(two)
    assert lines(text, LINE) == [LINE + " 5"]  # both workers, summed
    assert lines(text, 'meshlite_server_request_duration_seconds_count{route="*"') == [
        'meshlite_server_request_duration_seconds_count{route="*",method="GET"} 5']


async def test_prometheus_client_registry_has_them_once() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from meshlite.observability import PrometheusCollector

    mesh = ml.Mesh([], name="orders")
    await drive(MeshMiddleware(ok, mesh=mesh, trace=False), 3)
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(mesh))
    text = generate_latest(registry).decode()
    client_line = 'meshlite_server_requests_total{method="GET",route="*",status="200"}'
    assert lines(text, client_line) == [client_line + " 3.0"]
    assert lines(ml.observability.render(mesh), LINE) == [LINE + " 3"]


async def test_a_second_middleware_replaces_the_firsts_series() -> None:
    mesh = ml.Mesh([], name="orders")
    await drive(MeshMiddleware(ok, mesh=mesh, trace=False), 2)
    await drive(MeshMiddleware(ok, mesh=mesh, trace=False), 1)
    assert lines(ml.observability.render(mesh), LINE) == [LINE + " 1"]


async def test_the_otlp_export_carries_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                 "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    mesh = ml.Mesh([], name="orders")
    await drive(MeshMiddleware(ok, mesh=mesh, trace=False), 4)
    with OtlpReceiver() as receiver:
        export = telemetry.export_metrics(mesh, otlp_endpoint=receiver.url, interval=3600)
        try:
            assert export.force_flush()
        finally:
            export.shutdown()
    requests = receiver.latest("meshlite.server.requests", **{
        "meshlite.route": "*", "meshlite.method": "GET", "meshlite.status": "200"})
    assert (requests.value, requests.unit, requests.kind) == (4, "{request}", "sum")
    duration = receiver.latest("meshlite.server.request.duration",
                               **{"meshlite.route": "*", "meshlite.method": "GET"})
    assert (duration.kind, duration.count, duration.unit) == ("histogram", 4, "s")


async def crashing(scope: Any, receive: Any, send: Any) -> None:
    if scope["path"] == "/mapped":
        raise ml.MeshClosedError("closed")  # mapped by the middleware: 503
    raise ValueError("a bug in the handler")  # the server answers 500


@pytest.mark.parametrize("headers", [{}, {"x-meshlite-deadline": "5000"}],
                         ids=["direct-path", "full-path"])
async def test_an_error_escaping_the_app_counts_as_the_500_the_client_got(
        headers: dict[str, str]) -> None:
    mesh = ml.Mesh([], name="orders")
    app = MeshMiddleware(crashing, mesh=mesh, trace=False)
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        crashed = await client.get(server.url + "/", headers=headers)
        mapped = await client.get(server.url + "/mapped", headers=headers)
    assert (crashed.status_code, mapped.status_code) == (500, 503)
    text = ml.observability.render(mesh)
    assert lines(text, "meshlite_server_requests_total{") == [
        'meshlite_server_requests_total{route="*",method="GET",status="500"} 1',
        'meshlite_server_requests_total{route="*",method="GET",status="503"} 1']
    assert app.stats.routes()[0]["statuses"] == {"500": 1, "503": 1}


async def test_made_up_methods_share_one_series_instead_of_one_each() -> None:
    import uvicorn

    from meshlite.observability._dashboard._uvicorn import Background, bind, start

    mesh = ml.Mesh([], name="orders")
    app = MeshMiddleware(ok, mesh=mesh, trace=False, routes=[
        meshlite.asgi.Route("/dav", methods=("PROPFIND",)), meshlite.asgi.Route("/orders/{id}")])
    # h11, uvicorn's parser without its [standard] extra, accepts any method token.
    server = Background(uvicorn.Config(app, http="h11", lifespan="off", log_config=None,
                                        log_level="error"))
    sock = bind("127.0.0.1", 0)
    serving = await start(server, sock)
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with httpx.AsyncClient(base_url=url) as client:
            for i in range(20):
                assert (await client.request(f"X{i}", "/orders/1")).status_code == 200
                assert (await client.request(f"Y{i}", "/")).status_code == 200
            assert (await client.request("PROPFIND", "/dav")).status_code == 200
            assert (await client.get("/orders/1")).status_code == 200
    finally:
        server.should_exit = True
        await serving
    assert lines(ml.observability.render(mesh), "meshlite_server_requests_total{") == [
        'meshlite_server_requests_total{route="*",method="_OTHER",status="200"} 20',
        'meshlite_server_requests_total{route="/dav",method="PROPFIND",status="200"} 1',
        'meshlite_server_requests_total{route="/orders/{id}",method="GET",status="200"} 1',
        'meshlite_server_requests_total{route="/orders/{id}",method="_OTHER",status="200"} 20']
