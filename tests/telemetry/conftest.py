"""Telemetry test fixtures: an in-memory exporter and a whole-run log guard."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from telemetry_helpers import FORBIDDEN_LOGS, RecordingHandler, memory_tracing

_GUARD = RecordingHandler()
for _name in ("opentelemetry", "thunderline"):
    logging.getLogger(_name).addHandler(_GUARD)


@pytest.fixture(autouse=True)
def _no_context_errors() -> Iterator[None]:
    """Fail any test during which OpenTelemetry logged a context or end() misuse."""
    yield
    bad = [m for m in _GUARD.messages() if any(f in m for f in FORBIDDEN_LOGS)]
    assert not bad, bad


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Telemetry configured with a SimpleSpanProcessor and an in-memory exporter."""
    with memory_tracing() as memory:
        yield memory
