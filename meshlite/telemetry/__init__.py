"""meshlite.telemetry: send traces to Jaeger or any OTLP/HTTP receiver.

``ml.telemetry.configure("checkout", otlp_endpoint="http://localhost:4318")`` sets
up the OpenTelemetry SDK (the ``meshlite[otlp]`` extra) behind the global tracer
provider; ``ml.Trace`` and the mesh then record one span per call and one per
attempt. Importing this module imports only the OpenTelemetry API: the SDK is
loaded by :func:`configure`.

Precedence, per setting: explicit argument > ``OTEL_*`` environment variable >
default; ``OTEL_SDK_DISABLED=true`` turns everything off.
"""

from ._configure import Telemetry, configure, current
from ._configure import _reset_for_tests as _reset_for_tests  # for test fixtures
from ._settings import DEFAULT_SAMPLE_RATIO, TRACES_PATH, TelemetrySettings
from ._spans import attempt_span, record_http_request, record_http_status

__all__ = [
    "configure",
    "current",
    "Telemetry",
    "TelemetrySettings",
    "DEFAULT_SAMPLE_RATIO",
    "TRACES_PATH",
    # for routing and transports
    "attempt_span",
    "record_http_request",
    "record_http_status",
]
