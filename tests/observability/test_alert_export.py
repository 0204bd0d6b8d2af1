"""``meshlite alerts export CONFIG``: the config's alert rules as Prometheus rules,
checked by ``promtool check rules`` and run by ``promtool test rules`` against
series shaped like meshlite's ``/metrics``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from _system import require_program

from meshlite.cli import main

CONFIG = """
services:
  users: {backends: ["http://127.0.0.1:81"]}
  orders: {backends: ["http://127.0.0.1:82"]}
alerts:
  - {name: users-errors, condition: error_rate, threshold: 0.2, window: 10,
     service: users, severity: critical}
  - {name: slow, condition: p99, threshold: 0.25, for_seconds: 2.5, window: 60}
  - {name: breaker, condition: breaker_open, for_seconds: 3, resolve_seconds: 5}
  - {name: no-backend, condition: no_healthy_backend}
"""

# Three seconds of breaker flapping, then closed from t=21; users fails half its calls.
UNIT = """
rule_files: [rules.yaml]
evaluation_interval: 1s
tests:
  - interval: 1s
    input_series:
      - series: 'meshlite_circuit_breaker_state{service="users",breaker="db",state="open"}'
        values: '0 1 1 1 1 1 1 1 0 1 1 1 1 1 1 1 1 1 1 1 1 0 0 0 0 0 0 0 0 0 0'
      - series: 'meshlite_requests_total{service="users"}'
        values: '0+10x30'
      - series: 'meshlite_request_errors_total{service="users",error="ConnectionError"}'
        values: '0+5x30'
    alert_rule_test:
      - {eval_time: 3s, alertname: breaker, exp_alerts: []}
      - &firing
        eval_time: 6s
        alertname: breaker
        exp_alerts:
          - exp_labels: {severity: warning, meshlite_rule: breaker, service: users}
            exp_annotations: {summary: "users: a circuit breaker is open"}
      - {<<: *firing, eval_time: 8s}
      - {<<: *firing, eval_time: 24s}
      - {eval_time: 28s, alertname: breaker, exp_alerts: []}
      - eval_time: 15s
        alertname: users_errors
        exp_alerts:
          - exp_labels: {severity: critical, meshlite_rule: users-errors, service: users}
            exp_annotations: {summary: "users: error rate > 20.0% over 10s"}
"""


@pytest.fixture
def rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    config = tmp_path / "mesh.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    assert main(["alerts", "export", str(config)]) == 0
    out = tmp_path / "rules.yaml"
    out.write_text(capsys.readouterr().out, encoding="utf-8")
    return out


def test_export_maps_every_field(rules: Path) -> None:
    [group] = yaml.safe_load(rules.read_text())["groups"]
    by_name = {r["labels"]["meshlite_rule"]: r for r in group["rules"]}
    assert [r["alert"] for r in group["rules"]] == [
        "users_errors", "slow", "breaker", "no_backend"]  # valid Prometheus names
    assert (by_name["breaker"]["for"], by_name["breaker"]["keep_firing_for"]) == ("3s", "5s")
    assert by_name["slow"]["for"] == "2500ms"
    assert "keep_firing_for" not in by_name["slow"]
    assert 'service="users"' in by_name["users-errors"]["expr"]
    assert "service=" not in by_name["slow"]["expr"]  # every service: by (service)
    assert by_name["users-errors"]["labels"]["severity"] == "critical"


def test_promtool_accepts_the_rules(rules: Path) -> None:
    promtool = require_program("promtool", "prometheus")
    result = subprocess.run([promtool, "check", "rules", str(rules)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_prometheus_fires_and_resolves_them_as_the_dashboard_does(rules: Path) -> None:
    promtool = require_program("promtool", "prometheus")
    unit = rules.parent / "unit.yaml"
    unit.write_text(UNIT, encoding="utf-8")
    result = subprocess.run([promtool, "test", "rules", str(unit)], cwd=rules.parent,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# Scraped every 15 s (docs/metrics.md's scrape config): users fails half its calls.
SCRAPED = """
rule_files: [rules.yaml]
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'meshlite_requests_total{service="users"}'
        values: '0+150x20'
      - series: 'meshlite_request_errors_total{service="users",error="ConnectionError"}'
        values: '0+75x20'
    alert_rule_test:
      - eval_time: 2m
        alertname: users_errors
        exp_alerts:
          - exp_labels: {severity: critical, meshlite_rule: users-errors, service: users}
            exp_annotations: {summary: "users: error rate > 20.0% over 10s"}
"""


@pytest.mark.parametrize("flag", [[], ["--scrape-interval", "15"]])
def test_rules_fire_when_scraped_less_often_than_their_window(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: list[str]) -> None:
    """A rate over a range shorter than two scrapes is empty, and its alert never
    fires: each range is at least four scrape intervals (60 s, Prometheus's
    default, unless told)."""
    promtool = require_program("promtool", "prometheus")
    config = tmp_path / "mesh.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    assert main(["alerts", "export", str(config), *flag]) == 0
    text = capsys.readouterr().out
    (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
    expected = "[60s]" if flag else "[240s]"
    assert f"rate(meshlite_requests_total{{service=\"users\"}}{expected})" in text
    unit = tmp_path / "unit.yaml"
    unit.write_text(SCRAPED, encoding="utf-8")
    result = subprocess.run([promtool, "test", "rules", str(unit)], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_bad_scrape_interval_is_refused(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    with pytest.raises(SystemExit) as done:
        main(["alerts", "export", str(config), "--scrape-interval", "0"])
    assert done.value.code == 2
    assert "--scrape-interval: must be a number of seconds > 0, got '0'" in (
        capsys.readouterr().err)


def test_an_invalid_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text("services: {}\nalerts: [{name: x, condition: nope}]\n", encoding="utf-8")
    assert main(["alerts", "export", str(config)]) == 2
    assert "condition" in capsys.readouterr().err
    assert main(["alerts", "export", str(tmp_path / "missing.yaml")]) == 2


def test_a_config_without_rules_exports_an_empty_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text("services: {}\n", encoding="utf-8")
    assert main(["alerts", "export", str(config)]) == 0
    captured = capsys.readouterr()
    assert yaml.safe_load(captured.out) == {"groups": []}
    assert "no alert rules" in captured.err
