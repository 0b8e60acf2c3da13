"""Where each telemetry setting comes from (argument > OTEL_* > default), exporter
selection, and the runtime hook ``configure()`` installs (T13)."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from telemetry_helpers import memory_tracing

import thunderline.runtime as tl
from otlp_receiver import OtlpReceiver
from thunderline import lowlevel, telemetry
from thunderline.telemetry import TelemetryConfig, TelemetryConfigError, resolve_config

DEFAULT_TRACES = "http://localhost:4318/v1/traces"
hosts = st.sampled_from(["a", "b.example", "127.0.0.1"])
urls = st.builds(lambda h, p: f"http://{h}:{p}", hosts, st.integers(1, 65535))
ratios = st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0])
names = st.text("abcxyz-", min_size=1, max_size=8)

# --------------------------------------------------------------- precedence


@given(
    flag_traces=st.none() | urls,
    flag_base=st.none() | urls,
    env_traces=st.none() | urls,
    env_base=st.none() | urls,
    env_alias=st.none() | urls,
)
def test_endpoint_precedence(
    flag_traces: str | None,
    flag_base: str | None,
    env_traces: str | None,
    env_base: str | None,
    env_alias: str | None,
) -> None:
    env = {
        name: value
        for name, value in [
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", env_traces),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", env_base),
            ("OTEL_ENDPOINT", env_alias),
        ]
        if value is not None
    }
    config = resolve_config(env, traces_endpoint=flag_traces, endpoint=flag_base)
    # Flag (traces URL verbatim, then base URL + /v1/traces) > the traces variable
    # (verbatim) > OTEL_EXPORTER_OTLP_ENDPOINT > OTEL_ENDPOINT (base URLs) > default.
    candidates = [
        flag_traces,
        None if flag_base is None else flag_base + "/v1/traces",
        env_traces,
        None if env_base is None else env_base + "/v1/traces",
        None if env_alias is None else env_alias + "/v1/traces",
        DEFAULT_TRACES,
    ]
    assert config.traces_endpoint == next(c for c in candidates if c is not None)


@given(
    flag_ratio=st.none() | ratios,
    flag_sampler=st.none() | st.sampled_from(["always_on", "traceidratio"]),
    env_sampler=st.none() | st.sampled_from(["always_off", "parentbased_traceidratio"]),
    env_arg=st.none() | ratios,
    env_ratio=st.none() | ratios,
)
def test_sampler_precedence(
    flag_ratio: float | None,
    flag_sampler: str | None,
    env_sampler: str | None,
    env_arg: float | None,
    env_ratio: float | None,
) -> None:
    env = {
        name: str(value)
        for name, value in [
            ("OTEL_TRACES_SAMPLER", env_sampler),
            ("OTEL_TRACES_SAMPLER_ARG", env_arg),
            ("OTEL_SAMPLING_RATIO", env_ratio),
        ]
        if value is not None
    }
    config = resolve_config(env, sampler=flag_sampler, sampler_ratio=flag_ratio)
    # The environment alone: OTEL_TRACES_SAMPLER, else parentbased_traceidratio when
    # OTEL_SAMPLING_RATIO is set, else the default; the ratio variables count for
    # ratio samplers only (OTEL_TRACES_SAMPLER_ARG first).
    if env_sampler is not None:
        env_name = env_sampler
    elif env_ratio is not None:
        env_name = "parentbased_traceidratio"
    else:
        env_name = "parentbased_always_on"
    env_value = None
    if "traceidratio" in env_name:
        env_value = env_arg if env_arg is not None else env_ratio
    # Arguments over the environment; a ratio alone selects a ratio sampler.
    if flag_sampler is not None:
        expected_name = flag_sampler
    elif flag_ratio is not None and "traceidratio" not in env_name:
        expected_name = "parentbased_traceidratio"
    else:
        expected_name = env_name
    expected_ratio = flag_ratio if flag_ratio is not None else env_value
    assert (config.sampler, config.sampler_ratio) == (expected_name, expected_ratio)


@given(
    flag=st.none() | names,
    env_name=st.none() | names,
    resource_name=st.none() | names,
    namespace=st.none() | names,
)
def test_service_precedence(
    flag: str | None, env_name: str | None, resource_name: str | None, namespace: str | None
) -> None:
    pairs = [f"service.name={resource_name}"] if resource_name else []
    pairs += [f"service.namespace={namespace}"] if namespace else []
    env = {"OTEL_RESOURCE_ATTRIBUTES": ",".join(pairs)} if pairs else {}
    if env_name is not None:
        env["OTEL_SERVICE_NAME"] = env_name
    config = resolve_config(env, service_name=flag)
    assert config.service_name == (flag or env_name or resource_name or "thunderline")
    assert dict(config.resource_attributes)["service.namespace"] == (namespace or "local")
    assert "service.name" not in dict(config.resource_attributes)


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        (None, None, ("otlp",)),
        (None, "console", ("console",)),
        (None, "none", ()),
        (None, " OTLP , console,otlp", ("otlp", "console")),
        ("none", "console", ()),
        ("otlp", "none", ("otlp",)),
        (None, "", ("otlp",)),  # empty counts as unset
    ],
)
def test_exporter_precedence(flag: str | None, env: str | None, expected: tuple[str, ...]) -> None:
    environ = {} if env is None else {"OTEL_TRACES_EXPORTER": env}
    assert resolve_config(environ, traces_exporter=flag).traces_exporter == expected


def test_from_env_is_resolve_config_without_arguments() -> None:
    env = {"OTEL_ENDPOINT": "http://seed:4318", "OTEL_SAMPLING_RATIO": "0.5"}
    assert TelemetryConfig.from_env(env) == resolve_config(env)
    assert resolve_config({}) == TelemetryConfig()


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"traces_exporter": "zipkin"}, "traces_exporter"),
        ({"traces_exporter": "otlp,jaeger"}, "traces_exporter"),
        ({"sampler_ratio": -0.1}, "sampler_ratio"),
        ({"endpoint": "collector:4318"}, "endpoint"),
        ({"endpoint": "http://h:123456"}, "endpoint"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs: dict[str, Any], setting: str) -> None:
    with pytest.raises(TelemetryConfigError) as caught:
        resolve_config({}, **kwargs)
    assert caught.value.setting == setting


def test_unknown_exporter_in_env_warns_and_keeps_the_known_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = resolve_config({"OTEL_TRACES_EXPORTER": "console,zipkin"})
    assert config.traces_exporter == ("console",)
    (record,) = [r for r in caplog.records if r.name == "thunderline.telemetry"]
    assert "'zipkin'" in record.getMessage()


def test_console_exporter_writes_spans_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    telemetry.configure(environ={"OTEL_TRACES_EXPORTER": "console"}, install_global=False)
    try:
        with telemetry.span("to the console"):
            pass
    finally:
        assert telemetry.shutdown()
    assert '"name": "to the console"' in capsys.readouterr().out


def test_exporter_none_still_traces() -> None:
    collector = telemetry.TraceCollector()
    config = telemetry.configure(
        environ={"OTEL_TRACES_EXPORTER": "none"}, extra_processors=[collector], install_global=False
    )
    try:
        assert config.traces_exporter == ()
        with telemetry.span("kept here"):
            trace_id = telemetry.current_trace_id()
        assert trace_id is not None
        assert [s.name for s in collector.spans(trace_id)] == ["kept here"]
    finally:
        telemetry.shutdown()


@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0])
def test_record_all_records_everything_and_exports_what_the_sampler_keeps(ratio: float) -> None:
    collector = telemetry.TraceCollector(max_traces=200)
    exporter = InMemorySpanExporter()
    config = telemetry.configure(
        environ={"OTEL_SAMPLING_RATIO": str(ratio)},
        exporter=exporter,
        batch=False,
        extra_processors=[collector],
        record_all=True,
        install_global=False,
    )
    try:
        for index in range(200):
            with (
                telemetry.continue_from(None),
                telemetry.span(f"root {index}"),
                telemetry.span("child"),
            ):
                pass
    finally:
        telemetry.shutdown()
    assert len(collector.trace_ids()) == 200  # every trace recorded locally
    sampler = config.build_sampler()
    exported: dict[str, set[str]] = {}
    for span in exporter.get_finished_spans():
        assert span.context is not None
        exported.setdefault(format(span.context.trace_id, "032x"), set()).add(span.name[:4])
    for trace_id in collector.trace_ids():
        keep = sampler.should_sample(None, int(trace_id, 16), "root").decision.is_sampled()
        # Whole traces or nothing: root and child together, as the sampler decides.
        assert (trace_id in exported) is keep
        if keep:
            assert exported[trace_id] == {"root", "chil"}
    if ratio == 0.0:
        assert exported == {}
    if ratio == 1.0:
        assert len(exported) == 200


# ------------------------------------------------------------- runtime hook


async def _trace_of_message() -> tuple[str | None, Any]:
    """Send a traced message to a new process on a node opened without an instrument."""
    results: list[Any] = []

    async def echo() -> None:
        sender = await tl.receive()
        tl.send(sender, telemetry.current_trace_id())

    async def main() -> None:
        pid = tl.spawn(echo)
        with telemetry.span("ingress"):
            results.append(telemetry.current_trace_id())
            tl.send(pid, tl.current_pid())
        results.append(await tl.receive(timeout=10))

    async with tl.open_node() as node:
        instrument = node.instrument
        done = anyio.Event()
        pid, _ = node.spawn(main, (), parent=None, link=False, monitor=False, trap_exit=False)
        node.processes[pid].exit_callbacks.append(lambda _p, _r: done.set())
        with anyio.fail_after(20):
            await done.wait()
    sent, handled = results
    assert sent is not None
    return handled if handled == sent else f"other trace: {handled}", instrument


@pytest.mark.anyio
async def test_configure_installs_the_propagation_hook(anyio_backend: str) -> None:
    assert lowlevel.get_default_instrument() is None
    with memory_tracing():
        installed = lowlevel.get_default_instrument()
        assert isinstance(installed, telemetry.RuntimeInstrument)
        handled, instrument = await _trace_of_message()
        assert instrument is installed
        assert handled is not None
        assert not str(handled).startswith("other trace")
    # shutdown removed it: a node opened now has no instrument, messages carry nothing.
    assert lowlevel.get_default_instrument() is None
    async with tl.open_node() as node:
        assert node.instrument is None


@pytest.mark.anyio
async def test_configure_twice_and_shutdown_uninstall_cleanly(anyio_backend: str) -> None:
    mine = tl.BaseInstrument()
    previous = lowlevel.set_default_instrument(mine)
    try:
        telemetry.configure(exporter=InMemorySpanExporter(), environ={}, install_global=False)
        first = lowlevel.get_default_instrument()
        assert isinstance(first, telemetry.RuntimeInstrument)
        telemetry.configure(exporter=InMemorySpanExporter(), environ={}, install_global=False)
        second = lowlevel.get_default_instrument()
        assert isinstance(second, telemetry.RuntimeInstrument)
        assert second is not first
        assert telemetry.shutdown()
        assert lowlevel.get_default_instrument() is mine  # the user's default is back
        assert telemetry.shutdown()  # twice: nothing left to remove
        assert lowlevel.get_default_instrument() is mine
        # An explicit instrument always wins over the default.
        telemetry.configure(exporter=InMemorySpanExporter(), environ={}, install_global=False)
        explicit = tl.BaseInstrument()
        async with tl.open_node(instrument=explicit) as node:
            assert node.instrument is explicit
        telemetry.shutdown()
    finally:
        lowlevel.set_default_instrument(previous)


def test_disabled_installs_no_runtime_hook() -> None:
    # OTEL_SDK_DISABLED=true / enabled=False: nothing that costs per message.
    telemetry.configure(environ={"OTEL_SDK_DISABLED": "true"}, install_global=False)
    try:
        assert lowlevel.get_default_instrument() is None
    finally:
        telemetry.shutdown()
    telemetry.configure(enabled=False, environ={}, install_global=False)
    try:
        assert lowlevel.get_default_instrument() is None
    finally:
        telemetry.shutdown()


def test_final_flush_with_debug_logging_still_exports() -> None:
    # The final flush gives up at the exporter's first warning (a collector that is
    # down), never at its debug notes: with DEBUG logging a healthy export completes.
    receiver = OtlpReceiver()
    loggers = [logging.getLogger(name) for name in ("urllib3", "opentelemetry")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    try:
        telemetry.configure(
            environ={"OTEL_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "600000"},
            install_global=False,
        )
        with telemetry.span("flushed at shutdown"):
            pass
        assert telemetry.shutdown(30.0)
        assert [item.name for _, item in receiver.received()] == ["flushed at shutdown"]
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        receiver.stop()


@pytest.mark.parametrize(
    ("env", "seconds", "warnings"),
    [
        ({}, 2.0, 0),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "500"}, 0.5, 0),
        (
            {"OTEL_EXPORTER_OTLP_TIMEOUT": "500", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "250"},
            0.25,
            0,
        ),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "0"}, 3600.0, 0),  # 0: no limit (taken as an hour)
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "-1", "OTEL_EXPORTER_OTLP_TIMEOUT": "300"}, 0.3, 1),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, 2.0, 1),
    ],
)
def test_export_timeout_from_env(
    env: dict[str, str], seconds: float, warnings: int, caplog: pytest.LogCaptureFixture
) -> None:
    assert resolve_config(env).export_timeout == seconds
    assert resolve_config(env, export_timeout=7.0).export_timeout == 7.0  # the argument wins
    logged = [r for r in caplog.records if r.name == "thunderline.telemetry"]
    assert len(logged) == 2 * warnings
