"""The instrumentation hook: how telemetry plugs into the runtime.

The runtime never imports OpenTelemetry. A node holds at most one
:class:`Instrument`; when it has none, sends and receives pay one attribute
check. ``thunderline.telemetry.RuntimeInstrument`` is the OpenTelemetry
implementation; subclass :class:`BaseInstrument` to write your own (every
hook is a no-op there).

Where the hooks run:

* :meth:`Instrument.capture` in the *sender*, on every send, cast, call and
  reply: it returns a carrier that travels with the message in its envelope.
* :meth:`Instrument.message_received` in the *receiver*, when it takes a
  message to handle it (a plain :func:`receive`, or a server loop taking its
  next request); the receiver then runs inside the carrier's context until
  :meth:`Instrument.message_done` (its next receive, or the end of the
  handler). Replies awaited inside :func:`call` and other internal waits do
  not switch context: the caller continues in its own.
* :meth:`Instrument.process_started` / :meth:`Instrument.process_exited` in
  the process's own task, at its start and after its links and monitors were
  signalled.
* :meth:`Instrument.child_restarted` in a supervisor, after it restarted a
  child (or tried to).

A node opened without an instrument uses the process-wide default set with
:func:`set_default_instrument` when it opens (``thunderline.telemetry.configure``
sets its propagation instrument there, ``shutdown`` clears it); a node keeps
the instrument it opened with until it closes.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol, runtime_checkable

from thunderline.runtime._pid import Pid

__all__ = ["BaseInstrument", "Instrument", "get_default_instrument", "set_default_instrument"]


@runtime_checkable
class Instrument(Protocol):
    """Hooks the runtime calls at the points of a process's life.

    Hooks run synchronously and must be cheap; an exception raised by a hook
    is logged and ignored, never propagated into the process.
    """

    def process_started(self, pid: Pid, parent: Pid | None, label: str) -> None:
        """A new process's task starts (inside it, before its function runs)."""

    def capture(self, sender: Pid | None, dest: Pid, dest_label: str, operation: str) -> Any:
        """A message is about to be sent; return its carrier, or None to send it bare.

        ``operation`` is ``send``, ``call``, ``cast`` or ``reply``; ``dest_label``
        is the destination's registered name or pid.
        """

    def message_received(self, pid: Pid, label: str, carrier: Any) -> Any:
        """The process takes a message to handle it; returns a token for :meth:`message_done`.

        ``carrier`` is what :meth:`capture` returned, or None for a bare message.
        """

    def message_done(self, pid: Pid, token: Any) -> None:
        """The process is done with the message :meth:`message_received` returned ``token`` for."""

    def process_exited(self, pid: Pid, reason: Any) -> None:
        """The process ended with ``reason`` (in its own task, after the signals went out)."""

    def child_restarted(
        self,
        supervisor: Pid,
        child_id: Hashable,
        old_pid: Pid | None,
        new_pid: Pid | None,
        reason: Any,
    ) -> None:
        """A supervisor restarted ``child_id`` after it exited with ``reason``.

        ``new_pid`` is None when the start failed (a retry follows) or was ignored.
        """


class BaseInstrument:
    """An :class:`Instrument` whose hooks do nothing; override the ones you need."""

    def process_started(self, pid: Pid, parent: Pid | None, label: str) -> None:
        """See :meth:`Instrument.process_started`."""

    def capture(self, sender: Pid | None, dest: Pid, dest_label: str, operation: str) -> Any:
        """See :meth:`Instrument.capture`."""
        return None

    def message_received(self, pid: Pid, label: str, carrier: Any) -> Any:
        """See :meth:`Instrument.message_received`."""
        return None

    def message_done(self, pid: Pid, token: Any) -> None:
        """See :meth:`Instrument.message_done`."""

    def process_exited(self, pid: Pid, reason: Any) -> None:
        """See :meth:`Instrument.process_exited`."""

    def child_restarted(
        self,
        supervisor: Pid,
        child_id: Hashable,
        old_pid: Pid | None,
        new_pid: Pid | None,
        reason: Any,
    ) -> None:
        """See :meth:`Instrument.child_restarted`."""


_default: list[Instrument | None] = [None]


def set_default_instrument(instrument: Instrument | None) -> Instrument | None:
    """Set the instrument of nodes opened later without one; returns the previous default.

    Nodes already open keep theirs. None clears the default.
    """
    previous, _default[0] = _default[0], instrument
    return previous


def get_default_instrument() -> Instrument | None:
    """The instrument a node opened now without one would use (None: no instrument)."""
    return _default[0]
