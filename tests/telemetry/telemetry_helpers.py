"""Helpers shared by the telemetry tests."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from thunderline.telemetry import configure, shutdown

TRACEPARENT_RE = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")

# Log messages that must never appear anywhere in the run (T4, T6).
FORBIDDEN_LOGS = ("Failed to detach context", "Calling end() on an ended span")


class RecordingHandler(logging.Handler):
    """Keeps every record it sees (thread-safe)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._lock2 = threading.Lock()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock2:
            self.records.append(record)

    def messages(self) -> list[str]:
        with self._lock2:
            return [record.getMessage() for record in self.records]


@contextlib.contextmanager
def memory_tracing(**kwargs: Any) -> Iterator[InMemorySpanExporter]:
    """Configure thunderline telemetry with a synchronous in-memory exporter."""
    exporter = InMemorySpanExporter()
    kwargs.setdefault("environ", {})
    kwargs.setdefault("batch", False)
    configure(exporter=exporter, install_global=False, **kwargs)
    try:
        yield exporter
    finally:
        shutdown()


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, ReadableSpan]:
    """Index finished spans by name (names must be unique)."""
    index = {s.name: s for s in spans}
    assert len(index) == len(spans), [s.name for s in spans]
    return index
