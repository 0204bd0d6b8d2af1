"""``configure()``: wire the OpenTelemetry SDK, once or again, behind meshlite's switch."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry import trace

from .._errors import ConfigError
from .._fork import fork_safe
from .._printable import url_shown
from . import _quiet
from ._bounded import SHUTDOWN_TIMEOUT_MILLIS, OneAtATime, shut_down_at_exit
from ._bounded import bounded as _bounded
from ._settings import OWNER, TelemetrySettings, missing_sdk, resolve
from ._switch import SwitchTracerProvider

if TYPE_CHECKING:
    from ._sdk import SpanQueue

__all__ = ["Telemetry", "configure", "current"]

_lock = fork_safe(threading.RLock())
_switch = SwitchTracerProvider()
_active: Telemetry | None = None


class Telemetry:
    """The tracing set up by :func:`configure` (its return value).

    Attributes:
        settings: What was resolved from the arguments and the environment.
        tracer_provider: The SDK ``TracerProvider`` spans are recorded by (a no-op
            provider when ``OTEL_SDK_DISABLED=true``). The global provider is
            meshlite's switch, which forwards to it.
    """

    def __init__(self, settings: TelemetrySettings, provider: trace.TracerProvider,
                 queue: SpanQueue | None = None) -> None:
        self.settings = settings
        self.tracer_provider = provider
        self._queue = queue  # the SDK side's SpanQueue, when spans go to a collector
        self._closed = False
        self._flush = OneAtATime()

    @property
    def service_name(self) -> str:
        """The ``service.name`` of every span."""
        return self.settings.service_name

    @property
    def traces_endpoint(self) -> str | None:
        """The URL spans are posted to (``.../v1/traces``), or ``None``."""
        return self.settings.traces_endpoint

    @property
    def sample_ratio(self) -> float:
        """Share of new traces recorded."""
        return self.settings.sample_ratio

    @property
    def enabled(self) -> bool:
        """``False`` when ``OTEL_SDK_DISABLED=true`` made this a no-op."""
        return self.settings.enabled

    @property
    def dropped_spans(self) -> int:
        """Spans dropped because the export queue was full (the collector down or
        slower than spans come): each new span then pushes out the oldest queued."""
        return 0 if self._queue is None else self._queue.dropped

    @property
    def active(self) -> bool:
        """Whether spans go through this configuration now (not replaced, not shut down)."""
        return _active is self

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every span ended so far, waiting up to ``timeout_millis`` (an
        export still running then goes on in the background, and a later call waits
        for it rather than starting another).

        Returns:
            ``True`` when everything was exported in time (or nothing was pending).
        """
        flush = getattr(self.tracer_provider, "force_flush", None)
        if self._closed or flush is None:
            return True
        return self._flush(lambda: bool(flush(timeout_millis)), timeout_millis) is True

    def shutdown(self, timeout_millis: int = SHUTDOWN_TIMEOUT_MILLIS) -> None:
        """Flush and stop exporting, waiting up to ``timeout_millis`` for the last
        export (a collector that is down or stalled holds up the caller no longer).
        Spans started afterwards are not recorded until :func:`configure` is called
        again. Calling it twice is harmless."""
        global _active
        with _lock:
            if _active is self:
                _switch.point_to(trace.NoOpTracerProvider())
                _active = None
            self._close(timeout_millis)

    def _close(self, timeout_millis: int) -> None:
        if self._closed:
            return
        self._closed = True
        stop = getattr(self.tracer_provider, "shutdown", None)
        if stop is not None:
            _bounded(stop, timeout_millis)

    def __repr__(self) -> str:
        s = self.settings
        state = "active" if self.active else "inactive"
        endpoint = None if s.traces_endpoint is None else url_shown(s.traces_endpoint)
        return (f"Telemetry(service_name={s.service_name!r}, traces_endpoint="
                f"{endpoint!r}, sample_ratio={s.sample_ratio}, {state})")


def _install_switch() -> None:
    """Make the switch the global provider, unless it already is."""
    installed = trace.get_tracer_provider()
    if installed is _switch:
        return
    if isinstance(installed, trace.ProxyTracerProvider):
        trace.set_tracer_provider(_switch)
        if trace.get_tracer_provider() is _switch:
            return
    raise ConfigError(
        f"{OWNER}: another global TracerProvider ({type(installed).__name__}) is already "
        "installed, and OpenTelemetry allows only one per process. Either let meshlite "
        "set up tracing (call configure() before anything else installs a provider) or "
        "keep your own SDK setup and skip configure(): ml.Trace uses the global provider, "
        "or the one given as Trace(tracer_provider=...)", policy="telemetry")


