"""The environment: ${VAR} interpolation, MESHLITE_ENV profiles, MESHLITE_* overrides,
and secrets that never show in an error, a summary or the masked config."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

import pytest

import meshlite as ml
from meshlite.config import load_config, masked_config, mesh_from_config
from meshlite.config._check import run_check


def write_text(path: str, text: str) -> None:
    Path(path).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


SECRET = "s3cr3t-t0ken-0123456789"


def test_interpolation_with_defaults(write_config: Any) -> None:
    config = load_config(write_config("""
        services:
          users:
            backends: ["http://${USERS_HOST}:${USERS_PORT:-8001}", "http://${B:-b}:1"]
            timeout: ${TIMEOUT:-2.5}
            retry: {attempts: "${ATTEMPTS:-4}"}
        dashboard: {token: "${EMPTY:-fallback-token-0123}", port: 0}
    """), environ={"USERS_HOST": "127.0.0.5", "B": "", "EMPTY": ""})
    users = config.services["users"]
    assert [b.url for b in users.backends] == ["http://127.0.0.5:8001", "http://b:1"]
    assert users.timeout is not None
    assert users.timeout.seconds == 2.5
    assert users.retry is not None
    assert users.retry.attempts == 4
    assert config.dashboard is not None
    assert config.dashboard.token == "fallback-token-0123"


def test_escaped_reference_is_literal(write_config: Any) -> None:
    config = load_config(write_config("""
        services:
          users: {backends: ["http://a:1"], circuit_breaker: {name: "$${NOT_A_VAR}"}}
    """), environ={})
    breaker = config.services["users"].circuit_breaker
    assert breaker is not None
    assert breaker.name == "${NOT_A_VAR}"


def test_missing_variable_is_an_error_with_its_path(write_config: Any) -> None:
    with pytest.raises(ml.ConfigError) as info:
        load_config(write_config("""
            services:
              users: {backends: ["http://${USERS_HOST}:1"], timeout: "${T}"}
        """), environ={})
    assert info.value.errors == (
        "services.users.backends[0]: environment variable USERS_HOST is not set; set it "
        "or give a default: ${USERS_HOST:-default}",
        "services.users.timeout: environment variable T is not set; set it or give a "
        "default: ${T:-default}",
    )


def test_bad_reference_syntax(write_config: Any) -> None:
    with pytest.raises(ml.ConfigError, match=r"services.users.backends\[0\]: \$\{1X\} is not "
                                             r"a valid reference"):
        load_config(write_config('services: {users: {backends: ["${1X}"]}}'), environ={})


PROFILES = """
services:
  users:
    backends: ["http://127.0.0.1:8001"]
    retry: {attempts: 2, respect_retry_after: false}
profiles:
  prod:
    services:
      users:
        backends: ["http://127.0.0.1:8001", "http://127.0.0.2:8001"]
        retry: {attempts: 5}
    hot_reload: false
  dev:
    hot_reload: true
