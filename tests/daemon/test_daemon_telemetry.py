"""``thunderline run`` with tracing and metrics, exporting to a loopback OTLP/HTTP receiver.

The receiver is an ``http.server`` thread on 127.0.0.1 (ephemeral port) that
decodes the protobuf requests of OTLP/HTTP (``ExportTraceServiceRequest`` on
``/v1/traces``, ``ExportMetricsServiceRequest`` on ``/v1/metrics``). The
daemon runs ``daemon_example_app:application_with_sagas`` as a subprocess.
"""

from __future__ import annotations

import gzip
import http.server
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from daemon_helpers import Daemon, poll, run_cli
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

MakeDaemon = Callable[..., Daemon]
APP = "daemon_example_app:application_with_sagas"
SERVICE = "tl-daemon-test"
#: Fast export so the test sees spans and metrics within a second.
FAST_EXPORT = {
    "OTEL_SERVICE_NAME": SERVICE,
    "OTEL_BSP_SCHEDULE_DELAY": "100",
    "OTEL_METRIC_EXPORT_INTERVAL": "300",
}
#: The daemon must exit this soon after being told to stop, collector up or down.
STOP_BOUND = 15.0


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


class Receiver:
    """A loopback OTLP/HTTP receiver keeping every decoded span and data point."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[dict[str, Any]] = []
        self.points: list[dict[str, Any]] = []
        self.requests = {"/v1/traces": 0, "/v1/metrics": 0}
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    reply = receiver.traces(body)
                elif self.path == "/v1/metrics":
                    reply = receiver.metrics(body)
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.running = True

    def traces(self, body: bytes) -> bytes:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        decoded = [
            {
                "service": _attributes(rs.resource.attributes).get("service.name"),
                "name": span.name,
                "trace_id": span.trace_id.hex(),
                "span_id": span.span_id.hex(),
                "attributes": _attributes(span.attributes),
            }
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]
        with self.lock:
            self.spans.extend(decoded)
            self.requests["/v1/traces"] += 1
        return bytes(ExportTraceServiceResponse().SerializeToString())

    def metrics(self, body: bytes) -> bytes:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        decoded: list[dict[str, Any]] = []
        for rm in request.resource_metrics:
            service = _attributes(rm.resource.attributes).get("service.name")
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points:
                        if kind == "histogram":
                            number = point.sum
                        elif point.WhichOneof("value") == "as_int":
                            number = point.as_int
                        else:
                            number = point.as_double
                        decoded.append(
                            {
                                "service": service,
                                "name": metric.name,
                                "value": number,
                                "attributes": _attributes(point.attributes),
                            }
                        )
        with self.lock:
            self.points.extend(decoded)
            self.requests["/v1/metrics"] += 1
        return bytes(ExportMetricsServiceResponse().SerializeToString())

    def span_named(self, name: str, **attributes: Any) -> dict[str, Any] | None:
        with self.lock:
            for span in self.spans:
                if span["name"] == name and all(
                    span["attributes"].get(k) == v for k, v in attributes.items()
                ):
                    return span
        return None

    def latest(self, name: str, **attributes: Any) -> float | None:
        """The value of the last data point of metric ``name`` with these attributes."""
        with self.lock:
            for point in reversed(self.points):
                if point["name"] == name and all(
                    point["attributes"].get(k) == v for k, v in attributes.items()
                ):
                    return float(point["value"])
        return None

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    yield started
    started.stop()


def _find(tree: dict[str, Any], child_id: str) -> dict[str, Any] | None:
    for child in tree.get("children", []):
        if child["id"] == child_id:
            return dict(child)
        found = _find(child, child_id)
        if found is not None:
            return found
    return None


def _child(tree: dict[str, Any], child_id: str) -> dict[str, Any]:
    found = _find(tree, child_id)
    if found is None:
        raise AssertionError(f"no child {child_id!r} in {tree}")
    return found


def _startup_line(log: str) -> str:
    (line,) = [line for line in log.splitlines() if "control socket" in line]
    return line


def test_the_reference_application_traces_its_sagas_with_bolts_names(
    daemon_factory: MakeDaemon, receiver: Receiver
) -> None:
    """Under ``thunderline run`` the reference application's saga spans are the seed's
    ``bolt.run_saga`` > ``bolt.saga_execution`` with Bolt's attributes, in the event's trace."""
    daemon = daemon_factory(
        "--otlp-endpoint", receiver.endpoint, app="thunderline.domains:application", env=FAST_EXPORT
    )
    daemon.args += ["--data", str(daemon.dir / "data")]
    daemon.start()
    published = run_cli("publish", "system.heartbeat", "--control", daemon.control)
    assert published.returncode == 0, published.stderr
    bolt_attributes = {"thunderline.domain": "bolt", "thunderline.component": "sagas_supervisor"}
    execution = poll(
        lambda: receiver.span_named("bolt.saga_execution", **bolt_attributes),
        "the heartbeat saga's bolt.saga_execution span",
    )
    assert execution["attributes"]["saga.module"] == "heartbeat"
    run = poll(lambda: receiver.span_named("bolt.run_saga", **bolt_attributes), "bolt.run_saga")
    gate = poll(lambda: receiver.span_named("gate.publish"), "gate.publish")
    assert execution["trace_id"] == run["trace_id"] == gate["trace_id"]
    assert receiver.span_named("saga.execution") is None


def test_spans_metrics_and_log_correlation_reach_the_collector(
    daemon_factory: MakeDaemon, receiver: Receiver
) -> None:
    daemon = daemon_factory("--otlp-endpoint", receiver.endpoint, app=APP, env=FAST_EXPORT)
    daemon.start()
    line = _startup_line(daemon.log())
    assert f"tracing on (OTLP/HTTP {receiver.endpoint}/v1/traces" in line
    assert f"metrics on (OTLP/HTTP {receiver.endpoint}/v1/metrics every 0.3 s)" in line
    status = daemon.request("status")
    assert status["tracing"] == f"{receiver.endpoint}/v1/traces"
    assert status["metrics"] == f"{receiver.endpoint}/v1/metrics"

    # A supervisor restart becomes a "restart alpha" span.
    alpha = _child(daemon.request("tree"), "alpha")
    daemon.request("exit", pid=alpha["pid"], reason="kill")
    restart = poll(lambda: receiver.span_named("restart alpha"), "the restart span")
    assert restart["service"] == SERVICE
    assert restart["attributes"]["thunderline.child.id"] == "alpha"
    assert restart["attributes"]["thunderline.child.old_pid"] == alpha["pid"]

    # The saga started by "starter" is traced; its step's log line has the step's trace id.
    execution = poll(
        lambda: receiver.span_named("saga.execution", **{"saga.name": "greet"}),
        "the greet saga's span",
    )
    assert execution["attributes"]["saga.outcome"] == "succeeded"
    step = poll(
        lambda: receiver.span_named("saga.step hello", **{"saga.name": "greet"}), "the step span"
    )
    assert step["trace_id"] == execution["trace_id"]
    greeting = daemon.wait_for_log("greeting daemon")
    (logged,) = [ln for ln in greeting.splitlines() if "greeting daemon" in ln]
    match = re.search(r"trace_id=([0-9a-f]{32}) span_id=([0-9a-f]{16})", logged)
    assert match is not None, logged
    assert (match[1], match[2]) == (step["trace_id"], step["span_id"])

    # Metrics: gauges sampled inside the node, counters from the instruments.
    processes = poll(lambda: receiver.latest("thunderline.processes"), "the process gauge")
    assert processes > 0
    poll(lambda: (receiver.latest("thunderline.messages.handled") or 0) > 0, "messages handled")
    poll(
        lambda: (
            receiver.latest("thunderline.restarts", **{"thunderline.restart.result": "restarted"})
            == 1
        ),
        "one restart counted",
    )
    poll(
        lambda: receiver.latest(
            "thunderline.sagas.finished", **{"saga.name": "greet", "saga.outcome": "succeeded"}
        ),
        "a finished saga counted",
    )
    assert receiver.latest("thunderline.mailbox.max_depth") is not None
    with receiver.lock:
        assert {p["service"] for p in receiver.points} == {SERVICE}
        assert {s["service"] for s in receiver.spans} == {SERVICE}

    # Stopping flushes what ended during shutdown: the cancelled "linger" saga.
    assert receiver.span_named("saga.execution", **{"saga.name": "linger"}) is None
    daemon.request("stop")
    assert daemon.wait_exit(STOP_BOUND) == 0
    shut = re.search(
        r"telemetry shut down: (\d+) spans exported, 0 dropped; (\d+) metric exports, 0 failed",
        daemon.log(),
    )
    assert shut is not None, daemon.log()
    with receiver.lock:
        assert int(shut[1]) == len(receiver.spans)
        assert int(shut[2]) == receiver.requests["/v1/metrics"]
    linger = receiver.span_named("saga.execution", **{"saga.name": "linger"})
    assert linger is not None, daemon.log()
    assert linger["attributes"]["saga.outcome"] == "cancelled"
    assert receiver.latest(
        "thunderline.sagas.finished", **{"saga.name": "linger", "saga.outcome": "cancelled"}
    )


def test_collector_down_never_holds_the_daemon(
    daemon_factory: MakeDaemon, receiver: Receiver
) -> None:
    # On trio. A bad sampler argument is ignored with one warning (ratio 1.0, the default).
    env = {
        **FAST_EXPORT,
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "lots",
        "THUNDERLINE_OTLP_ENDPOINT": receiver.endpoint,
    }
    daemon = daemon_factory("--backend", "trio", app=APP, env=env).start()
    log = daemon.log()
    assert "OTEL_TRACES_SAMPLER_ARG='lots' is not a number between 0.0 and 1.0" in log
    assert "sampler traceidratio)" in _startup_line(log)
    poll(lambda: receiver.latest("thunderline.processes"), "metrics before the outage")

    receiver.stop()
    alpha = _child(daemon.request("tree"), "alpha")
    daemon.request("exit", pid=alpha["pid"])
    poll(lambda: _child(daemon.request("tree"), "alpha")["restarts"] == 1, "alpha restarted")
    daemon.wait_for_log("metric export failed")
    daemon.wait_for_log("dropping spans until export succeeds again")
    # The daemon keeps answering while every export fails.
    for _ in range(3):
        assert daemon.request("processes")
        assert daemon.request("sagas")["supervisor"]
        time.sleep(0.3)

    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(STOP_BOUND) == 0
    assert time.monotonic() - started < STOP_BOUND
    log = daemon.log()
    assert log.count("metric export failed") == 1
    assert log.count("dropping spans until export succeeds again") == 1
    assert "Traceback" not in log
    shut = re.search(
        r"telemetry shut down: \d+ spans exported, (\d+) dropped; .* (\d+) failed", log
    )
    assert shut is not None, log
    assert int(shut[1]) >= 1  # at least the restart span
    assert int(shut[2]) >= 1


def test_unusable_endpoint_is_one_startup_error(daemon_factory: MakeDaemon) -> None:
    daemon = daemon_factory(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}).start(wait=False)
    assert daemon.wait_exit() == 2
    lines = daemon.log().splitlines()
    assert lines == [
        line for line in lines if "cannot start: telemetry: OTEL_EXPORTER_OTLP_ENDPOINT" in line
    ]
    assert len(lines) == 1
    assert "'collector:4318'" in lines[0]

    flag = daemon_factory("--otlp-endpoint", "ftp://collector").start(wait=False)
    assert flag.wait_exit() == 2
    assert flag.log().strip() == (
        "thunderline run: error: --otlp-endpoint: otlp_endpoint accepts an http:// or "
        "https:// URL with a host, e.g. http://localhost:4318; received 'ftp://collector'"
    )


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_tracing_on_by_default_and_a_missing_collector_costs_one_warning(
    daemon_factory: MakeDaemon, receiver: Receiver
) -> None:
    # No traces endpoint anywhere: the OpenTelemetry default, http://localhost:4318.
    if _port_open(4318):
        pytest.skip("something listens on localhost:4318; this test needs nothing there")
    env = {**FAST_EXPORT, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{receiver.endpoint}/v1/metrics"}
    daemon = daemon_factory(app=APP, env=env).start()
    line = _startup_line(daemon.log())
    assert (
        "tracing on (OTLP/HTTP http://localhost:4318/v1/traces, sampler parentbased_always_on)"
        in line
    )
    assert "metrics on" in line
    # Log correlation is on by default: the saga step's log line carries its trace.
    greeting = daemon.wait_for_log("greeting daemon")
    (logged,) = [ln for ln in greeting.splitlines() if "greeting daemon" in ln]
    assert re.search(r"trace_id=[0-9a-f]{32} span_id=[0-9a-f]{16}", logged), logged
    for restarts in (1, 2, 3):
        alpha = _child(daemon.request("tree"), "alpha")
        daemon.request("exit", pid=alpha["pid"])
        poll(lambda n=restarts: _child(daemon.request("tree"), "alpha")["restarts"] == n, "restart")
    daemon.wait_for_log("dropping spans until export succeeds again")
    poll(lambda: receiver.latest("thunderline.restarts") == 3, "metrics unaffected")
    started = time.monotonic()
    daemon.request("stop")
    assert daemon.wait_exit(STOP_BOUND) == 0
    assert time.monotonic() - started < STOP_BOUND
    log = daemon.log()
    warnings = [ln for ln in log.splitlines() if " WARNING " in ln]
    assert len(warnings) == 1, log
    assert "dropping spans until export succeeds again" in warnings[0]
    assert "localhost:4318" in warnings[0]
    assert "Traceback" not in log
    assert receiver.requests["/v1/traces"] == 0


def test_no_tracing_flag_and_sdk_disabled_turn_tracing_off(
    daemon_factory: MakeDaemon, receiver: Receiver
) -> None:
    env = {**FAST_EXPORT, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    off = daemon_factory("--no-tracing", app=APP, env=env).start()
    assert "tracing off; metrics on" in _startup_line(off.log())
    off.wait_for_log("greeting daemon")
    off.request("stop")
    assert off.wait_exit(STOP_BOUND) == 0
    assert receiver.requests["/v1/traces"] == 0
    assert "trace_id=" not in off.log()

    disabled = daemon_factory(app=APP, env={**env, "OTEL_SDK_DISABLED": "true"}).start()
    assert "tracing off; metrics off (OTEL_SDK_DISABLED=true)" in _startup_line(disabled.log())
    disabled.request("stop")
    assert disabled.wait_exit(STOP_BOUND) == 0

    # OTEL_SDK_DISABLED=true wins even over --tracing (the OpenTelemetry SDK obeys it too).
    forced = daemon_factory("--tracing", app=APP, env={**env, "OTEL_SDK_DISABLED": "true"})
    assert "(OTEL_SDK_DISABLED=true)" in _startup_line(forced.start().log())
    forced.request("stop")
    assert forced.wait_exit(STOP_BOUND) == 0
    assert receiver.requests["/v1/traces"] == 0


def test_traces_exporter_none_keeps_log_correlation(
    daemon_factory: MakeDaemon, receiver: Receiver
) -> None:
    env = {
        **FAST_EXPORT,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_TRACES_EXPORTER": "none",
    }
    daemon = daemon_factory("--no-metrics", app=APP, env=env).start()
    line = _startup_line(daemon.log())
    assert "tracing on (not exported: OTEL_TRACES_EXPORTER=none, sampler" in line
    greeting = daemon.wait_for_log("greeting daemon")
    (logged,) = [ln for ln in greeting.splitlines() if "greeting daemon" in ln]
    assert re.search(r"trace_id=[0-9a-f]{32} span_id=[0-9a-f]{16}", logged), logged
    daemon.request("stop")
    assert daemon.wait_exit(STOP_BOUND) == 0
    assert receiver.requests["/v1/traces"] == 0
