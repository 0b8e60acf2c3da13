"""Exit reasons: typed values for how a process ended.

OTP treats three reasons as "not an error": ``normal``, ``shutdown`` and
``{shutdown, Term}``. Here they are :data:`NORMAL`, :class:`Shutdown` (with or
without ``detail``); :func:`is_quiet` says whether a reason is one of them.

The other reasons the runtime produces:

* :data:`KILL`: the untrappable signal sent by ``exit(pid, KILL)``; a process
  that ends itself with ``raise ProcessExit(KILL)`` dies with reason ``KILL``
  and its link partners receive an ordinary, trappable ``KILL``.
* :data:`KILLED`: the reason of a process that received ``exit(pid, KILL)``.
* :data:`NOPROC`: the reason carried by a monitor or link set up on a process
  that did not exist.
* :data:`NOCONNECTION`: the reason of a link or monitor to a process on a
  node that was lost (OTP ``noconnection``; see ``thunderline.dist``).
* :class:`Crashed`: the process raised an exception (kept, with its traceback).

Any other object is allowed as a reason too (``exit(pid, "boom")``); it is
abnormal and travels unchanged through links and monitors.
"""

from __future__ import annotations

import traceback
from typing import Any, Final

import attrs

__all__ = [
    "KILL",
    "KILLED",
    "NOCONNECTION",
    "NOPROC",
    "NORMAL",
    "SHUTDOWN",
    "Crashed",
    "Kill",
    "Killed",
    "NoConnection",
    "NoProc",
    "Normal",
    "Shutdown",
    "crash_of",
    "is_quiet",
]


@attrs.frozen(repr=False)
class Normal:
    """The process finished its work (OTP ``normal``). All instances are equal."""

    def __repr__(self) -> str:
        return "NORMAL"


@attrs.frozen(repr=False)
class Shutdown:
    """The process was asked to shut down (OTP ``shutdown`` or ``{shutdown, Detail}``).

    Args:
        detail: optional extra information; ``Shutdown()`` is plain ``shutdown``.
    """

    detail: Any = None

    def __repr__(self) -> str:
        return "SHUTDOWN" if self.detail is None else f"Shutdown({self.detail!r})"


@attrs.frozen(repr=False)
class Kill:
    """The untrappable kill signal (OTP ``kill``)."""

    def __repr__(self) -> str:
        return "KILL"


@attrs.frozen(repr=False)
class Killed:
    """The reason of a process killed by ``exit(pid, KILL)`` (OTP ``killed``)."""

    def __repr__(self) -> str:
        return "KILLED"


@attrs.frozen(repr=False)
class NoProc:
    """The target did not exist (OTP ``noproc``)."""

    def __repr__(self) -> str:
        return "NOPROC"


@attrs.frozen(repr=False)
class NoConnection:
    """The connection to the process's node was lost (OTP ``noconnection``).

    Links to processes on a lost node deliver it as an ordinary, trappable
    exit reason; monitors fire ``Down`` with it.
    """

    def __repr__(self) -> str:
        return "NOCONNECTION"


@attrs.frozen(eq=False, repr=False)
class Crashed:
    """The process raised ``exception``; its traceback is kept for reports.

    Two ``Crashed`` reasons are equal when they wrap the same exception object,
    which is what a link partner killed by the crash receives.
    """

    exception: BaseException

    @property
    def traceback(self) -> str:
        """The formatted traceback of the exception."""
        return "".join(traceback.format_exception(self.exception))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Crashed) and other.exception is self.exception

    def __hash__(self) -> int:
        return id(self.exception)

    def __repr__(self) -> str:
        return f"Crashed({self.exception!r})"


NORMAL: Final = Normal()
SHUTDOWN: Final = Shutdown()
KILL: Final = Kill()
KILLED: Final = Killed()
NOPROC: Final = NoProc()
NOCONNECTION: Final = NoConnection()


def is_quiet(reason: object) -> bool:
    """Return True for the reasons OTP does not treat as errors: normal and shutdown(-with-detail).

    Transient children are not restarted after a quiet exit, and quiet exits
    are never logged as errors.
    """
    return isinstance(reason, Normal | Shutdown)


def crash_of(reason: object, depth: int = 4) -> BaseException | None:
    """The exception behind ``reason``: a :class:`Crashed` reason, or one nested in attrs fields.

    ``Shutdown(FailedToStartChild(id, Crashed(exc)))`` gives ``exc``, so reports
    about a failed start carry the traceback too. Looks ``depth`` levels deep.
    """
    if isinstance(reason, Crashed):
        return reason.exception
    kind = type(reason)
    if depth <= 0 or not attrs.has(kind):
        return None
    for field in attrs.fields(kind):
        found = crash_of(getattr(reason, field.name), depth - 1)
        if found is not None:
            return found
    return None
