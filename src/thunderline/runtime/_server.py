"""Servers: OTP's gen_server behaviour on thunderline processes.

Subclass :class:`Server`, implement the callbacks you need, and start it::

    class Counter(Server[int]):
        async def init(self, start: int) -> Ok[int]:
            return Ok(start)

        async def handle_call(self, request: Any, from_: From, state: int) -> Reply[int]:
            return Reply(state, state)

        async def handle_cast(self, request: Any, state: int) -> NoReply[int]:
            return NoReply(state + request)

    pid = await start_link(Counter, 0, name="counter")
    cast("counter", 5)
    assert await call("counter", "get") == 5

Callback results are small frozen classes: :class:`Ok`, :data:`IGNORE` and
:class:`InitError` from ``init``; :class:`Reply`, :class:`NoReply` and
:class:`Stop` from the handlers. Anything else stops the server with
:class:`BadReturnError` naming the callback and the value.

``terminate(reason, state)`` runs when a callback returns :class:`Stop`, when a
callback raises (reason ``Crashed(exc)``) or raises ``ProcessExit(reason)``,
when :func:`stop` is called, and when the server traps exits and its parent
(the process that called :func:`start_link`; a server started with
:func:`start` is its own parent, as in OTP) sends an exit signal (a
supervisor's shutdown). It does not run when the server is killed without
trapping, nor for ``brutal_kill``. Abnormal terminations are logged with the
state passed through :meth:`Server.format_status`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, Generic, TypeVar

import anyio
import attrs

from thunderline.runtime._api import _check_timeout, demonitor, monitor
from thunderline.runtime._errors import (
    InvalidDestinationError,
    InvalidNameError,
    NoProcessError,
    NotInProcessError,
    ReceiveBusyError,
    ReceiveTimeout,
    ThunderlineError,
)
from thunderline.runtime._messages import Down, Exit
from thunderline.runtime._node import Node, current_node
from thunderline.runtime._pid import Pid, Ref
from thunderline.runtime._process import (
    Hibernating,
    Monitor,
    Process,
    ProcessExit,
    add_monitor,
    current_process_var,
    drop_link,
    drop_monitor,
)
from thunderline.runtime._reasons import (
    KILLED,
    NOPROC,
    NORMAL,
    Crashed,
    NoConnection,
    NoProc,
    Normal,
    crash_of,
    is_quiet,
)

__all__ = [
    "IGNORE",
    "AlreadyStartedError",
    "BadReturnError",
    "CallError",
    "CallExitError",
    "CallNoProcError",
    "CallTimeoutError",
    "CallingSelfError",
    "From",
    "Hibernate",
    "Ignore",
    "InitError",
    "InitFailedError",
    "NoReply",
    "Ok",
    "Reply",
    "Server",
    "StartError",
    "StartTimeoutError",
    "Stop",
    "StopTimeoutError",
    "call",
    "cast",
    "reply",
    "start",
    "start_link",
    "stop",
]

logger: Final = logging.getLogger("thunderline.server")

S = TypeVar("S")

_NO_REPLY: Final[Any] = object()
_NO_CONTINUE: Final[Any] = object()
_HIBERNATE: Final[Any] = object()  # the continuation "hibernate now"


# ------------------------------------------------------------ callback results


@attrs.frozen
class Ok(Generic[S]):
    """``init`` succeeded: run with ``state``, then ``handle_continue(continue_)`` if given."""

    state: S
    continue_: Any = attrs.field(default=_NO_CONTINUE, kw_only=True)


@attrs.frozen
class Ignore:
    """``init`` declines to start: the starter gets None and the process exits normally."""


IGNORE: Final = Ignore()


@attrs.frozen
class InitError:
    """``init`` failed without crashing: the starter's start raises :class:`InitFailedError`."""

    reason: Any


@attrs.frozen
class Reply(Generic[S]):
    """``handle_call`` answers ``value`` and continues with ``state``."""

    value: Any
    state: S
    continue_: Any = attrs.field(default=_NO_CONTINUE, kw_only=True)


@attrs.frozen
class NoReply(Generic[S]):
    """Continue with ``state`` without replying now (reply later with :func:`reply`)."""

    state: S
    continue_: Any = attrs.field(default=_NO_CONTINUE, kw_only=True)


@attrs.frozen
class Stop(Generic[S]):
    """Stop the server with ``reason``; ``terminate`` runs first, then ``reply`` is sent if given.

    From ``init``, ``Stop(reason)`` makes the start fail with ``reason``.
    """

    reason: Any
    state: S | None = None
    reply: Any = attrs.field(default=_NO_REPLY, kw_only=True)


