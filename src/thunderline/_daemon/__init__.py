"""Internals of ``thunderline run`` and its control-socket clients (not a public API).

The CLI imports from here; the public homes of ``open_application``,
``run_application`` and the introspection snapshots are ``thunderline.runtime``.
"""

from __future__ import annotations

from thunderline._daemon._client import ControlClient, query
from thunderline._daemon._commands import SAGA_SUPERVISOR
from thunderline._daemon._config import (
    DEFAULT_APP,
    OPTIONS,
    DaemonConfig,
    default_control_path,
    default_data_dir,
    load_config,
)
from thunderline._daemon._errors import (
    AppLoadError,
    ConfigError,
    ControlReplyError,
    ControlSocketError,
    DaemonNotRunningError,
    DataDirError,
    TelemetrySetupError,
)
from thunderline._daemon._protocol import COMMANDS, MAX_REQUEST
from thunderline.runtime import (
    Application,
    ApplicationExitedError,
    ApplicationSpecError,
    ApplicationStartError,
    NodeStatistics,
    ProcessRow,
    TreeNode,
    open_application,
    run_application,
)

__all__ = [
    "COMMANDS",
    "DEFAULT_APP",
    "MAX_REQUEST",
    "OPTIONS",
    "SAGA_SUPERVISOR",
    "AppLoadError",
    "Application",
    "ApplicationExitedError",
    "ApplicationSpecError",
    "ApplicationStartError",
    "ConfigError",
    "ControlClient",
    "ControlReplyError",
    "ControlSocketError",
    "DaemonConfig",
    "DaemonNotRunningError",
    "DataDirError",
    "NodeStatistics",
    "ProcessRow",
    "TelemetrySetupError",
    "TreeNode",
    "default_control_path",
    "default_data_dir",
    "load_config",
    "open_application",
    "query",
    "run_application",
    "run_daemon",
]


def run_daemon(config: DaemonConfig) -> int:
    """Run the daemon described by ``config`` (see ``_run.run_daemon``).

    The server side (distribution, telemetry, the application loader) is
    imported on this first call, so the control-socket clients (``ps``,
    ``tree``, ``stop``...) start without it.
    """
    from thunderline._daemon._run import run_daemon as run

    return run(config)
