"""Tracing and metrics for ``thunderline run``, set up before the application starts.

Tracing is on unless ``--no-tracing`` or ``OTEL_SDK_DISABLED=true`` (which
the OpenTelemetry SDK itself obeys, so it wins even over ``--tracing``). With
tracing on:

* :func:`thunderline.telemetry.configure` builds the tracer provider from the
  ``OTEL_*`` environment, as the library does (``--otlp-endpoint`` overrides
  the endpoint; by default spans go over OTLP/HTTP to ``http://localhost:4318``,
  and a collector that is not there costs one warning line);
* the node runs with :class:`~thunderline.telemetry.RuntimeInstrument` (trace
  context follows every message; supervisor restarts get ``restart {id}``
  spans) and saga supervisors started later default to
  :class:`~thunderline.telemetry.SagaTracer` (with Bolt's names,
  :func:`thunderline.domains.bolt.saga_tracer`, when the application is the
  reference application);
* the daemon's log handler gets the trace-id filter (log correlation).

With metrics on (``--metrics``, or an OTLP endpoint configured):
:func:`~thunderline.telemetry.configure_metrics` exports every
``OTEL_METRIC_EXPORT_INTERVAL`` (default 60 s); a task in the node samples the
process count and mailbox depths (:class:`~thunderline.telemetry.RuntimeMetrics`)
at half that interval (between 0.1 s and 5 s); a
:class:`~thunderline.telemetry.MetricsInstrument` counts messages handled,
exits and restarts, and :class:`~thunderline.telemetry.SagaMetrics` saga outcomes.

Setup errors (an unusable endpoint in ``OTEL_*``) raise
:class:`TelemetrySetupError` before anything starts; typos that telemetry
documents a fallback for (sampler, sampler argument, batch sizes, intervals)
log one warning and carry on. :meth:`DaemonTelemetry.close` ends saga spans
left open, then flushes and shuts down both providers, each within a bound,
so a collector that is down never holds the daemon's exit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from thunderline._daemon._config import DEFAULT_APP, DaemonConfig
from thunderline._daemon._errors import TelemetrySetupError

if TYPE_CHECKING:  # the telemetry package (OpenTelemetry) is imported only when used
    from thunderline.runtime import Instrument
    from thunderline.sagas import SagaInstrument
    from thunderline.telemetry import RuntimeMetrics, SagaTracer

__all__ = ["DaemonTelemetry", "start_telemetry"]

logger: Final = logging.getLogger("thunderline.daemon")

#: Seconds each of the trace and metric shutdowns may wait for the last export.
SHUTDOWN_TIMEOUT: Final = 3.0
DEFAULT_EXPORT_INTERVAL: Final = 60.0


def _export_interval(env: Mapping[str, str]) -> float:
    """``OTEL_METRIC_EXPORT_INTERVAL`` in seconds, as ``configure_metrics`` reads it."""
    raw = (env.get("OTEL_METRIC_EXPORT_INTERVAL") or "").strip()
    try:
        millis = int(raw)
    except ValueError:
        return DEFAULT_EXPORT_INTERVAL
    return millis / 1000 if millis > 0 else DEFAULT_EXPORT_INTERVAL


def sample_interval(export_interval: float) -> float:
    """How often the node's gauges are sampled: half the export interval, 0.1 s to 5 s."""
    return min(5.0, max(0.1, export_interval / 2))


