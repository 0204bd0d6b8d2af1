"""The sections beside ``services``: telemetry, dashboard, alerts, the mesh's options.

Each is checked by what it configures (``telemetry.configure``'s settings, the
dashboard's bind check, ``ml.AlertRule`` and ``Alerts``), none of which imports
the OpenTelemetry SDK or the dashboard's web server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from .._extras import install_command, is_missing_extra
from .._validate import non_negative
from ._fieldset import field_names
from ._inbound import InboundPlan, check_inbound
from ._problems import Path, Problems, construct, map_config_error
from ._schema import (
    AlertRuleSection,
    AlertsSection,
    AuditSection,
    DashboardSection,
    MeshConfig,
    TelemetrySection,
)

if TYPE_CHECKING:
    from ..observability._dashboard._rules import AlertRule

__all__ = ["AlertsPlan", "TopPlan", "check_top_level", "dashboard_token"]


@dataclass(frozen=True)
class AlertsPlan:
    """Alert rules built from the file, for ``mesh.alerts.replace``."""

    rules: tuple[AlertRule, ...]
    webhook: str | None
    webhook_timeout: float | None


@dataclass(frozen=True)
class TopPlan:
    """What the sections beside ``services`` ask for."""

    telemetry: dict[str, Any] | None
    alerts: AlertsPlan | None
    audit: str | None = None
    """The audit log's absolute path (``audit:``), or None."""
    inbound: InboundPlan | None = None
    """The inbound middleware's routes and auth (``inbound:``), or None."""


def _telemetry(section: TelemetrySection, problems: Problems,
               environ: Mapping[str, str]) -> dict[str, Any] | None:
    # Imported here: only configs with telemetry pay for it.
    from ..telemetry._settings import resolve

    args = section.arguments()

    def check(service_name: Any = None, otlp_endpoint: Any = None, console: Any = False,
              sample_ratio: Any = None) -> bool:
        settings = resolve(service_name, otlp_endpoint, console, sample_ratio, environ)
        if settings.enabled:  # what configure() will import: said before anything starts
            try:
                from ..telemetry import _sdk  # noqa: F401
            except ImportError as error:
                raise ConfigError(
                    "needs the OpenTelemetry SDK and OTLP exporter, not installed here "
                    f"(no module {error.name or error}): {install_command('otlp')}",
                    policy="telemetry") from None
        return True

    ok = construct(check, args, problems, ("telemetry",), field_names(TelemetrySection))
    return args if ok else None


def _dashboard(section: DashboardSection, problems: Problems, base: str,
               environ: Mapping[str, str] | None) -> None:
    if not section.enabled:
        return
    # Imported here: only configs with a dashboard pay for it (start-up time).
    from ..observability._dashboard import load_server
    from ..observability._dashboard._auth import check_bind, is_loopback

    try:  # what serving it will import: said before anything starts
        load_server()
    except ModuleNotFoundError as error:
        if not is_missing_extra(error):
            raise
        problems.add(("dashboard",), f"needs the 'dashboard' extra, not installed here (no "
                                     f"module {error.name}): {install_command('dashboard')}")
    from ..observability._dashboard._limits import Limits
    from ..observability._dashboard._tokens import resolve_token

    # A token the schema refused (a list) was left out: the problem is that token,
    # not a dashboard without one.
    refused = problems.about(("dashboard", "token")) or problems.about(
        ("dashboard", "admin_token"))
    if section.token is None and section.admin_token is None and not refused and not (
            is_loopback(section.host)):
        problems.add(("dashboard", "token"), f"is required when the dashboard listens on "
                                             f"{section.host!r}, which is not a loopback "
                                             "address; set a token or host: 127.0.0.1")
        return

    # Each option defaults to what the section's does: ``construct`` leaves a refused
    # option out and checks the rest again (a bad port hid a bad token).
    def check(host: Any = "127.0.0.1", port: Any = 8686, token: Any = None,
              admin_token: Any = None, max_clients: Any = 32, **limits: Any) -> bool:
        given = (token, admin_token)
        token = resolve_token(token, "token", environ=environ, base=base)
        admin_token = resolve_token(admin_token, "admin_token", environ=environ, base=base)
        for value in (token, admin_token):
            if value is not None:
                problems.secrets.add(value)  # read from a file or the environment
        if given == (None, None) and (refused or problems.about(("dashboard", "token"))
                                      or problems.about(("dashboard", "admin_token"))):
            host = "127.0.0.1"  # the token refused is the problem, said already
        check_bind(host, port, token, max_clients, admin_token)
        Limits(**limits)
        return True

    args = {k: v for k, v in section.arguments().items() if k != "enabled"}
    construct(check, {"host": section.host, "port": section.port, **args}, problems,
              ("dashboard",), field_names(DashboardSection))


