"""The mistakes of an operator's first config file, as ``meshlite check`` reports them:
a duration with a unit, a tab, a key at the wrong indentation, a terminal escape in a
key, a Redis URL whose password must not be shown, a dashboard with two bad options.
Each problem is named once, under its path, with what would be valid."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from typing import Any

import pytest

import meshlite as ml
from meshlite.config import load_config
from meshlite.config._check import EXIT_INVALID, run_check

PASSWORD = "hunter2hunter2"


def _errors(path: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ml.ConfigError) as info:
        load_config(path, environ=environ or {})
    return list(info.value.errors)


def test_a_duration_with_a_unit_says_how_to_write_it(write_config: Any) -> None:
    path = write_config("""
        services:
          users:
            backends: ["http://127.0.0.1:8001"]
            timeout: 5s
            circuit_breaker: {open_seconds: 10s, window: 10s, window_type: time}
            health_check: {interval: 500ms}
        hot_reload: {enabled: true, step_ms: 30ms}
        drain_timeout: 1m
        """)
    seconds = "write a duration in seconds as a bare number (5 for 5s, 0.5 for 500ms, 60 for 1m)"
    assert sorted(_errors(path)) == sorted([
        f"services.users.timeout.seconds: must be a valid number, got '5s'; {seconds}",
        f"services.users.circuit_breaker.open_seconds: must be a valid number, got '10s'; "
        f"{seconds}",
        f"services.users.circuit_breaker.window: must be a valid integer or a valid number, "
        f"got '10s'; {seconds}",
        f"services.users.health_check.interval: must be a valid number, got '500ms'; "
        f"{seconds}",
        "hot_reload.step_ms: must be a valid integer, got '30ms'; write a duration in "
        "milliseconds as a bare number (30 for 30ms, 1000 for 1s)",
        f"drain_timeout: must be a valid number, got '1m'; {seconds}",
    ])


def test_a_duration_from_the_environment_gets_the_hint_without_its_value(
        write_config: Any) -> None:
    path = write_config("services:\n  users:\n    backends: ['http://a:1']\n"
                        "    timeout: ${T}\n")
    (error,) = _errors(path, {"T": "2500ms"})
    assert error.startswith("services.users.timeout.seconds: must be a valid number, "
                            "got '***'; write a duration in seconds")
    assert "2500" not in error
    assert "2.5" not in error


def test_a_word_is_not_taken_for_a_duration(write_config: Any) -> None:
    path = write_config("services:\n  users: {backends: ['http://a:1'], timeout: soon}\n")
    assert _errors(path) == ["services.users.timeout.seconds: must be a valid number, "
                             "got 'soon'"]


@pytest.mark.parametrize(("text", "line"), [
    ("services:\n\tusers:\n\t\tbackends: ['http://a:1']\n", 2),
    ("services:\n  users:\n    backends: ['http://a:1']\n \t timeout: 2\n", 4),
])
def test_a_tab_in_the_indentation_is_named(write_config: Any, text: str,
                                          line: int) -> None:
    with pytest.raises(ml.ConfigError) as info:
        load_config(write_config(text), environ={})
    message = str(info.value)
    assert "not valid YAML" in message
    assert message.endswith(f"line {line} is indented with a tab: YAML indents with "
                            "spaces only")


def test_a_tab_between_a_key_and_its_value_is_fine(write_config: Any) -> None:
    config = load_config(write_config(
        "services:\n  users:\n    backends: ['http://a:1']\n    timeout:\t2\n"), environ={})
    assert config.services["users"].timeout is not None


def test_a_key_at_the_wrong_indentation_says_where_it_belongs(write_config: Any) -> None:
    path = write_config("""
        services:
          users:
            backends: ["http://127.0.0.1:8001"]
            retry:
            attempts: 3
            window: 10
            circuit_breaker: {failure_rate: 0.5, timeout: 2}
            hot_reload: true
          balancer: random
        timeout: 2
        """)
    errors = _errors(path)
    hints = {e.split(":", 1)[0]: e.rsplit("; ", 1)[1] for e in errors}
    assert hints == {
        "services.users.attempts": "attempts is an option of retry: move it into that "
                                   "section",
        "services.users.window": "window is an option of circuit_breaker or "
                                 "adaptive_concurrency: move it into that section",
        "services.users.circuit_breaker.timeout": "timeout is an option of the service: "
                                                  "move it up a level, beside this section",
        "services.users.hot_reload": "hot_reload is a top-level section: move it to the "
                                     "top level",
        "services.balancer": "balancer is an option of a service, read here as a "
                             "service's name: move it into its service (indented too "
                             "little?)",
        "timeout": "timeout is an option of a service: move it into one "
                   "(services.NAME.timeout)",
    }
    assert len(errors) == len(hints)  # each once


def test_a_typo_lists_the_valid_options_without_a_placement_hint(write_config: Any) -> None:
    path = write_config("services:\n  users: {backends: ['http://a:1'], retry: {atempts: 3}}\n")
    assert _errors(path) == ["services.users.retry.atempts: unknown option; valid options: "
                             "attempts, backoff, on, budget, respect_retry_after, "
                             "max_retry_after"]


def test_a_terminal_escape_in_a_key_is_shown_escaped(write_config: Any) -> None:
    path = write_config("""
        services:
          "us\\e[31mers":
            backends: ["http://127.0.0.1:8001"]
            depends_on: ["x\\e[2Jy"]
            retry: {"att\\e[1Aempts": 3}
        """)
    out, err = io.StringIO(), io.StringIO()
    assert run_check(path, out, err, environ={}) == EXIT_INVALID
    text = err.getvalue()
    assert "\x1b" not in text
    assert "services.us\\x1b[31mers.retry.att\\x1b[1Aempts: unknown option" in text
    assert "(services: us\\x1b[31mers)" in text
    assert all(line.startswith("  - ") for line in text.splitlines()[1:])


def test_a_newline_in_a_key_does_not_start_a_line(write_config: Any) -> None:
    path = write_config('services:\n  users:\n    backends: ["http://a:1"]\n'
                        '    "retry\\n  - services.users.fine": 3\n')
    (error,) = _errors(path)
    assert "\n" not in error
    assert error.startswith("services.users.retry\\n  - services.users.fine: unknown")


@pytest.mark.parametrize("url", [
    f"rediss//:{PASSWORD}@127.0.0.1/0",           # the colon of the scheme left out
    f"redis//default:{PASSWORD}@127.0.0.1:6379",
])
def test_a_malformed_redis_url_does_not_show_its_password(write_config: Any,
                                                         url: str) -> None:
    path = write_config(f"""
        services:
          users:
            discovery: {{type: redis, service: users, url: "{url}"}}
        """)
    errors = _errors(path)
    assert any(e.startswith("services.users.discovery.url: must be a redis://") for e in errors)
    assert not any(PASSWORD in e for e in errors), errors
    assert any(":***@127.0.0.1" in e for e in errors)


def test_check_in_a_process_does_not_print_a_url_password(write_config: Any) -> None:
    path = write_config(f"""
        services:
          users:
            discovery: {{type: redis, service: users, url: "rediss//:{PASSWORD}@h/0"}}
            rate_limit: {{rate: 10, per: 1s}}
        """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHLITE_")}
    done = subprocess.run([sys.executable, "-m", "meshlite", "check", path], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == EXIT_INVALID
    assert PASSWORD not in done.stdout + done.stderr
    assert "2 problems in the config" in done.stderr


def test_a_bad_dashboard_port_hides_no_token_problem(write_config: Any) -> None:
    path = write_config('dashboard: {token: "short", port: 99999}\n')
    assert _errors(path) == [
        "dashboard.port: must be an integer in [0, 65535] (0 picks a free port), got 99999",
        "dashboard.token: must be None or a string of at least 16 characters without "
        "spaces, got a value not shown (a secret) (make one with python -c 'import "
        "secrets; print(secrets.token_urlsafe(32))')",
    ]


@pytest.mark.parametrize("token", ['"short"', '["averyveryverylongsecrettoken"]'])
def test_a_refused_token_off_loopback_is_one_problem(write_config: Any, token: str) -> None:
    path = write_config(f"dashboard: {{host: 0.0.0.0, token: {token}}}\n")
    (error,) = _errors(path)
    assert error.startswith("dashboard.token: must be ")
    assert "averyvery" not in error
    assert "short" not in error


def test_no_token_off_loopback_is_still_refused(write_config: Any) -> None:
    path = write_config("dashboard: {host: 0.0.0.0, port: 99999}\n")
    errors = _errors(path)
    assert errors == ["dashboard.token: is required when the dashboard listens on "
                      "'0.0.0.0', which is not a loopback address; set a token or host: "
                      "127.0.0.1"]


def test_a_thousand_problems_are_counted_with_a_separator(write_config: Any) -> None:
    services = "".join(f"  s{i}: {{backends: ['http://a:1'], retry: {{attempts: 0}}}}\n"
                       for i in range(1200))
    with pytest.raises(ml.ConfigError) as info:
        load_config(write_config("services:\n" + services), environ={})
    assert str(info.value).splitlines()[0].endswith(": 1,200 problems in the config")


@pytest.mark.parametrize("text", [
    "services:\n  users: {backends: ['http://a:1'], timeout: ${T}}\n",
    "services:\n  users: {backends: [http://${H}:1]}\n",
])
def test_an_unquoted_reference_in_braces_says_to_quote_it(write_config: Any,
                                                         text: str) -> None:
    with pytest.raises(ml.ConfigError) as info:
        load_config(write_config(text), environ={"T": "2", "H": "h"})
    assert str(info.value).endswith(
        "line 2: inside {...} or [...], quote a value that holds a reference (\"${VAR}\"): "
        "unquoted, YAML reads its braces as a mapping")


def test_a_quoted_reference_in_braces_loads(write_config: Any) -> None:
    path = write_config("services:\n  users: {backends: ['http://${H}:1'], timeout: '${T}'}\n")
    config = load_config(path, environ={"T": "2", "H": "h"})
    assert config.services["users"].backends[0].url == "http://h:1"


@pytest.mark.parametrize("text", ["", "# nothing yet\n"])
def test_check_warns_of_a_file_with_no_section(write_config: Any, text: str) -> None:
    out = io.StringIO()
    assert run_check(write_config(text), out, environ={}) == 0
    assert out.getvalue().splitlines()[-1].startswith(
        "warning: the file has no section (empty, or comments only): ")


def test_check_does_not_warn_of_a_mesh_of_no_service(write_config: Any) -> None:
    out = io.StringIO()
    assert run_check(write_config("services: {}\n"), out, environ={}) == 0
    assert "warning" not in out.getvalue()
