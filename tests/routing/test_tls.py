"""Per-service TLS and static headers, against real HTTPS servers on loopback with a
throwaway PKI generated here (the ``cryptography`` package)."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from _system import require_program
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import meshlite as ml
from meshlite._http._aio_wire import AiohttpTransport
from meshlite.mesh import Mesh
from meshlite.routing import HttpHealthCheck, Service
from meshlite.routing._tls import TLS

TOKEN = "Bearer s3cr3t-t0ken-value"


# -- a throwaway PKI ------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8, encryption)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, cn: str) -> Authority:
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
        return cls(key, cert)

    def issue(self, cn: str, *, server: bool) -> tuple[ec.EllipticCurvePrivateKey,
                                                        x509.Certificate]:
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


@dataclass
class PKI:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_combined: Path
    client_key_encrypted: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca, other = Authority.create("meshlite test CA"), Authority.create("some other CA")
    server_key, server_cert = ca.issue("127.0.0.1", server=True)
    client_key, client_cert = ca.issue("meshlite-client", server=False)
    files = {
        "ca": _pem(ca.cert), "other_ca": _pem(other.cert),
        "server_cert": _pem(server_cert), "server_key": _pem_key(server_key),
        "client_cert": _pem(client_cert), "client_key": _pem_key(client_key),
        "client_combined": _pem(client_cert) + _pem_key(client_key),
        "client_key_encrypted": _pem_key(client_key, b"key-pass-word"),
    }
    for name, data in files.items():
        (d / f"{name}.pem").write_bytes(data)
    return PKI(**{name: d / f"{name}.pem" for name in files})


# -- an HTTPS server on loopback -----------------------------------------------------


class TLSServer:
    """A threaded HTTPS/1.1 server on a free loopback port; with ``client_ca`` it
    requires a client certificate issued by it (mutual TLS)."""

    def __init__(self, pki: PKI, *, client_ca: Path | None = None) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(client_ca)
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                self.request.settimeout(5.0)
                self.request.do_handshake()  # in this thread, not the accept loop
                super().setup()

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                peer = self.connection.getpeercert()
                subject = dict(x[0] for x in peer["subject"]) if peer else {}
                owner.requests.append({"path": self.path, "headers": dict(self.headers),
                                       "peer": subject.get("commonName")})
                status = 503 if self.path == "/fail" else 200
                body = b"hello over tls"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[Any, Any]:
                sock, address = self.socket.accept()
                return context.wrap_socket(sock, server_side=True,
                                           do_handshake_on_connect=False), address

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # refused handshakes are the point of some tests

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,),
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()


@pytest.fixture
def server(pki: PKI) -> Iterator[TLSServer]:
    s = TLSServer(pki)
    yield s
    s.stop()


@pytest.fixture
def mtls_server(pki: PKI) -> Iterator[TLSServer]:
    s = TLSServer(pki, client_ca=pki.ca)
    yield s
    s.stop()


def make_mesh(url: str, *, attempts: int = 1, **kwargs: Any) -> Mesh:
    """A mesh of one service; tests open it (``with``) so closing it closes the pools."""
    pipeline = ml.Pipeline(ml.Retry(attempts=attempts, backoff=ml.backoff.constant(0),
                                    budget=None))
    return Mesh([Service("secure", [url], pipeline=pipeline, **kwargs)])


# -- verification ---------------------------------------------------------------------


def test_verify_with_the_ca_bundle(server: TLSServer, pki: PKI) -> None:
    mesh = make_mesh(server.url, tls=TLS(ca_bundle=pki.ca))
    with mesh, mesh.http_sync("secure") as client:
        response = client.get("/hello")
    assert (response.status_code, response.text) == (200, "hello over tls")
    assert server.requests[0]["path"] == "/hello"


async def test_verify_with_the_ca_bundle_async(server: TLSServer, pki: PKI) -> None:
    async with make_mesh(server.url, tls=TLS(ca_bundle=str(pki.ca))) as mesh:
        response = await mesh.http("secure").get("/hello")
    assert response.status_code == 200


def test_ca_bundle_directory(server: TLSServer, pki: PKI, tmp_path: Path) -> None:
    # capath layout: certificates named by subject hash, as `openssl rehash` makes them
    openssl = require_program("openssl", "openssl")  # computes the subject hash
    hashed = subprocess.run([openssl, "x509", "-hash", "-noout", "-in", str(pki.ca)],
                            capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / f"{hashed}.0").write_bytes(pki.ca.read_bytes())
    mesh = make_mesh(server.url, tls=TLS(ca_bundle=tmp_path))
    with mesh, mesh.http_sync("secure") as client:
        assert client.get("/").status_code == 200


def test_wrong_ca_is_a_counted_bounded_tls_failure(server: TLSServer, pki: PKI) -> None:
    mesh = make_mesh(server.url, attempts=3, tls=TLS(ca_bundle=pki.other_ca))
    with mesh, mesh.http_sync("secure") as client, pytest.raises(httpx.ConnectError) as info:
        client.get("/hello")
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    endpoint = mesh.service("secure").endpoints[0]
    assert (endpoint.requests, endpoint.errors) == (3, 3)  # each attempt failed, then stop
    assert server.requests == []


def test_default_verification_refuses_a_private_ca(server: TLSServer) -> None:
    mesh = make_mesh(server.url, tls=TLS())
    with mesh, mesh.http_sync("secure") as client, pytest.raises(httpx.ConnectError):
        client.get("/")


def test_verify_false_skips_verification(server: TLSServer) -> None:
    mesh = make_mesh(server.url, tls=TLS(verify=False))
    with mesh, mesh.http_sync("secure") as client:
        assert client.get("/").status_code == 200


def test_http_pool_verify_still_works(server: TLSServer, pki: PKI) -> None:
    mesh = make_mesh(server.url, http_pool={"verify": ssl.create_default_context(
        cafile=str(pki.ca))})
    with mesh, mesh.http_sync("secure") as client:
        assert client.get("/").status_code == 200


# -- mutual TLS -----------------------------------------------------------------------


@pytest.mark.parametrize("files", ["separate", "combined", "encrypted"])
def test_mutual_tls_with_the_client_certificate(mtls_server: TLSServer, pki: PKI,
                                               files: str) -> None:
    tls = {
        "separate": TLS(ca_bundle=pki.ca, client_cert=pki.client_cert,
                        client_key=pki.client_key),
        "combined": TLS(ca_bundle=pki.ca, client_cert=pki.client_combined),
        "encrypted": TLS(ca_bundle=pki.ca, client_cert=pki.client_cert,
                         client_key=pki.client_key_encrypted, key_password="key-pass-word"),
    }[files]
    mesh = make_mesh(mtls_server.url, tls=tls)
    with mesh, mesh.http_sync("secure") as client:
        assert client.get("/who").status_code == 200
    assert mtls_server.requests[0]["peer"] == "meshlite-client"


async def test_mutual_tls_refused_without_a_client_certificate(mtls_server: TLSServer,
                                                               pki: PKI) -> None:
    async with make_mesh(mtls_server.url, tls=TLS(ca_bundle=pki.ca)) as mesh:
        with pytest.raises(httpx.TransportError):
            await mesh.http("secure").get("/who")
        assert mesh.service("secure").endpoints[0].errors == 1
    assert mtls_server.requests == []


def test_mutual_tls_refused_without_a_client_certificate_sync(mtls_server: TLSServer,
                                                              pki: PKI) -> None:
    mesh = make_mesh(mtls_server.url, attempts=2, tls=TLS(ca_bundle=pki.ca))
    with mesh, mesh.http_sync("secure") as client, pytest.raises(httpx.TransportError):
        client.get("/who")
    assert mesh.service("secure").endpoints[0].errors == 2  # retried once, then gave up
    assert mtls_server.requests == []


async def test_a_bare_ssl_error_becomes_a_read_error(server: TLSServer, pki: PKI,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(self: Any, request: httpx.Request, *args: Any) -> httpx.Response:
        raise ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] alert")

    # whatever the wire lets escape, the mesh maps a bare ssl.SSLError once
    monkeypatch.setattr(AiohttpTransport, "send", refuse)
    async with make_mesh(server.url, attempts=2, tls=TLS(ca_bundle=pki.ca)) as mesh:
        with pytest.raises(httpx.ReadError, match=r"TLS with https://127.0.0.1:"):
            await mesh.http("secure").get("/")
        assert mesh.service("secure").endpoints[0].errors == 2  # transient: retried once


async def test_health_check_probes_with_the_service_tls_and_headers(
        mtls_server: TLSServer, pki: PKI) -> None:
    tls = TLS(ca_bundle=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key)
    mesh = make_mesh(mtls_server.url, tls=tls, headers={"Authorization": TOKEN},
                     health_check=HttpHealthCheck("/healthz", interval=60.0))
    async with mesh:
        assert mesh.health()["secure"].status == "healthy"
    probe = mtls_server.requests[0]
    assert (probe["path"], probe["peer"]) == ("/healthz", "meshlite-client")
    assert probe["headers"]["Authorization"] == TOKEN


def test_one_ssl_context_per_service(server: TLSServer, pki: PKI,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import meshlite.routing._service as service_module

    built: list[TLS] = []
    real = service_module.build_ssl_context

    def counting(tls: TLS, owner: str) -> ssl.SSLContext:
        built.append(tls)
        return real(tls, owner)

    monkeypatch.setattr(service_module, "build_ssl_context", counting)
    second = TLSServer(pki)
    try:
        mesh = Mesh([Service("secure", [server.url, second.url], balancer="round_robin",
                             tls=TLS(ca_bundle=pki.ca))])
        with mesh, mesh.http_sync("secure") as client:
            for _ in range(4):
                assert client.get("/").status_code == 200
        svc = mesh.service("secure")
        assert svc.ssl_context() is svc.ssl_context()
    finally:
        second.stop()
    assert len(built) == 1
    assert len(server.requests) == len(second.requests) == 2


# -- static headers ---------------------------------------------------------------------


def test_auth_header_reaches_the_backend_and_is_never_shown(server: TLSServer,
                                                            pki: PKI) -> None:
    mesh = make_mesh(server.url, tls=TLS(ca_bundle=pki.ca),
                     headers={"Authorization": TOKEN, "X-Api-Key": "k3y-v4lue"})
    with mesh, mesh.http_sync("secure") as client:
        client.get("/a")
        client.get("/b", headers={"X-Api-Key": "per-request"})  # the request's own wins
        failed = client.get("/fail")
    sent = [r["headers"] for r in server.requests]
    assert [h["Authorization"] for h in sent] == [TOKEN] * 3
    assert [h["X-Api-Key"] for h in sent[:2]] == ["k3y-v4lue", "per-request"]
    svc = mesh.service("secure")
    assert svc.header_names == ("Authorization", "X-Api-Key")
    shown = [repr(svc), repr(mesh), str(mesh.snapshot()), str(mesh.health()),
             json.dumps({k: v.as_dict() for k, v in mesh.snapshot().items()}),
             failed.text, repr(failed.headers)]
    for text in shown:
        assert "s3cr3t" not in text
        assert "k3y-v4lue" not in text
    assert "headers={'Authorization': '***', 'X-Api-Key': '***'}" in repr(svc)


class PlainServer:
    """A plain HTTP/1.1 server on loopback recording each request's headers."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.headers.append(dict(self.headers))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,),
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()


