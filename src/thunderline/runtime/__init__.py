"""thunderline.runtime: processes, mailboxes, links, monitors, names and timers on anyio.

The semantics are Erlang/OTP's (Reference Manual, "Processes"); see the
project README for an overview and ``docs/design.md`` for the mapping.
"""

from __future__ import annotations

from thunderline.runtime._api import (
    ProcessInfo,
    cancel_timer,
    current_pid,
    demonitor,
    exit,
    is_alive,
    link,
    monitor,
    process_info,
    processes,
    read_timer,
    receive,
    receive_nowait,
    register,
    registered,
    send,
    send_after,
    spawn,
    spawn_link,
    spawn_monitor,
    trap_exit,
    unlink,
    unregister,
    whereis,
)
from thunderline.runtime._errors import (
    AlreadyNamedError,
    InvalidDestinationError,
    InvalidNameError,
    InvalidTimeoutError,
    NameNotRegisteredError,
    NameTakenError,
    NoNodeError,
    NoProcessError,
    NotInProcessError,
    ReceiveTimeout,
    RegistrationError,
    ThunderlineError,
    WouldBlock,
)
from thunderline.runtime._instrument import Instrument
from thunderline.runtime._messages import Down, Exit
from thunderline.runtime._node import Node, open_node, run
from thunderline.runtime._pid import Pid, Ref
from thunderline.runtime._process import RECEIVE_BUDGET, ProcessExit
from thunderline.runtime._reasons import (
    KILL,
    KILLED,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    Crashed,
    Kill,
    Killed,
    NoProc,
    Normal,
    Shutdown,
    is_quiet,
)

__all__ = [
    "KILL",
    "KILLED",
    "NOPROC",
    "NORMAL",
    "RECEIVE_BUDGET",
    "SHUTDOWN",
    "AlreadyNamedError",
    "Crashed",
    "Down",
    "Exit",
    "Instrument",
    "InvalidDestinationError",
    "InvalidNameError",
    "InvalidTimeoutError",
    "Kill",
    "Killed",
    "NameNotRegisteredError",
    "NameTakenError",
    "NoNodeError",
    "NoProc",
    "NoProcessError",
    "Node",
    "Normal",
    "NotInProcessError",
    "Pid",
    "ProcessExit",
    "ProcessInfo",
    "ReceiveTimeout",
    "Ref",
    "RegistrationError",
    "Shutdown",
    "ThunderlineError",
    "WouldBlock",
    "cancel_timer",
    "current_pid",
    "demonitor",
    "exit",
    "is_alive",
    "is_quiet",
    "link",
    "monitor",
    "open_node",
    "process_info",
    "processes",
    "read_timer",
    "receive",
    "receive_nowait",
    "register",
    "registered",
    "run",
    "send",
    "send_after",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "trap_exit",
    "unlink",
    "unregister",
    "whereis",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("thunderline.runtime._"):
        try:
            _obj.__module__ = __name__
        except (AttributeError, TypeError):
            pass
del _name, _obj
