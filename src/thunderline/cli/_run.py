"""``thunderline run [APP]``: run an application's supervision tree as a long-running service."""

from __future__ import annotations

import argparse
import os
from typing import Any

from thunderline._daemon import (
    DEFAULT_APP,
    OPTIONS,
    AppLoadError,
    ConfigError,
    load_config,
    run_daemon,
)
from thunderline.cli._main import CommandError

DESCRIPTION = """\
Run an application's supervision tree in the foreground until SIGTERM, SIGINT
or 'thunderline stop', with a control socket for ps, tree, state, kill, publish,
sagas, top and stop.

APP is package.module:attribute naming a ChildSpec of a supervisor, a
Supervisor instance, or a zero-argument (sync or async) factory returning
either; default thunderline.domains:application (the reference application).
The working directory is on the import path, as with 'python -m': from your
project directory, 'thunderline run myapp:application' imports ./myapp.py.

Every option can also come from a TOML file (--config) or a THUNDERLINE_*
variable; the command line wins. Data (the ledger's signing key, by default
the SQLite ledger, Link's output) lives in --data, default
$XDG_STATE_HOME/thunderline or ~/.local/state/thunderline; the startup line
says where. Every file the daemon creates is readable by you only (umask 077).

Telemetry: tracing is on by default: the node's messages carry trace context,
supervisor restarts and saga runs become spans, and log lines written while a
traced message is handled carry trace_id and span_id. Spans go where the
standard OTEL_* variables say, as for the library and 'thunderline demo'
(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_ENDPOINT,
OTEL_TRACES_EXPORTER, OTEL_TRACES_SAMPLER, OTEL_SAMPLING_RATIO ...), else over
OTLP/HTTP to http://localhost:4318; --otlp-endpoint overrides the endpoint. A
collector that is not there costs one warning line. --no-tracing or
OTEL_SDK_DISABLED=true turns tracing off. With --metrics process count,
mailbox depth, messages handled, restarts and saga outcomes are exported too;
metrics are on by default when an endpoint is configured for them
(--otlp-endpoint, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_ENDPOINT or
OTEL_EXPORTER_OTLP_METRICS_ENDPOINT).

Exit status: 0 after an orderly stop, 1 when the application's top supervisor
died, 2 when it could not start, 130 after a second SIGINT during shutdown.
"""


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run",
        help="run an application as a daemon with a control socket",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    env = OPTIONS
    parser.add_argument(
        "app",
        nargs="?",
        default=None,
        metavar="APP",
        help=f"package.module:attribute of the application spec (${env['app']}; "
        f"default {DEFAULT_APP})",
    )
    parser.add_argument(
        "--backend", choices=("asyncio", "trio"), help=f"event loop (${env['backend']})"
    )
    parser.add_argument(
        "--loop",
        choices=("default", "uvloop"),
        help=f"asyncio event loop (${env['loop']}; uvloop needs the uvloop extra)",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file with the options ($THUNDERLINE_CONFIG)"
    )
    parser.add_argument(
        "--control", metavar="PATH", help=f"control socket path (${env['control']})"
    )
    parser.add_argument(
        "--log-format",
        dest="log_format",
        choices=("text", "json"),
        help=f"log line format (${env['log_format']}; default text)",
    )
    parser.add_argument(
        "--log-level", dest="log_level", help=f"log level (${env['log_level']}; default INFO)"
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help=f"the application's data directory (${env['data']}; default "
        "$XDG_STATE_HOME/thunderline, else ~/.local/state/thunderline)",
    )
    parser.add_argument(
        "--ledger",
        metavar="PATH|URL",
        help=f"the ledger: a SQLite file or a postgresql:// URL (${env['ledger']}; "
        "default: ledger.db in the data directory)",
    )
    parser.add_argument(
        "--ledger-schema",
        dest="ledger_schema",
        metavar="NAME",
        help=f"PostgreSQL schema of the ledger (${env['ledger_schema']}; "
        "default thunderline_ledger)",
    )
    parser.add_argument(
        "--control-max-connections",
        dest="control_max_connections",
        metavar="N",
        help=f"control connections served at once; more are refused "
        f"(${env['control_max_connections']}; default 64)",
    )
    parser.add_argument(
        "--control-idle-timeout",
        dest="control_idle_timeout",
        metavar="SECONDS",
        help=f"close a control connection silent this long "
        f"(${env['control_idle_timeout']}; default 60)",
    )
    parser.add_argument(
        "--otlp-endpoint",
        dest="otlp_endpoint",
        metavar="URL",
        help=f"base OTLP/HTTP URL for traces and metrics, e.g. http://localhost:4318 "
        f"(${env['otlp_endpoint']}; default: the OTEL_EXPORTER_OTLP_* variables)",
    )
    parser.add_argument(
        "--tracing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"trace and export spans (${env['tracing']}; default: on, unless "
        "OTEL_SDK_DISABLED=true)",
    )
    parser.add_argument(
        "--metrics",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"export runtime and saga metrics (${env['metrics']}; "
        "default: on when an OTLP endpoint is set)",
    )
    parser.add_argument(
        "--node",
        metavar="NAME",
        help=f"join a cluster under this node name (${env['node']}; see docs/distribution.md)",
    )
    parser.add_argument(
        "--cluster",
        metavar="URL",
        help=f"the cluster's NATS URL, nats://host:port[/cluster] (${env['cluster']}; "
        "default nats://127.0.0.1:4222)",
    )
    parser.add_argument(
        "--lease",
        metavar="SECONDS",
        help=f"how long a global name lives without renewal (${env['lease']}; default: the "
        "cluster's, 5 s for a new cluster)",
    )
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Resolve the options and run the daemon until it is told to stop."""
    cli = {option: getattr(args, option, None) for option in OPTIONS}
    try:
        config = load_config(cli, os.environ, args.config)
        return run_daemon(config)
    except (ConfigError, AppLoadError) as exc:
        raise CommandError(str(exc)) from None
