"""Config errors: every problem at once, each under its path, saying what is valid."""

from __future__ import annotations

from typing import Any

import pytest

import meshlite as ml
from meshlite.config import load_config

BAD = """
services:
  users:
    backends: ["http://127.0.0.1:8001", {url: "http://127.0.0.1:8002", weight: -2}]
    balancer: fastest
    retry: {attempts: 0, atempts: 3, backoff: {type: constant, delay: -1, initial: 1}}
    circuit_breaker: {failure_rate: 1.5, window: 0}
    timeout: {seconds: abc}
    hedge: {delay: 0.1, on: [NoSuchError]}
  orders:
    backends: ["http://o:1"]
    depends_on: [users, ghost]
    rate_limit: {rate: 10, mode: sometimes, burst: 0}
    discovery: {type: dns, name: orders.internal, port: 99999, nonsense: 1}
  cart:
    discovery: {type: consul}
dashboard: {host: 0.0.0.0}
alerts:
  - {name: slow, condition: p99, threshold: 0.5, service: nowhere, severity: dire}
telemetry: {service_name: shop, sample_ratio: 2}
unknown_section: {}
"""


def test_all_errors_at_once_with_paths(write_config: Any) -> None:
    with pytest.raises(ml.ConfigError) as info:
        load_config(write_config(BAD), environ={})
    errors = info.value.errors
    expected = [
        "services.users.backends[1].weight: must be > 0, got -2.0",
        "services.users.balancer: must be one of least_requests, p2c_ewma, random, "
        "ring_hash, round_robin, weighted_round_robin, got 'fastest'",
        "services.users.retry.attempts: must be >= 1, got 0",
        "services.users.retry.atempts: unknown option; valid options: attempts, backoff, on, "
        "budget, respect_retry_after, max_retry_after",
        "services.users.retry.backoff.initial: is not an option of the 'constant' backoff "
        "(valid: delay)",
        "services.users.retry.backoff.delay: must be >= 0, got -1.0",
        "services.users.circuit_breaker.failure_rate: must be in (0, 1], got 1.5",
        "services.users.circuit_breaker.window: must be >= 1, got 0",
        "services.users.hedge.on: must be an exception class name such as 'ConnectionError', "
        "'meshlite.CircuitOpenError' or 'httpx.ConnectError', got 'NoSuchError'",
        "services.orders.depends_on[1]: 'ghost' is not a service (services: cart, orders, "
        "users)",
        "services.orders.rate_limit.burst: must be >= 1, got 0",
        "services.orders.discovery.nonsense: unknown option of 'dns' discovery; valid "
        "options: name, record, port, scheme, nameservers, nameserver_port, timeout, "
        "interval, min_interval, retry_interval, resolve_timeout",
        "services.orders.discovery.port: must be a port number in [1, 65535] for A/AAAA "
        "records, got 99999",
        "services.cart.discovery.type: must be one of dns, file, redis, static, got 'consul'",
        "dashboard.token: is required when the dashboard listens on '0.0.0.0', which is not "
        "a loopback address; set a token or host: 127.0.0.1",
        "alerts.rules[0].severity: must be one of info, warning, critical, got 'dire'",
        "telemetry.sample_ratio: must be in [0, 1], got 2.0",
        "unknown_section: unknown option; valid options: services, telemetry, dashboard, "
        "alerts, hot_reload, drain_timeout, audit, inbound, metrics, profiles",
    ]
    missing = [e for e in expected if e not in errors]
    assert missing == []
    # A rule may name a service registered in code: not a problem of the file.
    assert not any(e.startswith("alerts.rules[0].service") for e in errors)
    assert any(e.startswith("services.users.timeout.seconds: must be a valid number")
               for e in errors)
    assert any(e.startswith("services.orders.rate_limit.mode: must be 'wait' or 'reject'")
               for e in errors)
    message = str(info.value)
    assert f"{len(errors)} problems in the config" in message
    assert all(f"  - {e}" in message for e in errors)
    assert isinstance(info.value, ValueError)  # ConfigError is also a ValueError


def test_a_dependency_cycle_is_named(write_config: Any) -> None:
    with pytest.raises(ml.ConfigError, match=r"services: dependency cycle a -> b -> a"):
        load_config(write_config("""
            services:
              a: {backends: [x], depends_on: b}
              b: {backends: [x], depends_on: a}
        """), environ={})


