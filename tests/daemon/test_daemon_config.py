"""Option precedence and validation; the JSON and text log formats; snapshots to JSON."""

from __future__ import annotations

import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import pytest

import thunderline as tl
from thunderline import dist
from thunderline._daemon import ConfigError, default_control_path, default_data_dir, load_config
from thunderline._daemon._logging import JsonFormatter, TextFormatter
from thunderline._daemon._run import prepare_data_dir
from thunderline.domains import AppConfig
from thunderline.runtime._introspect import ProcessRow, node_statistics, to_jsonable

NO_CLI: dict[str, str | None] = {}


def test_defaults() -> None:
    config = load_config(NO_CLI, {"XDG_RUNTIME_DIR": "/run/user/7", "XDG_STATE_HOME": "/st"})
    assert config.app == "thunderline.domains:application"
    assert config.backend == "asyncio"
    assert config.control == "/run/user/7/thunderline/control.sock"
    assert (config.log_format, config.log_level) == ("text", "INFO")
    assert (config.data, config.ledger) == ("/st/thunderline", None)
    assert (config.control_max_connections, config.control_idle_timeout) == (64, 60.0)


def test_default_data_dir_follows_xdg() -> None:
    assert default_data_dir({"XDG_STATE_HOME": "/s", "HOME": "/h"}) == "/s/thunderline"
    assert default_data_dir({"HOME": "/h"}) == "/h/.local/state/thunderline"
    # a relative XDG_STATE_HOME is invalid per the XDG spec and ignored
    assert default_data_dir({"XDG_STATE_HOME": "rel", "HOME": "/h"}) == (
        "/h/.local/state/thunderline"
    )


