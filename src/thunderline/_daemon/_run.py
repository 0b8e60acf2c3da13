"""``thunderline run``: the daemon's life from startup line to exit status.

1. Put the working directory on the import path (as ``python -m`` does),
   import the application spec; set up logging; set the umask to 0077 (every
   file the daemon and its application create is the user's alone); prepare
   the data directory (a path that is not a usable directory: one
   ``cannot start`` line, status 2); set up tracing and metrics if asked (an
   unusable ``OTEL_*`` value: one ``cannot start`` line, status 2).
2. Listen for SIGINT/SIGTERM, bind the control socket, start the application
   (its node instrumented when telemetry is on), log the startup line (which
   says where traces and metrics go), serve control requests.
3. SIGTERM, SIGINT or the ``stop`` command: stop serving, stop the application
   (newest child first, each within its shutdown), remove the socket, exit 0.
   A second SIGINT during that shutdown exits at once with status 130.
4. The top supervisor exits by itself (it reached its restart intensity, say):
   log why and exit with status 1, as an Erlang node does when its permanent
   application dies.
5. Whatever the status: end open saga spans, flush and shut down tracing and
   metrics, each within a bound (a collector that is down never holds the exit).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc
import attrs

from thunderline._daemon._commands import Commands
from thunderline._daemon._config import DaemonConfig, log_level_number
from thunderline._daemon._errors import ControlSocketError, DataDirError, TelemetrySetupError
from thunderline._daemon._loader import load_app
from thunderline._daemon._logging import setup_logging
from thunderline._daemon._server import ControlServer
from thunderline._daemon._telemetry import DaemonTelemetry, start_telemetry
from thunderline._version import __version__
from thunderline.dist import DistributionError, open_distribution
from thunderline.runtime import (
    ApplicationExitedError,
    ApplicationSpecError,
    ApplicationStartError,
    open_application,
    open_node,
)

__all__ = ["EXIT_APPLICATION_DIED", "EXIT_FORCED", "EXIT_STARTUP_FAILED", "run_daemon"]

logger: Final = logging.getLogger("thunderline.daemon")

#: Exit status when the top supervisor exited by itself.
EXIT_APPLICATION_DIED: Final = 1
#: Exit status when the application or the control socket could not start.
EXIT_STARTUP_FAILED: Final = 2
#: Seconds a stopping daemon waits for control requests in progress to be answered.
SETTLE_TIMEOUT: Final = 10.0
#: Exit status after a second SIGINT during shutdown (128 + SIGINT).
EXIT_FORCED: Final = 130


@attrs.define
class _Shutdown:
    requested: anyio.Event = attrs.field(factory=anyio.Event)
    why: str | None = None
    server: ControlServer | None = None

    def request(self, why: str) -> None:
        if not self.requested.is_set():
            self.why = why
            logger.info("%s: shutting down", why)
            self.requested.set()


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


async def _watch_signals(
    shutdown: _Shutdown, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if not shutdown.requested.is_set():
                shutdown.request(f"{name} received")
            elif signum == signal.SIGINT:
                logger.error("second SIGINT during shutdown: exiting at once")
                if shutdown.server is not None:
                    shutdown.server.remove_path()
                _flush_logs()
                os._exit(EXIT_FORCED)
            else:
                logger.info("%s received again: already shutting down", name)


async def _serve(spec: object, config: DaemonConfig, telemetry: DaemonTelemetry) -> int:
    shutdown = _Shutdown()
    settings: dict[str, Any] = {
        "backend": config.backend,
        "app": config.app,
        "control": config.control,
        "data": config.data,
        "ledger": _redact(config.ledger) if config.ledger else None,
        "ledger_schema": config.ledger_schema,
        **telemetry.settings(),
    }
    status = EXIT_STARTUP_FAILED
    async with anyio.create_task_group() as watchers:
        await watchers.start(_watch_signals, shutdown)
        try:
            commands: Commands | None = None

            async def dispatch(request: dict[str, Any]) -> Any:
                assert commands is not None
                return await commands(request)

            async with (
                ControlServer(
                    config.control,
                    dispatch,
                    max_connections=config.control_max_connections,
                    idle_timeout=config.control_idle_timeout,
                ) as server,
                _cluster(config, telemetry) as joined,
            ):
                shutdown.server = server
                async with open_application(spec, instrument=telemetry.instrument) as app:
                    commands = Commands(app, settings, shutdown.request)
                    logger.info(
                        "thunderline %s running %s (application %r) on %s; data in %s%s; "
                        "control socket %s; %s%s",
                        __version__,
                        config.app,
                        app.id,
                        config.backend,
                        config.data,
                        f", ledger {_redact(config.ledger)}" if config.ledger else "",
                        config.control,
                        telemetry.describe(),
                        joined,
                    )
                    async with anyio.create_task_group() as serving:
                        serving.start_soon(server.serve)
                        serving.start_soon(telemetry.sample_gauges)
                        await shutdown.requested.wait()
                        # a publish in progress stops and is answered with its counts
                        commands.stop_publishing()
                        if not await server.settle(SETTLE_TIMEOUT):
                            logger.warning(
                                "stopping with %d control request(s) unanswered after %.0f s",
                                server.answering,
                                SETTLE_TIMEOUT,
                            )
                        serving.cancel_scope.cancel()
            logger.info("stopped (%s)", shutdown.why)
            status = 0
        except ApplicationExitedError as exc:
            logger.critical(
                "application %r died: top supervisor %s exited by itself with reason %r "
                "(see the supervisor report above); exiting with status %d",
                exc.id,
                exc.pid,
                exc.reason,
                EXIT_APPLICATION_DIED,
            )
            status = EXIT_APPLICATION_DIED
        except (
            ApplicationStartError,
            ApplicationSpecError,
            ControlSocketError,
            DistributionError,
        ) as exc:
            logger.critical("cannot start: %s", exc)
            status = EXIT_STARTUP_FAILED
        finally:
            watchers.cancel_scope.cancel()
    return status


@contextlib.asynccontextmanager
async def _cluster(config: DaemonConfig, telemetry: DaemonTelemetry) -> AsyncIterator[str]:
    """With ``--node``: a node joined to ``--cluster`` for the application to run on."""
    if config.node is None:
        yield ""
        return
    async with (
        open_node(instrument=telemetry.instrument) as node,
        open_distribution(node, config.node, config.cluster, lease=config.lease) as dist,
    ):
        yield f"; node {dist.name!r} of cluster {dist.cluster!r} (creation {dist.creation})"


def _redact(location: str) -> str:
    """A ledger location with any password in its URL replaced by ``***``."""
    parts = urllib.parse.urlsplit(location)
    if parts.password is None:
        return location
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def prepare_data_dir(path: str, ledger: str | None = None, schema: str | None = None) -> None:
    """Create the data directory (0700) if missing and export it to the application.

    Both ``THUNDERLINE_DATA`` (the daemon's own variable) and
    ``THUNDERLINE_DATA_DIR`` (read by the reference application's
    ``AppConfig.from_env``) are set, so ``--data`` wins over an inherited value;
    ``THUNDERLINE_LEDGER`` and ``THUNDERLINE_LEDGER_SCHEMA`` are set to
    ``ledger`` and ``schema`` when given.

    Raises:
        DataDirError: ``path`` is not a directory, cannot be created, or is not
            writable.
    """
    directory = Path(path)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise DataDirError(path, "exists and is not a directory") from None
    except OSError as exc:
        raise DataDirError(path, f"cannot create it: {exc.strerror or exc}") from None
    if not directory.is_dir():
        raise DataDirError(path, "exists and is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise DataDirError(path, "is not writable by you")
    os.environ["THUNDERLINE_DATA"] = str(directory)
    os.environ["THUNDERLINE_DATA_DIR"] = str(directory)
    if ledger is not None:
        os.environ["THUNDERLINE_LEDGER"] = ledger
    if schema is not None:
        os.environ["THUNDERLINE_LEDGER_SCHEMA"] = schema


def _cwd_on_path() -> None:
    """Make modules in the working directory importable, as ``python -m`` does."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def run_daemon(config: DaemonConfig) -> int:
    """Run the daemon described by ``config`` in the foreground; returns the exit status.

    Raises:
        AppLoadError: the APP string names nothing importable (before anything starts).
    """
    _cwd_on_path()
    spec = load_app(config.app)
    handler = setup_logging(config.log_format, log_level_number(config.log_level), sys.stderr)
    os.umask(0o077)
    if config.data is not None:
        try:
            prepare_data_dir(config.data, config.ledger, config.ledger_schema)
        except DataDirError as exc:
            logger.critical("cannot start: %s", exc)
            _flush_logs()
            return EXIT_STARTUP_FAILED
    if config.node is not None:
        # Each node's spans name it: service.instance.id (unless already set).
        attributes = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
        if "service.instance.id=" not in attributes:
            pair = f"service.instance.id={config.node}"
            os.environ["OTEL_RESOURCE_ATTRIBUTES"] = f"{attributes},{pair}" if attributes else pair
    try:
        telemetry = start_telemetry(config, os.environ, handler)
    except TelemetrySetupError as exc:
        logger.critical("cannot start: %s", exc)
        _flush_logs()
        return EXIT_STARTUP_FAILED
    try:
        status: int = anyio.run(
            _serve,
            spec,
            config,
            telemetry,
            backend=config.backend,
            backend_options={"use_uvloop": True} if config.loop == "uvloop" else None,
        )
    finally:
        telemetry.close()
        _flush_logs()
    return status
