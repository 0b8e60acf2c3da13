"""The process: its mailbox, selective receive, and how exit signals reach it.

This is where a message is *received* and where an exit signal *decides* the
receiver's fate (the seven-row table of the OTP Reference Manual, "Receiving
Exit Signals", in :meth:`Process.exit_signal`). Sending lives in
:mod:`thunderline.runtime._api`, death and its notifications in
:mod:`thunderline.runtime._node`.

Python has no preemption. A process that runs CPU-bound code without awaiting
blocks every other process of its node; an exit signal that must kill it takes
effect at its next checkpoint (an ``await`` that yields). ``to_thread`` work a
process started keeps running after the process was killed, as a dirty NIF does
in ERTS.

Scheduling fairness: :func:`receive` does not yield to the event loop when a
matching message is already queued, but after :data:`RECEIVE_BUDGET`
consecutive non-blocking receives it yields once, like BEAM's reduction
budget, so a flooded process cannot starve the others.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

from anyio.lowlevel import checkpoint

from thunderline.runtime._errors import ReceiveBusyError, ReceiveTimeout, WouldBlock
from thunderline.runtime._messages import Exit
from thunderline.runtime._pid import Pid, Ref
from thunderline.runtime._reasons import KILLED, Kill, Normal
from thunderline.runtime._timers import EXPIRED

if TYPE_CHECKING:
    from thunderline.runtime._node import Node

__all__ = [
    "PROCESS_ENDINGS",
    "RECEIVE_BUDGET",
    "Envelope",
    "Hibernating",
    "Monitor",
    "Process",
    "ProcessExit",
    "add_link",
    "add_monitor",
    "drop_link",
    "drop_monitor",
]

logger: Final = logging.getLogger("thunderline.runtime")

#: Consecutive receives served from a non-empty mailbox before a process yields once.
RECEIVE_BUDGET: Final = 64

Predicate = Callable[[Any], bool]


class ProcessExit(BaseException):
    """Raise inside a process to end it with ``reason`` (OTP ``exit(Reason)``).

    ``raise ProcessExit(NORMAL)`` ends the process normally; any other reason is
    abnormal and is propagated to links and monitors. It derives from
    ``BaseException`` so ``except Exception`` in user code cannot swallow it.
    """

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason


class Envelope:
    """A message travelling with an instrumentation carrier (trace context)."""

    __slots__ = ("carrier", "message")

    def __init__(self, message: Any, carrier: Any) -> None:
        self.message = message
        self.carrier = carrier


class Monitor:
    """One monitor: ``owner`` watches ``target``; ``reported`` is what ``Down.pid`` shows."""

    __slots__ = ("owner", "ref", "reported", "target")

    def __init__(self, ref: Ref, owner: Pid, target: Pid, reported: Any) -> None:
        self.ref = ref
        self.owner = owner
        self.target = target
        self.reported = reported


# Links and monitors have one home: these four functions are the only code that
# adds or drops them (both sides at once); finalize in _node releases them on death.


def add_link(a: Process, b: Process) -> None:
    """Link ``a`` and ``b`` (both sides; a second link between them is the same link)."""
    a.links[b.pid] = None
    b.links[a.pid] = None


def drop_link(proc: Process, pid: Pid) -> None:
    """Remove the link between ``proc`` and ``pid`` on both sides, if any."""
    proc.links.pop(pid, None)
    node = proc.node
    other = node.processes.get(pid)
    if other is not None:
        other.links.pop(proc.pid, None)
    elif node.dist is not None and pid._node != node.id:
        node.dist.unlink(proc.pid, pid)


def add_monitor(ref: Ref, owner: Process, target: Process, reported: Pid | str) -> Monitor:
    """``owner`` monitors ``target`` under ``ref``; ``Down.pid`` will show ``reported``."""
    mon = Monitor(ref, owner.pid, target.pid, reported)
    owner.monitors_out[ref] = mon
    target.monitors_in[ref] = mon
    return mon


def drop_monitor(owner: Process, ref: Ref) -> bool:
    """Remove ``owner``'s monitor ``ref`` on both sides; True if it was active."""
    mon = owner.monitors_out.pop(ref, None)
    if mon is None:
        return False
    node = owner.node
    target = node.processes.get(mon.target)
    if target is not None:
        target.monitors_in.pop(ref, None)
    elif node.dist is not None and mon.target._node != node.id:
        node.dist.demonitor(owner.pid, mon.target, ref)
    return True


_NO_EXIT: Final[Any] = object()
_RESUMING: Final[Any] = object()
#: The mailbox of a hibernated process with no message (swapped back on wake).
_FROZEN_MAILBOX: Final[Any] = ()
#: The timers of a process that never had one (a set is made on the first).
_NO_TIMERS: Final[Any] = frozenset()


