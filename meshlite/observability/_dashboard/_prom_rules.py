"""``meshlite alerts export CONFIG``: a config's alert rules as Prometheus alerting
rules, for teams that alert with Prometheus and Alertmanager.

Each :class:`AlertRule` becomes one rule over meshlite's own series (what
``/metrics`` exposes), aggregated ``by (service)`` so a rule for every service
raises one alert per service, as the dashboard does; ``for_seconds`` becomes
``for``, ``resolve_seconds`` ``keep_firing_for`` (Prometheus >= 2.42), the
severity a label. Error rates and latencies are measured on calls (all attempts
of a call count once), over the rule's ``window``, and at least four scrape
intervals: a ``rate()`` over a range holding fewer than two scrapes is empty, and
its alert would never fire.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from ._rules import AlertRule

__all__ = ["DEFAULT_SCRAPE_INTERVAL", "alert_expression", "prometheus_rules", "run_export"]

_NAME_OK = re.compile(r"[^a-zA-Z0-9_]")

DEFAULT_SCRAPE_INTERVAL = 60.0
"""Seconds between scrapes assumed by default: Prometheus's own default."""

_SCRAPES_PER_RANGE = 4  # Prometheus's advice: a rate's range spans four scrapes


def _duration(seconds: float) -> str:
    """A Prometheus duration (integers only): ``30s``, or ``2500ms``."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def _selector(rule: AlertRule, extra: str = "") -> str:
    matchers = [] if rule.service is None else [f'service="{rule.service}"']
    if extra:
        matchers.append(extra)
    return "{" + ",".join(matchers) + "}" if matchers else ""


def alert_expression(rule: AlertRule,
                     scrape_interval: float = DEFAULT_SCRAPE_INTERVAL) -> str:
    """The PromQL expression that holds when ``rule``'s condition does, over its
    window or four ``scrape_interval`` seconds, whichever is longer."""
    sel = _selector(rule)
    window = _duration(max(rule.window, _SCRAPES_PER_RANGE * scrape_interval))
    enough = (f"sum by (service) (increase(meshlite_requests_total{sel}[{window}])) "
              f">= {rule.min_requests}")
    if rule.condition == "error_rate":
        return (f"(sum by (service) (rate(meshlite_request_errors_total{sel}[{window}]))"
                f" / sum by (service) (rate(meshlite_requests_total{sel}[{window}])))"
                f" > {rule.threshold!r} and on (service) {enough}")
    if rule.condition == "p99":
        return (f"histogram_quantile(0.99, sum by (service, le) "
                f"(rate(meshlite_request_duration_seconds_bucket{sel}[{window}])))"
                f" > {rule.threshold!r} and on (service) {enough}")
    if rule.condition == "breaker_open":
        states = _selector(rule, 'state=~"open|forced_open"')
        return f"max by (service) (meshlite_circuit_breaker_state{states}) > 0"
    return (f"max by (service) (meshlite_service_panic{sel}) > 0 or "
            f"max by (service) (meshlite_service_available_backends{sel}) == 0")


def _rule(rule: AlertRule, scrape_interval: float) -> dict[str, Any]:
    name = _NAME_OK.sub("_", rule.name)
    if not name[0].isalpha() and name[0] != "_":
        name = "_" + name
    out: dict[str, Any] = {"alert": name, "expr": alert_expression(rule, scrape_interval)}
    if rule.for_seconds:
        out["for"] = _duration(rule.for_seconds)
    if rule.resolve_seconds:
        out["keep_firing_for"] = _duration(rule.resolve_seconds)
    out["labels"] = {"severity": rule.severity, "meshlite_rule": rule.name}
    out["annotations"] = {"summary": "{{ $labels.service }}: " + rule.describe()}
    return out


def prometheus_rules(rules: Iterable[AlertRule], group: str = "meshlite",
                     scrape_interval: float = DEFAULT_SCRAPE_INTERVAL) -> dict[str, Any]:
    """The rule file (as data) holding ``rules`` in one group named ``group``, for a
    Prometheus scraping every ``scrape_interval`` seconds."""
    listed = [_rule(r, scrape_interval) for r in rules]
    return {"groups": [{"name": group, "rules": listed}] if listed else []}


def run_export(path: str, out: TextIO, err: TextIO | None = None, *,
               group: str = "meshlite",
               scrape_interval: float = DEFAULT_SCRAPE_INTERVAL) -> int:
    """Print the alert rules of config ``path`` as a Prometheus rule file, for a
    Prometheus scraping every ``scrape_interval`` seconds.

    Returns:
        0 when printed, 2 when the config is invalid or cannot be read.
    """
    import yaml

    from ..._errors import ConfigError
    from ...config._check import EXIT_INVALID, EXIT_UNREADABLE
    from ...config._load import load_plan

    err = sys.stderr if err is None else err
    try:
        plan = load_plan(path)
    except ConfigError as error:
        err.write(f"{error}\n")
        unreadable = isinstance(error.__cause__, OSError | UnicodeDecodeError)
        return EXIT_UNREADABLE if unreadable else EXIT_INVALID
    alerts = plan.top.alerts
    rules = () if alerts is None else alerts.rules
    if not rules:
        err.write(f"{path}: no alert rules (an alerts: section lists them)\n")
    out.write(f"# Prometheus alerting rules from {path} (meshlite alerts export)\n"
              f"# ranges: each rule's window, and at least {_SCRAPES_PER_RANGE} scrapes of "
              f"{_duration(scrape_interval)} (--scrape-interval)\n")
    out.write(yaml.safe_dump(prometheus_rules(rules, group, scrape_interval),
                             sort_keys=False, width=1000))
    return 0
