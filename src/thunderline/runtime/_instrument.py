"""The instrumentation hook: how telemetry plugs into the runtime.

The runtime never imports OpenTelemetry. A node holds at most one
:class:`Instrument`; when it has none, sends and receives pay one attribute
check. ``thunderline.telemetry`` provides the OpenTelemetry implementation.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from thunderline.runtime._pid import Pid

__all__ = ["Instrument"]


@runtime_checkable
class Instrument(Protocol):
    """Hooks the runtime calls at the points of a process's life.

    Every hook runs synchronously in the task of the process concerned and
    must not raise; exceptions raised by a hook are logged and ignored.
    """

    def process_started(self, pid: Pid, parent: Pid | None) -> None:
        """Called inside a new process's task before its function runs."""

    def capture(self, sender: Pid | None, dest: Pid) -> Any:
        """Called on every send in the sender; returns a carrier to travel with the message.

        Return ``None`` when there is nothing to carry (the message then travels bare).
        """

    def message_received(self, pid: Pid, carrier: Any) -> None:
        """Called in the receiver when it takes a message that travelled with a carrier.

        The receiver handles that message inside the carrier's context until its
        next receive (see :meth:`message_done`).
        """

    def message_done(self, pid: Pid) -> None:
        """Called when the receiver is done with the message it took last (at its next receive)."""

    def process_exited(self, pid: Pid, reason: Any) -> None:
        """Called when a process has ended, after its links and monitors were signalled."""
