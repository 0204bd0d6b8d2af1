"""What ``telemetry.configure()`` will set up: arguments and ``OTEL_*`` variables
resolved into one validated record. No OpenTelemetry SDK import here.

Precedence, for each setting: the explicit argument, then the standard
environment variable, then meshlite's default. ``OTEL_SDK_DISABLED=true`` wins
over everything (it is the operator's kill switch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .._errors import ConfigError
from .._printable import url_shown
from .._validate import fail

__all__ = [
    "DEFAULT_SAMPLE_RATIO",
    "OWNER",
    "TRACES_PATH",
    "TelemetrySettings",
    "resolve",
]

OWNER = "telemetry.configure"

DEFAULT_SAMPLE_RATIO = 1.0
"""Share of new traces recorded when neither ``sample_ratio`` nor the environment says."""

TRACES_PATH = "/v1/traces"
"""Path of the OTLP/HTTP traces endpoint under a base URL (Jaeger serves it on 4318)."""

SERVICE_NAME = "OTEL_SERVICE_NAME"
ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
SAMPLER = "OTEL_TRACES_SAMPLER"
SAMPLER_ARG = "OTEL_TRACES_SAMPLER_ARG"
SDK_DISABLED = "OTEL_SDK_DISABLED"

# meshlite always samples parent-based (a child follows its caller's decision), so
# the plain and parentbased_ forms of a sampler mean the same ratio here.
_FIXED_SAMPLERS = {
    "always_on": 1.0, "parentbased_always_on": 1.0,
    "always_off": 0.0, "parentbased_always_off": 0.0,
}
_RATIO_SAMPLERS = frozenset({"traceidratio", "parentbased_traceidratio"})


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetrySettings:
    """The resolved configuration of one ``configure()`` call.

    Attributes:
        service_name: The ``service.name`` resource attribute.
        traces_endpoint: The full OTLP/HTTP URL spans are posted to, or ``None``
            for no OTLP export.
        console: Whether spans are also printed to stdout.
        sample_ratio: Share of new (root) traces recorded, in [0, 1].
        enabled: ``False`` when ``OTEL_SDK_DISABLED=true``: nothing is recorded.
    """

    service_name: str
    traces_endpoint: str | None
    console: bool
    sample_ratio: float
    enabled: bool = True


def _env(environ: Mapping[str, str], name: str) -> str | None:
    # The OpenTelemetry spec treats an empty value as unset.
    value = environ.get(name, "").strip()
    return value or None


def _url(field: str, value: Any) -> str:
    """``value`` checked as an absolute http(s) URL without query or fragment (a
    refused one shown without its password or secret-named parameters)."""
    if not isinstance(value, str):
        fail(OWNER, field, value, "an http(s) URL such as 'http://localhost:4318'")
    shown = url_shown(value)
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        fail(OWNER, field, shown, "an http(s) URL such as 'http://localhost:4318'")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(OWNER, field, shown, "an http(s) URL such as 'http://localhost:4318'")
    if parts.query or parts.fragment:
        fail(OWNER, field, shown, "a URL without query string or fragment")
    return value.strip()


def _traces_url(base: str) -> str:
    return base.rstrip("/") + TRACES_PATH


def _endpoint(otlp_endpoint: Any, environ: Mapping[str, str]) -> str | None:
    if otlp_endpoint is not None:
        url = _url("otlp_endpoint", otlp_endpoint)
        # Forgive the full traces URL given where the base URL is expected: appending
        # the path again would post to a 404 and lose every span silently.
        return url if url.rstrip("/").endswith(TRACES_PATH) else _traces_url(url)
    traces = _env(environ, TRACES_ENDPOINT)
    if traces is not None:
        return _url(f"{TRACES_ENDPOINT} (environment)", traces)  # the spec: used as is
    base = _env(environ, ENDPOINT)
    if base is not None:
        return _traces_url(_url(f"{ENDPOINT} (environment)", base))
    return None


def _ratio(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        fail(OWNER, field, value, "a number in [0, 1]")
    if not 0.0 <= value <= 1.0:
        fail(OWNER, field, value, "in [0, 1]")
    return float(value)


def _sample_ratio(sample_ratio: Any, environ: Mapping[str, str]) -> float:
    if sample_ratio is not None:
        return _ratio("sample_ratio", sample_ratio)
    sampler = _env(environ, SAMPLER)
    if sampler is not None:
        sampler = sampler.lower()
        if sampler in _FIXED_SAMPLERS:
            return _FIXED_SAMPLERS[sampler]
        if sampler not in _RATIO_SAMPLERS:
            valid = ", ".join([*_FIXED_SAMPLERS, *sorted(_RATIO_SAMPLERS)])
            fail(OWNER, f"{SAMPLER} (environment)", sampler, f"one of {valid}")
    arg = _env(environ, SAMPLER_ARG)
    if arg is None:
        return DEFAULT_SAMPLE_RATIO
    try:
        number = float(arg)
    except ValueError:
        fail(OWNER, f"{SAMPLER_ARG} (environment)", arg, "a number in [0, 1]")
    return _ratio(f"{SAMPLER_ARG} (environment)", number)


def _service_name(service_name: Any, environ: Mapping[str, str]) -> str:
    if service_name is None:
        service_name = _env(environ, SERVICE_NAME)
        if service_name is None:
            fail(OWNER, "service_name", None,
                 f"a non-empty string (or set the {SERVICE_NAME} environment variable)")
    if not isinstance(service_name, str) or not service_name.strip():
        fail(OWNER, "service_name", service_name, "a non-empty string")
    return service_name.strip()


def resolve(
    service_name: Any,
    otlp_endpoint: Any,
    console: Any,
    sample_ratio: Any,
    environ: Mapping[str, str],
) -> TelemetrySettings:
    """Validate the arguments of ``configure()`` and fill the unset ones from ``environ``.

    Raises:
        ConfigError: an argument or an ``OTEL_*`` variable is invalid (named).
    """
    if not isinstance(console, bool):
        fail(OWNER, "console", console, "True or False")
    # Arguments are checked even when the SDK is disabled: a typo must not wait
    # for the day the kill switch is lifted.
    settings = TelemetrySettings(
        service_name=_service_name(service_name, environ),
        traces_endpoint=_endpoint(otlp_endpoint, environ),
        console=console,
        sample_ratio=_sample_ratio(sample_ratio, environ),
    )
    disabled = (_env(environ, SDK_DISABLED) or "").lower() == "true"
    if disabled:
        return TelemetrySettings(service_name=settings.service_name, traces_endpoint=None,
                                 console=False, sample_ratio=0.0, enabled=False)
    return settings


def missing_sdk(owner: str, error: ImportError) -> ConfigError:
    """The error for ``owner`` called without the OpenTelemetry SDK or OTLP exporter
    installed (the ``otlp`` extra)."""
    return ConfigError(
        f"{owner}: the OpenTelemetry SDK or OTLP exporter is not installed "
        f"({error.name or error}); install the extra: pip install 'meshlite-mesh[otlp]'",
        policy="telemetry")
