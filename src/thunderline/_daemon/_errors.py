"""Errors of the daemon and of its control-socket clients."""

from __future__ import annotations

from thunderline.runtime import ThunderlineError

__all__ = [
    "AppLoadError",
    "ConfigError",
    "ControlReplyError",
    "ControlSocketError",
    "DaemonNotRunningError",
    "DataDirError",
    "TelemetrySetupError",
]


class ConfigError(ThunderlineError, ValueError):
    """An option has an invalid value or a config file is unusable.

    Attributes:
        source: where the value came from (``--backend``, ``THUNDERLINE_BACKEND``, a file).
        option: the option's name.
        accepted: what is accepted.
        received: what was given.
    """

    def __init__(self, source: str, option: str, accepted: str, received: object) -> None:
        self.source = source
        self.option = option
        self.accepted = accepted
        self.received = received
        super().__init__(f"{source}: {option} accepts {accepted}; received {received!r}")


class TelemetrySetupError(ThunderlineError, ValueError):
    """Tracing or metrics cannot be set up (an unusable ``OTEL_*`` value).

    Attributes:
        setting: the variable or setting at fault.
        detail: what telemetry said about it.
    """

    def __init__(self, setting: str, detail: str) -> None:
        self.setting = setting
        self.detail = detail
        super().__init__(f"telemetry: {detail}")


class AppLoadError(ThunderlineError, ImportError):
    """The APP string does not name an importable attribute.

    Attributes:
        target: the ``package.module:attribute`` string.
        detail: what went wrong.
    """

    def __init__(self, target: str, detail: str) -> None:
        self.target = target
        self.detail = detail
        super().__init__(f"cannot load application {target!r}: {detail}")


class ControlSocketError(ThunderlineError, OSError):
    """The control socket cannot be created or used.

    Attributes:
        path: the socket's path.
        detail: what went wrong.
    """

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"control socket {path}: {detail}")


class DaemonNotRunningError(ControlSocketError, ConnectionError):
    """No daemon listens on the control socket."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(path, f"no thunderline daemon listens here ({detail})")


class ControlReplyError(ThunderlineError):
    """The daemon answered a request with an error.

    Attributes:
        command: the command sent.
        code: the error code of the reply (``unknown_command``, ``no_such_process`` ...).
        detail: the reply's message.
    """

    def __init__(self, command: str, code: str, detail: str) -> None:
        self.command = command
        self.code = code
        self.detail = detail
        super().__init__(f"{command}: {code}: {detail}")


class DataDirError(ThunderlineError, OSError):
    """The data directory cannot be created or used.

    Attributes:
        path: the directory.
        detail: what went wrong.
    """

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"data directory {path}: {detail}")