@attrs.frozen
class Hibernate(Generic[S]):
    """Continue with ``state`` and hibernate until the next message (OTP ``hibernate``).

    The server's task ends: until a message, a call, an exit signal or a timer
    wakes it, the server holds no task and no coroutine frame, only its state,
    mailbox, links, monitors, timers and name. Waking is transparent. From
    ``handle_call``, ``reply=`` answers the call first (OTP ``{reply, R, S,
    hibernate}``); from ``init`` it starts the server hibernated.
    """

    state: S
    reply: Any = attrs.field(default=_NO_REPLY, kw_only=True)


# ------------------------------------------------------------------- messages


@attrs.frozen(slots=True)
class From:
    """Who is waiting for a reply: pass it to :func:`reply` to answer later."""

    pid: Pid
    tag: Ref


class _Call:
    __slots__ = ("from_", "request")

    def __init__(self, from_: From, request: Any) -> None:
        self.from_ = from_
        self.request = request

    def __repr__(self) -> str:
        return f"_Call({self.from_!r}, {self.request!r})"


class _Cast:
    __slots__ = ("request",)

    def __init__(self, request: Any) -> None:
        self.request = request

    def __repr__(self) -> str:
        return f"_Cast({self.request!r})"


class _GetState:
    """The system request behind :func:`get_state` (OTP ``sys:get_state``), answered by the loop."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "get_state"


_GET_STATE: Final = _GetState()
#: Pids of the processes running a server or state machine loop (what :func:`get_state`
#: may ask).
_SERVER_PIDS: Final[set[Pid]] = set()


@contextlib.contextmanager
def _answering_get_state(proc: Process) -> Iterator[None]:
    """Mark ``proc`` as answering :func:`get_state` while its server or machine loop runs.

    A hibernating loop stays marked: the loop's real end unmarks it, or the
    death of the process (a hibernated process is killed without a task to
    end, so an exit callback, added once, unmarks it then).
    """
    pid = proc.pid
    if pid not in _SERVER_PIDS:
        _SERVER_PIDS.add(pid)
        proc.exit_callbacks.append(_unmark_server)
    hibernating = False
    try:
        yield
    except Hibernating:
        hibernating = True
        raise
    finally:
        if not hibernating:
            _SERVER_PIDS.discard(pid)


def _unmark_server(pid: Pid, _reason: Any) -> None:
    _SERVER_PIDS.discard(pid)


class _Reply:
    __slots__ = ("tag", "value")

    def __init__(self, tag: Ref, value: Any) -> None:
        self.tag = tag
        self.value = value

    def __repr__(self) -> str:
        return f"_Reply({self.tag!r}, {self.value!r})"


@attrs.frozen(slots=True)
class _StopRequest:
    reason: Any


class _Ack:
    """The start acknowledgement; the starter sets ``taken`` once it has it."""

    __slots__ = ("kind", "tag", "taken", "value")

    def __init__(self, tag: Ref, kind: str, value: Any) -> None:
        self.tag = tag
        self.kind = kind  # "ok", "ignore" or "error"
        self.value = value
        self.taken = False


# --------------------------------------------------------------------- errors


class BadReturnError(ThunderlineError, TypeError):
    """A callback returned something that is not one of its legal results."""

    def __init__(self, callback: str, value: Any, server: str) -> None:
        self.callback = callback
        self.value = value
        self.server = server
        super().__init__(f"{server}.{callback} returned an illegal value {value!r}")


class StartError(ThunderlineError):
    """Base class of the errors :func:`start` and :func:`start_link` raise."""


class AlreadyStartedError(StartError, ValueError):
    """The name is taken: ``pid`` holds it (OTP ``{error, {already_started, Pid}}``)."""

    def __init__(self, name: str, pid: Pid) -> None:
        self.name = name
        self.pid = pid
        super().__init__(f"a process is already registered as {name!r}: {pid!r}")


class InitFailedError(StartError):
    """``init`` returned :class:`Stop`/:class:`InitError`, raised, or the process died first."""

    def __init__(self, server: str, reason: Any) -> None:
        self.server = server
        self.reason = reason
        super().__init__(f"{server}.init failed: {reason!r}")


class StartTimeoutError(StartError, TimeoutError):
    """``init`` did not finish within the start timeout; the process was killed."""

    def __init__(self, server: str, timeout: float) -> None:
        self.server = server
        self.timeout = timeout
        super().__init__(f"{server}.init did not finish within {timeout} s")


class CallError(ThunderlineError):
    """A :func:`call` failed. ``reason`` is OTP's: ``"timeout"``, ``NOPROC``, the server's exit
    reason, or ``"calling_self"``."""

    def __init__(self, server: object, request: Any, timeout: float | None, reason: Any) -> None:
        self.server = server
        self.request = request
        self.timeout = timeout
        self.reason = reason
        super().__init__(f"call to {server!r} with request {request!r} failed: {self._describe()}")

    def _describe(self) -> str:
        return repr(self.reason)


class CallTimeoutError(CallError, TimeoutError):
    """No reply within the timeout. A late reply is dropped, never delivered to the caller."""

    def __init__(self, server: object, request: Any, timeout: float | None) -> None:
        super().__init__(server, request, timeout, "timeout")

    def _describe(self) -> str:
        return f"no reply within {self.timeout} s (the server may or may not have handled it)"


class CallNoProcError(CallError, LookupError):
    """The server does not exist (dead pid or unregistered name)."""

    def __init__(self, server: object, request: Any, timeout: float | None) -> None:
        super().__init__(server, request, timeout, NOPROC)

    def _describe(self) -> str:
        return "no such process (noproc)"


class CallExitError(CallError):
    """The server ended during the call; ``reason`` is its exit reason."""

    def _describe(self) -> str:
        return f"the server exited with {self.reason!r}"


class CallNodeDownError(CallExitError):
    """The server's node was lost during the call (OTP ``{nodedown, Node}``).

    ``reason`` is ``NOCONNECTION``. The request may or may not have been
    handled: it may have reached the server before the connection was lost.
    """

    def _describe(self) -> str:
        return (
            "the connection to the server's node was lost (noconnection): "
            "the request may or may not have been handled"
        )


class CallingSelfError(CallError):
    """A server called itself (it would wait for itself forever)."""

    def __init__(self, server: object, request: Any, timeout: float | None) -> None:
        super().__init__(server, request, timeout, "calling_self")

    def _describe(self) -> str:
        return "a process cannot call itself (calling_self)"


class NotAServerError(ThunderlineError, TypeError):
    """:func:`get_state` was asked of a process that runs no :class:`Server` or state
    machine loop."""

    def __init__(self, server: object) -> None:
        self.server = server
        super().__init__(f"get_state: {server!r} is not a running Server or StateMachine")


class StopTimeoutError(ThunderlineError, TimeoutError):
    """:func:`stop` timed out waiting for the server to end."""

    def __init__(self, server: object, timeout: float) -> None:
        self.server = server
        self.timeout = timeout
        super().__init__(f"stop: {server!r} did not end within {timeout} s")


# ---------------------------------------------------------------- the behaviour


class Server(Generic[S]):
    """Base class of gen_server-style servers; override the callbacks you need.

    The default ``handle_call``/``handle_cast`` stop the server with a
    :class:`NotImplementedError` naming the request (OTP crashes on an
    unexpected call too); the default ``handle_info`` logs and ignores.

    ``hibernate_after`` (seconds, or None: never) makes the server hibernate
    after that long without a message (OTP's ``hibernate_after`` start option;
    the ``hibernate_after`` argument of :func:`start`/:func:`start_link` overrides it).
    """

    hibernate_after: float | None = None

    async def init(self, *args: Any) -> Ok[S] | Hibernate[S] | Ignore | InitError | Stop[S]:
        """Set up the state. The starter waits until this returns."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement init()")

    async def handle_call(
        self, request: Any, from_: From, state: S
    ) -> Reply[S] | NoReply[S] | Hibernate[S] | Stop[S]:
        """Answer a :func:`call`."""
        raise NotImplementedError(
            f"{type(self).__qualname__} received call {request!r} but has no handle_call"
        )

    async def handle_cast(self, request: Any, state: S) -> NoReply[S] | Hibernate[S] | Stop[S]:
        """Handle a :func:`cast`."""
        raise NotImplementedError(
            f"{type(self).__qualname__} received cast {request!r} but has no handle_cast"
        )

    async def handle_info(self, message: Any, state: S) -> NoReply[S] | Hibernate[S] | Stop[S]:
        """Handle any other message (``Exit`` from non-parent links, ``Down``, timers...)."""
        logger.warning(
            "%s %r received unexpected message %r",
            type(self).__qualname__,
            current_process_var.get(),
            message,
        )
        return NoReply(state)

    async def handle_continue(
        self, continue_: Any, state: S
    ) -> NoReply[S] | Hibernate[S] | Stop[S]:
        """Run a continuation returned by ``init`` or a handler, before any new message."""
        raise NotImplementedError(
            f"{type(self).__qualname__} returned continue {continue_!r} but has no handle_continue"
        )

    async def terminate(self, reason: Any, state: S) -> None:
        """Clean up before the server ends with ``reason`` (not guaranteed to run; see module)."""

    def format_status(self, state: S) -> Any:
        """What crash reports and :func:`get_state` show of ``state``; override to redact."""
        return state


