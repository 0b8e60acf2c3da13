"""Installing a tracer provider and exporting spans without ever blocking.

Example::

    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    ...     InMemorySpanExporter,
    ... )
    >>> from thunderline.telemetry import configure, shutdown, span
    >>> exporter = InMemorySpanExporter()
    >>> config = configure(exporter=exporter, batch=False, install_global=False)
    >>> with span("hello"):
    ...     pass
    >>> [s.name for s in exporter.get_finished_spans()]
    ['hello']
    >>> shutdown()
    True

How export stays out of the application's way:

1. Ending a span only appends it to a bounded queue (a lock and a
   ``deque``); when the queue is full the span is dropped and counted.
2. One daemon thread exports the queue in batches every
   ``schedule_delay`` seconds, or as soon as a full batch is waiting.
3. Each export is bounded by ``export_timeout`` (OTLP retries included).
   A failed export drops its batch and counts it; the first drop of an
   outage logs ONE warning on the ``thunderline.telemetry`` logger, the
   OTLP exporter's own per-batch log records are suppressed, and the first
   successful export afterwards logs that export resumed (INFO).
4. :func:`force_flush` and :func:`shutdown` wait for the export thread at
   most ``timeout`` seconds; they never raise.

:func:`configure` also installs :class:`~thunderline.telemetry.RuntimeInstrument`
as the runtime's default instrument (:func:`thunderline.lowlevel.set_default_instrument`),
so nodes opened afterwards without an instrument of their own carry trace
context in every message; :func:`shutdown` (and the next ``configure``)
removes it again.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.context import (
    _SUPPRESS_INSTRUMENTATION_KEY,
    Context,
    attach,
    detach,
    set_value,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    TELEMETRY_SDK_LANGUAGE,
    TELEMETRY_SDK_NAME,
    TELEMETRY_SDK_VERSION,
    Resource,
)
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, Sampler
from opentelemetry.sdk.version import __version__ as sdk_version

from thunderline._version import __version__
from thunderline.runtime import Instrument, get_default_instrument, set_default_instrument
from thunderline.telemetry._config import TelemetryConfig, resolve_config
from thunderline.telemetry._runtime import RuntimeInstrument
from thunderline.telemetry._state import STATE, TRACER_NAME
from thunderline.telemetry._stats import COUNTERS

_logger = logging.getLogger("thunderline.telemetry")

# Loggers the OTLP/HTTP exporter writes its per-batch errors and retry notes to.
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.common._internal",
    "opentelemetry.exporter.otlp.proto.common._internal.trace_encoder",
    "urllib3.connectionpool",
)


class UrandomIdGenerator(IdGenerator):
    """Trace and span ids from ``os.urandom``.

    The SDK's default generator uses the module-level ``random``, which
    Hypothesis reseeds for every example, so ids would repeat across
    examples; this one cannot be reseeded.

    .. versionadded:: 0.1
    """

    def generate_span_id(self) -> int:
        """Return a random non-zero 64-bit span id.

        Returns:
            The span id.
        """
        while True:
            value = int.from_bytes(os.urandom(8), "big")
            if value:
                return value

    def generate_trace_id(self) -> int:
        """Return a random non-zero 128-bit trace id.

        Returns:
            The trace id.
        """
        while True:
            value = int.from_bytes(os.urandom(16), "big")
            if value:
                return value

    def is_trace_id_random(self) -> bool:
        """Say that every bit of the trace id is random (W3C random flag).

        Returns:
            True.
        """
        return True


class _Quiet(threading.local):
    active = False
    #: Called (once) at the exporter's first warning: a final flush's abort.
    on_record: Callable[[], None] | None = None


_QUIET = _Quiet()


class _QuietFilter(logging.Filter):
    """Drop records logged by the wrapped exporter while we are exporting."""

    def __init__(self) -> None:
        super().__init__()
        self.first_message: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if _QUIET.active:
            if self.first_message is None:
                self.first_message = record.getMessage()
            if record.levelno >= logging.WARNING and _QUIET.on_record is not None:
                abort, _QUIET.on_record = _QUIET.on_record, None
                abort()  # a refused connection or a retry: give up at once
            return False
        return True


_QUIET_FILTER = _QuietFilter()


def _short(message: str | None) -> str | None:
    """The OTLP exporter's retry note without its retry part: the cause alone."""
    if message is None:
        return None
    cause = message.split(" encountered while exporting", 1)[0]
    return cause.removeprefix("Transient error ").strip() or message


