"""What docs/routing.md says of HttpHealthCheck and HealthCheck, checked against real
loopback servers: a probe path's token is sent but never logged or shown (a probe
writes no log line of its own, and a failed exchange's message, which may hold the
URL, is masked), and a service's ``http_pool`` TLS settings are its probes' too."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from _logs import all_log_records
from _raw_http import answering
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import meshlite as ml
from meshlite.routing import Backend, HealthCheck, HealthChecker, HttpHealthCheck, Service
from meshlite.routing._snapshot import health_of
from meshlite.testing import FakeBackend

SECRET = "s3cr3t-pr0be-t0ken"


def checker(service: Service) -> HealthChecker:
    (runner,) = service.components
    assert isinstance(runner, HealthChecker)
    return runner


async def one_round(service: Service) -> None:
    """Open the service's checker, probe every backend once, close it."""
    runner = checker(service)
    await runner.open()
    try:
        await runner.run_once()
    finally:
        await runner.stop()


def shown(records: list[logging.LogRecord]) -> str:
    return "\n".join(f"{r.name}: {r.getMessage()}" for r in records)


async def test_a_probe_writes_no_log_line_of_its_own() -> None:
    # Each probe went through httpx's client, which logs every request at INFO on
    # the `httpx` logger with its URL, the probe path's ?token= included: a line a
    # probe, every interval, for every backend (and no quiet system).
    async with FakeBackend() as up, FakeBackend(health_status=503) as down:
        check = HttpHealthCheck(f"/healthz?token={SECRET}&verbose=1", unhealthy_threshold=1)
        service = Service("users", [up.url, down.url], pipeline=ml.Pipeline(),
                          health_check=check)
        with all_log_records() as records:
            await one_round(service)
        assert [r.query for r in up.requests] == [f"token={SECRET}&verbose=1"]  # sent
    assert [e.healthy for e in service.endpoints] == [True, False]
    assert "GET /healthz?token=***&verbose=1 answered 503" in shown(records)
    assert SECRET not in shown(records)
    # no request line of the client's (older httpx logs its TLS set-up at DEBUG)
    assert not [r for r in records if r.name.startswith(("httpx", "httpcore"))
                and "/healthz" in r.getMessage()]


@pytest.mark.parametrize("reply", [
    b"garbage\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: nine\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
], ids=["status-line", "content-length", "chunk-size"])
async def test_a_failed_exchange_shows_no_token_of_the_probe_url(reply: bytes) -> None:
    # aiohttp's parse errors end with the request's URL (url='http://...?token=...'),
    # and that message was the backend's health reason: logged, sent to hooks, shown
    # by mesh.health() and the dashboard.
    async with answering(reply) as url:
        check = HttpHealthCheck(f"/healthz?token={SECRET}", unhealthy_threshold=1)
        service = Service("users", [url], pipeline=ml.Pipeline(), health_check=check)
        events: list[ml.Event] = []
        service.add_hook(events.append)
        with all_log_records() as records:
            await one_round(service)
    (health,) = health_of(service).backends
    assert health.status == "unhealthy"
    assert health.reason.startswith("failing its health check: GET /healthz?token=*** failed: ")
    assert "token=***" in health.reason.split(" failed: ", 1)[1]  # the URL in the message
    assert SECRET not in health.reason + repr(events) + shown(records)


async def test_a_probe_functions_error_shows_no_token() -> None:
    def probe(backend: Backend) -> bool:  # as requests words a refused connection
        raise ConnectionError(f"HTTPConnectionPool(host='{backend.address}', port=80): Max "
                              f"retries exceeded with url: /healthz?api_key={SECRET};v=1")

    service = Service("users", ["db-1:5432"], pipeline=ml.Pipeline(),
                      health_check=HealthCheck(probe, unhealthy_threshold=1))
    await one_round(service)
    reason = service.endpoints[0].health_reason
    assert reason.startswith("probe raised ConnectionError(")
    assert "with url: /healthz?api_key=***;v=1" in reason
    assert SECRET not in reason


@pytest.mark.parametrize("path", [f"healthz?token={SECRET}",
                                  f"http://probe:{SECRET}@127.0.0.1:8000/healthz"])
def test_a_refused_path_is_not_shown_with_its_secret(path: str) -> None:
    with pytest.raises(ml.ConfigError, match="HttpHealthCheck: path") as refused:
        HttpHealthCheck(path)
    assert SECRET not in str(refused.value)


# -- TLS: a service's http_pool verify= is its probes' too --------------------------


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
                 signer: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA bundle, server certificate, server key) files of a throwaway private CA."""
    d = tmp_path_factory.mktemp("probe-pki")
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = _certificate("probe test CA", ca_key, "probe test CA", ca_key, ca=True)
    server = _certificate("127.0.0.1", server_key, "probe test CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "server.pem").write_bytes(server.public_bytes(pem))
    (d / "server.key").write_bytes(server_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return d / "ca.pem", d / "server.pem", d / "server.key"


@pytest.fixture
def https_url(private_ca: tuple[Path, Path, Path]) -> Iterator[str]:
    """An HTTPS server on loopback, its certificate from the private CA, answering
    200 to every GET."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(private_ca[1], private_ca[2])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            # (no idle TLS connection left at the end: the lowest aiohttp supported
            # closes one after its loop has gone, with a ResourceWarning)
            self.send_header("Connection", "close")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self) -> tuple[Any, Any]:
            sock, address = self.socket.accept()
            return context.wrap_socket(sock, server_side=True), address

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a refused handshake is no test failure here

    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.mark.parametrize("verify", ["context", "off"])
async def test_probes_verify_as_the_services_http_pool_says(
        https_url: str, private_ca: tuple[Path, Path, Path], verify: str) -> None:
    # docs/routing.md: `http_pool={"verify": ...}` is passed to the transports as
    # before. The probes verified with the default bundle instead, so every backend
    # of such a service failed its health check (panic mode) while its calls passed.
    ca = str(private_ca[0])
    given = ssl.create_default_context(cafile=ca) if verify == "context" else False
    service = Service("secure", [https_url], http_pool={"verify": given},
                      health_check=HttpHealthCheck(interval=60.0, unhealthy_threshold=1))
    async with ml.Mesh([service]) as mesh:
        assert (await mesh.http("secure").get("/")).status_code == 200
        health = mesh.health()["secure"]
    assert (health.status, health.backends[0].reason) == ("healthy", "")
