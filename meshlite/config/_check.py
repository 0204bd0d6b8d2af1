"""``meshlite check CONFIG``: validate a config file and print what it describes.

Exit codes: 0 valid, 2 invalid (every problem is printed) or unreadable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import TextIO

from .._console import render_table
from .._errors import ConfigError
from .._printable import url_shown
from ._build import Plan, ServicePlan
from ._load import load_plan
from ._policies import DEFAULT_SPEC

__all__ = ["EXIT_INVALID", "EXIT_OK", "EXIT_UNREADABLE", "main", "run_check",
           "unknown_alert_services"]

EXIT_OK = 0
EXIT_INVALID = 2
EXIT_UNREADABLE = EXIT_INVALID
"""A config that cannot be read is an invalid config: exit 2, in every command."""

_SHOWN_BACKENDS = 2


def _backends(plan: ServicePlan, mask: Callable[[str], str]) -> str:
    addresses = [mask(b.address) for b in plan.service.backends]
    shown = ", ".join(addresses[:_SHOWN_BACKENDS])
    if len(addresses) > _SHOWN_BACKENDS:
        shown += f" (+{len(addresses) - _SHOWN_BACKENDS} more)"
    return shown or "-"


def _policies(plan: ServicePlan) -> str:
    if any(spec is DEFAULT_SPEC for spec, _ in plan.policies.values()):
        return "retry (default)"
    return ", ".join(plan.policies) or "none"


def _row(plan: ServicePlan, mask: Callable[[str], str]) -> list[object]:
    service = plan.service
    return [
        plan.name,
        _backends(plan, mask),
        getattr(service.balancer, "name", type(service.balancer).__name__),
        _policies(plan),
        plan.discovery.kind if plan.discovery is not None else "static",
        "yes" if service.health_check is not None else "no",
        ", ".join(service.depends_on) or "-",
    ]


def summary(plan: Plan) -> str:
    """The table of services and the lines about the other sections."""
    mask = plan.document.secrets.mask
    rows = [_row(sp, mask) for sp in plan.services.values()]
    table = render_table(["service", "backends", "balancer", "policies", "discovery",
                          "health check", "depends on"], rows)
    config = plan.config
    lines = [table, ""]
    if plan.document.profile:
        lines.append(f"profile: {plan.document.profile}")
    if plan.top.telemetry is not None:
        endpoint = plan.top.telemetry.get("otlp_endpoint") or "from OTEL_* variables"
        lines.append(f"telemetry: {mask(url_shown(str(endpoint)))}")
    if config.dashboard is not None and config.dashboard.enabled:
        lines.append(mask(f"dashboard: http://{config.dashboard.host}:{config.dashboard.port}"))
    if plan.top.alerts is not None and plan.top.alerts.rules:
        lines.append(f"alerts: {', '.join(r.name for r in plan.top.alerts.rules)}")
        lines.extend(unknown_alert_services(plan))
    lines.append(f"hot reload: {'on' if config.hot_reload.enabled else 'off'}")
    if plan.document.empty:
        lines.append("warning: the file has no section (empty, or comments only): a mesh "
                     "of no service here, but a reload refuses it as a file caught "
                     "half-saved; a mesh meant to have no service says `services: {}`")
    if plan.top.audit is not None:
        lines.append(mask(f"audit: {plan.top.audit}"))
    if plan.top.inbound is not None:
        inbound = plan.top.inbound
        routes = ", ".join(r.pattern for r in inbound.routes) or "none"
        lines.append(mask(f"inbound routes: {routes}"
                          + ("; credentials checked" if inbound.auth is not None else "")))
    return "\n".join(lines)


def unknown_alert_services(plan: Plan) -> list[str]:
    """A warning line per alert rule naming a service the file does not define: it
    may be one the application registers in code, which a check of the file cannot
    see, so it is not an error (a typo is one, though)."""
    rules = () if plan.top.alerts is None else plan.top.alerts.rules
    return [f"warning: alert rule {r.name!r} names service {r.service!r}, which is not in "
            f"this file (services: {', '.join(plan.services) or 'none'}); fine if the "
            "application registers it in code (check cannot see those), else a typo: "
            "the rule is evaluated only once a service of that name exists"
            for r in rules if r.service is not None and r.service not in plan.services]


def run_check(path: str, out: TextIO, err: TextIO | None = None, *,
              environ: Mapping[str, str] | None = None) -> int:
    """Validate ``path`` as a meshlite config and print a summary (or every problem).

    Args:
        path: The config file.
        out: Where the summary goes.
        err: Where problems go (default: ``out``).
        environ: Environment for interpolation, profile and overrides (default
            ``os.environ``).

    Returns:
        0 when valid, 2 when invalid or when the file cannot be read.
    """
    err = out if err is None else err
    try:
        plan = load_plan(os.fspath(path), environ=environ)
    except ConfigError as error:
        err.write(f"{error}\n")
        unreadable = isinstance(error.__cause__, OSError | UnicodeDecodeError)
        return EXIT_UNREADABLE if unreadable else EXIT_INVALID
    count = len(plan.services)
    out.write(f"{path}: valid, {count} service{'s' if count != 1 else ''}\n\n")
    out.write(summary(plan) + "\n")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m meshlite.config._check CONFIG``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m meshlite.config._check CONFIG\n")
        return EXIT_INVALID
    return run_check(args[0], sys.stdout, sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