def _label(server: Server[Any]) -> str:
    return type(server).__qualname__


async def _server_main(
    starter: Pid | None,
    tag: Ref,
    server: Server[Any],
    args: tuple[Any, ...],
    hibernate_after: float | None = None,
) -> None:
    proc = current_process_var.get()
    assert proc is not None
    name = _label(server)
    try:
        result = await server.init(*args)
    except ProcessExit as exc:
        _ack(proc, starter, tag, "error", exc.reason)
        raise
    except Exception as exc:
        _ack(proc, starter, tag, "error", Crashed(exc))
        raise
    if isinstance(result, Ok):
        _ack(proc, starter, tag, "ok", proc.pid)
        await _serve(server, proc, result.state, result.continue_, hibernate_after)
        return
    if isinstance(result, Hibernate) and result.reply is _NO_REPLY:
        _ack(proc, starter, tag, "ok", proc.pid)
        await _serve(server, proc, result.state, _HIBERNATE, hibernate_after)
        return
    if isinstance(result, Ignore):
        _release_name(proc)
        _ack(proc, starter, tag, "ignore", None)
        return
    if isinstance(result, InitError):
        _release_name(proc)
        _ack(proc, starter, tag, "error", result.reason)
        return
    if isinstance(result, Stop):
        _release_name(proc)
        _ack(proc, starter, tag, "error", result.reason)
        raise ProcessExit(result.reason)
    error = BadReturnError("init", result, name)
    _release_name(proc)
    _ack(proc, starter, tag, "error", Crashed(error))
    raise error


