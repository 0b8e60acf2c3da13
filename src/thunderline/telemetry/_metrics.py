"""Runtime and saga metrics through OpenTelemetry, exported like the traces.

Example::

    >>> from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    >>> from thunderline import telemetry
    >>> reader = InMemoryMetricReader()  # omit to export OTLP/HTTP per OTEL_*
    >>> _ = telemetry.configure_metrics(reader=reader, install_global=False)
    >>> metrics = telemetry.RuntimeMetrics()
    >>> metrics.update(telemetry.RuntimeSnapshot(processes=3, mailbox_total=5, mailbox_max=4))
    >>> data = reader.get_metrics_data()
    >>> values = {
    ...     m.name: m.data.data_points[0].value
    ...     for rm in data.resource_metrics
    ...     for sm in rm.scope_metrics
    ...     for m in sm.metrics
    ...     if m.data.data_points
    ... }
    >>> values["thunderline.processes"], values["thunderline.mailbox.max_depth"]
    (3, 4)
    >>> telemetry.shutdown_metrics()
    True

What is measured (instrument names; attributes in brackets):

==================================== ================== ======================================
``thunderline.processes``            gauge              live processes of the node
``thunderline.mailbox.messages``     gauge              messages waiting in all mailboxes
``thunderline.mailbox.max_depth``    gauge              the deepest mailbox
``thunderline.messages.handled``     counter            messages taken out of mailboxes
``thunderline.process.exits``        counter            process exits
                                                        [``thunderline.exit.abnormal``]
``thunderline.restarts``             counter            supervisor restarts
                                                        [``thunderline.restart.result``:
                                                        ``restarted`` or ``failed``]
``thunderline.sagas.finished``       counter            saga runs [``saga.name``,
                                                        ``saga.outcome``, ``saga.nested``]
``thunderline.saga.duration``        histogram (s)      saga runs [same attributes]
==================================== ================== ======================================

``saga.outcome`` is ``succeeded``, ``rolled_back`` (failed, every completed
step undone), ``rollback_incomplete`` (failed, some undo failed or was not
reached), ``halted``, ``cancelled`` or ``crashed``.

Where the numbers come from: :class:`MetricsInstrument` (a runtime
instrument: combine it with :class:`RuntimeInstrument` through
:class:`CompositeInstrument`) counts messages, exits and restarts as they
happen; :class:`SagaMetrics` (a saga instrument) counts saga outcomes; the
three gauges are read from a :class:`RuntimeSnapshot`, which the
OpenTelemetry reader cannot compute itself because it runs in its own thread
and the process table belongs to the node. So either call
:meth:`RuntimeMetrics.sample` inside the node (or run
:meth:`RuntimeMetrics.sample_every` as a task there), push a snapshot with
:meth:`RuntimeMetrics.update` (any object with ``processes``,
``mailbox_total`` and ``mailbox_max`` works, e.g. the daemon's node
statistics), or pass ``snapshot=`` a thread-safe callable.

Export: :func:`configure_metrics` reads the same ``OTEL_*`` variables as
:func:`configure` (service name, resource, ``OTEL_SDK_DISABLED``, the base
endpoint) plus ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` (used verbatim),
``OTEL_METRIC_EXPORT_INTERVAL`` (ms, default 60000) and
``OTEL_METRIC_EXPORT_TIMEOUT`` (ms, default 30000). Metrics go to
``{endpoint}/v1/metrics`` over OTLP/HTTP from the SDK's reader thread; a
collector that is down never blocks or raises into the application: the
failed export is counted (:func:`metrics_statistics`), one warning is logged
per outage, and export resumes when the collector is back.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Protocol

import anyio
import attrs
from opentelemetry import metrics
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    TELEMETRY_SDK_LANGUAGE,
    TELEMETRY_SDK_NAME,
    TELEMETRY_SDK_VERSION,
    Resource,
)
from opentelemetry.sdk.version import __version__ as sdk_version

from thunderline._version import __version__
from thunderline.runtime import BaseInstrument, Pid, is_quiet, process_info, processes
from thunderline.sagas import (
    RollbackStatus,
    SagaFailed,
    SagaHalted,
    SagaInstrument,
    SagaOutcome,
    SagaRunInfo,
    SagaSucceeded,
)
from thunderline.telemetry._config import (
    DEFAULT_ENDPOINT,
    TelemetryConfig,
    check_endpoint,
)
from thunderline.telemetry._errors import TelemetryConfigError
from thunderline.telemetry._export import _QUIET, _QUIET_FILTER, _install_quiet_filter

__all__ = [
    "MetricsInstrument",
    "MetricsStatistics",
    "RuntimeMetrics",
    "RuntimeSnapshot",
    "SagaMetrics",
    "configure_metrics",
    "force_flush_metrics",
    "metrics_statistics",
    "shutdown_metrics",
]

_logger = logging.getLogger("thunderline.telemetry")
METER_NAME = "thunderline"
METRICS_PATH = "/v1/metrics"
_METRIC_EXPORTER_LOGGER = "opentelemetry.exporter.otlp.proto.http.metric_exporter"


# ------------------------------------------------------------- statistics


@attrs.frozen
class MetricsStatistics:
    """A snapshot of metric export counters since the process started.

    Attributes:
        exports: Metric exports the exporter accepted.
        export_failures: Metric exports that failed (collector down,
            unreachable, or rejecting); their data points were dropped.

    .. versionadded:: 0.1
    """

    exports: int
    export_failures: int


class _Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exports = 0
        self.failures = 0
        self.failing = False

    def result(self, ok: bool, detail: str) -> None:
        with self._lock:
            if ok:
                self.exports += 1
                recovered, self.failing = self.failing, False
                first = False
            else:
                self.failures += 1
                first, self.failing = not self.failing, True
                recovered = False
        if first:
            _logger.warning(
                "metric export failed (%s); dropping metrics until export succeeds again "
                "(the application keeps running; failed exports are counted)",
                detail,
            )
        if recovered:
            _logger.info("metric export resumed")

    def snapshot(self) -> MetricsStatistics:
        with self._lock:
            return MetricsStatistics(exports=self.exports, export_failures=self.failures)


_COUNTERS = _Counters()


def metrics_statistics() -> MetricsStatistics:
    """Return the metric export counters.

    Returns:
        A frozen :class:`MetricsStatistics` record.

    .. versionadded:: 0.1
    """
    return _COUNTERS.snapshot()


# ------------------------------------------------------------------ export


class _GuardedMetricExporter(MetricExporter):
    """Wrap an exporter: never raise, count results, keep its logs quiet."""

    def __init__(self, inner: MetricExporter, target: str) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._target = target

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        _QUIET_FILTER.first_message = None
        _QUIET.active = True
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
            detail = _QUIET_FILTER.first_message
        except Exception as error:  # noqa: BLE001 -- counted and reported below
            result, detail = MetricExportResult.FAILURE, repr(error)
        finally:
            _QUIET.active = False
        ok = result is MetricExportResult.SUCCESS
        _COUNTERS.result(ok, f"export to {self._target} failed: {detail or 'no detail'}")
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        try:
            return self._inner.force_flush(timeout_millis)
        except Exception:
            _logger.debug("metric exporter flush failed", exc_info=True)
            return False

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        _QUIET.active = True
        try:
            self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)
        except Exception:
            _logger.debug("metric exporter shutdown failed", exc_info=True)
        finally:
            _QUIET.active = False


class _State:
    def __init__(self) -> None:
        self.provider: MeterProvider | None = None

    @property
    def meter(self) -> Meter:
        if self.provider is not None:
            return self.provider.get_meter(METER_NAME, __version__)
        return metrics.get_meter(METER_NAME, __version__)


_STATE = _State()


def _milliseconds(get: Callable[[str], str | None], name: str, default: int) -> int:
    raw = get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value <= 0:
        _logger.warning("%s=%r is not a positive integer; using %d", name, raw, default)
        return default
    return value


def metrics_endpoint_from_env(environ: Mapping[str, str]) -> str:
    """The OTLP/HTTP metrics URL the ``OTEL_*`` variables select.

    Args:
        environ: The environment to read.

    Returns:
        ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` as given, else the base
        endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``, its alias
        ``OTEL_ENDPOINT``, or ``http://localhost:4318``) plus ``/v1/metrics``.

    Raises:
        TelemetryConfigError: If the variable used is not an http(s) URL.
    """

    def get(name: str) -> str | None:
        value = environ.get(name)
        return value.strip() if value and value.strip() else None

    verbatim = get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    if verbatim is not None:
        return check_endpoint("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", verbatim)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_ENDPOINT"):
        base = get(name)
        if base is not None:
            return check_endpoint(name, base).rstrip("/") + METRICS_PATH
    return DEFAULT_ENDPOINT + METRICS_PATH


def configure_metrics(
    *,
    config: TelemetryConfig | None = None,
    endpoint: str | None = None,
    metrics_endpoint: str | None = None,
    export_interval: float | None = None,
    export_timeout: float | None = None,
    reader: MetricReader | None = None,
    exporter: MetricExporter | None = None,
    install_global: bool = True,
    environ: Mapping[str, str] | None = None,
) -> MeterProvider | None:
    """Build a meter provider from the ``OTEL_*`` environment and make it thunderline's.

    Calling it again shuts the previous provider down first.

    Args:
        config: Service name, resource and ``enabled`` from this configuration
            instead of the environment.
        endpoint: A base OTLP/HTTP URL; ``/v1/metrics`` is appended.
        metrics_endpoint: The full OTLP/HTTP metrics URL, used verbatim.
        export_interval: Seconds between exports (``OTEL_METRIC_EXPORT_INTERVAL``).
        export_timeout: Seconds one export may take, retries included
            (``OTEL_METRIC_EXPORT_TIMEOUT``, and at most the trace
            ``export_timeout`` of the configuration).
        reader: Read metrics with this reader instead of exporting them
            periodically (e.g. an ``InMemoryMetricReader`` in tests).
        exporter: Export with this exporter instead of OTLP/HTTP (wrapped so
            it never raises and its results are counted).
        install_global: Also set the OpenTelemetry global meter provider when
            none was set before (it can be set only once).
        environ: The environment to read instead of ``os.environ``.

    Returns:
        The provider, or None when telemetry is disabled (``OTEL_SDK_DISABLED``).

    Raises:
        TelemetryConfigError: If an endpoint or a duration is unusable;
            nothing was changed then.

    .. versionadded:: 0.1
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    base = TelemetryConfig.from_env(env) if config is None else config
    if metrics_endpoint is not None:
        target = check_endpoint("metrics_endpoint", metrics_endpoint)
    elif endpoint is not None:
        target = check_endpoint("endpoint", endpoint).rstrip("/") + METRICS_PATH
    else:
        target = metrics_endpoint_from_env(env)

    def get(name: str) -> str | None:
        value = env.get(name)
        return value.strip() if value and value.strip() else None

    for setting, value in (
        ("export_interval", export_interval),
        ("export_timeout", export_timeout),
    ):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise TelemetryConfigError(setting, value, "a finite number of seconds > 0")
    interval_ms = (
        export_interval * 1000
        if export_interval is not None
        else _milliseconds(get, "OTEL_METRIC_EXPORT_INTERVAL", 60_000)
    )
    timeout_ms = (
        export_timeout * 1000
        if export_timeout is not None
        else min(
            _milliseconds(get, "OTEL_METRIC_EXPORT_TIMEOUT", 30_000), base.export_timeout * 1000
        )
    )

    shutdown_metrics()
    if not base.enabled:
        return None
    resource = Resource(
        {
            TELEMETRY_SDK_LANGUAGE: "python",
            TELEMETRY_SDK_NAME: "opentelemetry",
            TELEMETRY_SDK_VERSION: sdk_version,
            **dict(base.resource_attributes),
            SERVICE_NAME: base.service_name,
        }
    )
    if reader is None:
        if exporter is None:
            exporter = OTLPMetricExporter(endpoint=target, timeout=timeout_ms / 1000)
        else:
            target = type(exporter).__name__
        _install_quiet_filter()
        metric_logger = logging.getLogger(_METRIC_EXPORTER_LOGGER)
        if _QUIET_FILTER not in metric_logger.filters:
            metric_logger.addFilter(_QUIET_FILTER)
        reader = PeriodicExportingMetricReader(
            _GuardedMetricExporter(exporter, target),
            export_interval_millis=interval_ms,
            export_timeout_millis=timeout_ms,
        )
    provider = MeterProvider(metric_readers=[reader], resource=resource)
    _STATE.provider = provider
    if install_global and type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider":
        metrics.set_meter_provider(provider)
    return provider


def force_flush_metrics(timeout: float = 5.0) -> bool:
    """Collect and export the metrics now, waiting at most ``timeout`` seconds.

    Blocks the calling thread; from async code use ``anyio.to_thread.run_sync``.

    Args:
        timeout: Seconds to wait.

    Returns:
        True if the export finished in time (a failed export counts as
        finished; it was counted). True when nothing is configured.

    .. versionadded:: 0.1
    """
    provider = _STATE.provider
    if provider is None:
        return True
    try:
        return bool(provider.force_flush(int(timeout * 1000)))
    except Exception:
        _logger.debug("metric flush failed", exc_info=True)
        return False


def shutdown_metrics(timeout: float = 5.0) -> bool:
    """Export what is left and stop the configured meter provider; never raises.

    Args:
        timeout: Seconds to wait for the last export.

    Returns:
        True if it shut down cleanly in time (or nothing was configured).

    .. versionadded:: 0.1
    """
    provider, _STATE.provider = _STATE.provider, None
    if provider is None:
        return True
    try:
        provider.shutdown(int(timeout * 1000))
    except Exception:
        _logger.debug("meter provider shutdown failed", exc_info=True)
        return False
    return True


# ------------------------------------------------------------- snapshots


class NodeGauges(Protocol):
    """Anything with the three gauge values (e.g. :class:`RuntimeSnapshot`)."""

    @property
    def processes(self) -> int:
        """Live processes."""

    @property
    def mailbox_total(self) -> int:
        """Messages waiting in all mailboxes."""

    @property
    def mailbox_max(self) -> int:
        """The deepest mailbox."""


@attrs.frozen
class RuntimeSnapshot:
    """The node gauges at one moment.

    Attributes:
        processes: Live processes.
        mailbox_total: Messages waiting in all mailboxes.
        mailbox_max: The deepest mailbox (0 without processes).

    .. versionadded:: 0.1
    """

    processes: int
    mailbox_total: int
    mailbox_max: int

    @classmethod
    def of_current_node(cls) -> RuntimeSnapshot:
        """Measure the node the caller runs in.

        Returns:
            The snapshot.

        Raises:
            thunderline.runtime.ThunderlineError: If called outside a node.
        """
        depths = [
            info.message_queue_len for pid in processes() if (info := process_info(pid)) is not None
        ]
        return cls(
            processes=len(depths), mailbox_total=sum(depths), mailbox_max=max(depths, default=0)
        )


# ----------------------------------------------------------- instruments


class MetricsInstrument(BaseInstrument):
    """A runtime instrument counting messages handled, process exits and restarts.

    Install it next to :class:`RuntimeInstrument` with
    :class:`CompositeInstrument`. Counting a message costs one integer
    increment; the SDK reads the total when it collects.

    Args:
        meter: The meter to create instruments with (default: the one
            :func:`configure_metrics` installed, else the global meter).

    Attributes:
        messages_handled: Messages taken out of mailboxes so far.

    .. versionadded:: 0.1
    """

    def __init__(self, meter: Meter | None = None) -> None:
        meter = meter if meter is not None else _STATE.meter
        self.messages_handled = 0
        meter.create_observable_counter(
            "thunderline.messages.handled",
            callbacks=[self._observe_handled],
            unit="{message}",
            description="Messages taken out of process mailboxes",
        )
        self._exits = meter.create_counter(
            "thunderline.process.exits", unit="{process}", description="Process exits"
        )
        self._restarts = meter.create_counter(
            "thunderline.restarts",
            unit="{restart}",
            description="Children restarted by supervisors (or whose restart failed)",
        )

    def _observe_handled(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.messages_handled)]

    def message_received(self, pid: Pid, label: str, carrier: Any) -> Any:
        """Count the message."""
        self.messages_handled += 1
        return None

    def process_exited(self, pid: Pid, reason: Any) -> None:
        """Count the exit, abnormal unless the reason is quiet (normal or shutdown)."""
        self._exits.add(1, {"thunderline.exit.abnormal": not is_quiet(reason)})

    def child_restarted(
        self,
        supervisor: Pid,
        child_id: Hashable,
        old_pid: Pid | None,
        new_pid: Pid | None,
        reason: Any,
    ) -> None:
        """Count the restart (``failed`` when the child did not start)."""
        result = "restarted" if new_pid is not None else "failed"
        self._restarts.add(1, {"thunderline.restart.result": result})


def saga_outcome_name(outcome: SagaOutcome | None, error: BaseException | None) -> str:
    """Classify how a run ended, as the ``saga.outcome`` metric attribute.

    Args:
        outcome: The run's outcome, if it returned one.
        error: What escaped the run otherwise.

    Returns:
        ``succeeded``, ``rolled_back``, ``rollback_incomplete``, ``halted``,
        ``cancelled`` or ``crashed``.
    """
    if isinstance(outcome, SagaSucceeded):
        return "succeeded"
    if isinstance(outcome, SagaFailed):
        if outcome.rollback.status is RollbackStatus.ROLLED_BACK:
            return "rolled_back"
        return "rollback_incomplete"
    if isinstance(outcome, SagaHalted):
        return "halted"
    return "crashed" if isinstance(error, Exception) else "cancelled"


class SagaMetrics(SagaInstrument):
    """A saga instrument counting how runs end, and how long they take.

    Combine it with :class:`SagaTracer` through :class:`CompositeSagaInstrument`.

    Args:
        meter: The meter to create instruments with (default: the one
            :func:`configure_metrics` installed, else the global meter).

    .. versionadded:: 0.1
    """

    def __init__(self, meter: Meter | None = None) -> None:
        meter = meter if meter is not None else _STATE.meter
        self._finished = meter.create_counter(
            "thunderline.sagas.finished", unit="{saga}", description="Saga runs by outcome"
        )
        self._duration = meter.create_histogram(
            "thunderline.saga.duration", unit="s", description="Saga run duration"
        )
        self._started: dict[int, float] = {}

    def saga_started(self, run: SagaRunInfo) -> None:
        """Remember when the run started (event-loop time)."""
        self._started[run.run_id] = anyio.current_time()

    def saga_finished(
        self, run: SagaRunInfo, outcome: SagaOutcome | None, error: BaseException | None
    ) -> None:
        """Count the run by ``saga.name``, ``saga.outcome`` and ``saga.nested``."""
        attributes: dict[str, str | bool] = {
            "saga.name": run.saga.name,
            "saga.outcome": saga_outcome_name(outcome, error),
            "saga.nested": run.parent is not None,
        }
        self._finished.add(1, attributes)
        started = self._started.pop(run.run_id, None)
        if started is not None:
            self._duration.record(max(0.0, anyio.current_time() - started), attributes)


class RuntimeMetrics:
    """The node's gauges, plus the instruments that count what the node does.

    Args:
        meter: The meter to create instruments with (default: the one
            :func:`configure_metrics` installed, else the global meter).
        snapshot: A callable returning the current gauges, called from the
            metric reader's thread at each collection (so it must be
            thread-safe and must not need a current node); without it the
            gauges report the last :meth:`sample` or :meth:`update`.

    Attributes:
        instrument: A :class:`MetricsInstrument` on the same meter.
        saga_instrument: A :class:`SagaMetrics` on the same meter.

    .. versionadded:: 0.1
    """

    def __init__(
        self, meter: Meter | None = None, *, snapshot: Callable[[], NodeGauges] | None = None
    ) -> None:
        meter = meter if meter is not None else _STATE.meter
        self._snapshot = snapshot
        self._last: NodeGauges | None = None
        self.instrument = MetricsInstrument(meter)
        self.saga_instrument = SagaMetrics(meter)
        for name, field, description in (
            ("thunderline.processes", "processes", "Live processes"),
            ("thunderline.mailbox.messages", "mailbox_total", "Messages waiting in all mailboxes"),
            ("thunderline.mailbox.max_depth", "mailbox_max", "Messages in the deepest mailbox"),
        ):
            meter.create_observable_gauge(
                name,
                callbacks=[self._observer(field)],
                unit="{process}" if field == "processes" else "{message}",
                description=description,
            )

    def _observer(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            gauges = self._current()
            if gauges is None:
                return []
            return [Observation(int(getattr(gauges, field)))]

        return observe

    def _current(self) -> NodeGauges | None:
        if self._snapshot is None:
            return self._last
        try:
            return self._snapshot()
        except Exception:
            _logger.debug("metrics snapshot function failed", exc_info=True)
            return self._last

    def update(self, gauges: NodeGauges) -> None:
        """Report these gauges until the next update.

        Args:
            gauges: Any object with ``processes``, ``mailbox_total`` and
                ``mailbox_max``.
        """
        self._last = gauges

    def sample(self) -> RuntimeSnapshot:
        """Measure the current node now and report it (call it inside the node).

        Returns:
            The snapshot taken.
        """
        snapshot = RuntimeSnapshot.of_current_node()
        self._last = snapshot
        return snapshot

    async def sample_every(self, interval: float) -> None:
        """Call :meth:`sample` every ``interval`` seconds until cancelled.

        Run it as a task (or process) of the node, e.g.
        ``task_group.start_soon(metrics.sample_every, 5.0)``.

        Args:
            interval: Seconds between samples.
        """
        while True:
            self.sample()
            await anyio.sleep(interval)