@attrs.define(eq=False)
class DaemonTelemetry:
    """What :func:`start_telemetry` set up, and how to take it down.

    Attributes:
        traces_on: tracing is on (spans, trace context, log correlation).
        traces_endpoint: where spans are posted over OTLP, or None (tracing
            off, or not exported over OTLP).
        traces_export: how spans are exported, for the startup line.
        sampler: the sampler in effect (name, plus ratio for ratio samplers).
        metrics_endpoint: where metrics are posted, or None with metrics off.
        export_interval: seconds between metric exports.
        instrument: the node's runtime instrument, or None.
        saga_instrument: the default saga instrument installed, or None.
        runtime_metrics: the gauges and counters, or None with metrics off.
        saga_tracer: the saga tracer, or None with tracing off.
        disabled_by_env: ``OTEL_SDK_DISABLED=true`` turned requested telemetry off.
    """

    traces_on: bool = False
    traces_endpoint: str | None = None
    traces_export: str = ""
    sampler: str | None = None
    metrics_endpoint: str | None = None
    export_interval: float = DEFAULT_EXPORT_INTERVAL
    instrument: Instrument | None = None
    saga_instrument: SagaInstrument | None = None
    runtime_metrics: RuntimeMetrics | None = None
    saga_tracer: SagaTracer | None = None
    disabled_by_env: bool = False
    _previous_saga_default: SagaInstrument | None = None
    _closed: bool = False

    @property
    def tracing(self) -> bool:
        return self.traces_on

    @property
    def metrics(self) -> bool:
        return self.metrics_endpoint is not None

    def describe(self) -> str:
        """For the startup line: ``tracing on (...); metrics off``."""
        if self.tracing:
            tracing = f"tracing on ({self.traces_export}, sampler {self.sampler})"
        else:
            tracing = "tracing off"
        if self.metrics:
            metrics = (
                f"metrics on (OTLP/HTTP {self.metrics_endpoint} every {self.export_interval:g} s)"
            )
        else:
            metrics = "metrics off"
        suffix = " (OTEL_SDK_DISABLED=true)" if self.disabled_by_env else ""
        return f"{tracing}; {metrics}{suffix}"

    def settings(self) -> dict[str, Any]:
        """For the ``status`` command."""
        return {
            "tracing": self.traces_endpoint if self.tracing else None,
            "metrics": self.metrics_endpoint,
        }

    async def sample_gauges(self) -> None:
        """Sample the node's gauges until cancelled (run it as a task inside the node)."""
        if self.runtime_metrics is not None:
            await self.runtime_metrics.sample_every(sample_interval(self.export_interval))

    def close(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """End open saga spans, flush and shut down tracing and metrics; never raises.

        Each provider waits at most ``timeout`` seconds (plus one export's own
        bound if an export is running), so this returns even when the
        collector is down. Safe to call twice.
        """
        if self._closed:
            return
        self._closed = True
        if not (self.tracing or self.metrics):
            return
        from thunderline import sagas, telemetry

        if self.saga_instrument is not None:
            sagas.set_default_instrument(self._previous_saga_default)
        if self.saga_tracer is not None:
            ended = self.saga_tracer.end_open_spans()
            if ended:
                logger.info("ended %d saga span(s) left open at shutdown", ended)
        if self.tracing and not telemetry.shutdown(timeout):
            logger.warning(
                "spans still queued after %g s at shutdown were dropped (collector at %s)",
                timeout,
                self.traces_endpoint,
            )
        if self.metrics and not telemetry.shutdown_metrics(timeout):
            logger.warning("metrics shutdown did not finish cleanly within %g s", timeout)
        parts = []
        if self.tracing:
            spans = telemetry.statistics()
            parts.append(f"{spans.exported_spans} spans exported, {spans.dropped_spans} dropped")
        if self.metrics:
            exports = telemetry.metrics_statistics()
            parts.append(f"{exports.exports} metric exports, {exports.export_failures} failed")
        logger.info("telemetry shut down: %s", "; ".join(parts))


def _saga_tracer(app: str) -> SagaTracer:
    """The reference application's sagas get Bolt's span names and attributes (the seed's
    ``bolt.run_saga`` > ``bolt.saga_execution``); any other application the generic ones."""
    if app == DEFAULT_APP:
        from thunderline.domains import bolt

        return bolt.saga_tracer()
    from thunderline.telemetry import SagaTracer

    return SagaTracer()


def _describe_export(traces: Any) -> str:
    targets = [
        f"OTLP/HTTP {traces.traces_endpoint}" if name == "otlp" else "console"
        for name in traces.traces_exporter
    ]
    return " and ".join(targets) if targets else "not exported: OTEL_TRACES_EXPORTER=none"


def start_telemetry(
    config: DaemonConfig, env: Mapping[str, str], log_handler: logging.Handler | None = None
) -> DaemonTelemetry:
    """Configure tracing and metrics as ``config`` asks, before the application starts.

    Call it once logging is set up (fallback warnings go to the daemon's log).

    Args:
        config: the daemon's options (``tracing``, ``metrics``, ``otlp_endpoint``).
        env: the environment with the ``OTEL_*`` variables.
        log_handler: the daemon's log handler; with tracing on it gets the
            trace-id filter (log correlation).

    Returns:
        The telemetry set up (nothing when both are off); call its ``close``
        at exit.

    Raises:
        TelemetrySetupError: an ``OTEL_*`` value is unusable; nothing was
            left configured.
    """
    if config.tracing is False and not config.metrics:
        return DaemonTelemetry()
    from thunderline import sagas, telemetry

    environ = dict(env)
    endpoint = config.otlp_endpoint
    result = DaemonTelemetry()
    try:
        # The one resolution of flags over OTEL_* over defaults (warnings logged once).
        base = telemetry.resolve_config(environ, endpoint=endpoint)
        # OTEL_SDK_DISABLED=true wins even over --tracing: the OpenTelemetry SDK
        # reads it too, and its tracer provider then makes only no-op spans.
        sdk_disabled = not base.enabled
        if sdk_disabled:
            result.disabled_by_env = True
            return result
        tracing = config.tracing is not False
        if tracing:
            traces = telemetry.configure(config=base, enabled=True)
            result.traces_on = True
            if "otlp" in traces.traces_exporter:
                result.traces_endpoint = traces.traces_endpoint
            result.traces_export = _describe_export(traces)
            ratio = "" if traces.sampler_ratio is None else f" {traces.sampler_ratio:g}"
            result.sampler = f"{traces.sampler}{ratio}"
            base = traces
        if config.metrics:
            result.export_interval = _export_interval(environ)
            telemetry.configure_metrics(config=base, endpoint=endpoint, environ=environ)
            result.metrics_endpoint = (
                endpoint.rstrip("/") + "/v1/metrics"
                if endpoint is not None
                else telemetry.metrics_endpoint_from_env(environ)
            )
    except telemetry.TelemetryConfigError as exc:
        telemetry.shutdown(0.1)
        telemetry.shutdown_metrics(0.1)
        raise TelemetrySetupError(exc.setting, str(exc)) from None

    if not (result.tracing or result.metrics):
        return result
    runtime: list[Instrument] = []
    saga: list[SagaInstrument] = []
    if result.tracing:
        runtime.append(telemetry.RuntimeInstrument())
        result.saga_tracer = _saga_tracer(config.app)
        saga.append(result.saga_tracer)
        if log_handler is not None:
            telemetry.install_log_correlation(log_handler)
    if result.metrics:
        result.runtime_metrics = telemetry.RuntimeMetrics()
        runtime.append(result.runtime_metrics.instrument)
        saga.append(result.runtime_metrics.saga_instrument)
    result.instrument = runtime[0] if len(runtime) == 1 else telemetry.CompositeInstrument(*runtime)
    result.saga_instrument = saga[0] if len(saga) == 1 else telemetry.CompositeSagaInstrument(*saga)
    result._previous_saga_default = sagas.set_default_instrument(result.saga_instrument)
    return result
