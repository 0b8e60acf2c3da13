"""TelemetryConfig.from_env, configure() arguments and sampler parsing (T13)."""

from __future__ import annotations

import logging
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from telemetry_helpers import memory_tracing

from thunderline.runtime import ThunderlineError
from thunderline.telemetry import (
    TelemetryConfig,
    TelemetryConfigError,
    configure,
    continue_from,
    current_trace_id,
    shutdown,
    span,
)

LOGGER = "thunderline.telemetry"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= 30]


def test_defaults() -> None:
    config = TelemetryConfig.from_env({})
    assert config == TelemetryConfig()
    assert config.enabled
    assert config.service_name == "thunderline"
    assert config.resource_attributes == (("service.namespace", "local"),)
    assert config.traces_endpoint == "http://localhost:4318/v1/traces"
    assert config.sampler == "parentbased_always_on"
    assert config.sampler_ratio is None


def test_service_and_resource(caplog: pytest.LogCaptureFixture) -> None:
    config = TelemetryConfig.from_env(
        {
            "OTEL_SERVICE_NAME": "orders",
            "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=shop, team=a%20b,broken,=x,",
        }
    )
    assert config.service_name == "orders"
    assert config.resource_attributes == (("service.namespace", "shop"), ("team", "a b"))
    (warning,) = warnings_of(caplog)
    assert "'broken'" in warning
    assert "'=x'" in warning


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c/otlp/"}, "https://c/otlp/v1/traces"),
        ({"OTEL_ENDPOINT": "http://alias:1"}, "http://alias:1/v1/traces"),
        (
            {"OTEL_ENDPOINT": "http://alias:1", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://std:2"},
            "http://std:2/v1/traces",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:3/custom",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://std:2",
            },
            "http://t:3/custom",
        ),
    ],
)
def test_endpoints(env: dict[str, str], expected: str) -> None:
    assert TelemetryConfig.from_env(env).traces_endpoint == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://c/x"),
        ("OTEL_ENDPOINT", "http://:99"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:notaport"),
    ],
)
def test_bad_endpoint_is_a_config_error(name: str, value: str) -> None:
    with pytest.raises(TelemetryConfigError) as caught:
        TelemetryConfig.from_env({name: value})
    assert caught.value.setting == name
    assert caught.value.value == value
    assert name in str(caught.value)
    assert repr(value) in str(caught.value)
    assert isinstance(caught.value, ThunderlineError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("env", "sampler", "ratio"),
    [
        ({"OTEL_TRACES_SAMPLER": "always_on"}, "always_on", None),
        ({"OTEL_TRACES_SAMPLER": "ALWAYS_OFF"}, "always_off", None),
        ({"OTEL_TRACES_SAMPLER": "traceidratio"}, "traceidratio", None),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
            "traceidratio",
            0.25,
        ),
        ({"OTEL_SAMPLING_RATIO": "0.1"}, "parentbased_traceidratio", 0.1),
        (
            {"OTEL_SAMPLING_RATIO": "0.1", "OTEL_TRACES_SAMPLER_ARG": "0.2"},
            "parentbased_traceidratio",
            0.2,
        ),
        ({"OTEL_TRACES_SAMPLER": "always_on", "OTEL_SAMPLING_RATIO": "0.1"}, "always_on", None),
        ({"OTEL_TRACES_SAMPLER_ARG": "0.5"}, "parentbased_always_on", None),
    ],
)
def test_sampler_from_env(env: dict[str, str], sampler: str, ratio: float | None) -> None:
    config = TelemetryConfig.from_env(env)
    assert (config.sampler, config.sampler_ratio) == (sampler, ratio)


@pytest.mark.parametrize(
    ("env", "sampler", "ratio"),
    [
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "parentbased_always_on", None),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
            "traceidratio",
            None,  # ignored, as if unset: the ratio samplers' default 1.0
        ),
        ({"OTEL_SAMPLING_RATIO": "1.5"}, "parentbased_traceidratio", None),
        ({"OTEL_SAMPLING_RATIO": "nan"}, "parentbased_traceidratio", None),
        ({"OTEL_SDK_DISABLED": "yes"}, "parentbased_always_on", None),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "parentbased_always_on", None),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "lots"}, "parentbased_always_on", None),
        ({"OTEL_BSP_SCHEDULE_DELAY": "-5"}, "parentbased_always_on", None),
    ],
)
def test_bad_env_values_fall_back_with_one_warning(
    env: dict[str, str], sampler: str, ratio: float | None, caplog: pytest.LogCaptureFixture
) -> None:
    config = TelemetryConfig.from_env(env)
    assert (config.sampler, config.sampler_ratio) == (sampler, ratio)
    assert config.max_queue_size == 2048
    assert config.schedule_delay == 5.0
    assert len(warnings_of(caplog)) == 1