class Hibernating(BaseException):
    """Raised by a process function to hibernate: end the task, keep the process.

    The process then runs ``fn(*args)`` in a new task when a message or an
    exit signal arrives (see :meth:`Process.hibernate`).
    """

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        super().__init__()
        self.fn = fn
        self.args = args


#: What ends a process body with an exit reason (``Node.exit_reason``); any other
#: BaseException (a cancellation that is not the runtime's own, KeyboardInterrupt)
#: propagates.
PROCESS_ENDINGS: Final = (ProcessExit, Hibernating, Exception)

#: The process the running code belongs to (set in each process's own task).
current_process_var: ContextVar[Process | None] = ContextVar("thunderline_process", default=None)


class Process:
    """The runtime's record of one live process (not public: users hold :class:`Pid`)."""

    __slots__ = (
        "_budget",
        "_call_ref",
        "_carrier_active",
        "_carrier_token",
        "_exit_limit",
        "_handoff",
        "_resume",
        "_runner",
        "_waiter",
        "exit_callbacks",
        "exit_reason",
        "handled",
        "label",
        "links",
        "mailbox",
        "monitors_in",
        "monitors_out",
        "name",
        "node",
        "parent",
        "pid",
        "timers",
        "trap_exit",
    )

    def __init__(self, node: Node, pid: Pid, parent: Pid | None, label: str) -> None:
        self.node = node
        self.pid = pid
        self.parent = parent
        self.label = label
        self.mailbox: deque[Any] = deque()
        self.links: dict[Pid, None] = {}
        self.monitors_out: dict[Ref, Monitor] = {}
        self.monitors_in: dict[Ref, Monitor] = {}
        self.trap_exit = False
        self.name: str | None = None
        self.timers: set[Ref] = _NO_TIMERS
        self._call_ref: Ref | None = None  # the alias of the call waiting for its reply
        self._handoff: Any = None  # a reply handed straight to the parked caller
        self._resume: Any = None  # hibernated: (fn, args) to run when woken
        self.exit_callbacks: list[Callable[[Pid, Any], None]] = []
        self.handled = 0
        self.exit_reason: Any = _NO_EXIT
        self._exit_limit = 0
        self._runner: Any = None  # the backend's handle to interrupt the task
        self._waiter: Any = None
        self._budget = RECEIVE_BUDGET
        self._carrier_active = False
        self._carrier_token: Any = None

    # ------------------------------------------------------------------ state

    @property
    def alive(self) -> bool:
        """True until the process has been finalized."""
        return self.node.processes.get(self.pid) is self

    @property
    def exiting(self) -> bool:
        """True once an exit signal has decided this process dies."""
        return self.exit_reason is not _NO_EXIT

    @property
    def status(self) -> str:
        """``waiting`` (blocked in receive), ``exiting`` or ``running``."""
        if self.exit_reason is not _NO_EXIT:
            return "exiting"
        if self._waiter is not None or self._resume is not None:
            return "waiting"
        return "running"

    @property
    def aliases(self) -> tuple[Ref, ...]:
        """The reply aliases that are active (the call this process is waiting in)."""
        return () if self._call_ref is None else (self._call_ref,)

    @property
    def hibernating(self) -> bool:
        """True while the process holds no task (see :meth:`hibernate`)."""
        return self._resume is not None and self._resume is not _RESUMING

    def add_timer(self, ref: Ref) -> None:
        """Remember a timer aimed at this process (cancelled when it ends)."""
        if self.timers is _NO_TIMERS:
            self.timers = set()
        self.timers.add(ref)

    # ------------------------------------------------------------ hibernation

    def hibernate(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """Keep the process without a task: ``fn(*args)`` runs in a new task when it wakes.

        Called by the node when the process's task returned :class:`Hibernating`.
        What remains is this record (mailbox, links, monitors, timers, name)
        and what ``args`` holds; an empty mailbox is swapped for a shared empty
        tuple. The next :meth:`deliver` or :meth:`kill` wakes it (:meth:`_thaw`).
        """
        self._resume = (fn, *args)  # one tuple, not two
        if not self.mailbox:
            self.mailbox = _FROZEN_MAILBOX
        # A dict keeps the table it grew to after its entries are gone: an empty
        # one is replaced by a fresh (table-less) one.
        if not self.monitors_in:
            self.monitors_in = {}
        if not self.monitors_out:
            self.monitors_out = {}
        if not self.links:
            self.links = {}
        self._budget = RECEIVE_BUDGET

    def _thaw(self) -> None:
        """Wake a hibernated process: restore its mailbox and start its resume task."""
        resume = self._resume
        if resume is _RESUMING:
            return  # its task is already starting
        self._resume = _RESUMING
        if self.mailbox is _FROZEN_MAILBOX:
            self.mailbox = deque()
        self.node.resume(self, resume[0], resume[1:])

    # --------------------------------------------------------------- delivery

    def deliver(self, item: Any) -> None:
        """Append a message (or an :class:`Envelope`) to the mailbox and wake a waiting receive
        (or the process itself, when it hibernates)."""
        if self._resume is not None:
            self._thaw()
        self.mailbox.append(item)
        waiter = self._waiter
        if waiter is not None:
            self.node.backend.wake(waiter)

    def post(self, message: Any, operation: str) -> None:
        """Deliver a message sent by the calling code (``send``, ``call``, ``cast``, ``reply``).

        With an instrument installed, the sender's trace context is captured
        and travels with the message in an :class:`Envelope`.
        """
        instrument = self.node.instrument
        if instrument is not None:
            sender = current_process_var.get()
            carrier = instrument.capture(
                sender.pid if sender is not None else None,
                self.pid,
                self.name if self.name is not None else repr(self.pid),
                operation,
            )
            if carrier is not None:
                message = Envelope(message, carrier)
        self.deliver(message)

    def hand_reply(self, tag: Ref, reply: Any) -> bool:
        """Hand a call's reply straight to this process parked in that call's receive.

        Only when it is parked (``_waiter``), not exiting, untraced, and ``tag``
        is its active call alias; the alias is consumed (a second reply to the
        same call is dropped, as a late one is). Returns False when the reply
        must go through the mailbox instead.
        """
        alias = self._call_ref
        if (
            self._waiter is None
            or alias is None
            or self.exit_reason is not _NO_EXIT
            or self.node.instrument is not None
            or not (tag is alias or tag == alias)
        ):
            return False
        self._call_ref = None
        self._handoff = reply
        self.node.backend.wake(self._waiter)
        return True

    def exit_signal(self, sender: Pid, reason: Any, *, linked: bool) -> None:
        """Apply an exit signal from ``sender`` (OTP Reference Manual, "Receiving Exit Signals").

        ``linked`` is the signal's link flag: True when it comes from a dying
        link partner (the link was active: both sides are removed before the
        signal is sent, so row 1 needs no check here), False for ``exit(pid, reason)``.
        """
        if linked:
            if self.trap_exit:  # row 7: even KILL is just a message
                self.deliver(Exit(sender, reason))
            elif not isinstance(reason, Normal):  # row 4: KILL stays KILL
                self.kill(reason)
            # row 2: a normal exit of a link partner is ignored
            return
        if isinstance(reason, Kill):  # row 3: untrappable, dies as KILLED
            self.kill(KILLED)
        elif self.trap_exit:  # row 6, including exit(self(), normal)
            self.deliver(Exit(sender, reason))
        elif isinstance(reason, Normal):
            if sender == self.pid:  # row 5
                self.kill(reason)
            # row 2: exit(other, normal) is ignored by a non-trapping process
        else:  # row 4
            self.kill(reason)

    def kill(self, reason: Any) -> None:
        """Decide that this process dies with ``reason``; it dies at its next checkpoint.

        A process blocked in :meth:`receive` is woken instead and may still take
        a message that was queued before the signal (signals and messages from
        one sender stay ordered); it then dies at its next checkpoint.
        """
        if self.exit_reason is not _NO_EXIT or not self.alive:
            return
        self.exit_reason = reason
        self._exit_limit = len(self.mailbox)
        waiter = self._waiter
        if waiter is not None:
            self.node.backend.wake(waiter)
        elif self._resume is not None:
            self._thaw()  # its new task starts exiting: it dies at once
        else:
            self._interrupt()

    def _interrupt(self) -> None:
        """Make the process's next checkpoint raise (it is dying)."""
        self.node.backend.interrupt(self)

    # ---------------------------------------------------------------- receive

    def _find(self, predicate: Predicate | None, start: int, stop: int) -> int:
        if start >= stop:
            return -1
        if predicate is None:
            return start
        for index, item in enumerate(itertools.islice(self.mailbox, start, stop), start):
            message = item.message if type(item) is Envelope else item
            if predicate(message):
                return index
        return -1

    def _take(self, index: int, adopt: bool = True) -> Any:
        mailbox = self.mailbox
        if index == 0:
            item = mailbox.popleft()
        else:
            item = mailbox[index]
            del mailbox[index]
        self.handled += 1
        if self.exit_reason is not _NO_EXIT:
            self._exit_limit -= 1
            self._interrupt()  # the signal behind this message kills at the next checkpoint
        if adopt and self.node.instrument is not None:
            self.adopt(item.carrier if type(item) is Envelope else None)
        if type(item) is Envelope:
            return item.message
        return item

    def release_carrier(self) -> None:
        """End the context of the message taken last (instrument ``message_done``)."""
        instrument = self.node.instrument
        if instrument is not None and self._carrier_active:
            self._carrier_active = False
            self.node.call_hook(instrument.message_done, self.pid, self._carrier_token)

    def adopt(self, carrier: Any) -> None:
        """Handle what follows in ``carrier``'s context (instrument hooks; see ``_instrument``)."""
        instrument = self.node.instrument
        if instrument is None:
            return
        self.release_carrier()
        label = self.name if self.name is not None else repr(self.pid)
        try:
            self._carrier_token = instrument.message_received(self.pid, label, carrier)
        except Exception:
            logger.exception("instrument hook message_received failed in %r", self.pid)
            return
        self._carrier_active = True

    def receive_nowait(self, predicate: Predicate | None, adopt: bool = True) -> Any:
        """Take the first queued message matching ``predicate`` or raise :class:`WouldBlock`."""
        if self.exit_reason is not _NO_EXIT:
            stop = self._exit_limit
            index = self._find(predicate, 0, stop)
            if index < 0:
                raise ProcessExit(self.exit_reason)
        else:
            index = self._find(predicate, 0, len(self.mailbox))
            if index < 0:
                raise WouldBlock(f"{self.pid!r}: no matching message is queued")
        return self._take(index, adopt)

    def ready_for_fast_take(self) -> bool:
        """True when :meth:`take_first` may serve a receive without awaiting."""
        return self.exit_reason is _NO_EXIT and self._budget > 0

    def take_first(self) -> Any:
        """Take the oldest message (caller checked :meth:`ready_for_fast_take` and the mailbox)."""
        self._budget -= 1
        return self._take(0, True)

    async def receive(
        self,
        predicate: Predicate | None,
        timeout: float | None,
        adopt: bool = True,
        start: int = 0,
    ) -> Any:
        """Selective receive; see :func:`thunderline.receive`.

        ``start`` skips the first messages of the mailbox: a caller that knows
        its answer cannot be among them (a call's reply comes after the request
        was sent: OTP's receive-marker optimisation) avoids rescanning a long
        mailbox.

        The algorithm (one coroutine frame, inlined: every frame between the
        caller and the native wait is paid again on each resume):

        1. Within the receive budget and not exiting, scan ``[start, len)``
           and take the first match without yielding. Once the budget is
           spent, yield once (a checkpoint) and refill it.
        2. Otherwise loop: scan only the messages not scanned yet (up to the
           exit limit once an exit signal decided the process dies, then raise
           :class:`ProcessExit`); with nothing new, park on the backend until a
           delivery, a handed-over call reply or the deadline. The loop clock
           is read once for the deadline and again only after a wake that
           brought no match, never before the first park.
        """
        mailbox = self.mailbox
        scanned = start
        if self._budget > 0:
            if self.exit_reason is _NO_EXIT:
                stop = len(mailbox)
                if stop > start:
                    index = start if predicate is None else self._find(predicate, start, stop)
                    if index >= 0:
                        self._budget -= 1
                        return self._take(index, adopt)
                    scanned = stop
        else:
            self._budget = RECEIVE_BUDGET
            await checkpoint()
        backend = self.node.backend
        if timeout is None:
            deadline = math.inf
        elif timeout == 0:
            deadline = -math.inf
        else:
            deadline = backend.now() + timeout
        parked_once = False
        while True:
            if self.exit_reason is not _NO_EXIT:
                index = self._find(predicate, scanned, self._exit_limit)
                if index >= 0:
                    self._budget = RECEIVE_BUDGET
                    return self._take(index, adopt)
                raise ProcessExit(self.exit_reason)
            stop = len(mailbox)
            if stop > scanned:
                index = scanned if predicate is None else self._find(predicate, scanned, stop)
                if index >= 0:
                    self._budget = RECEIVE_BUDGET
                    return self._take(index, adopt)
                scanned = stop
            if timeout is not None and (
                deadline == -math.inf or (parked_once and backend.now() >= deadline)
            ):
                raise ReceiveTimeout(self.pid, timeout)
            if self._waiter is not None:
                raise ReceiveBusyError(self.pid)
            parked, entry = backend.park(self, deadline)
            try:
                woken = (await parked) is not EXPIRED
            finally:
                self._waiter = None
                if entry is not None:
                    backend.timers.cancel(entry)
            handoff = self._handoff
            if handoff is not None and woken:
                # A call's reply handed over by hand_reply: not via the mailbox.
                self._handoff = None
                self._budget = RECEIVE_BUDGET
                self.handled += 1
                if self.exit_reason is not _NO_EXIT:
                    self._interrupt()  # a signal came after the reply: die at the next checkpoint
                return handoff
            if not woken:
                # Timed out: nothing arrived since the last scan, so no match.
                raise ReceiveTimeout(self.pid, timeout if timeout is not None else math.inf)
            parked_once = True

    def __repr__(self) -> str:
        return f"<Process {self.label}>"
