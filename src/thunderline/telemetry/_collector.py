"""Keep the spans of a few traces in memory (for ``thunderline demo``'s span tree).

A :class:`TraceCollector` is a span processor: pass it to
``configure(extra_processors=[collector])``. It keeps every finished span of
the first ``max_traces`` trace ids it sees, and nothing else, so memory stays
bounded however many events flow.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import attrs
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["CollectedSpan", "DiscardExporter", "TraceCollector"]


@attrs.frozen
class CollectedSpan:
    """A finished span, reduced to what a report needs.

    Attributes:
        name: the span name.
        trace_id / span_id / parent_id: lowercase hex (``parent_id`` None for a root).
        start / end: nanoseconds since the epoch.
        attributes: the span's attributes.
        events: the names of its span events, in order.
        status: ``UNSET``, ``OK`` or ``ERROR``.
    """

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    start: int
    end: int
    attributes: dict[str, object]
    events: tuple[str, ...]
    status: str

    @property
    def duration_ms(self) -> float:
        """The span's duration in milliseconds."""
        return (self.end - self.start) / 1e6


class TraceCollector(SpanProcessor):
    """Collect the spans of the first ``max_traces`` traces that end a span.

    Args:
        max_traces: how many distinct trace ids to keep.
    """

    def __init__(self, max_traces: int = 1) -> None:
        self.max_traces = max_traces
        self._lock = threading.Lock()
        self._traces: dict[str, list[CollectedSpan]] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do at start."""

    def on_end(self, span: ReadableSpan) -> None:
        """Keep the span if its trace is one of the first ``max_traces``."""
        context = span.context
        if context is None:
            return
        trace_id = format(context.trace_id, "032x")
        with self._lock:
            spans = self._traces.get(trace_id)
            if spans is None:
                if len(self._traces) >= self.max_traces:
                    return
                spans = self._traces[trace_id] = []
            spans.append(
                CollectedSpan(
                    name=span.name,
                    trace_id=trace_id,
                    span_id=format(context.span_id, "016x"),
                    parent_id=format(span.parent.span_id, "016x") if span.parent else None,
                    start=span.start_time or 0,
                    end=span.end_time or 0,
                    attributes=dict(span.attributes or {}),
                    events=tuple(event.name for event in span.events),
                    status=span.status.status_code.name,
                )
            )

    def trace_ids(self) -> list[str]:
        """The trace ids kept, in the order they were first seen."""
        with self._lock:
            return list(self._traces)

    def spans(self, trace_id: str) -> list[CollectedSpan]:
        """The kept spans of ``trace_id`` (empty if it is not kept)."""
        with self._lock:
            return list(self._traces.get(trace_id, ()))

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Spans are kept synchronously: always flushed."""
        return True


class DiscardExporter(SpanExporter):
    """An exporter that drops every span: tracing on (for collectors), nothing sent."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Drop ``spans``."""
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""
