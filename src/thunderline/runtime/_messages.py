"""Messages the runtime itself puts in mailboxes.

* :class:`Exit` arrives instead of death when a process traps exits
  (OTP ``{'EXIT', From, Reason}``).
* :class:`Down` arrives when a monitored process ends (OTP
  ``{'DOWN', Ref, process, Object, Reason}``). ``pid`` is the monitored pid, or
  the registered name when the monitor was set up by name.

Both are ordinary messages: selective receive can match them like any other.
"""

from __future__ import annotations

from typing import Any

import attrs

from thunderline.runtime._pid import Pid, Ref

__all__ = ["Down", "Exit"]


@attrs.frozen(slots=True)
class Exit:
    """An exit signal turned into a message because the receiver traps exits.

    Attributes:
        pid: the process that sent the signal (the dead link partner, or the
            caller of ``exit(pid, reason)``).
        reason: the exit reason.
    """

    pid: Pid
    reason: Any


@attrs.frozen(slots=True)
class Down:
    """A monitored process ended (or never existed: reason ``NOPROC``).

    Attributes:
        ref: the reference :func:`monitor` returned.
        pid: the monitored pid, or the registered name for a monitor set up by name.
        reason: the exit reason.
    """

    ref: Ref
    pid: Pid | str
    reason: Any