def test_wrong_shapes(write_config: Any) -> None:
    with pytest.raises(ml.ConfigError) as info:
        load_config(write_config("""
            services:
              users: [1, 2]
              orders: {backends: [{weight: 2}], retry: 3, depends_on: {a: 1}}
            hot_reload: {enabled: maybe}
        """), environ={})
    errors = info.value.errors
    assert "services.users: must be a mapping (backends, balancer, policies...), got [1, 2]" \
        in errors
    assert "services.orders.backends[0].url: required option is missing" in errors
    assert any(e.startswith("services.orders.retry: must be a valid dictionary") for e in errors)
    assert any(e.startswith("hot_reload.enabled: must be a valid boolean") for e in errors)


@pytest.mark.parametrize(("name", "text", "pattern"), [
    ("mesh.yaml", "services: [unclosed", r"(?s)mesh.yaml: not valid YAML: .*line 1"),
    ("mesh.toml", "services = ", r"mesh.toml: not valid TOML"),
    ("mesh.yaml", "- a\n- b\n", r"\(top level\): must be a mapping of sections"),
])
def test_unparsable_files(write_config: Any, name: str, text: str, pattern: str) -> None:
    with pytest.raises(ml.ConfigError, match=pattern):
        load_config(write_config(text, name), environ={})


@pytest.mark.parametrize(("name", "text", "pattern"), [
    # Each parser keeps a key's last value: a service defined twice lost its first
    # definition (its retry, say) without a word.
    ("mesh.yaml", "services:\n  users: {backends: [a], retry: {attempts: 3}}\n"
                  "  orders: {backends: [b]}\n  users: {backends: [c]}\n",
     r"(?s)mesh.yaml: not valid YAML: .*the key 'users' twice \(first at line 2\).*line 4"),
    ("mesh.yaml", "services:\n  users:\n    timeout: 1.0\n    timeout: 2.0\n",
     r"(?s)not valid YAML: .*the key 'timeout' twice"),
    ("mesh.json", '{"services": {"users": {"backends": ["a"]}, "users": {"backends": ["b"]}}}',
     r"mesh.json: not valid JSON: the member 'users' is given twice in one object"),
])
def test_a_key_given_twice_is_refused(write_config: Any, name: str, text: str,
                                      pattern: str) -> None:
    with pytest.raises(ml.ConfigError, match=pattern):
        load_config(write_config(text, name), environ={})


def test_a_dependency_listed_twice_is_named(write_config: Any) -> None:
    with pytest.raises(ml.ConfigError) as info:
        load_config(write_config("""
            services:
              a: {backends: ["http://a:1"]}
              b: {backends: ["http://b:1"], depends_on: [a, a]}
        """), environ={})
    assert list(info.value.errors) == ["services.b.depends_on[1]: 'a' is listed twice"]


def test_a_merged_key_may_still_be_overridden(write_config: Any) -> None:
    mesh = ml.Mesh.from_config(write_config("""
        services:
          users: &defaults {timeout: 1.0, backends: ["http://a"]}
          orders:
            <<: *defaults
            timeout: 3.0
        """), environ={})
    timeouts = {name: next(p for p in mesh.service(name).pipeline.walk()
                       if isinstance(p, ml.Timeout)).options.seconds
                for name in ("users", "orders")}
    assert timeouts == {"users": 1.0, "orders": 3.0}


def test_a_yaml_syntax_error_says_where_without_the_parsers_stream_name(
        write_config: Any) -> None:
    with pytest.raises(ml.ConfigError) as info:
        load_config(write_config("services:\n  users: {backends: [], timeout: 2.0\n"),
                    environ={})
    assert "at line 2, column 10" in str(info.value)
    assert "<unicode string>" not in str(info.value)  # PyYAML's name for a str


def test_an_unknown_top_level_key_lists_profiles_among_the_valid_ones(
        write_config: Any) -> None:
    with pytest.raises(ml.ConfigError) as info:
        load_config(write_config("services: {}\nprofils: {prod: {}}\n"), environ={})
    (error,) = info.value.errors
    assert error.startswith("profils: unknown option; valid options: services, ")
    assert error.endswith(", profiles")


def test_a_fault_that_both_raises_and_answers_is_reported_under_the_option(
        write_config: Any) -> None:
    with pytest.raises(ml.ConfigError) as info:
        load_config(write_config("""
            services:
              users:
                backends: ["http://127.0.0.1:1"]
                fault_injection: {rate: 0.1, error: ConnectionError, result: 1}
        """), environ={})
    assert info.value.errors == (
        "services.users.fault_injection.result: must be left out when error= is given "
        "(a fault either raises or answers), got 1",)


def test_unreadable_file_error_carries_the_os_error(tmp_path: Any) -> None:
    with pytest.raises(ml.ConfigError, match="cannot read the config file") as info:
        load_config(str(tmp_path / "missing.yaml"), environ={})
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_empty_file_is_an_empty_mesh(write_config: Any) -> None:
    mesh = ml.Mesh.from_config(write_config(""), environ={})
    assert mesh.services == ()
