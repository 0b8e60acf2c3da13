"""Counters for what telemetry had to drop or repair, and their snapshot.

Example::

    >>> from thunderline.telemetry import statistics
    >>> statistics().malformed_contexts >= 0
    True
"""

from __future__ import annotations

import threading

import attrs


@attrs.frozen
class TelemetryStatistics:
    """A snapshot of telemetry counters since the process started.

    The counters only grow; compare two snapshots to measure an interval.

    Attributes:
        malformed_contexts: Inbound ``traceparent`` values that were present
            but invalid (wrong lengths, uppercase hex, all-zero ids, version
            ``ff``, version ``00`` with extra fields, not a string); each one
            started a new trace instead.
        malformed_tracestates: Inbound ``tracestate`` values with at least one
            invalid member; the invalid members were dropped, the
            ``traceparent`` was kept.
        dropped_tracestate_entries: ``tracestate`` members dropped because they
            were invalid or beyond the W3C limits (32 members, 512 characters
            kept when truncating).
        exported_spans: Spans handed to the exporter that it accepted.
        dropped_spans: Spans that were never exported: the export queue was
            full, the export failed (collector down or unreachable) or
            telemetry was already shut down.
        export_failures: Export calls (batches) that failed.
        context_mismatches: Span helpers that exited in a different
            ``contextvars.Context`` than they entered (for example an async
            generator finalized by another task); the span was ended but the
            context could not be, and did not need to be, restored.

    .. versionadded:: 0.1
    """

    malformed_contexts: int
    malformed_tracestates: int
    dropped_tracestate_entries: int
    exported_spans: int
    dropped_spans: int
    export_failures: int
    context_mismatches: int


class _Counters:
    """Thread-safe counters; exporters update them from their own thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(attrs.fields_dict(TelemetryStatistics), 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def snapshot(self) -> TelemetryStatistics:
        with self._lock:
            return TelemetryStatistics(**self._values)


COUNTERS = _Counters()


def statistics() -> TelemetryStatistics:
    """Return a snapshot of the telemetry counters.

    Returns:
        A frozen :class:`TelemetryStatistics` record.

    .. versionadded:: 0.1
    """
    return COUNTERS.snapshot()
