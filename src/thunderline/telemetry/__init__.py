"""Tracing for thunderline: span helpers, W3C context in messages, OTLP export.

Example::

    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    ...     InMemorySpanExporter,
    ... )
    >>> from thunderline import telemetry
    >>> exporter = InMemorySpanExporter()  # omit to export OTLP/HTTP per OTEL_*
    >>> config = telemetry.configure(exporter=exporter, install_global=False)
    >>> @telemetry.span("reserve stock")
    ... def reserve(sku: str) -> str:
    ...     return sku
    >>> with telemetry.span("order received"):
    ...     meta = telemetry.inject({})
    ...     _ = reserve("sku-1")
    >>> with telemetry.continue_from(meta), telemetry.span("order stored"):
    ...     pass
    >>> telemetry.shutdown()
    True
    >>> sorted(s.name for s in exporter.get_finished_spans())
    ['order received', 'order stored', 'reserve stock']

This package is the only part of thunderline that imports OpenTelemetry.
"""

from thunderline._exports import publish
from thunderline.telemetry._collector import CollectedSpan, DiscardExporter, TraceCollector
from thunderline.telemetry._composite import CompositeInstrument, CompositeSagaInstrument
from thunderline.telemetry._config import TelemetryConfig, resolve_config
from thunderline.telemetry._detached import DetachedSpan, start_span
from thunderline.telemetry._errors import TelemetryConfigError
from thunderline.telemetry._export import (
    UrandomIdGenerator,
    configure,
    force_flush,
    shutdown,
)
from thunderline.telemetry._logging import TraceContextFilter, install_log_correlation
from thunderline.telemetry._metrics import (
    MetricsInstrument,
    MetricsStatistics,
    RuntimeMetrics,
    RuntimeSnapshot,
    SagaMetrics,
    configure_metrics,
    force_flush_metrics,
    metrics_endpoint_from_env,
    metrics_statistics,
    shutdown_metrics,
)
from thunderline.telemetry._propagation import (
    ContextScope,
    attach_carrier,
    capture_carrier,
    continue_from,
    extract,
    inject,
)
from thunderline.telemetry._runtime import RuntimeInstrument
from thunderline.telemetry._sagas import KIND_KEY as SAGA_SPAN_ATTRIBUTE
from thunderline.telemetry._sagas import SagaTracer
from thunderline.telemetry._spans import (
    SpanScope,
    add_event,
    current_span_id,
    current_trace_id,
    set_attributes,
    set_status,
    span,
)
from thunderline.telemetry._stats import TelemetryStatistics, statistics

__all__ = [
    "SAGA_SPAN_ATTRIBUTE",
    "CollectedSpan",
    "CompositeInstrument",
    "CompositeSagaInstrument",
    "ContextScope",
    "DetachedSpan",
    "DiscardExporter",
    "MetricsInstrument",
    "MetricsStatistics",
    "RuntimeInstrument",
    "RuntimeMetrics",
    "RuntimeSnapshot",
    "SagaMetrics",
    "SagaTracer",
    "SpanScope",
    "TelemetryConfig",
    "TelemetryConfigError",
    "TelemetryStatistics",
    "TraceCollector",
    "TraceContextFilter",
    "UrandomIdGenerator",
    "add_event",
    "attach_carrier",
    "capture_carrier",
    "configure",
    "configure_metrics",
    "continue_from",
    "current_span_id",
    "current_trace_id",
    "extract",
    "force_flush",
    "force_flush_metrics",
    "inject",
    "install_log_correlation",
    "metrics_endpoint_from_env",
    "metrics_statistics",
    "resolve_config",
    "set_attributes",
    "set_status",
    "shutdown",
    "shutdown_metrics",
    "span",
    "start_span",
    "statistics",
]

publish(globals(), __name__, __all__)
