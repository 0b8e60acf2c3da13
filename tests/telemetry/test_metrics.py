"""Metrics through OpenTelemetry: runtime gauges and counters, saga outcomes, export, composites."""

from __future__ import annotations

import http.server
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData

import thunderline.runtime as tl
from thunderline import telemetry
from thunderline.runtime import BaseInstrument, ChildSpec, Pid
from thunderline.sagas import Halt, SagaBuilder, run_saga
from thunderline.telemetry._metrics import metrics_endpoint_from_env

pytestmark = pytest.mark.anyio

LIMIT = 20

Points = dict[tuple[str, frozenset[tuple[str, Any]]], Any]


def points(reader: InMemoryMetricReader) -> Points:
    """Every data point's value by (instrument name, attributes)."""
    data: MetricsData | None = reader.get_metrics_data()
    found: Points = {}
    if data is None:
        return found
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, frozenset((point.attributes or {}).items()))
                    found[key] = getattr(point, "value", None) or getattr(point, "count", None)
    return found


def value(found: Points, name: str, **attributes: Any) -> Any:
    return found.get((name, frozenset(attributes.items())))


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    memory = InMemoryMetricReader()
    telemetry.configure_metrics(reader=memory, install_global=False, environ={})
    try:
        yield memory
    finally:
        telemetry.shutdown_metrics()