def test_bsp_settings_from_env(caplog: pytest.LogCaptureFixture) -> None:
    config = TelemetryConfig.from_env(
        {
            "OTEL_BSP_SCHEDULE_DELAY": "250",
            "OTEL_BSP_MAX_QUEUE_SIZE": "100",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "500",
        }
    )
    assert config.schedule_delay == 0.25
    assert (config.max_queue_size, config.max_export_batch_size) == (100, 100)
    assert len(warnings_of(caplog)) == 1


def test_sdk_disabled_makes_spans_noops_but_keeps_propagation() -> None:
    assert not TelemetryConfig.from_env({"OTEL_SDK_DISABLED": "true"}).enabled
    meta = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    configure(environ={"OTEL_SDK_DISABLED": "true"}, install_global=False)
    try:
        with span("nothing"):
            assert current_trace_id() is None
        with continue_from(meta), span("still propagates"):
            assert current_trace_id() == "4bf92f3577b34da6a3ce929d0e0e4736"
    finally:
        shutdown()


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"sampler": "sometimes"}, "sampler"),
        ({"sampler_ratio": 1.5}, "sampler_ratio"),
        ({"sampler_ratio": float("nan")}, "sampler_ratio"),
        ({"endpoint": "not a url"}, "endpoint"),
        ({"traces_endpoint": "localhost"}, "traces_endpoint"),
        ({"service_name": " "}, "service_name"),
        ({"export_timeout": 0}, "export_timeout"),
        ({"resource_attributes": {"": "x"}}, "resource_attributes"),
    ],
)
def test_bad_arguments_raise_and_change_nothing(kwargs: dict[str, object], setting: str) -> None:
    with memory_tracing() as exporter:
        with pytest.raises(TelemetryConfigError) as caught:
            configure(environ={}, install_global=False, **kwargs)  # type: ignore[arg-type]
        assert caught.value.setting == setting
        with span("still configured"):
            pass
        assert len(exporter.get_finished_spans()) == 1


def test_arguments_override_env() -> None:
    env = {"OTEL_SERVICE_NAME": "env", "OTEL_TRACES_SAMPLER": "always_off"}
    with memory_tracing(environ=env, service_name="arg", sampler="always_on") as exporter:
        with span("s"):
            pass
        (finished,) = exporter.get_finished_spans()
    assert finished.resource.attributes["service.name"] == "arg"
    assert finished.resource.attributes["service.namespace"] == "local"


def test_configure_returns_effective_config() -> None:
    try:
        config = configure(
            environ={"OTEL_TRACES_SAMPLER": "always_off"},
            sampler_ratio=0.5,
            endpoint="http://h:1/",
            install_global=False,
        )
    finally:
        shutdown()
    assert config.sampler == "parentbased_traceidratio"
    assert config.sampler_ratio == 0.5
    assert config.traces_endpoint == "http://h:1/v1/traces"


# T13: ratio r samples about r of root traces; decisions are monotone in r.


def _root_decision(sampler: Sampler, trace_id: int) -> bool:
    result = sampler.should_sample(None, trace_id, "root")
    return result.decision is Decision.RECORD_AND_SAMPLE


@given(st.floats(min_value=0.0, max_value=1.0), st.integers(0, 2**32))
def test_ratio_samples_about_r_of_roots(ratio: float, seed: int) -> None:
    sampler = TelemetryConfig(
        sampler="parentbased_traceidratio", sampler_ratio=ratio
    ).build_sampler()
    rng = random.Random(seed)
    n = 2000
    sampled = sum(_root_decision(sampler, rng.getrandbits(128) or 1) for _ in range(n))
    sigma = (ratio * (1 - ratio) / n) ** 0.5
    assert abs(sampled / n - ratio) <= 6 * sigma + 1 / n


@given(
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=0.0, max_value=1.0),
    st.integers(1, 2**128 - 1),
)
def test_ratio_decision_is_monotone(low: float, high: float, trace_id: int) -> None:
    low, high = min(low, high), max(low, high)
    lower = TelemetryConfig(sampler="traceidratio", sampler_ratio=low).build_sampler()
    higher = TelemetryConfig(sampler="traceidratio", sampler_ratio=high).build_sampler()
    if _root_decision(lower, trace_id):
        assert _root_decision(higher, trace_id)


@pytest.mark.parametrize(
    ("name", "sampled"),
    [
        ("always_on", True),
        ("always_off", False),
        ("parentbased_always_on", True),
        ("parentbased_always_off", False),
        ("traceidratio", True),
        ("parentbased_traceidratio", True),
    ],
)
def test_every_sampler_name_builds(name: str, sampled: bool) -> None:
    sampler = TelemetryConfig(sampler=name).build_sampler()
    assert _root_decision(sampler, 12345) is sampled


def test_env_warning_goes_to_thunderline_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    TelemetryConfig.from_env({"OTEL_TRACES_SAMPLER": "nope"})
    assert "nope" in warnings_of(caplog)[0]