def _release_name(proc: Process) -> None:
    if proc.name is not None:
        proc.node.names.pop(proc.name, None)
        proc.name = None


def _ack(proc: Process, starter: Pid | None, tag: Ref, kind: str, value: Any) -> _Ack | None:
    """Acknowledge the start to ``starter`` (``kind``: "ok", "ignore" or "error")."""
    if starter is None:
        return None
    target = proc.node.processes.get(starter)
    if target is None:
        return None
    ack = _Ack(tag, kind, value)
    target.deliver(ack)
    return ack


async def _resume(server: Server[Any], state: Any, hibernate_after: float | None) -> None:
    """A hibernated server's new task: the loop again, from an empty stack."""
    proc = current_process_var.get()
    assert proc is not None
    await _serve(server, proc, state, _NO_CONTINUE, hibernate_after)


async def _serve(
    server: Server[Any], proc: Process, state: Any, continue_: Any, hibernate_after: float | None
) -> None:
    """Run the server loop with the process marked as a server (get_state answers)."""
    with _answering_get_state(proc):
        await _loop(server, proc, state, continue_, hibernate_after)


async def _loop(
    server: Server[Any],
    proc: Process,
    state: Any,
    continue_: Any,
    hibernate_after: float | None = None,
) -> None:
    """The gen_server loop. Hibernation (a :class:`Hibernate` result, or no message
    for ``hibernate_after`` seconds) raises :class:`Hibernating` with
    :func:`_resume` and the state: the task ends, the process stays."""
    name = _label(server)
    # gen.erl: a server started without a link is its own parent (init_it with
    # Parent = self), so an Exit from itself (exit(self(), R) while trapping)
    # stops it like a parent's exit does.
    parent = proc.parent if proc.parent is not None else proc.pid
    callback = "handle_continue"
    message: Any = None
    try:
        while True:
            if continue_ is not _NO_CONTINUE:
                if continue_ is _HIBERNATE:
                    continue_ = _NO_CONTINUE
                    if not proc.mailbox:  # with a message queued it would wake at once
                        raise Hibernating(_resume, (server, state, hibernate_after))
                    continue
                callback = "handle_continue"
                result = await server.handle_continue(continue_, state)
                state, continue_ = _noreply(result, callback, name, state)
                continue
            if proc.mailbox and proc.ready_for_fast_take():
                message = proc.take_first()
            elif hibernate_after is None:
                message = await proc.receive(None, None)
            else:
                try:
                    message = await proc.receive(None, hibernate_after)
                except ReceiveTimeout:
                    raise Hibernating(_resume, (server, state, hibernate_after)) from None
            mtype = type(message)
            if mtype is _Call:
                if message.request is _GET_STATE:  # a system request, not for handle_call
                    _reply_from(proc.node, message.from_, _status(server.format_status, state))
                    continue
                callback = "handle_call"
                answer = await server.handle_call(message.request, message.from_, state)
                if isinstance(answer, Reply):
                    _reply_from(proc.node, message.from_, answer.value)
                    state, continue_ = answer.state, answer.continue_
                    continue
                if type(answer) is Hibernate and answer.reply is not _NO_REPLY:
                    _reply_from(proc.node, message.from_, answer.reply)
                    state, continue_ = answer.state, _HIBERNATE
                    continue
                state, continue_ = _noreply(answer, callback, name, state)
            elif mtype is _Cast:
                callback = "handle_cast"
                result = await server.handle_cast(message.request, state)
                state, continue_ = _noreply(result, callback, name, state)
            elif mtype is _StopRequest or (
                mtype is Exit and parent is not None and message.pid == parent
            ):
                raise _Stopping(message.reason, state, _NO_REPLY)
            else:
                callback = "handle_info"
                result = await server.handle_info(message, state)
                state, continue_ = _noreply(result, callback, name, state)
    except _Stopping as stopping:
        await _terminate(server, proc, stopping.reason, stopping.state, message)
        if stopping.reply is not _NO_REPLY and type(message) is _Call:
            reply(message.from_, stopping.reply)
        raise ProcessExit(stopping.reason) from None
    except ProcessExit as exc:
        if proc.exiting:  # killed by a signal: no terminate (OTP)
            raise
        await _terminate(server, proc, exc.reason, state, message)
        raise
    except Exception as exc:
        reason = Crashed(exc)
        await _terminate(server, proc, reason, state, message)
        raise ProcessExit(reason) from exc


