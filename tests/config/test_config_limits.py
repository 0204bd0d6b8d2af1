"""Malformed and hostile config files: every one is a ConfigError naming where, within
limits of size, nesting and YAML alias expansion, with messages that stay short and
never show a secret; `meshlite check` exits 2 and a reload is rejected and recorded."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import meshlite as ml
from meshlite.config import load_config
from meshlite.config._check import EXIT_INVALID, run_check
from meshlite.config._source import MAX_CONFIG_BYTES, MAX_CONFIG_VALUES
from meshlite.discovery import _yaml

SERVICE = "services:\n  users:\n    backends: ['http://127.0.0.1:1']\n"


def write(path: str, text: str) -> None:
    Path(path).write_text(text, encoding="utf-8")


def errors_of(path: str) -> list[str]:
    with pytest.raises(ml.ConfigError) as info:
        load_config(path, environ={})
    return list(info.value.errors) or [str(info.value)]


@pytest.mark.parametrize(("text", "where"), [
    (SERVICE + "    retry: {backoff: 100ms}\n", "services.users.retry.backoff.delay:"),
    (SERVICE + "    retry: {backoff: true}\n", "services.users.retry.backoff.delay:"),
    (SERVICE + "    retry: {backoff: [1, 2]}\n", "services.users.retry.backoff.delay:"),
    (SERVICE + "    retry: {backoff: {type: constant}}\n",
     "services.users.retry.backoff.delay: required option is missing"),
    (SERVICE + "    discovery: {type: [static]}\n", "services.users.discovery.type:"),
    (SERVICE + "    discovery: {type: {a: 1}}\n", "services.users.discovery.type:"),
])
def test_malformed_values_are_config_errors_with_their_path(
        write_config: Any, text: str, where: str) -> None:
    path = write_config(text)
    assert any(e.startswith(where) for e in errors_of(path))
    assert run_check(path, io.StringIO(), environ={}) == EXIT_INVALID  # not a traceback


@pytest.mark.parametrize(("name", "text"), [
    ("deep.json", '{"services": ' + "[" * 50_000 + "]" * 50_000 + "}"),
    ("deep.toml", "services = " + "[" * 50_000 + "]" * 50_000),
    ("deep.yaml", "services: " + "[" * 50_000 + "]" * 50_000),
    ("nested.json", '{"services": ' + "[" * 100 + "]" * 100 + "}"),
])
def test_deep_nesting_is_a_config_error(write_config: Any, name: str, text: str) -> None:
    [error] = errors_of(write_config(text, name))
    assert "nested too deeply" in error or "nesting depth" in error


def test_without_libyamls_depth_limit_the_composer_used_refuses_deep_nesting() -> None:
    # Before PyYAML 6.0.4 libyaml composes in C with no depth limit: the file above
    # crashed the process (SIGSEGV). There, PyYAML's own composer reads every file.
    loaders = _yaml._make_loader()
    assert _yaml._caps_nesting(yaml.CSafeLoader) or loaders[0] is loaders[-1]
    with pytest.raises((RecursionError, yaml.YAMLError)):  # not a crash
        yaml.load("[" * 50_000 + "]" * 50_000, Loader=loaders[-1])


def test_a_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(SERVICE + "# " + "x" * MAX_CONFIG_BYTES + "\n", encoding="utf-8")
    [error] = errors_of(str(path))
    assert "too large" in error
    assert f"at most {MAX_CONFIG_BYTES:,}" in error


BOMB = """
a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
services: {users: {backends: [http://127.0.0.1:1], metadata: *i}}
"""


def test_a_yaml_alias_bomb_is_refused(write_config: Any) -> None:
    assert len(BOMB.encode()) < 600  # stands for ten billion values
    [error] = errors_of(write_config(BOMB))
    assert f"more than {MAX_CONFIG_VALUES:,} values" in error


def test_a_recursive_yaml_alias_is_refused(write_config: Any) -> None:
    [error] = errors_of(write_config("services: &s {users: {backends: *s}}\n"))
    assert "nested too deeply" in error


def test_aliases_within_the_limits_still_work(write_config: Any) -> None:
    path = write_config("""
        services:
          users: {backends: &backends ["http://127.0.0.1:1", "http://127.0.0.1:2"]}
          orders: {backends: *backends}
    """)
    loaded = load_config(path, environ={})
    assert [b.url for b in loaded.services["orders"].backends] == [
        "http://127.0.0.1:1", "http://127.0.0.1:2"]


def test_huge_bad_values_give_short_messages(write_config: Any) -> None:
    huge = "x" * 1_000_000
    path = write_config(json.dumps({
        "services": {"users": {"backends": ["http://127.0.0.1:1"], "balancer": huge},
                     huge: {"backends": 5}}}), "huge.json")
    with pytest.raises(ml.ConfigError) as info:
        load_config(path, environ={})
    assert len(str(info.value)) < 2_000
    assert all(len(e) <= 400 for e in info.value.errors)
    assert any("more characters" in e for e in info.value.errors)


def test_many_problems_are_counted_not_all_listed(write_config: Any) -> None:
    services = {f"s{i}": {"backends": ["http://127.0.0.1:1"], "balancer": "nope"}
                for i in range(5_000)}
    with pytest.raises(ml.ConfigError) as info:
        load_config(write_config(json.dumps({"services": services}), "many.json"), environ={})
    text = str(info.value)
    assert "5000 problems in the config" in text.splitlines()[0].replace(",", "")
    assert "and 4,950 more" in text
    assert len(text) < 20_000
    assert len(info.value.errors) <= 100


@pytest.mark.parametrize(("text", "secret"), [
    ("dashboard: {token: 1234567890123456789}\n", "1234567890123456789"),
    ("dashboard: {token: [hunter2hunter2]}\n", "hunter2hunter2"),
    (SERVICE + "    tls: {key_password: 987654321987}\n", "987654321987"),
])
def test_a_secret_field_is_never_echoed(write_config: Any, text: str, secret: str) -> None:
    errors = errors_of(write_config(text))
    assert any("not shown (a secret)" in e for e in errors)
    assert all(secret not in e for e in errors)


async def test_a_malformed_reload_is_rejected_and_recorded(write_config: Any) -> None:
    path = write_config(SERVICE)
    mesh = ml.Mesh.from_config(path, environ={})
    async with mesh:
        write(path, SERVICE + "    retry: {backoff: {type: constant}}\n")
        assert await mesh.reload() is False  # not a TypeError
        [error] = mesh.reload_errors
        assert "services.users.retry.backoff.delay: required option is missing" in error.errors
        write(path, BOMB)
        assert await mesh.reload() is False
        assert "values" in str(mesh.reload_errors[-1])
        assert mesh.config_version == 0


def test_masked_config_hides_secret_fields_written_in_the_file(write_config: Any) -> None:
    from meshlite.config import masked_config

    path = write_config(SERVICE + "dashboard: {enabled: false, token: written-in-the-file}\n")
    shown = masked_config(ml.Mesh.from_config(path, environ={}))
    assert shown is not None
    assert shown["dashboard"]["token"] == "***"
    assert "written-in-the-file" not in repr(shown)


def test_masked_config_hides_headers_url_passwords_and_webhook_paths(
        write_config: Any) -> None:
    # docs/config.md: what a dashboard or an audit record shows. Header values are
    # never shown (docs/security.md), nor a password or token a URL carries.
    from meshlite.config import config_of, masked_config

    path = write_config("""\
services:
  users:
    backends: ["http://127.0.0.1:8001"]
    headers: {Cookie: "sid=Lit_SECRET_1", X-Api-Key: Lit_SECRET_2, Authorization: "${API_TOKEN}"}
    health_check: {path: "/healthz?token=Lit_SECRET_3&verbose=1"}
inbound:
  store: "redis://:Lit_SECRET_4@127.0.0.1:6379/0"
  routes: [{pattern: "/x", rate: 5}]
alerts:
  webhook: "https://127.0.0.1:9/services/T0/B0/Lit_SECRET_5?token=Lit_SECRET_6"
  rules: [{name: brk, condition: breaker_open}]
dashboard: {enabled: false}
""")
    mesh = ml.Mesh.from_config(path, environ={"API_TOKEN": "Env_SECRET_7"}, dashboard=False)
    shown = masked_config(mesh)
    assert shown is not None
    assert "SECRET" not in repr(shown)
    assert "SECRET" not in repr(config_of(mesh))  # the model, logged whole by a user
    assert "Cookie" in repr(config_of(mesh))
    users = shown["services"]["users"]
    assert users["headers"] == {"Cookie": "***", "X-Api-Key": "***", "Authorization": "***"}
    assert users["health_check"]["path"] == "/healthz?token=***&verbose=1"
    assert shown["inbound"]["store"] == "redis://:***@127.0.0.1:6379/0"
    assert shown["alerts"]["webhook"] == "https://127.0.0.1:9/..."
    assert users["backends"] == [{"url": "http://127.0.0.1:8001"}]  # the rest as it is