@pytest.fixture
def plain() -> Iterator[PlainServer]:
    s = PlainServer()
    yield s
    s.stop()


async def test_headers_and_tls_stay_with_the_service(server: TLSServer, plain: PlainServer,
                                                     pki: PKI) -> None:
    mesh = make_mesh(server.url, tls=TLS(ca_bundle=pki.ca), headers={"Authorization": TOKEN})
    async with mesh:
        client = mesh.http("secure")
        await client.get("/routed")
        await client.get(plain.url + "/elsewhere")  # another host: passes through
        with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED"):
            await client.get(server.url + "/")  # not routed: the service's CA is not used
    assert server.requests[0]["headers"]["Authorization"] == TOKEN
    assert "Authorization" not in plain.headers[0]
    assert len(server.requests) == 1


async def test_a_health_check_with_its_own_session_is_kept(plain: PlainServer) -> None:
    # A service's TLS and headers must not swap a custom check for a plain HTTP probe.
    class Custom(HttpHealthCheck):
        @contextlib.asynccontextmanager
        async def session(self) -> AsyncIterator[Any]:
            async def probe(backend: ml.Backend) -> str | None:
                return "custom probe says no"

            yield probe

    mesh = make_mesh(plain.url, headers={"Authorization": TOKEN},
                     health_check=Custom(interval=60.0, unhealthy_threshold=1))
    async with mesh:
        [backend] = mesh.health()["secure"].backends
    assert (backend.status, backend.reason) == (
        "unhealthy", "failing its health check: custom probe says no")
    assert plain.headers == []  # the plain HTTP probe never ran


