"""Errors raised by :mod:`thunderline.telemetry`.

Example::

    >>> from thunderline.telemetry import TelemetryConfigError, configure
    >>> try:
    ...     configure(sampler="sometimes", install_global=False)
    ... except TelemetryConfigError as error:
    ...     print(error.setting)
    sampler
"""

from __future__ import annotations

from thunderline.runtime import ThunderlineError


class TelemetryConfigError(ThunderlineError, ValueError):
    """A telemetry setting has a value that cannot be used.

    Raised by :func:`thunderline.telemetry.configure` and
    :meth:`thunderline.telemetry.TelemetryConfig.from_env` at configuration
    time, never later while the application runs.

    Args:
        setting: The keyword argument or environment variable at fault.
        value: The value that was received.
        accepted: A description of the accepted shapes.

    Attributes:
        setting: The keyword argument or environment variable at fault.
        value: The value that was received.
        accepted: A description of the accepted shapes.

    .. versionadded:: 0.1
    """

    def __init__(self, setting: str, value: object, accepted: str) -> None:
        self.setting = setting
        self.value = value
        self.accepted = accepted
        super().__init__(f"{setting}: expected {accepted}; received {value!r}")
