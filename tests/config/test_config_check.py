"""`meshlite check CONFIG` (run_check): summary table and exit codes; and the complete
example of docs/config.md, which must stay valid."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meshlite.config._check import EXIT_INVALID, EXIT_OK, EXIT_UNREADABLE, run_check

DOCS = Path(__file__).parents[2] / "docs" / "config.md"

VALID = """
services:
  users:
    backends: ["http://127.0.0.1:8001", {url: "http://127.0.0.1:8002", weight: 2}]
    balancer: p2c_ewma
    timeout: 2.0
    retry: {attempts: 3}
    circuit_breaker: {failure_rate: 0.5, window: 50, min_calls: 10, open_seconds: 10}
    health_check: {path: /healthz}
  orders:
    backends: ["http://o1:1", "http://o2:1", "http://o3:1"]
    depends_on: users
dashboard: {port: 0}
alerts: [{name: errors, condition: error_rate, threshold: 0.05}]
hot_reload: true
"""


def test_valid_config_prints_a_summary(write_config: Any) -> None:
    out = io.StringIO()
    assert run_check(write_config(VALID), out, environ={}) == EXIT_OK
    text = out.getvalue()
    assert "valid, 2 services" in text
    header = next(line for line in text.splitlines() if line.startswith("service"))
    assert re.split(r"\s{2,}", header) == ["service", "backends", "balancer", "policies",
                                          "discovery", "health check", "depends on"]
    users = next(line for line in text.splitlines() if line.startswith("users"))
    assert "http://127.0.0.1:8001, http://127.0.0.1:8002" in users
    assert "timeout, retry, circuit_breaker" in users
    assert "p2c_ewma" in users
    orders = next(line for line in text.splitlines() if line.startswith("orders"))
    assert "(+1 more)" in orders
    assert "retry (default)" in orders
    assert "alerts: errors" in text
    assert "hot reload: on" in text


def test_invalid_config_exits_2_listing_every_problem(write_config: Any) -> None:
    out, err = io.StringIO(), io.StringIO()
    path = write_config(VALID.replace("attempts: 3", "attempts: 0").replace(
        "balancer: p2c_ewma", "balancer: best"))
    assert run_check(path, out, err, environ={}) == EXIT_INVALID
    assert out.getvalue() == ""
    assert "2 problems in the config" in err.getvalue()
    assert "  - services.users.retry.attempts: must be >= 1, got 0" in err.getvalue()
    assert "  - services.users.balancer: must be one of" in err.getvalue()


def test_unparsable_config_is_invalid(write_config: Any) -> None:
    out = io.StringIO()
    assert run_check(write_config("services: [", "bad.yaml"), out, environ={}) == EXIT_INVALID


def test_unreadable_config_exits_2(tmp_path: Path) -> None:
    out = io.StringIO()
    assert EXIT_UNREADABLE == EXIT_INVALID == 2  # as `meshlite dashboard` does
    assert run_check(str(tmp_path / "nope.yaml"), out, environ={}) == EXIT_UNREADABLE
    assert "cannot read the config file" in out.getvalue()
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert run_check(str(binary), io.StringIO(), environ={}) == EXIT_UNREADABLE


@pytest.mark.parametrize("command", ["check", "dashboard"])
def test_missing_config_exits_2_in_every_command(tmp_path: Path, command: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from meshlite.cli import main

    assert main([command, str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read the config file" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "said"), [
    (["bench", "--calls", "0"], "argument --calls: must be a whole number >= 1, got '0'"),
    (["bench", "--calls", "-5"], "must be a whole number >= 1, got '-5'"),
    (["demo", "--requests", "0"], "argument --requests: must be a whole number >= 1"),
    (["demo", "--fault-rate", "1.5"], "argument --fault-rate: must be a number in [0, 1]"),
    (["dashboard", "x.yaml", "--max-clients", "0"], "argument --max-clients: must be"),
])
def test_a_count_out_of_range_is_a_usage_error(argv: list[str], said: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # --calls 0 divided by zero in a traceback; -5 printed negative times, exit 0
    from meshlite.cli import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


def test_check_piped_into_head_ends_quietly(write_config: Any) -> None:
    path = write_config("services:\n" + "".join(
        f"  s{i}: {{backends: ['http://10.0.0.{i % 250 + 1}:8080']}}\n" for i in range(2000)))
    done = subprocess.run(f"'{sys.executable}' -m meshlite check '{path}' | head -1",
                          shell=True, capture_output=True, text=True, check=False)
    assert done.stdout == f"{path}: valid, 2000 services\n"
    assert "Traceback" not in done.stderr, done.stderr
    assert "BrokenPipe" not in done.stderr


def test_module_entry_point(write_config: Any) -> None:
    path = write_config(VALID)
    done = subprocess.run([sys.executable, "-m", "meshlite.config._check", path],
                          capture_output=True, text=True, check=False)
    assert done.returncode == EXIT_OK, done.stderr
    assert "valid, 2 services" in done.stdout


def _complete_example() -> str:
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(r"<!-- complete example -->\s*```yaml\n(.*?)```", text, re.S)
    assert match is not None, "docs/config.md lost its complete example"
    return match.group(1)


def test_docs_complete_example_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(_complete_example(), encoding="utf-8")
    (tmp_path / "backends.json").write_text('["http://127.0.0.1:9100"]', encoding="utf-8")
    env = {"USERS_HOST": "127.0.0.1", "DASHBOARD_TOKEN": "t0ken-for-the-docs"}
    out = io.StringIO()
    assert run_check(str(path), out, environ=env) == EXIT_OK, out.getvalue()
    assert run_check(str(path), io.StringIO(),
                     environ={**env, "MESHLITE_ENV": "prod"}) == EXIT_OK
    assert "t0ken-for-the-docs" not in out.getvalue()


def test_an_alert_rule_naming_a_service_not_in_the_file_is_a_warning(
        write_config: Any) -> None:
    """The application may register that service in code, which check cannot see."""
    path = write_config("""
services:
  gamma: {backends: ["http://127.0.0.1:9"]}
alerts: [{name: alpha-errors, condition: error_rate, threshold: 0.5, service: alpha},
         {name: gamma-errors, condition: error_rate, threshold: 0.5, service: gamma}]
""")
    out = io.StringIO()
    assert run_check(path, out, environ={}) == EXIT_OK
    [warning] = [line for line in out.getvalue().splitlines() if "warning" in line]
    assert warning.startswith("warning: alert rule 'alpha-errors' names service 'alpha', "
                              "which is not in this file (services: gamma)")
    assert "registers it in code (check cannot see those)" in warning
