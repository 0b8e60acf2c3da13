"""The process API: spawn, send, receive, exit signals, links, monitors, names, timers.

Every function acts on the node of the calling context (see :func:`open_node`);
those that act *for* a process (receive, link, monitor, trap_exit ...) must be
called from inside one and raise :class:`NotInProcessError` otherwise.

This module is where a message is *sent* (:func:`send`); it is received in
:meth:`thunderline.runtime._process.Process.receive`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import attrs

from thunderline.runtime._errors import (
    AlreadyNamedError,
    ForeignReferenceError,
    InvalidDestinationError,
    InvalidNameError,
    InvalidTimeoutError,
    NameNotRegisteredError,
    NameTakenError,
    NoProcessError,
    NotInProcessError,
)
from thunderline.runtime._messages import Down, Exit
from thunderline.runtime._node import current_node, current_node_var
from thunderline.runtime._pid import Pid, Ref
from thunderline.runtime._process import (
    Envelope,
    Monitor,
    Predicate,
    Process,
    ProcessExit,
    add_link,
    add_monitor,
    current_process_var,
    drop_link,
    drop_monitor,
)
from thunderline.runtime._reasons import NOPROC

__all__ = [
    "ProcessInfo",
    "cancel_timer",
    "current_pid",
    "demonitor",
    "exit",
    "is_alive",
    "link",
    "monitor",
    "process_info",
    "processes",
    "read_timer",
    "receive",
    "receive_nowait",
    "register",
    "registered",
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

#: Names no process may register (OTP reserves ``undefined``).
RESERVED_NAMES = frozenset({"undefined"})


def _self(operation: str) -> Process:
    proc = current_process_var.get()
    if proc is None:
        raise NotInProcessError(operation)
    return proc


def _check_pid(target: object, operation: str) -> Pid:
    if type(target) is not Pid:
        raise InvalidDestinationError(target, operation, "a Pid")
    return target


def _check_timeout(timeout: object, operation: str) -> float | None:
    if type(timeout) is float and 0.0 <= timeout < math.inf:  # the common case, NaN fails
        return timeout
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidTimeoutError(timeout, operation)
    if math.isnan(timeout) or timeout < 0:
        raise InvalidTimeoutError(timeout, operation)
    if math.isinf(timeout):
        return None
    return float(timeout)


# ------------------------------------------------------------------- spawning


def spawn(fn: Callable[..., Awaitable[Any]], *args: Any, trap_exit: bool = False) -> Pid:
    """Start a new process running ``await fn(*args)`` and return its pid.

    The process ends with reason ``NORMAL`` when ``fn`` returns, ``Crashed(exc)``
    when it raises, or the reason of a :class:`ProcessExit` it raises. An
    exception never escapes into the node or into any other process.

    Args:
        fn: an async function.
        *args: its arguments.
        trap_exit: start the process already trapping exits (set before it runs).

    Raises:
        TypeError: ``fn`` is not callable.
        NoNodeError: no node is running in this context.
    """
    pid, _ = _spawn(fn, args, link=False, monitor=False, trap_exit=trap_exit, op="spawn")
    return pid


def spawn_link(fn: Callable[..., Awaitable[Any]], *args: Any, trap_exit: bool = False) -> Pid:
    """Like :func:`spawn`, and link the caller and the new process atomically.

    There is no moment in which the child runs unlinked: a child that crashes
    at once still sends its exit signal to the caller.

    Raises:
        NotInProcessError: called outside a process.
    """
    pid, _ = _spawn(fn, args, link=True, monitor=False, trap_exit=trap_exit, op="spawn_link")
    return pid


def spawn_monitor(
    fn: Callable[..., Awaitable[Any]], *args: Any, trap_exit: bool = False
) -> tuple[Pid, Ref]:
    """Like :func:`spawn`, and monitor the new process atomically; returns ``(pid, ref)``.

    The caller receives exactly one ``Down(ref, pid, reason)``, even if the
    child ends before this function returns.

    Raises:
        NotInProcessError: called outside a process.
    """
    pid, ref = _spawn(fn, args, link=False, monitor=True, trap_exit=trap_exit, op="spawn_monitor")
    assert ref is not None
    return pid, ref


def _spawn(
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    *,
    link: bool,
    monitor: bool,
    trap_exit: bool,
    op: str,
) -> tuple[Pid, Ref | None]:
    if not callable(fn):
        raise TypeError(f"{op}: expected an async function, got {type(fn).__name__} {fn!r}")
    parent = current_process_var.get()
    if (link or monitor) and parent is None:
        raise NotInProcessError(op)
    node = parent.node if parent is not None else current_node(op)
    return node.spawn(fn, args, parent=parent, link=link, monitor=monitor, trap_exit=trap_exit)


def current_pid() -> Pid:
    """The pid of the calling process (OTP ``self()``).

    Raises:
        NotInProcessError: called outside a process.
    """
    return _self("current_pid").pid


def is_alive(pid: Pid) -> bool:
    """True if ``pid`` names a live process of the current node."""
    node = current_node("is_alive")
    return _check_pid(pid, "is_alive") in node.processes


# -------------------------------------------------------------------- messages


def _resolve(dest: object, operation: str) -> Process | None:
    node = current_node(operation)
    if type(dest) is Pid:
        return node.processes.get(dest)
    if type(dest) is str:
        pid = node.names.get(dest)
        if pid is None:
            raise NameNotRegisteredError(dest, operation)
        return node.processes.get(pid)
    raise InvalidDestinationError(dest, operation)


def send(dest: Pid | str | tuple[str, str], message: Any) -> None:
    """Send ``message`` to a pid or a registered name. Never blocks, never waits.

    Mailboxes are unbounded, as in OTP. Messages from one sender to one
    receiver arrive in the order sent. Sending to a dead pid does nothing.
    On a distributed node (``thunderline.dist``) ``dest`` may also be a pid of
    another node or a ``(name, node_name)`` pair; such a send never raises
    for its target (unknown name, dead process, node down: dropped).

    Raises:
        NameNotRegisteredError: ``dest`` is a name no process holds.
        InvalidDestinationError: ``dest`` is neither a Pid nor a str.
    """
    node = current_node_var.get()
    if node is not None and type(dest) is Pid:
        proc = node.processes.get(dest)
        if proc is None and node.dist is not None and dest._node != node.id:
            node.dist.send(dest, message)
            return
    elif node is not None and node.dist is not None and type(dest) is tuple:
        node.dist.send(dest, message)
        return
    else:
        proc = _resolve(dest, "send")
    if proc is None:
        return
    proc.post(message, "send")


def _compile(patterns: tuple[Any, ...]) -> Predicate | None:
    if not patterns:
        return None
    if len(patterns) == 1:
        return _compile_one(patterns[0])
    predicates = [_compile_one(p) for p in patterns]
    return lambda message: any(p(message) for p in predicates)


def _compile_one(pattern: Any) -> Predicate:
    if isinstance(pattern, type):
        return lambda message: isinstance(message, pattern)
    if isinstance(pattern, tuple) and pattern and all(isinstance(p, type) for p in pattern):
        return lambda message: isinstance(message, pattern)
    if callable(pattern):
        predicate: Predicate = pattern
        return predicate
    return lambda message: bool(message == pattern)


def receive(
    *patterns: Any, timeout: float | None = None, adopt_context: bool = True
) -> Coroutine[Any, Any, Any]:
    """Take the first queued message that matches, waiting for one if needed.

    Messages are tried in arrival order; the first one matching any pattern is
    removed and returned, every other message stays queued in order (OTP
    selective receive). A pattern is a class (``isinstance``), a tuple of
    classes, a predicate callable, or a value compared with ``==``. No pattern
    matches everything.

    ``timeout`` (seconds) bounds the wait for a *matching* message; a
    non-matching arrival does not restart it. ``timeout=0`` never waits (OTP
    ``after 0``). ``None`` or ``math.inf`` waits forever. A receive that times
    out consumes nothing.

    When the mailbox already holds a match the call returns without a trip
    through the event loop, yielding once every ``RECEIVE_BUDGET`` messages.

    With an instrument installed (tracing), the process handles the message
    it takes inside the trace context the message carried, until its next
    receive. ``adopt_context=False`` takes the message without switching
    context: for bookkeeping reads that are not "handling" the message.

    Raises:
        ReceiveTimeout: no matching message within ``timeout``.
        InvalidTimeoutError: ``timeout`` is negative or not a number.
        NotInProcessError: called outside a process.
    """
    proc = current_process_var.get()
    if proc is None:
        raise NotInProcessError("receive")
    if timeout is not None:
        timeout = _check_timeout(timeout, "receive")
    # Not a coroutine function itself: the awaitable is Process.receive's coroutine,
    # so a blocked receive has one frame to resume, not two.
    return proc.receive(_compile(patterns) if patterns else None, timeout, adopt_context)


def receive_nowait(*patterns: Any, adopt_context: bool = True) -> Any:
    """Take the first queued matching message without waiting (see :func:`receive`).

    Raises:
        WouldBlock: no queued message matches.
        NotInProcessError: called outside a process.
    """
    return _self("receive_nowait").receive_nowait(_compile(patterns), adopt_context)


# ---------------------------------------------------------------- exit signals


def exit(pid: Pid, reason: Any) -> None:
    """Send an exit signal with ``reason`` to ``pid`` (OTP ``exit/2``). Does not need a link.

    What the target does follows OTP's rules: ``NORMAL`` is ignored unless the
    target traps exits (then it gets ``Exit(sender, NORMAL)``) or is the caller
    itself; ``KILL`` kills unconditionally, with reason ``KILLED``; any other
    reason kills a non-trapping target with that reason and is delivered as an
    ``Exit`` message to a trapping one. Signalling a dead pid does nothing. To
    end the calling process itself, ``raise ProcessExit(reason)``.

    Raises:
        InvalidDestinationError: ``pid`` is not a Pid.
        ProcessExit: the signal targets the caller and kills it.
    """
    _check_pid(pid, "exit")
    sender = current_process_var.get()
    node = sender.node if sender is not None else current_node("exit")
    target = node.processes.get(pid)
    # Signals sent from outside any process come from the node's pseudo-pid <node.0>.
    origin = sender.pid if sender is not None else Pid._make(node.id, 0)
    if target is None:
        if node.dist is not None and pid._node != node.id:
            node.dist.exit(origin, pid, reason, False)
        return
    target.exit_signal(origin, reason, linked=False)
    if target is sender and target.exiting:
        raise ProcessExit(target.exit_reason)


def trap_exit(value: bool) -> bool:
    """Set whether the calling process traps exits; returns the previous value.

    A trapping process receives exit signals as :class:`Exit` messages instead
    of dying, except the untrappable ``exit(pid, KILL)``. Messages already
    delivered stay in the mailbox when trapping is turned off.

    Raises:
        TypeError: ``value`` is not a bool.
        NotInProcessError: called outside a process.
    """
    if not isinstance(value, bool):
        raise TypeError(f"trap_exit: expected a bool, got {type(value).__name__} {value!r}")
    proc = _self("trap_exit")
    previous = proc.trap_exit
    proc.trap_exit = value
    return previous


def link(pid: Pid) -> None:
    """Link the calling process and ``pid`` (bidirectional; at most one link per pair).

    Linking to oneself does nothing. If ``pid`` is dead: a trapping caller
    receives ``Exit(pid, NOPROC)``; a non-trapping caller gets
    :class:`NoProcessError` (OTP raises ``noproc``).

    Raises:
        NoProcessError: ``pid`` is not alive and the caller does not trap exits.
        InvalidDestinationError: ``pid`` is not a Pid.
        NotInProcessError: called outside a process.
    """
    proc = _self("link")
    _check_pid(pid, "link")
    if pid == proc.pid:
        return
    node = proc.node
    other = node.processes.get(pid)
    if other is None and node.dist is not None and pid._node != node.id:
        # A remote link never raises: a dead target answers with an exit signal.
        proc.links[pid] = None
        node.dist.link(proc.pid, pid)
        return
    if other is None:
        if proc.trap_exit:
            proc.deliver(Exit(pid, NOPROC))
            return
        raise NoProcessError(pid, "link")
    add_link(proc, other)


def unlink(pid: Pid) -> None:
    """Remove the link between the calling process and ``pid``, if any.

    Afterwards the link has no effect; an ``Exit`` message it already
    delivered stays in the mailbox. Unlinking a dead pid does nothing.

    Raises:
        InvalidDestinationError: ``pid`` is not a Pid.
        NotInProcessError: called outside a process.
    """
    proc = _self("unlink")
    _check_pid(pid, "unlink")
    drop_link(proc, pid)


def monitor(target: Pid | str | tuple[str, str]) -> Ref:
    """Monitor ``target`` (a pid or a registered name); returns the monitor's reference.

    When the target ends with reason R, the caller receives ``Down(ref, target, R)``
    exactly once; ``target`` is the pid, or the name for a monitor by name. A
    target that does not exist gives an immediate ``Down(ref, target, NOPROC)``.
    Monitors are independent: monitoring twice gives two ``Down`` messages.
    Monitoring oneself is allowed: it returns a reference but creates no
    monitor (as in ERTS), so it never fires and is not listed by
    :func:`process_info`.

    Raises:
        InvalidDestinationError: ``target`` is neither a Pid nor a str.
        NotInProcessError: called outside a process.
    """
    proc = _self("monitor")
    node = proc.node
    ref = node.make_ref()
    reported: Any
    dist = node.dist
    if type(target) is Pid:
        pid: Pid | None = target
        reported = target
        if dist is not None and target._node != node.id and target not in node.processes:
            proc.monitors_out[ref] = Monitor(ref, proc.pid, target, target)
            dist.monitor(proc.pid, target, ref)
            return ref
    elif type(target) is str:
        pid = node.names.get(target)
        reported = target
    elif dist is not None and type(target) is tuple:
        # (name, node): a Down names the pair, also for this node's own names.
        reported = target
        where = dist.resolve(target)
        if type(where) is Pid:  # a stand-in pid of the remote node
            proc.monitors_out[ref] = Monitor(ref, proc.pid, where, target)
            dist.monitor(proc.pid, target, ref)
            return ref
        pid = node.names.get(where) if type(where) is str else None
    else:
        raise InvalidDestinationError(target, "monitor")
    if pid == proc.pid:
        # ERTS creates no monitor on the caller itself: the ref is returned, no
        # DOWN ever comes and process_info(self(), monitors) does not list it
        # (conformance probe monitor_dead_and_names).
        return ref
    watched = node.processes.get(pid) if pid is not None else None
    if watched is None or pid is None:
        proc.deliver(Down(ref, reported, NOPROC))
        return ref
    add_monitor(ref, proc, watched, reported)
    return ref


def demonitor(ref: Ref, *, flush: bool = False, info: bool = False) -> bool:
    """Remove the monitor ``ref`` held by the calling process.

    With ``flush=True`` one ``Down`` for ``ref`` already queued is removed too.
    Returns True, or with ``info=True``: True if the monitor was active and
    removed (no ``Down`` was or will be delivered), False otherwise (the
    ``Down`` was already delivered, or ``ref`` is not a monitor of the caller).

    Raises:
        TypeError: ``ref`` is not a Ref.
        ForeignReferenceError: ``ref`` was made on another node (OTP: ``badarg``;
            a monitor's reference is made by the monitoring process's node).
        NotInProcessError: called outside a process.
    """
    if type(ref) is not Ref:
        raise TypeError(f"demonitor: expected a Ref, got {type(ref).__name__} {ref!r}")
    proc = _self("demonitor")
    if ref._node != proc.node.id:
        raise ForeignReferenceError(ref, "demonitor")
    found = drop_monitor(proc, ref)
    if flush and not found:
        # An active monitor has delivered no Down: only a fired one needs a flush.
        for index, item in enumerate(proc.mailbox):
            message = item.message if type(item) is Envelope else item
            if type(message) is Down and message.ref == ref:
                del proc.mailbox[index]
                break
    return found if info else True


# ---------------------------------------------------------------------- names


def register(name: str, pid: Pid | None = None) -> None:
    """Register ``pid`` (default: the caller) under ``name``.

    The name is released automatically when the process ends, before any
    ``Exit``/``Down`` about it is delivered.

    Raises:
        InvalidNameError: ``name`` is not a non-empty str, or is reserved (``undefined``).
        NameTakenError: another (or the same) process already holds ``name``.
        AlreadyNamedError: the process already has a different name.
        NoProcessError: ``pid`` is not alive.
        NotInProcessError: no ``pid`` given and called outside a process.
    """
    if not isinstance(name, str) or not name:
        raise InvalidNameError(name, "names are non-empty str")
    if name in RESERVED_NAMES:
        raise InvalidNameError(name, f"{sorted(RESERVED_NAMES)} are reserved")
    if pid is None:
        proc: Process | None = _self("register")
    else:
        _check_pid(pid, "register")
        proc = current_node("register").processes.get(pid)
        if proc is None:
            raise NoProcessError(pid, "register")
    assert proc is not None
    node = proc.node
    holder = node.names.get(name)
    if holder is not None:
        raise NameTakenError(name, holder)
    if proc.name is not None:
        raise AlreadyNamedError(proc.pid, proc.name, name)
    node.names[name] = proc.pid
    proc.name = name


def unregister(name: str) -> None:
    """Remove the registered name ``name`` (any process may do this).

    Raises:
        NameNotRegisteredError: no process holds ``name``.
    """
    node = current_node("unregister")
    if not isinstance(name, str):
        raise InvalidNameError(name, "names are non-empty str")
    pid = node.names.pop(name, None)
    if pid is None:
        raise NameNotRegisteredError(name, "unregister")
    proc = node.processes.get(pid)
    if proc is not None:
        proc.name = None


def whereis(name: str) -> Pid | None:
    """The pid registered as ``name``, or None."""
    if not isinstance(name, str):
        raise InvalidNameError(name, "names are non-empty str")
    return current_node("whereis").names.get(name)


def registered() -> list[str]:
    """Every registered name of the current node."""
    return list(current_node("registered").names)


# ---------------------------------------------------------------------- timers


def send_after(delay: float, dest: Pid | str, message: Any) -> Ref:
    """Send ``message`` to ``dest`` after ``delay`` seconds; returns the timer's reference.

    A timer aimed at a pid is cancelled when that process ends. A timer aimed
    at a name looks the name up when it fires and does nothing if no process
    holds it then.

    Raises:
        InvalidTimeoutError: ``delay`` is negative or not a number.
        InvalidDestinationError: ``dest`` is neither a Pid nor a str.
    """
    checked = _check_timeout(delay, "send_after")
    if checked is None:
        raise InvalidTimeoutError(delay, "send_after")
    node = current_node("send_after")
    if type(dest) is not Pid and type(dest) is not str:
        raise InvalidDestinationError(dest, "send_after")
    ref = node.make_ref()
    if type(dest) is Pid:
        target = node.processes.get(dest)
        if target is None:
            return ref
        target.add_timer(ref)
    timers = node.backend.timers
    node.timers[ref] = timers.schedule(
        node.backend.now() + checked, _fire_timer, (node, ref, dest, message)
    )
    return ref


def _fire_timer(arg: tuple[Any, Ref, Pid | str, Any]) -> None:
    """A ``send_after`` timer is due (runs on the node's timer facility)."""
    node, ref, dest, message = arg
    if node.timers.pop(ref, None) is None:
        return
    if type(dest) is Pid:
        proc = node.processes.get(dest)
        if proc is not None:
            proc.timers.discard(ref)
    else:
        pid = node.names.get(dest)
        proc = node.processes.get(pid) if pid is not None else None
    if proc is not None:
        proc.deliver(message)


def cancel_timer(ref: Ref) -> float | None:
    """Cancel a timer; returns the seconds it had left, or None if it already fired.

    A message of a timer that already fired may be in the mailbox.
    """
    node = current_node("cancel_timer")
    entry = node.timers.pop(ref, None)
    if entry is None:
        return None
    deadline = entry[0]
    node.backend.timers.cancel(entry)
    return float(max(0.0, deadline - node.backend.now()))


def read_timer(ref: Ref) -> float | None:
    """The seconds a timer has left, or None if it fired or was cancelled."""
    node = current_node("read_timer")
    entry = node.timers.get(ref)
    if entry is None:
        return None
    return float(max(0.0, entry[0] - node.backend.now()))


# --------------------------------------------------------------- introspection


@attrs.frozen
class ProcessInfo:
    """A snapshot of one process (OTP ``process_info/1``).

    Attributes:
        pid: the process.
        label: the function it runs.
        status: ``running``, ``waiting`` (blocked in receive) or ``exiting``.
        registered_name: its registered name, or None.
        message_queue_len: messages waiting in its mailbox.
        messages_handled: messages it has taken out of its mailbox.
        links: its link partners.
        monitors: the pids or names it monitors.
        monitored_by: the pids that monitor it.
        trap_exit: whether it traps exits.
        parent: the process that spawned it (None for one spawned from outside).
        hibernating: it holds no task until a message or a signal wakes it
            (a hibernated server; its ``status`` is ``waiting``).
    """

    pid: Pid
    label: str
    status: str
    registered_name: str | None
    message_queue_len: int
    messages_handled: int
    links: tuple[Pid, ...]
    monitors: tuple[Pid | str, ...]
    monitored_by: tuple[Pid, ...]
    trap_exit: bool
    parent: Pid | None
    hibernating: bool = False


def process_info(pid: Pid) -> ProcessInfo | None:
    """A :class:`ProcessInfo` snapshot of ``pid``, or None if it is not alive."""
    _check_pid(pid, "process_info")
    proc = current_node("process_info").processes.get(pid)
    if proc is None:
        return None
    return ProcessInfo(
        pid=proc.pid,
        label=proc.label,
        status=proc.status,
        registered_name=proc.name,
        message_queue_len=len(proc.mailbox),
        messages_handled=proc.handled,
        links=tuple(proc.links),
        monitors=tuple(m.reported for m in proc.monitors_out.values()),
        monitored_by=tuple(m.owner for m in proc.monitors_in.values()),
        trap_exit=proc.trap_exit,
        parent=proc.parent,
        hibernating=proc.hibernating,
    )


def processes() -> list[Pid]:
    """The pids of every live process of the current node, oldest first."""
    return list(current_node("processes").processes)