"""


def test_profile_is_overlaid_deeply(write_config: Any) -> None:
    path = write_config(PROFILES)
    prod = load_config(path, environ={"MESHLITE_ENV": "prod"})
    users = prod.services["users"]
    assert len(users.backends) == 2  # lists are replaced
    assert users.retry is not None
    assert users.retry.attempts == 5
    assert users.retry.respect_retry_after is False  # mappings are merged
    assert load_config(path, environ={"MESHLITE_ENV": "dev"}).hot_reload.enabled
    base = load_config(path, environ={})
    assert base.services["users"].retry is not None
    assert base.services["users"].retry.attempts == 2
    assert load_config(path, environ={}, profile="prod").services["users"].retry.attempts == 5


def test_unknown_profile_lists_the_known_ones(write_config: Any) -> None:
    with pytest.raises(ml.ConfigError, match=r"MESHLITE_ENV='staging' names no profile "
                                             r"\(profiles: dev, prod\)"):
        load_config(write_config(PROFILES), environ={"MESHLITE_ENV": "staging"})


def test_error_in_a_profile_says_so(write_config: Any) -> None:
    path = write_config(PROFILES.replace("attempts: 5", "attempts: 0"))
    with pytest.raises(ml.ConfigError) as info:
        load_config(path, environ={"MESHLITE_ENV": "prod"})
    assert info.value.errors == (
        "services.users.retry.attempts: must be >= 1, got 0 (from profile 'prod')",)


def test_env_overrides_with_type_coercion(write_config: Any) -> None:
    path = write_config("""
        services:
          users:
            backends: ["http://a:1"]
            retry: {attempts: 2}
            circuit_breaker: {failure_rate: 0.5}
    """)
    config = load_config(path, environ={
        "MESHLITE_SERVICES__USERS__RETRY__ATTEMPTS": "5",
        "MESHLITE_SERVICES__USERS__CIRCUIT_BREAKER__FAILURE_RATE": "0.25",
        "MESHLITE_SERVICES__USERS__PANIC_MODE": "false",
        "MESHLITE_SERVICES__USERS__TIMEOUT": "3",
        "MESHLITE_SERVICES__ORDERS__BACKENDS": '["http://o:1", {"url": "http://o:2"}]',
        "MESHLITE_HOT_RELOAD": "true",
        "MESHLITE_SOMETHING_ELSE": "ignored: not a config section",
    })
    users = config.services["users"]
    assert users.retry is not None
    assert users.retry.attempts == 5
    assert users.circuit_breaker is not None
    assert users.circuit_breaker.failure_rate == 0.25
    assert users.panic_mode is False
    assert users.timeout is not None
    assert users.timeout.seconds == 3.0
    assert [b.url for b in config.services["orders"].backends] == ["http://o:1", "http://o:2"]
    assert config.hot_reload.enabled is True


def test_env_overrides_turn_switch_sections_on_and_off(write_config: Any) -> None:
    # A section a file turns on or off with true/false (retry: false, health_check:
    # true...) takes the same switch from the environment, where every value is text.
    path = write_config("""
        services:
          users:
            backends: ["http://a:1"]
            retry: {attempts: 2}
            timeout: 1.0
    """)
    config = load_config(path, environ={
        "MESHLITE_SERVICES__USERS__RETRY": "false",
        "MESHLITE_SERVICES__USERS__HEALTH_CHECK": "true",
        "MESHLITE_SERVICES__USERS__OUTLIER_DETECTION": "off",
        "MESHLITE_SERVICES__USERS__CIRCUIT_BREAKER": "on",
    })
    users = config.services["users"]
    assert users.retry is None
    assert users.health_check is not None
    assert users.health_check.dump(exclude_unset=True) == {}
    assert users.outlier_detection is None
    assert "outlier_detection" in users.arguments()  # written as off, not left out
    assert users.circuit_breaker is not None
    mesh = mesh_from_config(path, environ={"MESHLITE_SERVICES__USERS__RETRY": "false"})
    assert [type(p).__name__ for p in mesh.service("users").pipeline.walk()] == [
        "Pipeline", "Timeout"]


def test_env_overrides_reach_every_top_level_section(write_config: Any) -> None:
    # Every top-level key of the schema takes overrides, inbound: and metrics: too.
    from meshlite.config._schema import MeshConfig
    from meshlite.config._source import TOP_LEVEL_KEYS

    assert set(TOP_LEVEL_KEYS) == set(MeshConfig.__struct_fields__)
    path = write_config("""
        services: {}
        inbound:
          max_deadline: 30
          routes: [{pattern: "/*"}]
    """)
    config = load_config(path, environ={
        "MESHLITE_INBOUND__MAX_DEADLINE": "5",
        "MESHLITE_METRICS__SERVICE_LABEL": "mesh_service",
    })
    assert config.inbound is not None
    assert config.inbound.max_deadline == 5.0
    assert config.metrics is not None
    assert config.metrics.service_label == "mesh_service"


def test_env_override_error_names_the_variable(write_config: Any) -> None:
    path = write_config("services: {users: {backends: [a], retry: {attempts: 2}}}")
    with pytest.raises(ml.ConfigError) as info:
        load_config(path, environ={"MESHLITE_SERVICES__USERS__RETRY__ATTEMPTS": "zero"})
    [error] = info.value.errors
    assert error.startswith("services.users.retry.attempts: must be a valid integer")
    assert error.endswith("(from MESHLITE_SERVICES__USERS__RETRY__ATTEMPTS)")
    assert "zero" not in error  # a value from the environment is masked


def test_secrets_are_masked_in_every_error(tmp_path: Path) -> None:
    # In a directory named like pytest's own ("pytest-3"): the check must not depend on it.
    (tmp_path / "pytest-3").mkdir()
    path = str(tmp_path / "pytest-3" / "mesh.yaml")
    write_text(path, """
        services:
          users:
            backends: ["http://${HOST}:1", {url: "http://b:1", weight: "${W}"}]
            circuit_breaker: {name: "${TOKEN}", window_type: "${TOKEN}"}
        dashboard: {host: 0.0.0.0, token: "${TOKEN}", port: "${TOKEN}"}
    """)
    env = {"HOST": "db.internal", "W": "-3", "TOKEN": SECRET}
    with pytest.raises(ml.ConfigError) as info:
        load_config(path, environ=env)
    # Without the file's path, which may hold anything ("pytest-3", "-30"...).
    text = (str(info.value) + repr(info.value.errors)).replace(path, "<path>")
    assert SECRET not in text
    assert "db.internal" not in text
    assert "-3" not in text
    assert "services.users.circuit_breaker.window_type: must be 'count' or 'time', got " \
           "'***'" in info.value.errors
    assert "services.users.backends[1].weight: must be > 0, got ***" in info.value.errors
    assert any(e.startswith("dashboard.port:") and "***" in e for e in info.value.errors)


def test_secrets_are_masked_in_check_output_and_masked_config(write_config: Any) -> None:
    path = write_config("""
        services:
          users: {backends: ["http://127.0.0.5:8001/${PASSWORD}"]}
        dashboard: {port: 0, token: "${PASSWORD}"}
    """)
    env = {"PASSWORD": SECRET}
    out = io.StringIO()
    assert run_check(path, out, environ=env) == 0
    assert SECRET not in out.getvalue()
    assert "http://127.0.0.5:8001/***" in out.getvalue()
    mesh = ml.Mesh.from_config(path, environ=env)
    shown = masked_config(mesh)
    assert shown is not None
    assert SECRET not in repr(shown)
    assert shown["dashboard"]["token"] == "***"
    # the running mesh itself uses the real value
    assert mesh.service("users").backends[0].address == f"http://127.0.0.5:8001/{SECRET}"