def _status(format_status: Callable[..., Any], *state: Any) -> Any:
    """``format_status(*state)``; a failing hook is reported in its place, never a crash."""
    try:
        return format_status(*state)
    except Exception as exc:  # noqa: BLE001 - the server must not die of an introspection
        return f"<format_status raised {exc!r}>"


class _Stopping(Exception):
    def __init__(self, reason: Any, state: Any, reply_value: Any) -> None:
        self.reason = reason
        self.state = state
        self.reply = reply_value


def _noreply(result: Any, callback: str, name: str, state: Any) -> tuple[Any, Any]:
    if isinstance(result, NoReply):
        return result.state, result.continue_
    if isinstance(result, Hibernate) and result.reply is _NO_REPLY:
        return result.state, _HIBERNATE
    if isinstance(result, Stop):
        raise _Stopping(
            result.reason, result.state if result.state is not None else state, result.reply
        )
    raise BadReturnError(callback, result, name)


async def _terminate(
    server: Server[Any], proc: Process, reason: Any, state: Any, last_message: Any
) -> None:
    try:
        await server.terminate(reason, state)
    except ProcessExit:
        raise
    except Exception as exc:
        logger.error(
            "%s %r: terminate(%r) raised %r", _label(server), proc.pid, reason, exc, exc_info=exc
        )
        raise ProcessExit(Crashed(exc)) from exc
    if not is_quiet(reason) and logger.isEnabledFor(logging.ERROR):
        logger.error(
            "server %s %r terminating with reason %r",
            _label(server),
            proc.pid,
            reason,
            extra={
                "thunderline_report": "server_terminate",
                "pid": repr(proc.pid),
                "server": _label(server),
                "reason": repr(reason),
                "last_message": repr(last_message),
                "state": repr(server.format_status(state)),
            },
            exc_info=crash_of(reason),  # the formatted traceback, as OTP's crash report
        )


# ----------------------------------------------------------------------- start


async def start(
    server: Server[Any] | type[Server[Any]],
    *args: Any,
    name: str | None = None,
    timeout: float | None = None,
    hibernate_after: float | None = None,
) -> Pid | None:
    """Start a server process (not linked) and wait until its ``init`` has returned.

    Returns the pid, or None when ``init`` returned :data:`IGNORE`.
    ``hibernate_after`` (seconds) makes the server hibernate when it has had no
    message for that long (default: the class's :attr:`Server.hibernate_after`).

    Raises:
        AlreadyStartedError: ``name`` is already registered (``init`` does not run).
        InitFailedError: ``init`` returned Stop/InitError, raised, or the process died.
        StartTimeoutError: ``init`` took longer than ``timeout`` (the process is killed).
    """
    return await _start(
        server, args, name=name, timeout=timeout, link=False, hibernate_after=hibernate_after
    )


async def start_link(
    server: Server[Any] | type[Server[Any]],
    *args: Any,
    name: str | None = None,
    timeout: float | None = None,
    hibernate_after: float | None = None,
) -> Pid | None:
    """Like :func:`start`, and link the caller and the server atomically.

    The caller becomes the server's parent: if the server traps exits, an
    exit signal from the caller makes it run ``terminate`` and stop. As in
    OTP 25, when ``init`` returns ``Stop(reason)`` the process then exits with
    ``reason`` while still linked (an abnormal reason kills a non-trapping
    caller after this function has returned).
    """
    return await _start(
        server, args, name=name, timeout=timeout, link=True, hibernate_after=hibernate_after
    )


async def _start(
    server: Server[Any] | type[Server[Any]],
    args: tuple[Any, ...],
    *,
    name: str | None,
    timeout: float | None,
    link: bool,
    hibernate_after: float | None = None,
) -> Pid | None:
    instance = server() if isinstance(server, type) else server
    if not isinstance(instance, Server):
        raise TypeError(f"start: expected a Server subclass or instance, got {server!r}")
    if hibernate_after is None:
        hibernate_after = instance.hibernate_after
    hibernate_after = _check_timeout(hibernate_after, "hibernate_after")
    return await _start_process(
        _server_main,
        (instance, args, hibernate_after),
        label=_label(instance),
        operation="start",
        name=name,
        timeout=timeout,
        link=link,
    )


