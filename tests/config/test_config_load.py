"""Mesh.from_config: every section type, from YAML and from TOML, builds what it says."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import meshlite as ml
from meshlite import telemetry
from meshlite.config import config_of, load_config, mesh_from_config
from meshlite.config._sections import POLICY_SECTIONS
from meshlite.discovery import Discovery, DnsProvider, FileProvider
from meshlite.policies._fault import FaultInjection
from meshlite.routing import HttpHealthCheck, OutlierDetection

ALL_YAML = """
services:
  users:
    backends: ["http://127.0.0.1:8001", {url: "http://127.0.0.1:8002", weight: 2, zone: b}]
    balancer: round_robin
    trace: {name: users-call, record_args: true}
    fallback: {value: fallback}
    cache: {ttl: 30, maxsize: 10, stale_ttl: 5}
    timeout: 2.0
    retry:
      attempts: 3
      backoff: {type: exponential, initial: 0.01, maximum: 0.5}
      on: [ConnectionError, meshlite.TimeoutExceeded]
      budget: {ratio: 0.1, min_per_second: 5}
    hedge: {delay: 0.2, max_hedges: 2}
    circuit_breaker: {failure_rate: 0.5, window: 50, min_calls: 10, open_seconds: 10}
    rate_limit: {rate: 100, per: 1, mode: reject}
    adaptive_concurrency: {initial_limit: 8, max_limit: 64}
    bulkhead: {max_concurrent: 16, max_queue: 4}
    fault_injection: {rate: 0.1, error: TimeoutError}
    health_check: {path: /ready, interval: 3}
    outlier_detection: {consecutive_failures: 7, base_ejection_seconds: 5}
    depends_on: [orders]
    panic_mode: false
  orders:
    backends: ["http://127.0.0.1:9000"]
    outlier_detection: false
    discovery: {type: dns, name: orders.internal, port: 9000, nameservers: ["127.0.0.1"]}
drain_timeout: 5
telemetry: {service_name: shop, sample_ratio: 0.5}
dashboard: {enabled: false, port: 0}
alerts: [{name: errors, condition: error_rate, threshold: 0.1, service: users}]
hot_reload: {enabled: false, step_ms: 20}
"""

ALL_TOML = """
drain_timeout = 5
telemetry = {service_name = "shop", sample_ratio = 0.5}
dashboard = {enabled = false, port = 0}
hot_reload = {enabled = false, step_ms = 20}
alerts = [{name = "errors", condition = "error_rate", threshold = 0.1, service = "users"}]

[services.users]
backends = ["http://127.0.0.1:8001", {url = "http://127.0.0.1:8002", weight = 2, zone = "b"}]
balancer = "round_robin"
trace = {name = "users-call", record_args = true}
fallback = {value = "fallback"}
cache = {ttl = 30, maxsize = 10, stale_ttl = 5}
timeout = 2.0
hedge = {delay = 0.2, max_hedges = 2}
circuit_breaker = {failure_rate = 0.5, window = 50, min_calls = 10, open_seconds = 10}
rate_limit = {rate = 100, per = 1, mode = "reject"}
adaptive_concurrency = {initial_limit = 8, max_limit = 64}
bulkhead = {max_concurrent = 16, max_queue = 4}
fault_injection = {rate = 0.1, error = "TimeoutError"}
health_check = {path = "/ready", interval = 3}
outlier_detection = {consecutive_failures = 7, base_ejection_seconds = 5}
depends_on = ["orders"]
panic_mode = false

[services.users.retry]
attempts = 3
backoff = {type = "exponential", initial = 0.01, maximum = 0.5}
on = ["ConnectionError", "meshlite.TimeoutExceeded"]
budget = {ratio = 0.1, min_per_second = 5}