async def in_node(instrument: Any, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` as a process of a fresh node and wait for it."""
    errors: list[BaseException] = []

    async def main() -> None:
        try:
            await body()
        except BaseException as error:
            errors.append(error)
            raise

    async with tl.open_node(instrument=instrument) as node:
        done = anyio.Event()
        pid, _ = node.spawn(main, (), parent=None, link=False, monitor=False, trap_exit=False)
        node.processes[pid].exit_callbacks.append(lambda _p, _r: done.set())
        with anyio.fail_after(LIMIT):
            await done.wait()
    if errors:
        raise errors[0]


async def _worker() -> None:
    while True:
        message = await tl.receive()
        if message == "crash":
            raise RuntimeError("asked to crash")


async def _start_worker() -> Pid:
    return tl.spawn_link(_worker)


async def test_runtime_gauges_and_counters(
    anyio_backend: str, reader: InMemoryMetricReader
) -> None:
    metrics = telemetry.RuntimeMetrics()
    instrument = telemetry.CompositeInstrument(telemetry.RuntimeInstrument(), metrics.instrument)
    seen: dict[str, Any] = {}

    async def body() -> None:
        sup = await tl.start_supervisor([ChildSpec(id="worker", start=_start_worker)])
        (child,) = await tl.which_children(sup)
        idle = tl.spawn(anyio.sleep_forever)  # never receives: its mailbox fills
        for n in range(4):
            tl.send(idle, n)
        before = metrics.instrument.messages_handled
        tl.send(child.pid, "hello")
        tl.send(child.pid, "crash")
        while (await tl.which_children(sup))[0].pid in (None, child.pid):
            await anyio.sleep(0.001)
        seen["handled"] = metrics.instrument.messages_handled - before
        seen["snapshot"] = metrics.sample()
        seen["processes"] = len(tl.processes())

    await in_node(instrument, body)
    snapshot = seen["snapshot"]
    assert snapshot.processes == seen["processes"] >= 3  # main, supervisor, worker, idle
    assert snapshot.mailbox_max == 4
    assert snapshot.mailbox_total >= 4
    assert seen["handled"] >= 2  # "hello" and "crash" (plus supervisor traffic)
    found = points(reader)
    assert value(found, "thunderline.processes") == snapshot.processes
    assert value(found, "thunderline.mailbox.max_depth") == 4
    assert value(found, "thunderline.mailbox.messages") == snapshot.mailbox_total
    assert value(found, "thunderline.restarts", **{"thunderline.restart.result": "restarted"}) == 1
    assert value(found, "thunderline.messages.handled") == metrics.instrument.messages_handled
    assert value(found, "thunderline.process.exits", **{"thunderline.exit.abnormal": True}) >= 1


async def test_sample_every_samples_inside_the_node(
    anyio_backend: str, reader: InMemoryMetricReader
) -> None:
    metrics = telemetry.RuntimeMetrics()

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(metrics.sample_every, 0.001)
            for _ in range(3):
                tl.spawn(anyio.sleep_forever)
            while (value(points(reader), "thunderline.processes") or 0) < 4:
                await anyio.sleep(0.001)
            tg.cancel_scope.cancel()

    await in_node(None, body)
    assert value(points(reader), "thunderline.processes") >= 4


def test_snapshot_callable_is_read_at_collection_time(reader: InMemoryMetricReader) -> None:
    current = [telemetry.RuntimeSnapshot(processes=1, mailbox_total=0, mailbox_max=0)]
    telemetry.RuntimeMetrics(snapshot=lambda: current[0])
    assert value(points(reader), "thunderline.processes") == 1
    current[0] = telemetry.RuntimeSnapshot(processes=7, mailbox_total=9, mailbox_max=5)
    found = points(reader)
    assert value(found, "thunderline.processes") == 7
    assert value(found, "thunderline.mailbox.messages") == 9


def test_no_gauges_before_any_snapshot(reader: InMemoryMetricReader) -> None:
    telemetry.RuntimeMetrics()
    assert value(points(reader), "thunderline.processes") is None


def test_snapshot_outside_a_node_is_an_error() -> None:
    with pytest.raises(tl.ThunderlineError):
        telemetry.RuntimeSnapshot.of_current_node()


async def test_saga_outcomes_are_counted(anyio_backend: str, reader: InMemoryMetricReader) -> None:
    saga_metrics = telemetry.SagaMetrics()

    async def ok() -> str:
        return "ok"

    async def boom() -> None:
        raise ValueError("boom")

    async def undo_ok(value: str) -> None:
        return None

    async def undo_bad(value: str) -> None:
        raise OSError("cannot undo")

    async def halt() -> Halt:
        return Halt("later")

    def saga(name: str, second: Any, undo: Any = undo_ok) -> Any:
        b = SagaBuilder(name)
        b.step("first", ok, undo=undo)
        b.step("second", second, wait_for=["first"])
        return b.build(returns="second")

    with anyio.fail_after(LIMIT):
        for _ in range(2):
            await run_saga(saga("a", ok), instrument=saga_metrics)
        await run_saga(saga("a", boom), instrument=saga_metrics)
        await run_saga(saga("a", boom, undo_bad), max_undo_attempts=1, instrument=saga_metrics)
        await run_saga(saga("b", halt), instrument=saga_metrics)
    found = points(reader)

    def count(name: str, outcome: str) -> Any:
        return value(
            found,
            "thunderline.sagas.finished",
            **{"saga.name": name, "saga.outcome": outcome, "saga.nested": False},
        )

    assert count("a", "succeeded") == 2
    assert count("a", "rolled_back") == 1
    assert count("a", "rollback_incomplete") == 1
    assert count("b", "halted") == 1
    duration = value(
        found,
        "thunderline.saga.duration",
        **{"saga.name": "a", "saga.outcome": "succeeded", "saga.nested": False},
    )
    assert duration == 2  # histogram count


async def test_cancelled_saga_is_counted(anyio_backend: str, reader: InMemoryMetricReader) -> None:
    saga_metrics = telemetry.SagaMetrics()

    async def forever() -> None:
        await anyio.sleep_forever()

    b = SagaBuilder("stuck")
    b.step("forever", forever)
    with anyio.move_on_after(0.01):
        await run_saga(b.build(returns="forever"), instrument=saga_metrics)
    found = points(reader)
    assert (
        value(
            found,
            "thunderline.sagas.finished",
            **{"saga.name": "stuck", "saga.outcome": "cancelled", "saga.nested": False},
        )
        == 1
    )


# --- composites ------------------------------------------------------------------------


class _Broken(BaseInstrument):
    def capture(self, sender: Pid | None, dest: Pid, dest_label: str, operation: str) -> Any:
        raise RuntimeError("broken capture")

    def message_received(self, pid: Pid, label: str, carrier: Any) -> Any:
        raise RuntimeError("broken receive")


class _Journal(BaseInstrument):
    def __init__(self, name: str, journal: list[tuple[str, str, Any]]) -> None:
        self.name = name
        self.journal = journal

    def capture(self, sender: Pid | None, dest: Pid, dest_label: str, operation: str) -> Any:
        return f"carrier-{self.name}"

    def message_received(self, pid: Pid, label: str, carrier: Any) -> Any:
        self.journal.append(("received", self.name, carrier))
        return f"token-{self.name}"

    def message_done(self, pid: Pid, token: Any) -> None:
        self.journal.append(("done", self.name, token))


async def test_composite_routes_carriers_and_tokens_and_isolates_failures(
    anyio_backend: str, exporter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    journal: list[tuple[str, str, Any]] = []
    composite = telemetry.CompositeInstrument(
        telemetry.RuntimeInstrument(), _Journal("a", journal), _Broken(), _Journal("b", journal)
    )
    result: dict[str, Any] = {}

    async def echo() -> None:
        sender = await tl.receive()
        tl.send(sender, telemetry.current_trace_id())

    async def body() -> None:
        target = tl.spawn(echo)
        with telemetry.span("ingress"):
            result["trace"] = telemetry.current_trace_id()
            tl.send(target, tl.current_pid())
        result["seen"] = await tl.receive()

    with caplog.at_level(logging.ERROR, logger="thunderline.telemetry"):
        await in_node(composite, body)
    assert result["seen"] == result["trace"] is not None  # tracing still propagates
    received = [(name, c) for kind, name, c in journal if kind == "received"]
    assert ("a", "carrier-a") in received
    assert ("b", "carrier-b") in received
    # done hooks get their own token back, last instrument first
    first_done = [entry for entry in journal if entry[0] == "done"][:2]
    assert first_done == [("done", "b", "token-b"), ("done", "a", "token-a")]
    assert any(r.exc_info and "broken receive" in str(r.exc_info[1]) for r in caplog.records)


def test_composite_saga_instrument_isolates_failures(caplog: pytest.LogCaptureFixture) -> None:
    from thunderline.sagas import SagaInstrument, SagaRunInfo

    calls: list[str] = []

    class Broken(SagaInstrument):
        def saga_started(self, run: SagaRunInfo) -> None:
            raise RuntimeError("broken")

    class Good(SagaInstrument):
        def saga_started(self, run: SagaRunInfo) -> None:
            calls.append("started")

        def saga_finished(self, run: SagaRunInfo, outcome: Any, error: Any) -> None:
            calls.append("finished")

    async def noop() -> None:
        return None

    b = SagaBuilder("s")
    b.step("x", noop)
    run = SagaRunInfo(saga=b.build(returns="x"), run_id=-5, correlation_id="c")
    composite = telemetry.CompositeSagaInstrument(Broken(), Good())
    with caplog.at_level(logging.ERROR, logger="thunderline.telemetry"):
        composite.saga_started(run)
        composite.saga_finished(run, None, None)
    assert calls == ["started", "finished"]
    assert any(r.exc_info for r in caplog.records)


# --- configuration and export --------------------------------------------------------


def test_metrics_endpoint_from_the_environment() -> None:
    assert metrics_endpoint_from_env({}) == "http://localhost:4318/v1/metrics"
    assert (
        metrics_endpoint_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"})
        == "http://c:4318/v1/metrics"
    )
    assert (
        metrics_endpoint_from_env({"OTEL_ENDPOINT": "https://alias:1"})
        == "https://alias:1/v1/metrics"
    )
    assert (
        metrics_endpoint_from_env(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:9/custom",
            }
        )
        == "http://m:9/custom"
    )
    with pytest.raises(telemetry.TelemetryConfigError) as caught:
        metrics_endpoint_from_env({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "ftp://x"})
    assert caught.value.setting == "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"


def test_configure_metrics_validation_and_disabled() -> None:
    with pytest.raises(telemetry.TelemetryConfigError):
        telemetry.configure_metrics(export_interval=0, install_global=False, environ={})
    with pytest.raises(telemetry.TelemetryConfigError):
        telemetry.configure_metrics(endpoint="nope", install_global=False, environ={})
    assert (
        telemetry.configure_metrics(install_global=False, environ={"OTEL_SDK_DISABLED": "true"})
        is None
    )
    assert telemetry.shutdown_metrics() is True


def test_resource_comes_from_the_otel_environment(reader: InMemoryMetricReader) -> None:
    memory = InMemoryMetricReader()
    telemetry.configure_metrics(
        reader=memory,
        install_global=False,
        environ={"OTEL_SERVICE_NAME": "orders", "OTEL_RESOURCE_ATTRIBUTES": "team=core"},
    )
    telemetry.SagaMetrics()
    telemetry.RuntimeMetrics().update(
        telemetry.RuntimeSnapshot(processes=1, mailbox_total=0, mailbox_max=0)
    )
    data = memory.get_metrics_data()
    assert data is not None
    attributes = dict(data.resource_metrics[0].resource.attributes)
    assert attributes["service.name"] == "orders"
    assert attributes["team"] == "core"


class _Collector:
    """A loopback OTLP/HTTP endpoint that accepts every POST."""

    def __init__(self, port: int = 0) -> None:
        requests = self.requests = [0]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                requests[0] += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_collector_down_never_blocks_or_raises_and_export_resumes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    collector = _Collector()
    port = collector.port
    collector.stop()  # nothing listens there now
    telemetry.configure_metrics(
        metrics_endpoint=f"http://127.0.0.1:{port}/v1/metrics",
        export_interval=3600,  # only explicit flushes export
        export_timeout=0.5,
        install_global=False,
        environ={},
    )
    try:
        saga_metrics = telemetry.SagaMetrics()
        before = telemetry.metrics_statistics()
        with caplog.at_level(logging.WARNING):
            started = time.monotonic()
            saga_metrics._finished.add(1, {"saga.name": "x"})  # recording never blocks
            telemetry.force_flush_metrics(timeout=5)
            telemetry.force_flush_metrics(timeout=5)
            elapsed = time.monotonic() - started
        after = telemetry.metrics_statistics()
        assert after.export_failures >= before.export_failures + 2
        assert elapsed < 4
        warnings = [r for r in caplog.records if "metric export failed" in r.getMessage()]
        assert len(warnings) == 1  # one warning per outage, not per export
        assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]
        back = _Collector(port)
        try:
            with caplog.at_level(logging.INFO, logger="thunderline.telemetry"):
                assert telemetry.force_flush_metrics(timeout=5)
            assert back.requests[0] >= 1
            assert telemetry.metrics_statistics().exports > after.exports
            assert any("metric export resumed" in r.getMessage() for r in caplog.records)
        finally:
            back.stop()
    finally:
        telemetry.shutdown_metrics(timeout=2)
