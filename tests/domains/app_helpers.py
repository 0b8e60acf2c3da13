"""Helpers for the reference-application tests: a node running the app, span capture, waits.

Nothing here sleeps to let time pass: tests wait on messages (Link's
:class:`~thunderline.domains.link.Emitted`) or on spans ending (:class:`SpanLog`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import thunderline.runtime as tl
from thunderline import telemetry
from thunderline.domains import AppConfig, Event, application_spec, bolt, gate, link, open_ledger

#: Bound for a whole test body on a loaded 2-core machine.
LIMIT = 45.0
#: Bound for one event to travel Gate -> Link.
EVENT_TIMEOUT = 30.0

#: Log messages that must never appear (T4, T6).
FORBIDDEN_LOGS = ("Failed to detach context", "Calling end() on an ended span")


class SpanLog(SpanProcessor):
    """Keeps every finished span and wakes tasks waiting for a condition on them."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self._waiters: list[tuple[Callable[[list[ReadableSpan]], bool], anyio.Event]] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do when a span starts."""

    def on_end(self, span: ReadableSpan) -> None:
        """Record ``span`` and wake the waiters whose condition now holds."""
        self.spans.append(span)
        for condition, event in list(self._waiters):
            if condition(self.spans):
                event.set()

    async def wait_for(self, condition: Callable[[list[ReadableSpan]], bool]) -> None:
        """Wait until ``condition(spans)`` holds (checked as each span ends)."""
        if condition(self.spans):
            return
        event = anyio.Event()
        entry = (condition, event)
        self._waiters.append(entry)
        try:
            await event.wait()
        finally:
            self._waiters.remove(entry)

    async def wait_named(self, name: str, count: int) -> None:
        """Wait until ``count`` spans named ``name`` ended."""
        await self.wait_for(lambda spans: sum(s.name == name for s in spans) >= count)


class _Recording(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._guard = threading.Lock()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def memory_tracing(**kwargs: Any) -> Iterator[SpanLog]:
    """Telemetry exporting synchronously, every span kept in a :class:`SpanLog`.

    Also fails if OpenTelemetry logged a context misuse meanwhile (T4, T6).
    """
    log = SpanLog()
    recording = _Recording()
    loggers = [logging.getLogger("opentelemetry"), logging.getLogger("thunderline")]
    for logger in loggers:
        logger.addHandler(recording)
    kwargs.setdefault("environ", {})
    telemetry.configure(
        exporter=InMemorySpanExporter(),
        batch=False,
        install_global=False,
        extra_processors=[log],
        **kwargs,
    )
    try:
        yield log
    finally:
        telemetry.shutdown()
        for logger in loggers:
            logger.removeHandler(recording)
    bad = [m for m in recording.messages if any(f in m for f in FORBIDDEN_LOGS)]
    assert not bad, bad


def app_config(data_dir: Path, **kwargs: Any) -> AppConfig:
    """The application's configuration in ``data_dir``, with the saga tracer."""
    kwargs.setdefault("saga_instrument", bolt.saga_tracer())
    return AppConfig(data_dir=data_dir, **kwargs)


async def run_app(
    config: AppConfig,
    body: Callable[[], Awaitable[None]],
    *,
    traced: bool = True,
    limit: float = LIMIT,
) -> None:
    """Start the application in a fresh node, run ``body`` as a process there, stop everything.

    ``body`` runs subscribed to Link (it receives an ``Emitted`` per event
    that completed its saga). The application is shut down in order (Vault
    closes its ledger) before this returns; ``body``'s exception is re-raised.
    """
    errors: list[BaseException] = []

    async def main() -> None:
        supervisor = await application_spec(config).start()
        assert supervisor is not None
        link.subscribe()
        try:
            await body()
        except BaseException as error:
            errors.append(error)
            raise
        finally:
            tl.unlink(supervisor)
            ref = tl.monitor(supervisor)
            tl.exit(supervisor, tl.SHUTDOWN)
            await tl.receive(lambda m: isinstance(m, tl.Down) and m.ref == ref, timeout=limit)

    instrument = telemetry.RuntimeInstrument() if traced else None
    with anyio.fail_after(limit):
        async with tl.open_node(instrument=instrument) as node:
            done = anyio.Event()
            pid, _ = node.spawn(main, (), parent=None, link=False, monitor=False, trap_exit=False)
            node.processes[pid].exit_callbacks.append(lambda _p, _r: done.set())
            await done.wait()
    if errors:
        raise errors[0]


async def publish_fresh(name: str = "system.heartbeat", **fields: Any) -> Event:
    """Publish through Gate outside any current trace, so the event starts its own (T1)."""
    with telemetry.continue_from(None):
        return await gate.publish(name, **fields)


async def await_emitted(ids: set[str], *, timeout: float = EVENT_TIMEOUT) -> dict[str, int]:
    """Receive Link's ``Emitted`` until every id in ``ids`` arrived; returns id -> ledger seq."""
    seen: dict[str, int] = {}
    while not ids <= seen.keys():
        emitted = await tl.receive(link.Emitted, timeout=timeout)
        seen[str(emitted.event.id)] = emitted.seq
    return seen


def ledger_event_ids(data_dir: Path) -> list[str]:
    """Every event id recorded in the ledger file (genesis excluded), in seq order."""
    with open_ledger(data_dir / "ledger.db", read_only=True) as ledger:
        return [record.event_id for record in ledger.read() if not record.is_genesis]


def trace_id(span: ReadableSpan) -> str:
    """A finished span's trace id as 32 hex digits."""
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def span_id(span: ReadableSpan) -> str:
    """A finished span's span id as 16 hex digits."""
    assert span.context is not None
    return format(span.context.span_id, "016x")


def parent_id(span: ReadableSpan) -> str | None:
    """A finished span's parent span id (None for a root)."""
    return None if span.parent is None else format(span.parent.span_id, "016x")
