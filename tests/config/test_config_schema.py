"""The msgspec schema: every type error at once with its path, lax conversion, frozen
sections that compare by value, and a mesh from config that imports only what the
config uses."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import msgspec
import pytest

import meshlite as ml
from meshlite.config import MeshConfig, ServiceSection, load_config
from meshlite.config._fieldset import fields_set
from meshlite.config._sections import RetrySection

TYPE_ERRORS = """
services:
  users:
    backends: [{url: 5}, "http://a:1"]
    retry: {attempts: "zero", backoff: {type: linear}, on: 5}
    circuit_breaker: {window: [1]}
    trace: {attributes: {a: [1]}}
    depends_on: [1]
    timeout: {}
hot_reload: {step_ms: 0, enabled: maybe}
drain_timeout: soon
"""


def test_every_type_error_at_once_with_its_path(write_config: Any) -> None:
    with pytest.raises(ml.ConfigError) as info:
        load_config(write_config(TYPE_ERRORS), environ={})
    errors = info.value.errors
    expected = [
        "services.users.backends[0].url: must be a valid string, got 5",
        "services.users.retry.attempts: must be a valid integer, got 'zero'",
        "services.users.retry.backoff.type: must be one of 'exponential', 'constant', "
        "'decorrelated', got 'linear'",
        "services.users.retry.on: must be a valid list or a valid string, got 5",
        "services.users.circuit_breaker.window: must be a valid integer or a valid number, "
        "got a list",
        "services.users.depends_on[0]: must be a valid string, got 1",
        "services.users.timeout.seconds: required option is missing",
        "hot_reload.step_ms: must be >= 1, got 0",
        "hot_reload.enabled: must be a valid boolean (true or false), got 'maybe'",
        "drain_timeout: must be a valid number, got 'soon'",
    ]
    assert [e for e in expected if e not in errors] == []
    assert any(e.startswith("services.users.trace.attributes.a:") for e in errors)


def test_values_are_converted_lax(write_config: Any) -> None:
    config = load_config(write_config("""
        services:
          users:
            backends: ["http://a:1"]
            retry: {attempts: "5", respect_retry_after: "on"}
            circuit_breaker: {window: "50", failure_rate: "0.25"}
            trace: {enabled: on, attributes: {n: 3, ok: true, s: x}}
        hot_reload: {enabled: "yes", step_ms: "20"}
    """), environ={})
    users = config.services["users"]
    assert users.retry is not None
    assert (users.retry.attempts, users.retry.respect_retry_after) == (5, True)
    assert users.circuit_breaker is not None
    assert users.circuit_breaker.window == 50
    assert isinstance(users.circuit_breaker.window, int)
    assert users.circuit_breaker.failure_rate == 0.25
    assert users.trace is not None
    assert users.trace.enabled is True
    assert users.trace.attributes == {"n": 3, "ok": True, "s": "x"}
    assert (config.hot_reload.enabled, config.hot_reload.step_ms) == (True, 20)


def test_false_leaves_any_policy_section_out(write_config: Any) -> None:
    # retry: false did; timeout: false (and the other sections with a number for
    # shorthand) was a type error, "must be a valid number, got False".
    config = load_config(write_config("""
        services:
          users:
            backends: ["http://a:1"]
            timeout: false
            cache: false
            hedge: "false"
            rate_limit: false
            bulkhead: false
            fallback: false
            fault_injection: false
            retry: {attempts: 2}
    """), environ={})
    users = config.services["users"]
    assert (users.timeout, users.cache, users.hedge, users.rate_limit, users.bulkhead,
            users.fallback, users.fault_injection) == (None,) * 7
    assert users.retry is not None


def test_a_watch_interval_the_watcher_cannot_take_is_refused(write_config: Any) -> None:
    # It passed `check` and failed the watch at start: hot reload off, silently.
    with pytest.raises(ml.ConfigError) as info:
        load_config(write_config("""
            hot_reload: {enabled: true, step_ms: 100000000000000000000000, debounce_ms: 1e30}
        """), environ={})
    assert "hot_reload.step_ms: must be <= 86400000, got 100000000000000000000000" \
        in info.value.errors
    assert any(e.startswith("hot_reload.debounce_ms: ") for e in info.value.errors)


def test_a_value_from_the_environment_is_masked_in_type_errors(write_config: Any) -> None:
    secret = "not-a-number-0123456789"
    with pytest.raises(ml.ConfigError) as info:
        load_config(write_config("""
            services:
              users: {backends: [x], timeout: "${T}", retry: {attempts: "${T}"}}
        """), environ={"T": secret})
    assert secret not in str(info.value)
    assert "services.users.retry.attempts: must be a valid integer, got '***'" \
        in info.value.errors


def test_sections_are_frozen_and_compare_by_value(write_config: Any) -> None:
    path = write_config("services: {users: {backends: [x], retry: {attempts: 2}}}")
    a, b = load_config(path, environ={}), load_config(path, environ={})
    assert a == b
    assert a.services["users"] == b.services["users"]
    assert isinstance(a, MeshConfig)
    assert isinstance(a, msgspec.Struct)
    with pytest.raises(AttributeError):
        a.services["users"].retry.attempts = 3  # type: ignore[misc, union-attr]


def test_options_written_as_null_are_kept_apart_from_options_left_out(
        write_config: Any) -> None:
    config = load_config(write_config("""
        services:
          a: {backends: [x], retry: {attempts: 2, budget: null}}
          b: {backends: [x], retry: {attempts: 2}}
    """), environ={})
    a, b = config.services["a"].retry, config.services["b"].retry
    assert isinstance(a, RetrySection)
    assert isinstance(b, RetrySection)
    assert a.arguments() == {"attempts": 2, "budget": None}
    assert b.arguments() == {"attempts": 2}
    assert fields_set(b) == {"attempts"}
    assert config.services["a"].dump(exclude_unset=True) == {
        "backends": [{"url": "x"}], "retry": {"attempts": 2, "budget": None}}
    assert ServiceSection().backends == []


def test_a_mesh_from_config_imports_only_what_the_config_uses(write_config: Any) -> None:
    path = write_config("""
        services:
          users:
            backends: ["http://127.0.0.1:8001"]
            timeout: 2.0
            retry: {attempts: 3}
          orders: {backends: ["http://127.0.0.1:8002"], depends_on: users}
    """)
    code = (
        "import sys, meshlite as ml\n"
        f"mesh = ml.Mesh.from_config({path!r}, environ={{}})\n"
        "assert len(mesh.services) == 2\n"
        "print(sorted(m for m in ('pydantic', 'meshlite.discovery._dns', 'dns',\n"
        "    'meshlite.discovery._redis', 'meshlite.discovery._file', 'redis',\n"
        "    'meshlite.observability._dashboard', 'starlette', 'uvicorn')\n"
        "    if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