async def _start_process(
    entry: Callable[..., Awaitable[None]],
    entry_args: tuple[Any, ...],
    *,
    label: str,
    operation: str,
    name: str | None,
    timeout: float | None,
    link: bool,
) -> Pid | None:
    """The start handshake of servers and state machines (OTP ``proc_lib:start``/``start_link``).

    Spawns ``entry(starter, tag, *entry_args)`` (linked to the caller when
    ``link``, registered as ``name``) and waits for its :func:`_ack` or its
    death. ``operation`` names the public function (``start``,
    ``start_machine``) in errors and the helper process that starts from
    outside any process. Returns the pid, or None when ``init`` ignored.

    Raises:
        AlreadyStartedError: ``name`` is taken (nothing is spawned).
        InitFailedError: the process acknowledged an error, or died before acknowledging.
        StartTimeoutError: no acknowledgement within ``timeout`` (the process is killed).
        InvalidNameError: ``name`` is not a non-empty str.
    """
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidNameError(name, "names are non-empty str")
    caller = current_process_var.get()
    if caller is None:
        if link:
            raise NotInProcessError(f"{operation}_link")
        return await _start_from_outside(
            entry, entry_args, label=label, operation=operation, name=name, timeout=timeout
        )
    node = caller.node
    if name is not None:
        holder = node.names.get(name)
        if holder is not None:
            raise AlreadyStartedError(name, holder)
    tag = node.make_ref()
    mark = len(caller.mailbox)
    pid, mref = node.spawn(
        entry,
        (caller.pid, tag, *entry_args),
        parent=caller,
        link=link,
        monitor=True,
        trap_exit=False,
        label=label,
    )
    child = node.processes[pid]
    if not link:
        child.parent = None
    if name is not None:
        node.names[name] = pid
        child.name = name
    assert mref is not None

    def match(message: Any) -> bool:
        return (type(message) is _Ack and message.tag == tag) or (
            type(message) is Down and message.ref == mref
        )

    try:
        answer = await caller.receive(match, timeout, adopt=False, start=mark)
    except ReceiveTimeout:
        demonitor(mref, flush=True)
        target = node.processes.get(pid)
        if target is not None:
            drop_link(caller, pid)
            target.kill(KILLED)
        raise StartTimeoutError(label, timeout if timeout is not None else 0.0) from None
    if type(answer) is Down:
        raise InitFailedError(label, answer.reason)
    answer.taken = True
    demonitor(mref, flush=True)
    if answer.kind == "ok":
        return pid
    if answer.kind == "ignore":
        return None
    raise InitFailedError(label, answer.value)


async def _start_from_outside(
    entry: Callable[..., Awaitable[None]],
    entry_args: tuple[Any, ...],
    *,
    label: str,
    operation: str,
    name: str | None,
    timeout: float | None,
) -> Pid | None:
    """Code outside any process starts through a short-lived helper process."""
    node = current_node(operation)
    outcome: dict[str, Any] = {}
    done = anyio.Event()

    async def starter() -> None:
        try:
            outcome["pid"] = await _start_process(
                entry,
                entry_args,
                label=label,
                operation=operation,
                name=name,
                timeout=timeout,
                link=False,
            )
        except StartError as exc:
            outcome["error"] = exc

    pid, _ = node.spawn(
        starter, (), parent=None, link=False, monitor=False, trap_exit=False, label=operation
    )
    node.processes[pid].exit_callbacks.append(lambda _pid, _reason: done.set())
    await done.wait()
    if "error" in outcome:
        raise outcome["error"]
    result: Pid | None = outcome.get("pid")
    return result


# ------------------------------------------------------------- call/cast/reply


def _server_pid(server: object, operation: str) -> Pid | None:
    node = current_node(operation)
    if type(server) is Pid:
        return server if server in node.processes else None
    if type(server) is str:
        return node.names.get(server)
    raise InvalidDestinationError(server, operation)