def test_headers_on_plain_http_backends_too(plain: PlainServer) -> None:
    mesh = make_mesh(plain.url, headers={"Authorization": TOKEN})
    with mesh, mesh.http_sync("secure") as client:
        assert client.get("/").status_code == 204
    assert plain.headers[0]["Authorization"] == TOKEN


# -- configuration errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"verify": "yes"}, "verify"), ({"ca_bundle": "/no/such/ca.pem"}, "ca_bundle"),
     ({"client_cert": "/no/such/cert.pem"}, "client_cert"),
     ({"client_cert": 42}, "client_cert")],
)
def test_bad_tls_options_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=rf"^TLS: {field} must be"):
        TLS(**kwargs)


def test_inconsistent_tls_options(pki: PKI) -> None:
    with pytest.raises(ml.ConfigError, match=r"^TLS: client_key must be given with client_cert"):
        TLS(client_key=pki.client_key)
    with pytest.raises(ml.ConfigError, match=r"^TLS: ca_bundle must be None when verify=False"):
        TLS(verify=False, ca_bundle=pki.ca)
    with pytest.raises(ml.ConfigError, match=r"^TLS: key_password must be given with "
                                             "client_cert") as info:
        TLS(key_password="pw-secret")
    assert "pw-secret" not in str(info.value)