[services.orders]
backends = ["http://127.0.0.1:9000"]
outlier_detection = false
discovery = {type = "dns", name = "orders.internal", port = 9000, nameservers = ["127.0.0.1"]}
"""


def policies(mesh: ml.Mesh, name: str) -> dict[str, Any]:
    return {p.kind: p for p in mesh.service(name).pipeline.walk() if p.kind != "pipeline"}


@pytest.fixture
def telemetry_reset() -> Iterator[None]:
    yield
    telemetry._reset_for_tests()


@pytest.mark.parametrize(("name", "text"), [("mesh.yaml", ALL_YAML), ("mesh.toml", ALL_TOML)])
@pytest.mark.usefixtures("telemetry_reset")
def test_every_section_type(write_config: Any, name: str, text: str) -> None:
    mesh = ml.Mesh.from_config(write_config(text, name), environ={})
    assert mesh.drain_timeout == 5.0
    active = telemetry.current()
    assert active is not None
    assert active.settings.service_name == "shop"
    assert active.settings.sample_ratio == 0.5
    assert [r.name for r in mesh.alerts.rules] == ["errors"]
    config = config_of(mesh)
    assert config is not None
    assert config.hot_reload.step_ms == 20
    assert config.dashboard is not None
    assert not config.dashboard.enabled
    users = mesh.service("users")
    assert [(b.address, b.weight, b.zone) for b in users.backends] == [
        ("http://127.0.0.1:8001", 1.0, None), ("http://127.0.0.1:8002", 2.0, "b")]
    assert users.balancer.name == "round_robin"
    assert users.depends_on == ("orders",)
    assert users.panic_mode is False
    p = policies(mesh, "users")
    # the recommended order, outermost first
    assert list(p) == ["trace", "fallback", "cache", "timeout", "retry", "hedge",
                       "circuit_breaker", "rate_limit", "adaptive_concurrency", "bulkhead",
                       "fault_injection"]
    assert p["trace"].options.name == "users-call"
    assert p["trace"].options.record_args
    assert p["fallback"].options.value == "fallback"
    assert (p["cache"].options.ttl, p["cache"].options.maxsize) == (30.0, 10)
    assert p["timeout"].options.seconds == 2.0
    retry = p["retry"].options
    assert retry.attempts == 3
    assert retry.backoff.maximum == 0.5
    assert retry.on == (ConnectionError, ml.TimeoutExceeded)
    assert retry.budget is not None
    assert retry.budget.ratio == 0.1
    assert p["hedge"].options.max_hedges == 2
    cb = p["circuit_breaker"]
    assert (cb.options.window, cb.options.min_calls, cb.options.open_seconds) == (50, 10, 10.0)
    assert cb.options.name == "users"  # the service's name unless the file gives one
    assert p["rate_limit"].options.mode == "reject"
    assert p["adaptive_concurrency"].options.max_limit == 64
    assert p["bulkhead"].options.max_queue == 4
    assert isinstance(p["fault_injection"], FaultInjection)
    assert p["fault_injection"].options.error is TimeoutError
    assert isinstance(users.health_check, HttpHealthCheck)
    assert users.health_check.path == "/ready"
    assert isinstance(users.outlier_detection, OutlierDetection)
    assert users.outlier_detection.options.consecutive_failures == 7
    orders = mesh.service("orders")
    assert orders.outlier_detection is None
    [driver] = [c for c in orders.components if isinstance(c, Discovery)]
    assert isinstance(driver.provider, DnsProvider)
    assert driver.service is orders
    assert driver.provider.nameservers == ("127.0.0.1",)


def test_yaml_and_toml_give_the_same_config(write_config: Any) -> None:
    from_yaml = load_config(write_config(ALL_YAML, "a.yaml"), environ={})
    from_toml = load_config(write_config(ALL_TOML, "a.toml"), environ={})
    assert from_yaml == from_toml


def test_no_policy_section_means_the_default_pipeline(write_config: Any) -> None:
    mesh = ml.Mesh.from_config(write_config("""
        services:
          plain: {backends: ["http://a:1"]}
          bare: {backends: ["http://a:1"], retry: false}
    """), environ={})
    [retry] = policies(mesh, "plain").values()
    assert retry.options.attempts == ml.routing.DEFAULT_RETRY_ATTEMPTS
    assert policies(mesh, "bare") == {}


def test_a_hedge_section_sets_or_turns_off_its_budget(write_config: Any) -> None:
    # As retry's: left out, the policy's own default budget; a mapping, those options;
    # false, none (a file could not set what the Python API takes).
    mesh = ml.Mesh.from_config(write_config("""
        services:
          default: {backends: "http://a:1", hedge: 0.1}
          shared: {backends: "http://a:2", hedge: {delay: 0.1, budget: {ratio: 0.5}}}
          unbounded: {backends: "http://a:3", hedge: {delay: 0.1, budget: false}}
    """), environ={})
    default = policies(mesh, "default")["hedge"].budget
    assert repr(default) == repr(ml.RetryBudget())  # (its options, as the defaults)
    assert policies(mesh, "shared")["hedge"].budget.ratio == 0.5
    assert policies(mesh, "unbounded")["hedge"].budget is None


def test_scalar_shorthands_and_switches(write_config: Any) -> None:
    mesh = ml.Mesh.from_config(write_config("""
        services:
          users:
            backends: "http://a:1"
            timeout: 1.5
            retry: {attempts: 2, backoff: 0.25, budget: false}
            rate_limit: 50
            bulkhead: 8
            cache: 60
            circuit_breaker: true
            health_check: true
            trace: true
    """), environ={})
    p = policies(mesh, "users")
    assert p["timeout"].options.seconds == 1.5
    assert p["retry"].options.backoff == ml.backoff.constant(0.25)
    assert p["retry"].options.budget is None
    assert p["rate_limit"].options.rate == 50.0
    assert p["bulkhead"].options.max_concurrent == 8
    assert p["cache"].options.ttl == 60.0
    assert p["circuit_breaker"].state == "closed"
    assert "trace" in p
    assert mesh.service("users").health_check is not None


def test_options_the_file_omits_keep_the_constructor_defaults(write_config: Any) -> None:
    mesh = ml.Mesh.from_config(write_config("""
        services:
          users: {backends: ["http://a:1"], circuit_breaker: {open_seconds: 3}}
    """), environ={})
    cb = policies(mesh, "users")["circuit_breaker"].options
    default = ml.CircuitBreaker().options
    assert cb.open_seconds == 3.0
    assert (cb.window, cb.min_calls, cb.failure_rate) == (default.window, default.min_calls,
                                                         default.failure_rate)


def test_section_fields_are_the_constructor_arguments() -> None:
    from meshlite.config._policies import _FACTORIES

    for kind, model in POLICY_SECTIONS.items():
        accepted = set(inspect.signature(_FACTORIES[kind]).parameters)
        own = {"enabled"} if kind == "trace" else set()
        assert set(model.__struct_fields__) - own <= accepted, kind


def test_from_config_keywords_are_those_it_passes_on() -> None:
    # ConfigOptions types Mesh.from_config's **kwargs: it must name exactly the keywords
    # of mesh_from_config and the ml.Mesh arguments that it passes on (MeshOptions).
    from meshlite.config._mesh_config import ConfigOptions, MeshOptions

    def keywords(fn: Any) -> set[str]:
        return {p.name for p in inspect.signature(fn).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}

    assert set(MeshOptions.__annotations__) == keywords(ml.Mesh) - {"clock"}
    assert set(ConfigOptions.__annotations__) == keywords(mesh_from_config) | set(
        MeshOptions.__annotations__)
    assert not ConfigOptions.__required_keys__


def test_a_path_object_is_a_path(write_config: Any) -> None:
    # load_config(Path(...)) raised AttributeError ('PosixPath' ... 'endswith').
    from pathlib import Path

    from meshlite.config import watch

    for name in ("mesh.yaml", "mesh.toml"):
        path = Path(write_config("[services.users]\nbackends = ['http://a:1']\n"
                                 if name.endswith(".toml")
                                 else "services: {users: {backends: ['http://a:1']}}\n", name))
        assert load_config(path, environ={}) == load_config(str(path), environ={})
        for mesh in (ml.Mesh.from_config(path, environ={}), mesh_from_config(path, environ={})):
            assert [b.address for b in mesh.service("users").backends] == ["http://a:1"]
        mesh = ml.Mesh()
        watch(mesh, path, environ={})
        assert [b.address for b in mesh.service("users").backends] == ["http://a:1"]


def test_file_discovery_path_is_relative_to_the_config(write_config: Any) -> None:
    path = write_config("""
        services:
          users: {discovery: {type: file, path: backends.json}}
    """)
    mesh = ml.Mesh.from_config(path, environ={})
    [driver] = [c for c in mesh.service("users").components if isinstance(c, Discovery)]
    assert isinstance(driver.provider, FileProvider)
    assert driver.provider.path == path.replace("mesh.yaml", "backends.json")


def test_json_config_and_clock_reach_policies(write_config: Any, clock: Any) -> None:
    mesh = mesh_from_config(write_config(
        '{"services": {"users": {"backends": ["http://a:1"], "timeout": 1}}}', "mesh.json"),
        environ={}, clock=clock)
    assert policies(mesh, "users")["timeout"].clock is clock
    assert mesh.clock is clock


def test_yaml_on_key_is_not_a_boolean(write_config: Any) -> None:
    # YAML 1.1 reads a bare `on` as true; the loader keeps YAML 1.2 booleans only.
    config = load_config(write_config("""
        services:
          users: {backends: [x], retry: {on: ConnectionError}, trace: {enabled: on}}
    """), environ={})
    assert config.services["users"].retry is not None
    assert config.services["users"].retry.on == "ConnectionError"


def test_import_meshlite_loads_no_config_dependency() -> None:
    code = ("import sys, meshlite, meshlite.config, meshlite.discovery; "
            "print(sorted(m for m in ('pydantic', 'msgspec', 'yaml', 'watchfiles', 'dns') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_alerts_go_to_the_mesh(write_config: Any) -> None:
    mesh = ml.Mesh.from_config(write_config("""
        services:
          users: {backends: ["http://a:1"]}
        alerts:
          webhook: "http://127.0.0.1:9/hook"
          rules:
            - {name: errors, condition: error_rate, threshold: 0.1, service: users}
            - {name: breaker, condition: breaker_open, severity: critical}
    """), environ={})
    assert [r.name for r in mesh.alerts.rules] == ["errors", "breaker"]
    assert mesh.alerts.rules[0].threshold == 0.1
    assert mesh.alerts.webhook == "http://127.0.0.1:9/hook"


async def test_dashboard_is_served_while_the_mesh_is_open(write_config: Any) -> None:
    from meshlite.config._load import managed_of

    path = write_config("services: {users: {backends: ['http://a:1']}}\n"
                        "dashboard: {port: 0}\n")
    mesh = ml.Mesh.from_config(path, environ={})
    managed = managed_of(mesh)
    assert managed is not None
    assert managed.dashboard is not None
    async with mesh:
        server = managed.dashboard.server
        assert server is not None
        assert server.url.startswith("http://127.0.0.1:")
    assert managed.dashboard.server is None
    unserved = managed_of(ml.Mesh.from_config(path, environ={}, dashboard=False))
    assert unserved is not None
    assert unserved.dashboard is None  # `meshlite dashboard CONFIG` serves its own


def test_tls_and_headers(write_config: Any, tmp_path: Any) -> None:
    (tmp_path / "ca.pem").write_text("not checked until first use")
    mesh = ml.Mesh.from_config(write_config("""
        services:
          users:
            backends: ["https://a:1"]
            tls: {ca_bundle: ca.pem}
            headers: {Authorization: "Bearer ${TOKEN}"}
    """), environ={"TOKEN": "tok-123456789"})
    users = mesh.service("users")
    assert users.tls is not None
    assert str(users.tls.ca_bundle) == str(tmp_path / "ca.pem")  # next to the config
    assert users.header_names == ("Authorization",)
    with pytest.raises(ml.ConfigError) as info:
        load_config(write_config("""
            services:
              users: {backends: [x], tls: {client_key: nope.pem}, headers: {Host: "${TOKEN}"}}
        """), environ={"TOKEN": "tok-123456789"})
    assert any(e.startswith("services.users.tls.client_key:") for e in info.value.errors)
    assert any(e.startswith("services.users.headers") for e in info.value.errors)
    assert "tok-123456789" not in str(info.value)