async def call(
    server: Pid | str | tuple[str, str], request: Any, timeout: float | None = 5.0
) -> Any:
    """Send ``request`` to a server and wait for its reply (OTP ``gen_server:call``).

    The caller monitors the server for the duration of the call. A reply that
    arrives after the timeout is dropped before it reaches the mailbox.

    Args:
        server: a pid or registered name.
        request: anything.
        timeout: seconds, or None to wait forever. Default 5.

    Raises:
        CallTimeoutError: no reply in time.
        CallNoProcError: no such server.
        CallExitError: the server ended before replying (``reason`` = its exit reason).
        CallingSelfError: the caller is the server.
        NotInProcessError: called outside a process.
    """
    caller = current_process_var.get()
    if caller is None:
        raise NotInProcessError("call")
    if timeout is not None:
        timeout = _check_timeout(timeout, "call")
    node = caller.node
    dist = node.dist
    if type(server) is Pid:
        target = node.processes.get(server)
        if target is None and dist is not None and server._node != node.id:
            return await _remote_call(caller, server, request, timeout)
    elif type(server) is str:
        holder = node.names.get(server)
        target = node.processes.get(holder) if holder is not None else None
    elif dist is not None and type(server) is tuple:
        where = dist.resolve(server)
        if type(where) is not str:
            return await _remote_call(caller, server, request, timeout)
        holder = node.names.get(where)
        target = node.processes.get(holder) if holder is not None else None
    else:
        raise InvalidDestinationError(server, "call")
    if target is None:
        raise CallNoProcError(server, request, timeout)
    if target is caller:
        raise CallingSelfError(server, request, timeout)
    if caller._call_ref is not None:  # another task of this process is in a call
        raise ReceiveBusyError(caller.pid)
    # One reference is both the monitor and the reply alias (OTP 24+ gen:do_call).
    # Only messages that arrive after this point can answer (receive marker).
    mark = len(caller.mailbox)
    ref = node.make_ref()
    add_monitor(ref, caller, target, target.pid)
    caller._call_ref = ref
    target.post(_Call(From(caller.pid, ref), request), "call")

    def match(message: Any) -> bool:
        mtype = type(message)
        return (mtype is _Reply and message.tag is ref) or (mtype is Down and message.ref is ref)

    try:
        answer = await caller.receive(match, timeout, adopt=False, start=mark)
    except ReceiveTimeout:
        # gen:do_call demonitors (with flush) before exiting with timeout: no
        # monitor of the server outlives the call, and no late DOWN arrives.
        demonitor(ref, flush=True)
        raise CallTimeoutError(server, request, timeout) from None
    finally:
        caller._call_ref = None
        caller._handoff = None
    if type(answer) is _Reply:
        # An active monitor delivered no Down: only a fired one needs a flush.
        if not drop_monitor(caller, ref):
            demonitor(ref, flush=True)
        return answer.value
    raise CallExitError(server, request, timeout, answer.reason)


async def _remote_call(caller: Process, server: Any, request: Any, timeout: float | None) -> Any:
    """A call to a process of another node (through ``node.dist``).

    As a local call: a monitor whose reference is also the reply alias, the
    request, then the first of reply, ``Down`` or timeout. The monitor and
    the request travel as one signal (``dist.call``), and the callee's node
    drops its side of the monitor when the reply leaves, so after a reply
    the caller forgets its side without a demonitor signal: two messages per
    call, as raw request/reply. ``Down`` with ``NOCONNECTION`` (the node was
    lost, or was down already) raises :class:`CallNodeDownError`, ``NOPROC``
    :class:`CallNoProcError`.
    """
    dist = caller.node.dist
    assert dist is not None
    if caller._call_ref is not None:  # another task of this process is in a call
        raise ReceiveBusyError(caller.pid)
    mark = len(caller.mailbox)
    node = caller.node
    ref = node.make_ref()
    if type(server) is Pid:
        caller.monitors_out[ref] = Monitor(ref, caller.pid, server, server)
    else:  # (name, node): the stand-in pid of the remote node, reported as the pair
        where = dist.resolve(server)
        assert type(where) is Pid
        caller.monitors_out[ref] = Monitor(ref, caller.pid, where, server)
    caller._call_ref = ref
    dist.call(caller.pid, server, ref, request)

    def match(message: Any) -> bool:
        mtype = type(message)
        return (mtype is _Reply and message.tag == ref) or (mtype is Down and message.ref == ref)

    try:
        answer = await caller.receive(match, timeout, adopt=False, start=mark)
    except ReceiveTimeout:
        demonitor(ref, flush=True)
        raise CallTimeoutError(server, request, timeout) from None
    finally:
        caller._call_ref = None
    if type(answer) is _Reply:
        # The callee's node dropped its side with the reply: forget ours (a
        # Down that raced in, from a lost connection, is flushed).
        if caller.monitors_out.pop(ref, None) is None:
            demonitor(ref, flush=True)
        return answer.value
    if isinstance(answer.reason, NoConnection):
        raise CallNodeDownError(server, request, timeout, answer.reason)
    if isinstance(answer.reason, NoProc):
        raise CallNoProcError(server, request, timeout)
    raise CallExitError(server, request, timeout, answer.reason)