def test_ledger_and_control_limits(tmp_path: Path) -> None:
    url = "postgresql://u@h/db"
    config = load_config(
        {"ledger": url, "control_max_connections": "8", "control_idle_timeout": "2.5"}, {}
    )
    assert (config.ledger, config.control_max_connections, config.control_idle_timeout) == (
        url,
        8,
        2.5,
    )
    from_env = load_config(NO_CLI, {"THUNDERLINE_LEDGER": "rel/ledger.db"})
    assert from_env.ledger == str(Path("rel/ledger.db").resolve())


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        ({"data": "postgresql://u@h/db"}, "--data: data accepts a directory path"),
        ({"ledger": "mysql://h/db"}, "--ledger: ledger accepts a SQLite file path"),
        ({"control_max_connections": "0"}, "control_max_connections accepts an integer"),
        ({"control_max_connections": "many"}, "control_max_connections accepts an integer"),
        ({"control_idle_timeout": "-1"}, "control_idle_timeout accepts a number of seconds"),
        ({"control_idle_timeout": "nan"}, "control_idle_timeout accepts a number of seconds"),
    ],
)
def test_bad_data_ledger_and_limits_are_refused(cli: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(cli, {})


def test_default_control_path_without_runtime_dir() -> None:
    assert default_control_path({}).startswith("/tmp/thunderline-")


def test_command_line_beats_environment_beats_file(tmp_path: Path) -> None:
    file = tmp_path / "daemon.toml"
    file.write_text(
        'app = "file.mod:app"\nbackend = "trio"\nlog_format = "json"\nlog_level = "debug"\n'
        f'data = "{tmp_path / "data"}"\n'
    )
    env = {
        "THUNDERLINE_CONFIG": str(file),
        "THUNDERLINE_BACKEND": "asyncio",
        "THUNDERLINE_LOG_LEVEL": "warning",
        "THUNDERLINE_CONTROL": "/env/control.sock",
    }
    config = load_config({"log_level": "error", "app": None}, env)
    assert config.app == "file.mod:app"  # file only
    assert config.backend == "asyncio"  # env over file
    assert config.log_format == "json"  # file only
    assert config.log_level == "ERROR"  # command line over env
    assert config.control == "/env/control.sock"
    assert config.data == str(tmp_path / "data")
    assert config.config_file == str(file)


@pytest.mark.parametrize(
    ("cli", "env", "source", "option"),
    [
        ({"backend": "curio"}, {}, "--backend", "backend"),
        ({}, {"THUNDERLINE_LOG_FORMAT": "xml"}, "THUNDERLINE_LOG_FORMAT", "log_format"),
        ({"log_level": "loud"}, {}, "--log-level", "log_level"),
    ],
)
def test_invalid_values_name_their_source(
    cli: dict[str, str], env: dict[str, str], source: str, option: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(cli, env)
    assert (caught.value.source, caught.value.option) == (source, option)
    assert source in str(caught.value)


def test_unknown_key_and_bad_toml(tmp_path: Path) -> None:
    typo = tmp_path / "typo.toml"
    typo.write_text('backnd = "trio"\n')
    with pytest.raises(ConfigError, match="backnd"):
        load_config(NO_CLI, {}, str(typo))
    broken = tmp_path / "broken.toml"
    broken.write_text("backend = \n")
    with pytest.raises(ConfigError, match="valid TOML"):
        load_config(NO_CLI, {}, str(broken))
    with pytest.raises(ConfigError, match="readable"):
        load_config(NO_CLI, {}, str(tmp_path / "missing.toml"))


def test_telemetry_defaults_follow_the_configured_endpoints() -> None:
    # Tracing: unset (None) means on, as the OpenTelemetry defaults say (start_telemetry
    # resolves it against OTEL_SDK_DISABLED); metrics: on when an endpoint is configured.
    off = load_config(NO_CLI, {})
    assert (off.tracing, off.metrics, off.otlp_endpoint) == (None, False, None)
    both = load_config(NO_CLI, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert (both.tracing, both.metrics, both.otlp_endpoint) == (None, True, None)
    alias = load_config(NO_CLI, {"OTEL_ENDPOINT": "http://collector:4318"})
    assert (alias.tracing, alias.metrics) == (None, True)
    traces = load_config(NO_CLI, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/t"})
    assert (traces.tracing, traces.metrics) == (None, False)
    metrics = load_config(NO_CLI, {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/m"})
    assert (metrics.tracing, metrics.metrics) == (None, True)
    flag = load_config({"otlp_endpoint": "https://collector:4318/"}, {})
    assert (flag.tracing, flag.metrics, flag.otlp_endpoint) == (
        None,
        True,
        "https://collector:4318/",
    )


def test_telemetry_switches_from_every_source(tmp_path: Path) -> None:
    file = tmp_path / "daemon.toml"
    file.write_text('otlp_endpoint = "http://file:4318"\ntracing = false\nmetrics = true\n')
    from_file = load_config(NO_CLI, {}, str(file))
    assert (from_file.otlp_endpoint, from_file.tracing, from_file.metrics) == (
        "http://file:4318",
        False,
        True,
    )
    env = {
        "THUNDERLINE_CONFIG": str(file),
        "THUNDERLINE_TRACING": "yes",
        "THUNDERLINE_METRICS": "0",
    }
    from_env = load_config(NO_CLI, env)
    assert (from_env.tracing, from_env.metrics) == (True, False)
    from_cli = load_config({"tracing": False, "metrics": True}, env)
    assert (from_cli.tracing, from_cli.metrics) == (False, True)
    # an explicit "off" wins over an endpoint that would turn it on
    off = load_config({"tracing": False}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert (off.tracing, off.metrics) == (False, True)


@pytest.mark.parametrize(
    ("cli", "env", "source", "option"),
    [
        ({"otlp_endpoint": "collector:4318"}, {}, "--otlp-endpoint", "otlp_endpoint"),
        (
            {},
            {"THUNDERLINE_OTLP_ENDPOINT": "http://:4318"},
            "THUNDERLINE_OTLP_ENDPOINT",
            "otlp_endpoint",
        ),
        (
            {},
            {"THUNDERLINE_OTLP_ENDPOINT": "http://c:99999"},
            "THUNDERLINE_OTLP_ENDPOINT",
            "otlp_endpoint",
        ),
        ({}, {"THUNDERLINE_TRACING": "maybe"}, "THUNDERLINE_TRACING", "tracing"),
    ],
)
def test_invalid_telemetry_options_name_their_source(
    cli: dict[str, str], env: dict[str, str], source: str, option: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(cli, env)
    assert (caught.value.source, caught.value.option) == (source, option)


def test_invalid_telemetry_switch_in_file(tmp_path: Path) -> None:
    file = tmp_path / "daemon.toml"
    file.write_text('metrics = "sometimes"\n')
    with pytest.raises(ConfigError, match="metrics accepts true / false"):
        load_config(NO_CLI, {}, str(file))


def test_data_dir_is_exported_for_the_reference_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THUNDERLINE_DATA_DIR", "/somewhere/else")
    monkeypatch.setenv("THUNDERLINE_DATA", "/restored/after/the/test")
    target = tmp_path / "new" / "data"
    prepare_data_dir(str(target))
    assert target.is_dir()
    assert (target.stat().st_mode & 0o777) == 0o700
    assert os.environ["THUNDERLINE_DATA"] == str(target)
    assert AppConfig.from_env().data_dir == target


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "thunderline.supervisor", logging.ERROR, "f", 1, "hi %s", ("x",), None
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_formatter_one_object_with_fields_and_trace_ids() -> None:
    record = _record(
        supervisor="example",
        context="child_terminated",
        offender={"id": ("tuple", 1), "shutdown": math.inf},
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "hi x"
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "thunderline.supervisor"
    assert entry["offender"] == {"id": ["tuple", 1], "shutdown": "infinity"}
    assert entry["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert entry["span_id"] == "b7ad6b7169203331"
    assert entry["time"].endswith("+00:00")


def test_json_formatter_omits_absent_trace_ids_and_keeps_tracebacks() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, "f", 1, "oops", None, sys.exc_info())
    record.trace_id = None
    entry = json.loads(JsonFormatter().format(record))
    assert "trace_id" not in entry
    assert "ValueError: bad" in entry["exception"]


def test_text_formatter_appends_trace_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    handler.emit(_record(trace_id="ab" * 16, span_id="cd" * 8))
    assert stream.getvalue().rstrip().endswith(f"hi x trace_id={'ab' * 16} span_id={'cd' * 8}")


def test_statistics_and_json_of_snapshots() -> None:
    rows = [
        ProcessRow("<1.1>", None, "main", "running", 3, 10, ("<1.2>",), (), (), False, None),
        ProcessRow("<1.2>", "w", "Worker", "waiting", 7, 5, ("<1.1>",), ("x",), (), True, "<1.1>"),
    ]
    stats = node_statistics(rows)
    assert (stats.processes, stats.mailbox_total, stats.mailbox_max) == (2, 10, 7)
    assert stats.messages_handled == 15
    as_json = to_jsonable(rows)
    assert as_json[1]["links"] == ["<1.1>"]
    assert json.loads(json.dumps(as_json)) == as_json


def test_node_and_cluster_from_every_source(tmp_path: Path) -> None:
    config = load_config({}, {})
    assert config.node is None
    assert config.cluster == "nats://127.0.0.1:4222"
    toml = tmp_path / "node.toml"
    toml.write_text('node = "b"\ncluster = "nats://10.0.0.5:4222/shop"\n')
    config = load_config({}, {"THUNDERLINE_NODE": "c"}, str(toml))
    assert (config.node, config.cluster) == ("c", "nats://10.0.0.5:4222/shop")
    config = load_config({"node": "d"}, {"THUNDERLINE_CLUSTER": "nats://h:1"})
    assert (config.node, config.cluster) == ("d", "nats://h:1")
    with pytest.raises(ConfigError, match="--node"):
        load_config({"node": "Bad Name"}, {})
    with pytest.raises(ConfigError, match="THUNDERLINE_CLUSTER"):
        load_config({}, {"THUNDERLINE_CLUSTER": "http://not-nats"})


def test_lease_from_every_source_and_bad_values(tmp_path: Path) -> None:
    assert load_config({}, {}).lease is None
    toml = tmp_path / "lease.toml"
    toml.write_text("lease = 2\n")
    assert load_config({}, {}, str(toml)).lease == 2.0
    assert load_config({}, {"THUNDERLINE_LEASE": "0.5"}, str(toml)).lease == 0.5
    assert load_config({"lease": "30"}, {"THUNDERLINE_LEASE": "0.5"}).lease == 30.0
    for bad in ("0.1", "3601", "nan", "soon", ""):
        with pytest.raises(ConfigError, match="--lease"):
            load_config({"lease": bad}, {})
    with pytest.raises(ConfigError, match="THUNDERLINE_LEASE"):
        load_config({}, {"THUNDERLINE_LEASE": "-1"})
    toml.write_text("lease = true\n")
    with pytest.raises(ConfigError, match="lease"):
        load_config({}, {}, str(toml))


def test_loop_option_defaults_and_uvloop_needs_asyncio() -> None:
    assert load_config({}, {}).loop == "default"
    pytest.importorskip("uvloop")
    assert load_config({"loop": "uvloop"}, {}).loop == "uvloop"
    assert load_config({}, {"THUNDERLINE_LOOP": "uvloop"}).loop == "uvloop"
    with pytest.raises(ConfigError, match="uvloop"):
        load_config({"loop": "uvloop", "backend": "trio"}, {})
    with pytest.raises(ConfigError, match="loop"):
        load_config({"loop": "tokio"}, {})


def test_run_joins_a_cluster_as_a_node(daemon_factory: Any) -> None:
    """``thunderline run --node a --cluster URL --lease 2``: the daemon's node joins the
    cluster (a node in another process connects to it and sees it)."""
    with dist.NatsServer() as server:
        url = f"{server.url}/ops"
        daemon = daemon_factory("--node", "a", "--cluster", url, "--lease", "2")
        daemon.start()
        assert "node 'a' of cluster 'ops'" in daemon.log()

        async def main() -> tuple[bool, list[str]]:
            return await dist.connect_node("a", timeout=30), dist.nodes()

        connected, peers = tl.run(main, node="b", cluster=url)
        assert connected, daemon.log()
        assert "a" in peers


def test_cluster_on_the_command_line_without_a_node_is_refused() -> None:
    """Found by the fault campaign: ``run --cluster URL`` without ``--node`` ran a daemon
    that joined no cluster, silently."""
    url = "nats://127.0.0.1:4222/shop"
    with pytest.raises(ConfigError, match="--cluster: cluster accepts a NATS URL together with"):
        load_config({"cluster": url}, {})
    assert load_config({"cluster": url}, {"THUNDERLINE_NODE": "a"}).node == "a"
    assert load_config({"cluster": url, "node": "a"}, {}).cluster == url
    # from the environment alone (a shared setting) it is only a default
    assert load_config({}, {"THUNDERLINE_CLUSTER": url}).node is None