def dashboard_token(section: DashboardSection, name: str, base: str) -> str | None:
    """The ``dashboard:`` section's ``token`` or ``admin_token`` (``name``), read
    from the environment or a file (relative to ``base``) when it says so.

    Raises:
        ConfigError: the variable is unset or the file cannot be read.
    """
    from ..observability._dashboard._tokens import resolve_token

    found: str | None = resolve_token(getattr(section, name), name, base=base)
    return found


def _alerts(section: AlertsSection, problems: Problems) -> AlertsPlan | None:
    from ..observability._dashboard._alerts import Alerts
    from ..observability._dashboard._rules import AlertRule

    rules: list[AlertRule] = []
    count = len(problems.errors)
    for i, rule in enumerate(section.rules):
        path: Path = ("alerts", "rules", i)
        # A rule's service may be one the application registers in code (a service
        # with a store or a key function has no file form), which the file cannot
        # know: it is not checked here. The engine evaluates a rule once its service
        # exists and warns once when it never does (``Alerts.evaluate``); ``meshlite
        # check`` lists such rules (``_check.unknown_alert_services``).
        built = construct(AlertRule, rule.arguments(), problems, path,
                          field_names(AlertRuleSection))
        if built is not None:
            rules.append(built)
    args = {k: v for k, v in section.arguments().items() if k != "rules"}
    checked = construct(Alerts, {"rules": rules, **args}, problems, ("alerts",),
                        field_names(AlertsSection))
    if checked is None or len(problems.errors) > count:
        return None
    return AlertsPlan(tuple(rules), checked.webhook, args.get("webhook_timeout"))


def _audit(section: AuditSection, problems: Problems, base: str) -> str | None:
    if not section.path.strip():
        problems.add(("audit", "path"), "must be a file path, got ''")
        return None
    path = os.path.join(base, section.path)  # an absolute path stays as it is
    if not os.path.isdir(os.path.dirname(path)):
        problems.add(("audit", "path"), f"{section.path!r}: its directory does not exist; "
                                        "create it or pick another path")
        return None
    return path


def check_top_level(config: MeshConfig, problems: Problems,
                    environ: Mapping[str, str] | None = None, *,
                    base: str | None = None) -> TopPlan:
    """Check telemetry, dashboard, alerts, audit and ``drain_timeout``; ``base`` is
    the config file's directory (relative paths start there; default: the
    current directory)."""
    if config.drain_timeout is not None:
        try:
            non_negative("Mesh", "drain_timeout", config.drain_timeout)
        except ConfigError as error:
            map_config_error(problems, (), error, ("drain_timeout",))
    if config.dashboard is not None:
        _dashboard(config.dashboard, problems, os.path.abspath(base or os.curdir), environ)
    if config.metrics is not None:
        from ..observability._metrics import check_label

        try:
            check_label("metrics", "service_label", config.metrics.service_label)
        except ConfigError as error:
            map_config_error(problems, ("metrics",), error, ("service_label",))
    alerts = _alerts(config.alerts, problems) if config.alerts is not None else None
    telemetry = None
    if config.telemetry is not None:
        telemetry = _telemetry(config.telemetry, problems,
                               os.environ if environ is None else environ)
    audit = None
    if config.audit is not None:
        audit = _audit(config.audit, problems, os.path.abspath(base or os.curdir))
    inbound = None
    if config.inbound is not None:
        inbound = check_inbound(config.inbound, problems, os.path.abspath(base or os.curdir),
                                environ)
    return TopPlan(telemetry, alerts, audit, inbound)