async def get_state(server: Pid | str, timeout: float | None = 5.0) -> Any:
    """The state of a running :class:`Server`, as its ``format_status`` shows it.

    OTP's ``sys:get_state`` (with ``format_status`` applied, as ``sys:get_status``
    does, so secrets a server redacts for crash reports stay redacted). The
    server answers between two callbacks, from its loop; none of its callbacks
    runs for it. A :class:`~thunderline.runtime.StateMachine` answers too, with
    ``format_status(state, data)``: by default the ``(state, data)`` pair, as
    ``sys:get_state`` gives ``{State, Data}`` for a ``gen_statem`` (see also
    :func:`~thunderline.runtime.get_machine_state`, which skips ``format_status``).

    Raises:
        NotAServerError: ``server`` is not running a server or state machine
            loop (a plain process, or one still in ``init``).
        CallTimeoutError / CallNoProcError / CallExitError: as for :func:`call`.
    """
    caller = current_process_var.get()
    if caller is None:
        raise NotInProcessError("get_state")
    if type(server) is str:
        pid = caller.node.names.get(server)
        if pid is None:
            raise CallNoProcError(server, _GET_STATE, timeout)
    elif type(server) is Pid:
        pid = server
    else:
        raise InvalidDestinationError(server, "get_state")
    if pid not in _SERVER_PIDS:
        if pid not in caller.node.processes:
            raise CallNoProcError(server, _GET_STATE, timeout)
        raise NotAServerError(server)
    return await call(pid, _GET_STATE, timeout)


def cast(server: Pid | str | tuple[str, str], request: Any) -> None:
    """Send ``request`` to a server's ``handle_cast`` and return at once.

    Never raises for a missing server (OTP ``gen_server:cast``).

    Raises:
        InvalidDestinationError: ``server`` is neither a Pid nor a str.
    """
    node = current_node("cast")
    dist = node.dist
    if dist is not None and (
        (type(server) is Pid and server._node != node.id)
        or (type(server) is tuple and type(dist.resolve(server)) is not str)
    ):
        dist.send(server, _Cast(request))
        return
    if dist is not None and type(server) is tuple:
        server = dist.resolve(server)
    pid = _server_pid(server, "cast")
    if pid is None:
        return
    target = node.processes.get(pid)
    if target is not None:
        target.post(_Cast(request), "cast")


def _reply_from(node: Node, from_: From, value: Any) -> None:
    """Deliver ``value`` to the caller ``from_`` waits as (no argument checks): the one
    delivery of a reply, used by the server loops and by :func:`reply`."""
    target = node.processes.get(from_.pid)
    if target is not None:
        tag = from_.tag
        alias = target._call_ref
        if alias is not None and (tag is alias or tag == alias):
            answer = _Reply(tag, value)
            if not target.hand_reply(tag, answer):
                target.post(answer, "reply")
    elif node.dist is not None and from_.pid._node != node.id:
        node.dist.send(from_.pid, _Reply(from_.tag, value))


def reply(from_: From, value: Any) -> None:
    """Answer a call that ``handle_call`` did not reply to (it returned :class:`NoReply`).

    May be called from any process. A reply to a caller that gave up (timeout)
    or died is dropped.
    """
    if type(from_) is not From:
        raise TypeError(f"reply: expected a From, got {type(from_).__name__} {from_!r}")
    _reply_from(current_node("reply"), from_, value)


async def stop(
    server: Pid | str | tuple[str, str], reason: Any = NORMAL, timeout: float | None = None
) -> None:
    """Stop a server synchronously: it runs ``terminate(reason, state)`` and exits with ``reason``.

    Returns once the server has ended.

    Raises:
        NoProcessError: no such server.
        CallingSelfError: a server tried to stop itself.
        StopTimeoutError: the server did not end within ``timeout``.
        NotInProcessError: called outside a process.
    """
    caller = current_process_var.get()
    if caller is None:
        raise NotInProcessError("stop")
    dist = caller.node.dist
    remote = dist is not None and (
        (type(server) is Pid and server._node != caller.node.id)
        or (type(server) is tuple and type(dist.resolve(server)) is not str)
    )
    mark = len(caller.mailbox)
    if remote:
        # Another node's server: the same protocol through node.dist.
        assert dist is not None
        assert not isinstance(server, str)
        mref = monitor(server)
        dist.send(server, _StopRequest(reason))
    else:
        if dist is not None and type(server) is tuple:
            server = dist.resolve(server)
        pid = _server_pid(server, "stop")
        if pid is None:
            raise NoProcessError(server, "stop")
        if pid == caller.pid:
            raise CallingSelfError(server, ("stop", reason), timeout)
        mref = monitor(pid)
        target = caller.node.processes[pid]
        target.deliver(_StopRequest(reason))
    try:
        down = await caller.receive(
            lambda m: type(m) is Down and m.ref == mref, timeout, adopt=False, start=mark
        )
    except ReceiveTimeout:
        demonitor(mref, flush=True)
        raise StopTimeoutError(server, timeout if timeout is not None else 0.0) from None
    if remote and isinstance(down.reason, NoProc):
        raise NoProcessError(server, "stop")
    if down.reason != reason and not (isinstance(reason, Normal) and down.reason == NORMAL):
        raise CallExitError(server, ("stop", reason), timeout, down.reason)
