"""``thunderline demo`` configured like the library: OTEL_* variables, flags over them (T13).

The demo runs as a subprocess with an environment holding only the variables
a test names (every ``OTEL_*`` of the test run is removed); spans go to a real
OTLP/HTTP receiver on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import thunderline.domains as domains_module
from otlp_receiver import OtlpReceiver, SilentCollector, free_port, port_open

SRC = str(Path(domains_module.__file__).resolve().parents[2])
DOMAINS = ("gate", "flow", "bolt", "vault", "link")
BACKENDS = ("asyncio", "trio")
#: A demo that hangs fails here instead of holding the suite (generous on a loaded machine).
RUN_BOUND = 120


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    started = OtlpReceiver()
    yield started
    started.stop()


def demo(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "THUNDERLINE_"))}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, environ.get("PYTHONPATH")]))
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "thunderline.cli", "demo", "--data", str(tmp_path / "d"), *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=RUN_BOUND,
        check=False,
    )


def domain_of(name: str) -> str:
    return "bolt" if name.startswith("saga.") else name.split(".", 1)[0]


def event_spans(receiver: OtlpReceiver, trace_ids: list[str]) -> list[tuple[dict[str, Any], Any]]:
    wanted = set(trace_ids)
    return [(res, item) for res, item in receiver.received() if item.trace_id.hex() in wanted]


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_otel_endpoint_delivers_every_domains_spans(
    tmp_path: Path, receiver: OtlpReceiver, backend: str
) -> None:
    proc = demo(
        tmp_path, "--events", "3", "--json", "--backend", backend,
        env={"OTEL_ENDPOINT": receiver.endpoint},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    summary = json.loads(proc.stdout)
    assert summary["export"] == (
        f"exported to OTLP/HTTP {receiver.endpoint}/v1/traces, sampler parentbased_always_on"
    )
    trace_ids = summary["trace_ids"]
    assert len(set(trace_ids)) == 3
    spans = event_spans(receiver, trace_ids)
    assert set(receiver.paths) == {"/v1/traces"}
    for trace_id in trace_ids:
        names = [item.name for _, item in spans if item.trace_id.hex() == trace_id]
        assert {domain_of(name) for name in names} >= set(DOMAINS), (trace_id, names)
    for resource, _ in spans:
        assert resource["service.name"] == "thunderline"
        assert resource["service.namespace"] == "local"


def test_sampling_ratio_zero_exports_no_event_trace_but_prints_the_tree(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    env = {"OTEL_ENDPOINT": receiver.endpoint, "OTEL_SAMPLING_RATIO": "0"}
    proc = demo(tmp_path, "--events", "3", env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "sampler parentbased_traceidratio 0" in out
    tree = [line for line in out.splitlines() if line.startswith("  ")]
    assert tree, out
    assert tree[0].strip().startswith("[gate] gate.publish"), out
    assert any("[link] link." in line for line in tree), out
    assert receiver.received() == []  # not one span: every trace's root is unsampled

    as_json = demo(tmp_path, "--events", "3", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    assert summary["first_trace_spans"] > 0
    assert event_spans(receiver, summary["trace_ids"]) == []


def test_flags_override_the_environment(tmp_path: Path, receiver: OtlpReceiver) -> None:
    # OTEL_ENDPOINT points nowhere and OTEL_SAMPLING_RATIO says 0: both flags win.
    env = {"OTEL_ENDPOINT": f"http://127.0.0.1:{free_port()}", "OTEL_SAMPLING_RATIO": "0"}
    proc = demo(
        tmp_path, "--json", "--otlp-endpoint", receiver.endpoint, "--sample-ratio", "1", env=env
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["export"].startswith(f"exported to OTLP/HTTP {receiver.endpoint}/v1/traces")
    assert event_spans(receiver, summary["trace_ids"])
    # The traces-specific variable beats the base ones; the flag beats it too.
    proc = demo(
        tmp_path, "--json",
        env={
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.endpoint}/custom/traces",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        },
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "/custom/traces" in receiver.paths


def test_collector_that_never_answers_does_not_hold_the_demo(tmp_path: Path) -> None:
    silent = SilentCollector()
    try:
        proc = demo(tmp_path, "--events", "3", env={"OTEL_ENDPOINT": silent.endpoint})
    finally:
        silent.stop()
    # Bounded: subprocess.run's timeout (RUN_BOUND) fails the test if the demo hangs.
    assert proc.returncode == 0, proc.stderr
    assert "3/3 events reached Link" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) <= 1, proc.stderr


def test_no_collector_at_the_default_endpoint_costs_one_warning_line(tmp_path: Path) -> None:
    if port_open(4318):
        pytest.skip("something listens on localhost:4318; this test needs nothing there")
    proc = demo(tmp_path, "--events", "2", env={})
    assert proc.returncode == 0, proc.stderr
    assert "exported to OTLP/HTTP http://localhost:4318/v1/traces" in proc.stdout
    (line,) = proc.stderr.splitlines()
    assert "dropping spans until export succeeds again" in line
    assert "localhost:4318" in line


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (("--otlp-endpoint", "ftp://collector"), {}, "endpoint"),
        ((), {"OTEL_ENDPOINT": "collector:4318"}, "OTEL_ENDPOINT"),
        ((), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:99999"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        (("--sample-ratio", "1.5"), {}, "--sample-ratio"),
        (("--sample-ratio", "nan"), {}, "--sample-ratio"),
        (("--sample-ratio", "lots"), {}, "--sample-ratio"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], needle: str
) -> None:
    proc = demo(tmp_path, *args, env=env)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 or lines[0].startswith("usage:"), proc.stderr
    assert needle in lines[-1]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin'"),
        ({"OTEL_SAMPLING_RATIO": "2"}, "OTEL_SAMPLING_RATIO='2'"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER='sometimes'"),
        ({"OTEL_SDK_DISABLED": "yes"}, "OTEL_SDK_DISABLED='yes'"),
    ],
)
def test_environment_typos_are_one_warning_and_the_demo_runs(
    tmp_path: Path, receiver: OtlpReceiver, env: dict[str, str], needle: str
) -> None:
    # The OpenTelemetry environment specification: warn, then ignore the setting.
    proc = demo(tmp_path, "--json", env={"OTEL_ENDPOINT": receiver.endpoint, **env})
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert needle in line
    summary = json.loads(proc.stdout)
    assert event_spans(receiver, summary["trace_ids"])  # exported as by default


def test_exporter_none_and_console(tmp_path: Path, receiver: OtlpReceiver) -> None:
    none = demo(
        tmp_path, "--json", env={"OTEL_ENDPOINT": receiver.endpoint, "OTEL_TRACES_EXPORTER": "none"}
    )
    assert none.returncode == 0, none.stderr
    summary = json.loads(none.stdout)
    assert summary["export"] == "recorded here, not exported (OTEL_TRACES_EXPORTER=none)"
    assert summary["first_trace_spans"] > 0
    assert receiver.received() == []
    console = demo(tmp_path, env={"OTEL_TRACES_EXPORTER": "console"})
    assert console.returncode == 0, console.stderr
    assert "exported to console" in console.stdout
    assert '"name": "gate.publish"' in console.stdout


def test_sdk_disabled_turns_tracing_off(tmp_path: Path, receiver: OtlpReceiver) -> None:
    env = {"OTEL_ENDPOINT": receiver.endpoint, "OTEL_SDK_DISABLED": "TRUE"}
    proc = demo(tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "tracing off (OTEL_SDK_DISABLED=true)" in proc.stdout
    assert receiver.received() == []