def test_bad_pem_is_a_config_error_naming_the_field(pki: PKI, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ml.ConfigError, match=r"tls.ca_bundle could not be loaded"):
        TLS(ca_bundle=junk).build()
    mismatched = TLS(client_cert=pki.client_cert, client_key=pki.server_key)
    svc = Service("secure", ["https://127.0.0.1:1"], tls=mismatched)
    with pytest.raises(ml.ConfigError, match=r"^Service 'secure': tls.client_cert/client_key "
                                             "could not be loaded"):
        svc.ssl_context()
    with pytest.raises(ml.ConfigError, match=r"client_cert/client_key"):
        TLS(client_cert=pki.client_cert, client_key=pki.client_key_encrypted,
            key_password="wrong").build()


def test_key_password_is_masked(pki: PKI) -> None:
    tls = TLS(client_cert=pki.client_cert, client_key=pki.client_key_encrypted,
              key_password="key-pass-word")
    assert "key-pass-word" not in repr(tls)
    assert "key_password='***'" in repr(tls)
    svc = Service("secure", ["https://127.0.0.1:1"], tls=tls)
    assert "key-pass-word" not in repr(svc)


def test_service_tls_argument_checks(pki: PKI) -> None:
    with pytest.raises(ml.ConfigError, match=r"^Service 'secure': tls must be an ml.TLS"):
        Service("secure", ["https://127.0.0.1:1"], tls={"verify": False})  # type: ignore[arg-type]
    with pytest.raises(ml.ConfigError, match=r"tls= and http_pool\['verify'\] both"):
        Service("secure", ["https://127.0.0.1:1"], tls=TLS(), http_pool={"verify": False})


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer x\r\nX-Evil: 1" + TOKEN}, {"Authorization": 123},
     ["Authorization", TOKEN]],
)
def test_bad_header_values_are_refused_without_showing_them(headers: Any) -> None:
    with pytest.raises(ml.ConfigError, match=r"^Service 'secure': headers.*\(the value is "
                                             r"not shown\)") as info:
        Service("secure", ["https://127.0.0.1:1"], headers=headers)
    assert TOKEN not in str(info.value)
    assert "Authorization', '" not in str(info.value)


@pytest.mark.parametrize("name", ["Host", "content-length", "bad name", "x-a"])
def test_bad_header_names(name: str) -> None:
    headers = {name: "v", "X-A": "w"} if name == "x-a" else {name: "v"}
    with pytest.raises(ml.ConfigError, match=r"^Service 'secure': headers must be"):
        Service("secure", ["https://127.0.0.1:1"], headers=headers)