def _build(settings: TelemetrySettings) -> Telemetry:
    if not settings.enabled:
        return Telemetry(settings, trace.NoOpTracerProvider())
    try:
        from ._sdk import build_provider
    except ImportError as error:  # (one error: the extra to install, not its cause)
        raise missing_sdk(OWNER, error) from None
    return Telemetry(settings, *build_provider(settings))


def _at_exit(timeout_millis: int) -> None:
    active = _active
    if active is not None:
        active.shutdown(timeout_millis)


def _flush(timeout_millis: int) -> None:
    active = _active
    if active is not None:
        active.force_flush(timeout_millis)


def configure(
    service_name: str | None = None,
    otlp_endpoint: str | None = None,
    console: bool = False,
    sample_ratio: float | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Telemetry:
    """Send this process's traces to an OTLP/HTTP endpoint (Jaeger, a collector).

    Sets up the OpenTelemetry SDK (the ``meshlite-mesh[otlp]`` extra): a tracer provider
    with a ``service.name`` resource, parent-based ratio sampling, a batch processor
    posting protobuf to ``{otlp_endpoint}/v1/traces``, and a flush at exit.

    Calling it again reconfigures: a new provider replaces the previous one, which is
    flushed and shut down, and every tracer handed out before (pipelines compiled
    earlier included) records through the new one. Each argument falls back to its
    ``OTEL_*`` variable, then to the default; ``OTEL_SDK_DISABLED=true`` turns tracing
    off whatever the arguments say.

    Args:
        service_name: ``service.name`` of every span (else ``OTEL_SERVICE_NAME``).
        otlp_endpoint: Base URL of the OTLP/HTTP receiver, as
            ``OTEL_EXPORTER_OTLP_ENDPOINT`` (``"http://localhost:4318"``); a URL
            already ending in ``/v1/traces`` is used as is. Else
            ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is), else
            ``OTEL_EXPORTER_OTLP_ENDPOINT``; else no OTLP export.
        console: Also print each span to stdout as it ends.
        sample_ratio: Share of new traces recorded, in [0, 1] (else
            ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``, else 1.0). Spans
            with a parent follow the parent's decision.
        environ: The environment to read (default ``os.environ``); for tests.

    Returns:
        The :class:`Telemetry` handle (``force_flush()``, ``shutdown()``).

    Raises:
        ConfigError: an invalid argument or ``OTEL_*`` variable (named), the SDK is
            not installed, or another library already installed a global provider.
    """
    global _active
    settings = resolve(service_name, otlp_endpoint, console, sample_ratio,
                       os.environ if environ is None else environ)
    with _lock:
        _install_switch()
        # Build first: if that fails, the previous configuration stays in force.
        handle = _build(settings)
        previous, _active = _active, handle
        _switch.point_to(handle.tracer_provider)
        # One hook for whichever configuration is in force, run at exit (and its flush
        # when a mesh closes) together with every metrics export's, all within one
        # SHUTDOWN_TIMEOUT_MILLIS.
        shut_down_at_exit(_switch, _at_exit, _flush)
    if previous is not None:
        # Flushes what it still holds to the old endpoint, in the background: a
        # reload calls this on the event loop, and the old collector may be down.
        previous._close(0)
    return handle


def current() -> Telemetry | None:
    """The configuration spans go through now, or ``None`` (never configured, or shut
    down)."""
    return _active


def _reset_for_tests() -> None:
    """Undo :func:`configure` for test isolation: shut the active configuration down
    and, when meshlite's switch is the global provider, uninstall it so the next
    test starts from an unconfigured process. Not for production code."""
    global _active
    _quiet.reset()
    with _lock:
        active, _active = _active, None
        _switch.point_to(trace.NoOpTracerProvider())
        if active is not None:
            active._close(SHUTDOWN_TIMEOUT_MILLIS)
        if trace.get_tracer_provider() is _switch:
            # The API has no public way back; these are the globals its own test
            # utilities reset (opentelemetry.test.globals_test.reset_trace_globals).
            from opentelemetry.util._once import Once

            trace._TRACER_PROVIDER_SET_ONCE = Once()  # private API
            trace._TRACER_PROVIDER = None  # private API