class _DropReporter:
    """Counts dropped spans; logs one warning per outage, one info on recovery."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dropping = False

    def dropped(self, count: int, reason: str) -> None:
        COUNTERS.add("dropped_spans", count)
        with self._lock:
            first, self._dropping = not self._dropping, True
        if first:
            _logger.warning(
                "dropping spans until export succeeds again (%s); the application keeps "
                "running, and dropped spans are counted (dropped_spans)",
                reason,
            )

    def exported(self, count: int) -> None:
        COUNTERS.add("exported_spans", count)
        with self._lock:
            recovered, self._dropping = self._dropping, False
        if recovered:
            _logger.info("span export resumed")


class _GuardedExporter(SpanExporter):
    """Wrap an exporter: never raise, count results, keep its logs quiet."""

    def __init__(self, inner: SpanExporter, target: str, reporter: _DropReporter) -> None:
        self._inner = inner
        self._target = target
        self._reporter = reporter
        #: Set for the final flush: the first warning the exporter logs (a
        #: refused connection, a retry) ends its retries, so a collector that
        #: is down does not hold shutdown for the retry backoff.
        self.stopping = False

    def _abort(self) -> None:
        try:
            self._inner.shutdown()
        except Exception:
            _logger.debug("exporter shutdown failed", exc_info=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        _QUIET_FILTER.first_message = None
        _QUIET.active = True
        _QUIET.on_record = self._abort if self.stopping else None
        try:
            result = self._inner.export(spans)
            detail = _short(_QUIET_FILTER.first_message)
        except Exception as error:  # noqa: BLE001 -- counted and reported below
            result, detail = SpanExportResult.FAILURE, repr(error)
        finally:
            _QUIET.active = False
            _QUIET.on_record = None
        if result is SpanExportResult.SUCCESS:
            self._reporter.exported(len(spans))
        else:
            COUNTERS.add("export_failures")
            self._reporter.dropped(
                len(spans), f"export to {self._target} failed: {detail or 'no detail'}"
            )
        return result

    def shutdown(self) -> None:
        _QUIET.active = True
        try:
            self._inner.shutdown()
        except Exception:
            _logger.debug("exporter shutdown failed", exc_info=True)
        finally:
            _QUIET.active = False

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _QueueProcessor(SpanProcessor):
    """A batch span processor whose callers never wait on the exporter."""

    def __init__(
        self,
        exporter: SpanExporter,
        reporter: _DropReporter,
        *,
        max_queue_size: int,
        max_export_batch_size: int,
        schedule_delay: float,
    ) -> None:
        self._exporter = exporter
        self._reporter = reporter
        self._max_queue_size = max_queue_size
        self._batch_size = max_export_batch_size
        self._schedule_delay = schedule_delay
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._flush_waiters: list[threading.Event] = []
        self._shutdown = False
        self._stopping = False
        self._thread = threading.Thread(
            target=self._work, name="thunderline-span-export", daemon=True
        )
        self._thread.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        with self._lock:
            accepted = not self._shutdown and len(self._queue) < self._max_queue_size
            if accepted:
                self._queue.append(span)
                full_batch = len(self._queue) >= self._batch_size
        if not accepted:
            reason = "telemetry is shut down" if self._shutdown else "export queue is full"
            self._reporter.dropped(1, reason)
        elif full_batch:
            self._wake.set()

    def _work(self) -> None:
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            while True:
                self._wake.wait(self._schedule_delay)
                self._wake.clear()
                with self._lock:
                    waiters, self._flush_waiters = self._flush_waiters, []
                    stopping = self._shutdown
                self._export_queued()
                for waiter in waiters:
                    waiter.set()
                if stopping:
                    return
        finally:
            detach(token)

    def _export_queued(self) -> None:
        while True:
            with self._lock:
                count = min(self._batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(count)]
            if not batch:
                return
            self._exporter.export(batch)

    def _request_flush(self, *, stop: bool) -> threading.Event:
        waiter = threading.Event()
        with self._lock:
            if stop:
                self._shutdown = True
            if not self._thread.is_alive():
                waiter.set()
            else:
                self._flush_waiters.append(waiter)
        self._wake.set()
        return waiter

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._request_flush(stop=False).wait(timeout_millis / 1000)

    def shutdown(self, timeout_millis: int = 30000) -> None:
        self.shutdown_within(timeout_millis / 1000)

    def shutdown_within(self, timeout: float) -> bool:
        with self._lock:
            if self._stopping:
                return True
            self._stopping = True
        if isinstance(self._exporter, _GuardedExporter):
            self._exporter.stopping = True
        flushed = self._request_flush(stop=True).wait(timeout)
        self._exporter.shutdown()
        with self._lock:
            left, self._queue = len(self._queue), collections.deque()
        if left:
            self._reporter.dropped(left, "telemetry shut down before export finished")
        return flushed and not left


class _ExportSampled(SpanProcessor):
    """Pass on only the spans of traces the configured sampler would sample at their root.

    Used with ``record_all``: every trace is recorded (for the extra
    processors), and this keeps export as the sampler decides. The decision
    depends on the trace id alone for the standard samplers, so a trace is
    exported whole or not at all.
    """

    def __init__(self, inner: SpanProcessor, sampler: Sampler) -> None:
        self._inner = inner
        self._sampler = sampler
        self._decisions: dict[int, bool] = {}

    def _exported(self, trace_id: int) -> bool:
        decision = self._decisions.get(trace_id)
        if decision is None:
            result = self._sampler.should_sample(Context(), trace_id, "root")  # as a root
            decision = result.decision is Decision.RECORD_AND_SAMPLE
            if len(self._decisions) >= 4096:
                self._decisions.clear()
            self._decisions[trace_id] = decision
        return decision

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and self._exported(span.context.trace_id):
            self._inner.on_end(span)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown_within(self, timeout: float) -> bool:
        if isinstance(self._inner, _QueueProcessor):
            return self._inner.shutdown_within(timeout)
        self._inner.shutdown()
        return True


class _Installed:
    """The runtime default instrument ``configure`` installed (to remove it again)."""

    instrument: Instrument | None = None
    previous: Instrument | None = None


_INSTALLED = _Installed()


def _install_runtime_instrument() -> None:
    instrument = RuntimeInstrument()
    _INSTALLED.previous = set_default_instrument(instrument)
    _INSTALLED.instrument = instrument


def _uninstall_runtime_instrument() -> None:
    instrument, _INSTALLED.instrument = _INSTALLED.instrument, None
    if instrument is not None and get_default_instrument() is instrument:
        set_default_instrument(_INSTALLED.previous)
    _INSTALLED.previous = None


def _install_quiet_filter() -> None:
    for name in _EXPORTER_LOGGERS:
        logger = logging.getLogger(name)
        if _QUIET_FILTER not in logger.filters:
            logger.addFilter(_QUIET_FILTER)


def configure(
    *,
    config: TelemetryConfig | None = None,
    enabled: bool | None = None,
    service_name: str | None = None,
    resource_attributes: dict[str, str] | None = None,
    endpoint: str | None = None,
    traces_endpoint: str | None = None,
    traces_exporter: str | None = None,
    sampler: str | None = None,
    sampler_ratio: float | None = None,
    export_timeout: float | None = None,
    exporter: SpanExporter | None = None,
    batch: bool = True,
    id_generator: IdGenerator | None = None,
    install_global: bool = True,
    environ: dict[str, str] | None = None,
    extra_processors: Sequence[SpanProcessor] = (),
    record_all: bool = False,
) -> TelemetryConfig:
    """Build a tracer provider and make thunderline's span helpers use it.

    Settings come from ``config`` if given, else from the environment (see
    :meth:`TelemetryConfig.from_env`); keyword arguments override both. The
    precedence is decided in one place, :func:`thunderline.telemetry.resolve_config`,
    for the library, ``thunderline demo`` and ``thunderline run`` alike.
    Calling ``configure()`` again shuts the previous provider down first.

    With tracing enabled it also makes
    :class:`~thunderline.telemetry.RuntimeInstrument` the runtime's default
    instrument, so nodes opened afterwards without an instrument carry each
    message's trace context (``shutdown`` removes it). Disabled, it installs
    nothing (no cost per message; :func:`continue_from` and :func:`inject`
    still carry context through event metadata).

    Args:
        config: A complete configuration to start from instead of the
            environment.
        enabled: False installs nothing that records and no runtime hook:
            spans become no-ops (``continue_from`` / ``inject`` still work).
        service_name: The ``service.name`` resource attribute.
        resource_attributes: Resource attributes replacing the configured ones.
        endpoint: A base OTLP/HTTP URL; ``/v1/traces`` is appended.
        traces_endpoint: The full OTLP/HTTP traces URL, used verbatim.
        traces_exporter: ``otlp``, ``console``, ``"otlp,console"`` or ``none``.
        sampler: A sampler name (see :class:`TelemetryConfig`).
        sampler_ratio: The ratio in [0, 1]; without ``sampler`` it selects
            ``parentbased_traceidratio`` unless a ratio sampler is configured.
        export_timeout: Seconds one OTLP export may take, retries included.
        exporter: Export here instead of the configured exporters (e.g. an
            in-memory exporter in tests); it is wrapped so it never raises
            into the export thread and its results are counted.
        batch: True exports from a background queue (never blocks); False
            exports synchronously as each span ends (for tests).
        id_generator: The id generator; :class:`UrandomIdGenerator` by default.
        install_global: Also set the OpenTelemetry global tracer provider,
            when no other provider was set before (it can be set only once).
        environ: The environment to read instead of ``os.environ``.
        extra_processors: More span processors for the same provider, run after
            the exporting one (e.g. a collector that keeps some spans in memory).
        record_all: Record every trace (so ``extra_processors`` see them all)
            and let the sampler decide only what is exported: a trace is
            exported when the sampler would sample it at its root (remote
            parents' sampled flags are not consulted then). For tools that
            show a trace whatever the sampling, like ``thunderline demo``.

    Returns:
        The configuration in effect.

    Raises:
        TelemetryConfigError: If an argument or an endpoint variable has an
            unusable value; nothing was changed then.

    .. versionadded:: 0.1
    """
    new_config = resolve_config(
        environ,
        config=config,
        enabled=enabled,
        service_name=service_name,
        resource_attributes=resource_attributes,
        endpoint=endpoint,
        traces_endpoint=traces_endpoint,
        traces_exporter=traces_exporter,
        sampler=sampler,
        sampler_ratio=sampler_ratio,
        export_timeout=export_timeout,
    )

    shutdown()
    if not new_config.enabled:
        STATE.tracer = trace.NoOpTracer()
        return new_config
    _install_runtime_instrument()

    resource = Resource(
        {
            TELEMETRY_SDK_LANGUAGE: "python",
            TELEMETRY_SDK_NAME: "opentelemetry",
            TELEMETRY_SDK_VERSION: sdk_version,
            **dict(new_config.resource_attributes),
            SERVICE_NAME: new_config.service_name,
        }
    )
    reporter = _DropReporter()
    exporters: list[tuple[SpanExporter, str]] = []
    if exporter is not None:
        exporters.append((exporter, type(exporter).__name__))
    else:
        for name in new_config.traces_exporter:
            if name == "otlp":
                otlp = OTLPSpanExporter(
                    endpoint=new_config.traces_endpoint, timeout=new_config.export_timeout
                )
                exporters.append((otlp, new_config.traces_endpoint))
            else:
                exporters.append((ConsoleSpanExporter(out=sys.stdout), "standard output"))
    _install_quiet_filter()
    processors: list[SpanProcessor] = []
    for inner, target in exporters:
        guarded = _GuardedExporter(inner, target, reporter)
        processor: SpanProcessor
        if batch:
            processor = _QueueProcessor(
                guarded,
                reporter,
                max_queue_size=new_config.max_queue_size,
                max_export_batch_size=new_config.max_export_batch_size,
                schedule_delay=new_config.schedule_delay,
            )
        else:
            processor = SimpleSpanProcessor(guarded)
        if record_all:
            processor = _ExportSampled(processor, new_config.build_sampler())
        processors.append(processor)
    provider = TracerProvider(
        sampler=ParentBased(ALWAYS_ON) if record_all else new_config.build_sampler(),
        resource=resource,
        id_generator=id_generator or UrandomIdGenerator(),
    )
    for processor in (*processors, *extra_processors):
        provider.add_span_processor(processor)
    STATE.provider = provider
    STATE.processors = (*processors, *extra_processors)
    STATE.tracer = provider.get_tracer(TRACER_NAME, __version__)
    if install_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    return new_config


def force_flush(timeout: float = 5.0) -> bool:
    """Export every span that ended before this call, waiting at most ``timeout``.

    Blocks the calling thread for up to ``timeout`` seconds; from async code
    run it in a worker thread (``anyio.to_thread.run_sync``).

    Args:
        timeout: Seconds to wait for the export thread.

    Returns:
        True if the export finished in time (failed exports count as
        finished: their spans were dropped and counted), False otherwise.
        True when nothing is configured.

    .. versionadded:: 0.1
    """
    provider = STATE.provider
    if provider is None:
        return True
    ok = True
    for processor in STATE.processors:
        assert isinstance(processor, SpanProcessor)
        ok = processor.force_flush(int(timeout * 1000)) and ok
    return ok


def shutdown(timeout: float = 5.0) -> bool:
    """Flush and stop the configured provider; spans ended later are no-ops.

    Also removes the runtime default instrument :func:`configure` installed
    (nodes already open keep it until they close).

    Blocks for at most about ``timeout`` seconds (plus one export's
    ``export_timeout`` if an export is already running), never raises, and
    is safe to call when nothing is configured or twice.

    Args:
        timeout: Seconds to wait for queued spans to be exported.

    Returns:
        True if every queued span was exported or counted as dropped in
        time, False if some were still waiting (they are counted as dropped).

    .. versionadded:: 0.1
    """
    provider, processors = STATE.provider, STATE.processors
    STATE.reset()
    _uninstall_runtime_instrument()
    if provider is None:
        return True
    ok = True
    for processor in processors:
        if isinstance(processor, _QueueProcessor | _ExportSampled):
            ok = processor.shutdown_within(timeout) and ok
    provider.shutdown()
    return ok
