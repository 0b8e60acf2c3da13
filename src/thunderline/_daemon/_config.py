"""Daemon options from defaults, a TOML file, ``THUNDERLINE_*`` variables and the command line.

Later sources win: defaults < config file < environment < command line. The
file is given by ``--config`` or ``THUNDERLINE_CONFIG``; its top-level keys are
the option names (``app``, ``backend``, ``control``, ``log_format``,
``log_level``, ``data``, ``ledger``, ``ledger_schema``, ``otlp_endpoint``, ``tracing``, ``metrics``,
``control_max_connections``, ``control_idle_timeout``)::

    app = "myservice.app:application"
    backend = "trio"
    log_format = "json"
    otlp_endpoint = "http://collector:4318"
    metrics = false

``tracing`` and ``metrics`` are booleans (in the environment: ``1/true/yes/on``
or ``0/false/no/off``). Left unset, tracing is on, exporting as the standard
``OTEL_*`` variables say (OTLP/HTTP to ``http://localhost:4318`` by default,
the OpenTelemetry SDK's default; ``OTEL_SDK_DISABLED=true`` turns it off,
``OTEL_TRACES_EXPORTER=none`` keeps trace context and log correlation but
exports nothing), and metrics are on when an OTLP endpoint is configured for
them: ``otlp_endpoint`` (``--otlp-endpoint``), or ``OTEL_EXPORTER_OTLP_ENDPOINT``
(alias ``OTEL_ENDPOINT``) or ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``. The
telemetry settings themselves are resolved by
:func:`thunderline.telemetry.resolve_config` (``otlp_endpoint`` is passed to it
as the endpoint argument, so it wins over every ``OTEL_*`` endpoint).

``data`` is a directory (a URL there is refused: databases are given with
``ledger``); without it the data lives in the per-user state directory,
``$XDG_STATE_HOME/thunderline`` or ``~/.local/state/thunderline``. ``ledger``
is a SQLite file path or a ``postgresql://`` URL (default: ``ledger.db`` in the
data directory).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from thunderline._daemon._errors import ConfigError

__all__ = [
    "DEFAULT_APP",
    "OPTIONS",
    "DaemonConfig",
    "default_control_path",
    "default_data_dir",
    "load_config",
]

DEFAULT_APP: Final = "thunderline.domains:application"
#: Option name -> environment variable.
OPTIONS: Final = {
    "app": "THUNDERLINE_APP",
    "backend": "THUNDERLINE_BACKEND",
    "loop": "THUNDERLINE_LOOP",
    "control": "THUNDERLINE_CONTROL",
    "log_format": "THUNDERLINE_LOG_FORMAT",
    "log_level": "THUNDERLINE_LOG_LEVEL",
    "data": "THUNDERLINE_DATA",
    "ledger": "THUNDERLINE_LEDGER",
    "ledger_schema": "THUNDERLINE_LEDGER_SCHEMA",
    "otlp_endpoint": "THUNDERLINE_OTLP_ENDPOINT",
    "tracing": "THUNDERLINE_TRACING",
    "metrics": "THUNDERLINE_METRICS",
    "node": "THUNDERLINE_NODE",
    "cluster": "THUNDERLINE_CLUSTER",
    "lease": "THUNDERLINE_LEASE",
    "control_max_connections": "THUNDERLINE_CONTROL_MAX_CONNECTIONS",
    "control_idle_timeout": "THUNDERLINE_CONTROL_IDLE_TIMEOUT",
}
#: Options that are booleans.
FLAGS: Final = frozenset({"tracing", "metrics"})
#: Standard variables whose presence turns metrics on by default.
METRICS_ENDPOINT_ENV: Final = (
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_ENDPOINT",
)
POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")
_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("0", "false", "no", "off")
CONFIG_ENV: Final = "THUNDERLINE_CONFIG"
BACKENDS: Final = ("asyncio", "trio")
LOOPS: Final = ("default", "uvloop")
LOG_FORMATS: Final = ("text", "json")
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_CLUSTER: Final = "nats://127.0.0.1:4222"
_NODE_NAME: Final = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def default_data_dir(env: Mapping[str, str] | None = None) -> str:
    """``$XDG_STATE_HOME/thunderline``, else ``~/.local/state/thunderline`` (XDG base dirs)."""
    env = os.environ if env is None else env
    state_home = env.get("XDG_STATE_HOME", "")
    if state_home and Path(state_home).is_absolute():
        return str(Path(state_home) / "thunderline")
    home = env.get("HOME") or str(Path.home())
    return str(Path(home) / ".local" / "state" / "thunderline")


def default_control_path(env: Mapping[str, str] | None = None) -> str:
    """``$THUNDERLINE_CONTROL``, else ``$XDG_RUNTIME_DIR/thunderline/control.sock``,
    else ``/tmp/thunderline-<uid>/control.sock``."""
    env = os.environ if env is None else env
    if env.get(OPTIONS["control"]):
        return env[OPTIONS["control"]]
    runtime_dir = env.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return str(Path(runtime_dir) / "thunderline" / "control.sock")
    return f"/tmp/thunderline-{os.getuid()}/control.sock"


@attrs.frozen(kw_only=True)
class DaemonConfig:
    """The resolved options of ``thunderline run``.

    Attributes:
        app: ``package.module:attribute`` of the application spec.
        backend: ``asyncio`` or ``trio``.
        loop: ``default`` or ``uvloop`` (asyncio only; needs the ``uvloop`` extra).
        control: path of the control socket.
        log_format: ``text`` or ``json`` (one object per line).
        log_level: a ``logging`` level name.
        data: the application's data directory (default :func:`default_data_dir`).
        ledger: the ledger's SQLite path or ``postgresql://`` URL, or None for
            the application's default (``ledger.db`` in ``data``).
        ledger_schema: the PostgreSQL schema of the ledger, or None for the default.
        otlp_endpoint: base OTLP/HTTP URL for traces and metrics (``/v1/traces``
            and ``/v1/metrics`` are appended), overriding the ``OTEL_*``
            endpoints; None to use those.
        tracing: trace (RuntimeInstrument, SagaTracer, log correlation) and
            export spans; None (not set anywhere) means on unless
            ``OTEL_SDK_DISABLED=true``.
        metrics: export runtime and saga metrics.
        control_max_connections: control connections served at once.
        control_idle_timeout: seconds a silent control connection stays open.
        config_file: the TOML file read, or None.
        node: join a cluster under this node name (``thunderline.dist``), or None.
        cluster: the cluster's NATS URL (``nats://host:port[/cluster]``).
        lease: seconds a global name lives without renewal, or None for the
            cluster's (``thunderline.dist``; 0.2 to 3600).
    """

    app: str = DEFAULT_APP
    backend: str = "asyncio"
    control: str
    loop: str = "default"
    log_format: str = "text"
    log_level: str = "INFO"
    data: str | None = None
    ledger: str | None = None
    ledger_schema: str | None = None
    otlp_endpoint: str | None = None
    tracing: bool | None = None
    metrics: bool = False
    control_max_connections: int = 64
    control_idle_timeout: float = 60.0
    config_file: str | None = None
    node: str | None = None
    cluster: str = DEFAULT_CLUSTER
    lease: float | None = None


def _check_url(source: str, option: str, value: str) -> str:
    accepted = "an http:// or https:// URL with a host, e.g. http://localhost:4318"
    try:
        parsed = urllib.parse.urlsplit(value.strip())
        parsed.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise ConfigError(source, option, accepted, value) from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(source, option, accepted, value)
    return value.strip()


def _check(source: str, option: str, value: Any) -> Any:
    def text() -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError(source, option, "a non-empty string", value)
        return value

    match option:
        case "backend":
            if value not in BACKENDS:
                raise ConfigError(source, option, " / ".join(BACKENDS), value)
            return value
        case "loop":
            if value not in LOOPS:
                raise ConfigError(source, option, " / ".join(LOOPS), value)
            return value
        case "log_format":
            if value not in LOG_FORMATS:
                raise ConfigError(source, option, " / ".join(LOG_FORMATS), value)
            return value
        case "log_level":
            level = text().upper()
            if level not in LOG_LEVELS:
                raise ConfigError(source, option, " / ".join(LOG_LEVELS), value)
            return level
        case "otlp_endpoint":
            return _check_url(source, option, text())
        case "node":
            if not isinstance(value, str) or not _NODE_NAME.match(value):
                raise ConfigError(
                    source, option, "a node name: [a-z][a-z0-9_-]* (at most 64)", value
                )
            return value
        case "cluster":
            url = text()
            parsed = urllib.parse.urlsplit(url)
            if parsed.scheme not in ("nats", "tls") or not parsed.hostname:
                raise ConfigError(
                    source, option, "a NATS URL, e.g. nats://host:4222[/cluster]", value
                )
            return url
        case "data":
            if "://" in text():
                raise ConfigError(
                    source,
                    option,
                    "a directory path (give a database URL with --ledger / THUNDERLINE_LEDGER)",
                    value,
                )
            return value
        case "ledger":
            if "://" in text() and not value.startswith(POSTGRES_SCHEMES):
                raise ConfigError(
                    source, option, "a SQLite file path or a postgresql:// URL", value
                )
            return value
        case "control_max_connections":
            number = _number(source, option, value, int, "an integer from 1 to 100000")
            if not 1 <= number <= 100_000:
                raise ConfigError(source, option, "an integer from 1 to 100000", value)
            return number
        case "lease":
            accepted = "a number of seconds from 0.2 to 3600"
            seconds = _number(source, option, value, float, accepted)
            if not 0.2 <= seconds <= 3600:
                raise ConfigError(source, option, accepted, value)
            return seconds
        case "control_idle_timeout":
            seconds = _number(source, option, value, float, "a number of seconds > 0")
            if not 0 < seconds < math.inf:
                raise ConfigError(source, option, "a number of seconds > 0", value)
            return seconds
        case "tracing" | "metrics":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            raise ConfigError(source, option, "true / false (1/yes/on, 0/no/off)", value)
        case _:
            return text()


def _number(source: str, option: str, value: Any, kind: type[Any], accepted: str) -> Any:
    if isinstance(value, bool):
        raise ConfigError(source, option, accepted, value)
    if kind is int and isinstance(value, float):
        raise ConfigError(source, option, accepted, value)
    try:
        return kind(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(source, option, accepted, value) from None


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(path, "config file", "a readable TOML file", exc.strerror) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "config file", "valid TOML", str(exc)) from None
    for key in table:
        if key not in OPTIONS:
            raise ConfigError(path, "key", " / ".join(OPTIONS), key)
    return table


def load_config(
    cli: Mapping[str, Any], env: Mapping[str, str], config_file: str | None = None
) -> DaemonConfig:
    """Merge the sources (command line > environment > file > defaults) and validate.

    Args:
        cli: option name -> value from the command line (None when not given).
        env: the environment (``os.environ``).
        config_file: the ``--config`` path; else ``THUNDERLINE_CONFIG``; else no file.

    Raises:
        ConfigError: an invalid value (naming its source), an unknown key in the
            file, or an unreadable file.
    """
    values: dict[str, Any] = {}
    path = config_file or env.get(CONFIG_ENV) or None
    if path is not None:
        for key, value in _read_file(path).items():
            values[key] = _check(f"{path}", key, value)
    for option, variable in OPTIONS.items():
        if env.get(variable):
            values[option] = _check(variable, option, env[variable])
    for option in OPTIONS:
        value = cli.get(option)
        if value is not None:
            values[option] = _check(f"--{option.replace('_', '-')}", option, value)
    if values.get("loop") == "uvloop":
        if values.get("backend", "asyncio") != "asyncio":
            raise ConfigError("loop", "loop", "default (uvloop runs asyncio only)", "uvloop")
        if importlib.util.find_spec("uvloop") is None:
            raise ConfigError(
                "loop",
                "loop",
                "default (uvloop is not installed: pip install 'thunderline[uvloop]')",
                "uvloop",
            )
    if cli.get("cluster") is not None and "node" not in values:
        # without a node name the daemon joins no cluster: say so rather than ignore it
        raise ConfigError(
            "--cluster",
            "cluster",
            "a NATS URL together with --node NAME (THUNDERLINE_NODE, or node in the file)",
            cli["cluster"],
        )
    values.setdefault("control", default_control_path(env))
    values.setdefault("data", default_data_dir(env))
    endpoint_set = "otlp_endpoint" in values
    if "metrics" not in values:
        values["metrics"] = endpoint_set or any(
            env.get(v, "").strip() for v in METRICS_ENDPOINT_ENV
        )
    values["data"] = str(Path(values["data"]).expanduser().resolve())
    if "ledger" in values and not values["ledger"].startswith(POSTGRES_SCHEMES):
        values["ledger"] = str(Path(values["ledger"]).expanduser().resolve())
    return DaemonConfig(config_file=path, **values)


def log_level_number(name: str) -> int:
    """The ``logging`` number of a validated level name."""
    return int(logging.getLevelNamesMapping()[name])
