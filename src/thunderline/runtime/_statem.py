"""State machines: OTP 25's gen_statem on thunderline processes.

Subclass :class:`StateMachine`, pick a callback mode, and start it with
:func:`start_machine` or :func:`start_machine_link`::

    class Door(StateMachine[str, int]):
        callback_mode = "state_functions"

        async def init(self, code: int) -> InitialState[str, int]:
            return InitialState("locked", code)

        async def locked(self, event_type: EventType, content: Any, code: int) -> Any:
            match event_type, content:
                case Call(from_), ("unlock", guess) if guess == code:
                    return NextState("open", code, [ReplyTo(from_, "ok"), StateTimeout(5, "lock")])
                case Call(from_), _:
                    return KeepStateAndData([ReplyTo(from_, "wrong code")])
            return KEEP_STATE_AND_DATA

        async def open(self, event_type: EventType, content: Any, code: int) -> Any:
            if event_type == "state_timeout":
                return NextState("locked", code)
            return KeepStateAndData([POSTPONE])

A machine is called with :func:`call`, cast to with :func:`cast` and stopped
with :func:`stop`, exactly like a :class:`Server` (the messages are the same).

Event types: ``Call(from_)``, ``"cast"``, ``"info"`` (any other message),
``"internal"`` (``NextEvent``), ``"timeout"`` (event timeout),
``"state_timeout"``, ``TimeoutName(name)`` (generic timeout) and, with
``state_enter = True``, ``"enter"`` (content: the previous state).

The engine (one event at a time; OTP's ``loop_state_callback`` ...
``loop_done``):

1. Take the next event: the head of the machine's own queue (``NextEvent``
   events, retried postponed events, zero timeouts), else the next mailbox
   message. System requests (:func:`get_machine_state`, suspend/resume) are
   answered without being events. A stale timer message is dropped.
2. Call the state callback with the committed state and data. An exception
   ends the machine: ``terminate`` gets the exception (or the
   ``ProcessExit`` reason), the process exits ``Crashed(exc)`` (or that
   reason), with the committed state and data.
3. Interpret the result and its actions in order: replies are sent at once;
   ``Postpone``, ``HibernateAction``, ``NextEvent`` and timeouts are
   collected (for each timer the last setting wins). A state change (or
   ``RepeatState``) with ``state_enter`` runs the enter call, whose actions
   are collected too; an enter call may not change state
   (:class:`BadEnterResultError`), postpone or insert events
   (:class:`BadEnterActionError`).
4. Transition: a postponed event joins the postponed list. If the state
   differs from the committed one, the postponed events go back to the front
   of the queue (oldest first) and the state timeout is cancelled. In any
   case the event timeout is cancelled. Then the collected timeouts are
   applied: ``math.inf``/``"cancel"`` cancel, ``"update"`` replaces the
   message of a running timer (or fires at once if none runs), zero fires at
   once, a positive time (re)starts the timer. ``NextEvent`` events go to the
   front of the queue in the order given; the zero timeouts go to its end, in
   the order of their last setting (a zero event timeout only if the queue
   is empty: any queued event would cancel it).

5. Hibernation: when the last transition asked for it (``HibernateAction``)
   and the machine would wait for a mailbox message (its own queue and the
   zero timeouts drained, the mailbox empty), it hibernates as a
   :class:`Server` does: the task ends and the process keeps its mailbox,
   links, monitors, name and timers; state, data, postponed events and timers
   live in the engine, which a new task resumes on the next message or
   signal (OTP ``hibernate``). With events queued it does not hibernate, as
   OTP's ``loop_event`` only garbage-collects then.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, ClassVar, Final, Generic, Literal, TypeVar

import attrs
from anyio.lowlevel import checkpoint

from thunderline.runtime._api import cancel_timer, send_after
from thunderline.runtime._errors import ThunderlineError
from thunderline.runtime._messages import Exit
from thunderline.runtime._pid import Pid, Ref
from thunderline.runtime._process import Hibernating, Process, ProcessExit, current_process_var
from thunderline.runtime._reasons import NORMAL, Crashed, is_quiet
from thunderline.runtime._server import (
    _GET_STATE,
    From,
    Ignore,
    _ack,
    _answering_get_state,
    _release_name,
    _reply_from,
    _start_process,
    _status,
    call,
)
from thunderline.runtime._server import _Call as _CallMessage
from thunderline.runtime._server import _Cast as _CastMessage
from thunderline.runtime._server import _StopRequest as _StopMessage

__all__ = [
    "KEEP_STATE_AND_DATA",
    "POSTPONE",
    "REPEAT_STATE_AND_DATA",
    "BadActionError",
    "BadEnterActionError",
    "BadEnterResultError",
    "BadInitResultError",
    "BadReplyActionError",
    "BadStateResultError",
    "Call",
    "CallbackMode",
    "EventTimeout",
    "EventType",
    "GenericTimeout",
    "HibernateAction",
    "InitialState",
    "KeepState",
    "KeepStateAndData",
    "NextEvent",
    "NextState",
    "Postpone",
    "RepeatState",
    "RepeatStateAndData",
    "ReplyTo",
    "StateMachine",
    "StateMachineError",
    "StateTimeout",
    "StopAndReply",
    "StopMachine",
    "TimeoutName",
    "UnknownStateError",
    "get_machine_state",
    "resume_machine",
    "start_machine",
    "start_machine_link",
    "suspend_machine",
]

logger: Final = logging.getLogger("thunderline.statem")

St = TypeVar("St")
D = TypeVar("D")

CallbackMode = Literal["handle_event_function", "state_functions"]

_UNCHANGED: Final[Any] = object()


# ------------------------------------------------------------------ event types


@attrs.frozen(slots=True)
class Call:
    """The event type of a :func:`call`: answer it with ``ReplyTo(from_, value)``."""

    from_: From


@attrs.frozen(slots=True)
class TimeoutName:
    """The event type of the generic timeout ``name`` (OTP ``{timeout, Name}``)."""

    name: Hashable


#: ``Call(from_)``, ``TimeoutName(name)``, or one of ``"cast"``, ``"info"``,
#: ``"internal"``, ``"timeout"``, ``"state_timeout"``, ``"enter"``.
EventType = Call | TimeoutName | str

_EXTERNAL_TYPES: Final = frozenset({"cast", "info", "internal", "timeout", "state_timeout"})


def _valid_event_type(event_type: object) -> bool:
    if type(event_type) is Call:
        return type(event_type.from_) is From
    if type(event_type) is TimeoutName:
        return True
    return isinstance(event_type, str) and event_type in _EXTERNAL_TYPES


def _as_actions(value: Any) -> tuple[Any, ...]:
    """OTP's ``listify``: a list or tuple of actions, or one action."""
    if isinstance(value, list | tuple):
        return tuple(value)
    return (value,)


# ------------------------------------------------------------------- results


@attrs.frozen
class InitialState(Generic[St, D]):
    """``init`` succeeded: start in ``state`` with ``data``; run ``actions`` before any event."""

    state: St
    data: D
    actions: tuple[Any, ...] = attrs.field(default=(), converter=_as_actions)


@attrs.frozen
class NextState(Generic[St, D]):
    """Go to ``state`` with ``data`` (a state change only if ``state`` differs)."""

    state: St
    data: D
    actions: tuple[Any, ...] = attrs.field(default=(), converter=_as_actions)


@attrs.frozen
class KeepState(Generic[D]):
    """Stay in the current state with new ``data``."""

    data: D
    actions: tuple[Any, ...] = attrs.field(default=(), converter=_as_actions)


@attrs.frozen
class KeepStateAndData:
    """Stay in the current state with the current data; only run ``actions``."""

    actions: tuple[Any, ...] = attrs.field(default=(), converter=_as_actions)


@attrs.frozen
class RepeatState(Generic[D]):
    """Like :class:`KeepState`, and run the enter call again (it is not a state change)."""

    data: D
    actions: tuple[Any, ...] = attrs.field(default=(), converter=_as_actions)


@attrs.frozen
class RepeatStateAndData:
    """Like :class:`KeepStateAndData`, and run the enter call again."""

    actions: tuple[Any, ...] = attrs.field(default=(), converter=_as_actions)


@attrs.frozen
class StopMachine:
    """Stop with ``reason`` (and new ``data`` if given): ``terminate`` runs, then the process exits.

    From ``init``: the start fails with ``reason`` and the process exits with it.
    """

    reason: Any = NORMAL
    data: Any = _UNCHANGED


@attrs.frozen
class StopAndReply:
    """Send ``replies`` (:class:`ReplyTo` actions), then stop like :class:`StopMachine`."""

    reason: Any
    replies: tuple[Any, ...] = attrs.field(converter=_as_actions)
    data: Any = _UNCHANGED


KEEP_STATE_AND_DATA: Final = KeepStateAndData()
REPEAT_STATE_AND_DATA: Final = RepeatStateAndData()


# ------------------------------------------------------------------- actions


@attrs.frozen
class ReplyTo:
    """Answer the call ``from_`` with ``value`` (sent at once, in action order)."""

    from_: From
    value: Any


@attrs.frozen
class Postpone:
    """Postpone the current event until the state changes (not allowed in an enter call)."""

    enabled: bool = True


@attrs.frozen
class HibernateAction:
    """Hibernate when the machine next waits for a message (OTP's ``hibernate`` transition option).

    The task ends until a message or signal arrives (see the module docstring,
    step 5); the next transition decides again (without this action: no).
    """

    enabled: bool = True


@attrs.frozen
class NextEvent:
    """Handle the event ``(event_type, content)`` next, before any queued or mailbox event."""

    event_type: EventType
    content: Any


#: A timer time: seconds (0 fires once the machine's own queue is drained),
#: ``math.inf`` or ``"cancel"`` to cancel, ``"update"`` to replace the message.
TimeoutTime = float | Literal["cancel", "update"]


@attrs.frozen
class EventTimeout:
    """Fire a ``"timeout"`` event after ``time`` seconds unless another event comes first."""

    time: TimeoutTime
    content: Any = None

    @property
    def kind(self) -> Hashable:
        return "timeout"


@attrs.frozen
class StateTimeout:
    """Fire a ``"state_timeout"`` event after ``time`` seconds unless the state changes first."""

    time: TimeoutTime
    content: Any = None

    @property
    def kind(self) -> Hashable:
        return "state_timeout"


@attrs.frozen
class GenericTimeout:
    """Fire a ``TimeoutName(name)`` event after ``time`` seconds (survives events and states)."""

    name: Hashable
    time: TimeoutTime
    content: Any = None

    @property
    def kind(self) -> Hashable:
        return TimeoutName(self.name)


POSTPONE: Final = Postpone()

_TIMEOUT_ACTIONS: Final = (EventTimeout, StateTimeout, GenericTimeout)


def _valid_time(time: object) -> bool:
    if time == "cancel" or time == "update":
        return True
    if isinstance(time, bool) or not isinstance(time, int | float):
        return False
    return not math.isnan(time) and time >= 0


# -------------------------------------------------------------------- errors


class StateMachineError(ThunderlineError):
    """A state machine broke OTP's rules; it ends the machine (``terminate`` gets this error)."""


class BadStateResultError(StateMachineError, TypeError):
    """A state callback returned no result (OTP ``bad_return_from_state_function``)."""

    def __init__(self, value: Any) -> None:
        self.value = value
        super().__init__(f"a state callback returned an illegal value {value!r}")


class BadEnterResultError(StateMachineError, TypeError):
    """An enter call tried to change state (OTP ``bad_state_enter_return_from_state_function``)."""

    def __init__(self, value: Any) -> None:
        self.value = value
        super().__init__(f"an enter call may not change state; it returned {value!r}")


class BadEnterActionError(StateMachineError, TypeError):
    """An enter call postponed or inserted an event.

    OTP ``bad_state_enter_action_from_state_function``.
    """

    def __init__(self, action: Any) -> None:
        self.action = action
        super().__init__(f"an enter call may not use the action {action!r}")


class BadActionError(StateMachineError, TypeError):
    """An action is not one (OTP ``bad_action_from_state_function``)."""

    def __init__(self, action: Any) -> None:
        self.action = action
        super().__init__(f"illegal action {action!r}")


class BadReplyActionError(StateMachineError, TypeError):
    """A :class:`StopAndReply` reply is no :class:`ReplyTo`.

    OTP ``bad_reply_action_from_state_function``.
    """

    def __init__(self, action: Any) -> None:
        self.action = action
        super().__init__(f"illegal reply {action!r} in StopAndReply")


class UnknownStateError(StateMachineError, AttributeError):
    """``state_functions`` mode: the state names no state method (OTP ``undef``)."""

    def __init__(self, machine: str, state: Any) -> None:
        self.machine = machine
        self.state = state
        super().__init__(f"{machine} has no state method for the state {state!r}")


class BadInitResultError(StateMachineError, TypeError):
    """``init`` returned something else than its results (OTP ``bad_return_from_init``)."""

    def __init__(self, value: Any) -> None:
        self.value = value
        super().__init__(f"init returned an illegal value {value!r}")


# --------------------------------------------------------------- the behaviour

_RESERVED_STATES: Final = frozenset(
    {"init", "handle_event", "terminate", "format_status", "callback_mode", "state_enter"}
)


class StateMachine(Generic[St, D]):
    """Base class of gen_statem-style state machines.

    Class attributes:
        callback_mode: ``"handle_event_function"`` (every event goes to
            :meth:`handle_event`) or ``"state_functions"`` (to the method named
            like the state, called as ``method(event_type, content, data)``;
            states are then ``str``).
        state_enter: when True, every state change (and :class:`RepeatState`)
            first runs an enter call: event type ``"enter"``, content the
            previous state (the initial state itself for the first one).
    """

    callback_mode: ClassVar[CallbackMode] = "handle_event_function"
    state_enter: ClassVar[bool] = False

    async def init(self, *args: Any) -> InitialState[St, D] | Ignore | StopMachine:
        """Return the initial state and data. The starter waits until this returns."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement init()")

    async def handle_event(self, event_type: EventType, content: Any, state: St, data: D) -> Any:
        """Handle one event (``handle_event_function`` mode)."""
        raise NotImplementedError(
            f"{type(self).__qualname__} received {event_type!r} {content!r} in state "
            f"{state!r} but has no handle_event"
        )

    async def terminate(self, reason: Any, state: St, data: D) -> None:
        """Clean up before the machine ends with ``reason`` (not called when it is killed)."""

    def format_status(self, state: St, data: D) -> Any:
        """What termination reports and :func:`get_state` show of the state and data;
        override to redact."""
        return (state, data)


def _label(machine: StateMachine[Any, Any]) -> str:
    return type(machine).__qualname__


# -------------------------------------------------------------- system requests


@attrs.frozen(slots=True)
class _SystemRequest:
    """A request answered by the engine itself, never an event (OTP's ``sys`` messages)."""

    what: Literal["get_state", "suspend", "resume"]


@attrs.frozen(slots=True)
class _TimerMessage:
    kind: Hashable
    token: int


class _TimerEntry:
    """A running timer; ``ref`` None marks a zero timeout waiting in the zero queue."""

    __slots__ = ("content", "ref", "token")

    def __init__(self, token: int, ref: Ref | None, content: Any) -> None:
        self.token = token
        self.ref = ref
        self.content = content


class _Pending:
    """What a callback (and its enter calls) asked for, applied at the transition."""

    __slots__ = ("hibernate", "next_events", "postpone", "timeouts")

    def __init__(self) -> None:
        self.next_events: list[tuple[Any, Any]] = []
        self.timeouts: list[Any] = []
        self.postpone = False
        self.hibernate = False


class _Terminate(Exception):
    """Internal: end the machine; ``reason`` for ``terminate``, ``exit_reason`` for the process."""

    def __init__(
        self, reason: Any, exit_reason: Any, state: Any, data: Any, replies: tuple[Any, ...] = ()
    ) -> None:
        self.reason = reason
        self.exit_reason = exit_reason
        self.state = state
        self.data = data
        self.replies = replies


def _error(error: StateMachineError, state: Any, data: Any) -> _Terminate:
    return _Terminate(error, Crashed(error), state, data)


_INIT_EVENT: Final = ("internal", "init_state")


class _Engine:
    """One running machine: its committed state and data, queue, postponed events and timers."""

    def __init__(self, machine: StateMachine[Any, Any], proc: Process, state: Any, data: Any):
        self.machine = machine
        self.proc = proc
        self.label = _label(machine)
        self.state = state
        self.data = data
        self.queue: deque[tuple[Any, Any]] = deque()
        self.postponed: list[tuple[Any, Any]] = []
        self.timers: dict[Hashable, _TimerEntry] = {}
        self.zero: list[Hashable] = []  # kinds of the zero timeouts, in firing order
        self.hibernate = False
        self.suspended = False
        cls = type(machine)
        self.enter = bool(cls.state_enter)
        self.state_functions = cls.callback_mode == "state_functions"
        # gen.erl: a machine started without a link is its own parent.
        self.parent = proc.parent if proc.parent is not None else proc.pid
        self._tokens = itertools.count(1)

    # ----------------------------------------------------------------- loop

    async def run(self, init_actions: tuple[Any, ...] | None) -> None:
        """Handle events until the machine stops (``init_actions`` None: woken from
        hibernation, the init pseudo-event long done)."""
        try:
            if init_actions is not None:
                await self._process(_INIT_EVENT, init_actions)
            while True:
                if self.queue:
                    event = self.queue.popleft()
                elif self.zero:
                    kind = self.zero.pop(0)
                    event = (kind, self.timers.pop(kind).content)
                else:
                    event = await self._receive()
                await self._process(event, None)
        except _Terminate as ending:
            await self._stop(ending)

    async def _stop(self, ending: _Terminate) -> None:
        for action in ending.replies:
            if type(action) is not ReplyTo or type(action.from_) is not From:
                ending = _error(BadReplyActionError(action), ending.state, ending.data)
                break
            _reply_from(self.proc.node, action.from_, action.value)
        await self._terminate(ending.reason, ending.state, ending.data)
        raise ProcessExit(ending.exit_reason) from None

    async def _terminate(self, reason: Any, state: Any, data: Any) -> None:
        try:
            await self.machine.terminate(reason, state, data)
        except ProcessExit:
            raise
        except Exception as exc:
            logger.error(
                "%s %r: terminate(%r) raised %r",
                self.label,
                self.proc.pid,
                reason,
                exc,
                exc_info=exc,
            )
            raise ProcessExit(Crashed(exc)) from exc
        if not is_quiet(reason) and logger.isEnabledFor(logging.ERROR):
            logger.error(
                "state machine %s %r terminating with reason %r",
                self.label,
                self.proc.pid,
                reason,
                extra={
                    "thunderline_report": "statem_terminate",
                    "pid": repr(self.proc.pid),
                    "machine": self.label,
                    "reason": repr(reason),
                    "state": repr(self.machine.format_status(state, data)),
                    "queue": repr(list(self.queue)),
                    "postponed": repr(self.postponed),
                },
            )

    async def _receive(self) -> tuple[Any, Any]:
        """The next event from the mailbox; system requests and stale timers are consumed here.

        With ``hibernate`` set by the last transition and nothing to take, the
        machine hibernates instead of waiting (OTP ``loop_hibernate``): the
        task ends with :class:`Hibernating` and the next message or signal
        runs :func:`_wake` in a new one. The flag stays set until the next
        event's transition, so a system request or a stale timer that woke
        it sends it back to hibernation.
        """
        proc = self.proc
        while True:
            if self.hibernate and not proc.mailbox:
                raise Hibernating(_wake, (self,))
            if self.suspended:
                message = await proc.receive(self._is_system, None)
            else:
                message = await proc.receive(None, None)
            mtype = type(message)
            if mtype is _CallMessage:
                request = message.request
                if type(request) is _SystemRequest:
                    self._system(request, message.from_)
                    continue
                if request is _GET_STATE:  # get_state: format_status, as for a Server
                    status = _status(self.machine.format_status, self.state, self.data)
                    _reply_from(proc.node, message.from_, status)
                    continue
                return (Call(message.from_), request)
            if mtype is _CastMessage:
                return ("cast", message.request)
            if mtype is _TimerMessage:
                entry = self.timers.get(message.kind)
                if entry is None or entry.token != message.token:
                    continue  # cancelled or restarted after it fired
                del self.timers[message.kind]
                return (message.kind, entry.content)
            if mtype is _StopMessage or (mtype is Exit and message.pid == self.parent):
                raise _Terminate(message.reason, message.reason, self.state, self.data)
            return ("info", message)

    def _is_system(self, message: Any) -> bool:
        mtype = type(message)
        return (
            (
                mtype is _CallMessage
                and (type(message.request) is _SystemRequest or message.request is _GET_STATE)
            )
            or mtype is _StopMessage
            or (mtype is Exit and message.pid == self.parent)
        )

    def _system(self, request: _SystemRequest, from_: From) -> None:
        if request.what == "get_state":
            _reply_from(self.proc.node, from_, (self.state, self.data))
            return
        self.suspended = request.what == "suspend"
        _reply_from(self.proc.node, from_, "ok")

    # --------------------------------------------------------------- events

    async def _process(self, event: tuple[Any, Any], init_actions: tuple[Any, ...] | None) -> None:
        committed = (self.state, self.data)
        pending = _Pending()
        if init_actions is not None:
            new = committed
            self._actions(init_actions, pending, new, state_call=True)
            pending.postpone = False  # the init pseudo-event is never postponed
            call_enter = True
        else:
            result = await self._invoke(event[0], event[1], committed)
            new, call_enter = self._result(result, committed, pending, state_call=True)
        while call_enter and self.enter:
            result = await self._invoke("enter", committed[0], new)
            new, call_enter = self._result(result, new, pending, state_call=False)
        self._transition(event, committed[0], new, pending)

    async def _invoke(self, event_type: Any, content: Any, state_data: tuple[Any, Any]) -> Any:
        state, data = state_data
        try:
            if self.state_functions:
                return await self._state_function(state)(event_type, content, data)
            return await self.machine.handle_event(event_type, content, state, data)
        except ProcessExit as exc:
            if self.proc.exiting:
                raise
            raise _Terminate(exc.reason, exc.reason, self.state, self.data) from None
        except Exception as exc:  # noqa: BLE001 - a crash ends the machine (terminate runs)
            raise _Terminate(exc, Crashed(exc), self.state, self.data) from None

    def _state_function(self, state: Any) -> Callable[[Any, Any, Any], Awaitable[Any]]:
        if isinstance(state, str) and not state.startswith("_") and state not in _RESERVED_STATES:
            method = getattr(self.machine, state, None)
            if method is not None and callable(method):
                return method  # type: ignore[no-any-return]
        raise UnknownStateError(self.label, state)

    def _result(
        self, result: Any, state_data: tuple[Any, Any], pending: _Pending, *, state_call: bool
    ) -> tuple[tuple[Any, Any], bool]:
        """Interpret a callback result: the new (state, data) and whether an enter call follows."""
        state, data = state_data
        rtype = type(result)
        if rtype is NextState:
            if result.state == state:
                call_enter = False
            elif state_call:
                call_enter = True
            else:
                raise _error(BadEnterResultError(result), state, data)
            new = (result.state, result.data)
        elif rtype is KeepState:
            new, call_enter = (state, result.data), False
        elif rtype is KeepStateAndData:
            new, call_enter = state_data, False
        elif rtype is RepeatState:
            new, call_enter = (state, result.data), True
        elif rtype is RepeatStateAndData:
            new, call_enter = state_data, True
        elif rtype is StopMachine:
            final = data if result.data is _UNCHANGED else result.data
            raise _Terminate(result.reason, result.reason, state, final)
        elif rtype is StopAndReply:
            final = data if result.data is _UNCHANGED else result.data
            raise _Terminate(result.reason, result.reason, state, final, result.replies)
        else:
            raise _error(BadStateResultError(result), state, data)
        self._actions(result.actions, pending, new, state_call=state_call)
        return new, call_enter

    def _actions(
        self, actions: tuple[Any, ...], pending: _Pending, new: tuple[Any, Any], *, state_call: bool
    ) -> None:
        """Run replies at once; collect the rest into ``pending`` (OTP ``loop_actions_list``)."""
        for action in actions:
            atype = type(action)
            if atype is ReplyTo:
                if type(action.from_) is not From:
                    raise _error(BadActionError(action), *new)
                _reply_from(self.proc.node, action.from_, action.value)
            elif atype is Postpone:
                if action.enabled and not state_call:
                    raise _error(BadEnterActionError(action), *new)
                pending.postpone = bool(action.enabled)
            elif atype is HibernateAction:
                pending.hibernate = bool(action.enabled)
            elif atype is NextEvent:
                if not state_call:
                    raise _error(BadEnterActionError(action), *new)
                if not _valid_event_type(action.event_type):
                    raise _error(BadActionError(action), *new)
                pending.next_events.append((action.event_type, action.content))
            elif atype in _TIMEOUT_ACTIONS:
                if not _valid_time(action.time):
                    raise _error(BadActionError(action), *new)
                pending.timeouts.append(action)
            else:
                raise _error(BadActionError(action), *new)

    # ------------------------------------------------------------ transition

    def _transition(
        self, event: tuple[Any, Any], old_state: Any, new: tuple[Any, Any], pending: _Pending
    ) -> None:
        if pending.postpone:
            self.postponed.append(event)
        new_state, new_data = new
        if new_state != old_state:
            if self.postponed:
                self.queue.extendleft(reversed(self.postponed))
                self.postponed = []
            self._cancel("state_timeout")
        self._cancel("timeout")
        self.state, self.data = new_state, new_data
        self.hibernate = pending.hibernate
        if pending.timeouts:
            self._timeouts(pending.timeouts)
        if pending.next_events:
            self.queue.extendleft(reversed(pending.next_events))

    def _timeouts(self, timeouts: list[Any]) -> None:
        """Apply timeout actions, the last of each kind winning (OTP ``loop_timeouts``).

        A zero timeout is a timer too (so state changes and events cancel it as
        they cancel running timers) that fires from the zero queue, after the
        machine's own queued events and before the next mailbox message; the
        zero queue keeps the order of the last settings.
        """
        seen: set[Hashable] = set()
        zero: list[Hashable] = []
        for action in reversed(timeouts):
            kind = action.kind
            if kind in seen:
                continue
            seen.add(kind)
            time = action.time
            if time == "cancel" or time == math.inf:
                self._cancel(kind)
            elif time == "update":
                entry = self.timers.get(kind)
                if entry is not None:
                    entry.content = action.content
                else:
                    self.timers[kind] = _TimerEntry(0, None, action.content)
                    zero.insert(0, kind)
            elif time == 0:
                self._cancel(kind)
                self.timers[kind] = _TimerEntry(0, None, action.content)
                zero.insert(0, kind)
            else:
                self._cancel(kind)
                token = next(self._tokens)
                ref = send_after(float(time), self.proc.pid, _TimerMessage(kind, token))
                self.timers[kind] = _TimerEntry(token, ref, action.content)
        self.zero.extend(zero)

    def _cancel(self, kind: Hashable) -> None:
        entry = self.timers.pop(kind, None)
        if entry is None:
            return
        if entry.ref is None:
            self.zero.remove(kind)
        else:
            cancel_timer(entry.ref)


async def _wake(engine: _Engine) -> None:
    """A hibernated machine's new task: the engine loop again, from an empty stack."""
    with _answering_get_state(engine.proc):
        await engine.run(None)


# ----------------------------------------------------------------------- start


def _check_class(machine: StateMachine[Any, Any]) -> None:
    cls = type(machine)
    if cls.callback_mode not in ("handle_event_function", "state_functions"):
        raise TypeError(
            f"{cls.__qualname__}.callback_mode must be 'handle_event_function' or "
            f"'state_functions', got {cls.callback_mode!r}"
        )
    if not isinstance(cls.state_enter, bool):
        raise TypeError(f"{cls.__qualname__}.state_enter must be a bool, got {cls.state_enter!r}")


async def _machine_main(
    starter: Pid | None, tag: Ref, machine: StateMachine[Any, Any], args: tuple[Any, ...]
) -> None:
    proc = current_process_var.get()
    assert proc is not None
    try:
        result: Any = await machine.init(*args)
    except ProcessExit as exc:
        _release_name(proc)
        _ack(proc, starter, tag, "error", exc.reason)
        raise
    except Exception as exc:
        _release_name(proc)
        _ack(proc, starter, tag, "error", exc)
        raise
    rtype = type(result)
    if rtype is InitialState:
        # get_state may ask as soon as the starter has the pid
        with _answering_get_state(proc):
            ack = _ack(proc, starter, tag, "ok", proc.pid)
            # Let the starter resume before the machine runs its first actions, as
            # a BEAM starter is runnable as soon as it is acknowledged: whatever it
            # does right after the start (monitor, link, send) sees a live machine.
            while ack is not None and not ack.taken and starter in proc.node.processes:
                await checkpoint()
            engine = _Engine(machine, proc, result.state, result.data)
            await engine.run(result.actions)
        return
    _release_name(proc)
    if rtype is Ignore:
        _ack(proc, starter, tag, "ignore", None)
        return
    if rtype is StopMachine:
        _ack(proc, starter, tag, "error", result.reason)
        raise ProcessExit(result.reason)
    error = BadInitResultError(result)
    _ack(proc, starter, tag, "error", error)
    raise ProcessExit(error)


async def start_machine(
    machine: StateMachine[Any, Any] | type[StateMachine[Any, Any]],
    *args: Any,
    name: str | None = None,
    timeout: float | None = None,
) -> Pid | None:
    """Start a state machine process (not linked) and wait until its ``init`` has returned.

    Returns the pid, or None when ``init`` returned :data:`IGNORE` (the process
    then exits normally).

    Raises:
        AlreadyStartedError: ``name`` is already registered (``init`` does not run).
        InitFailedError: ``init`` returned :class:`StopMachine` (``reason`` is its
            reason), raised (the exception, or a ``ProcessExit`` reason) or
            returned something else (a :class:`BadInitResultError`).
        StartTimeoutError: ``init`` took longer than ``timeout`` (the process is killed).
        TypeError: ``machine`` is not a :class:`StateMachine`, or its class
            attributes are invalid.
    """
    return await _start(machine, args, name=name, timeout=timeout, link=False)


async def start_machine_link(
    machine: StateMachine[Any, Any] | type[StateMachine[Any, Any]],
    *args: Any,
    name: str | None = None,
    timeout: float | None = None,
) -> Pid | None:
    """Like :func:`start_machine`, and link the caller and the machine atomically.

    The caller becomes the machine's parent: if the machine traps exits, an
    exit signal from the caller makes it run ``terminate`` and stop.
    """
    return await _start(machine, args, name=name, timeout=timeout, link=True)


async def _start(
    machine: StateMachine[Any, Any] | type[StateMachine[Any, Any]],
    args: tuple[Any, ...],
    *,
    name: str | None,
    timeout: float | None,
    link: bool,
) -> Pid | None:
    instance = machine() if isinstance(machine, type) else machine
    if not isinstance(instance, StateMachine):
        raise TypeError(
            f"start_machine: expected a StateMachine subclass or instance, got {machine!r}"
        )
    _check_class(instance)
    return await _start_process(
        _machine_main,
        (instance, args),
        label=_label(instance),
        operation="start_machine",
        name=name,
        timeout=timeout,
        link=link,
    )


# ------------------------------------------------------------ system requests


async def get_machine_state(machine: Pid | str, timeout: float | None = 5.0) -> tuple[Any, Any]:
    """The ``(state, data)`` of a running machine (OTP ``sys:get_state``).

    Answered by the engine between events: it runs no callback and is not an
    event (an event timeout keeps running).

    Raises:
        CallNoProcError: no such machine.
        CallTimeoutError: no answer within ``timeout``.
        CallExitError: the machine ended before answering.
    """
    state_data: tuple[Any, Any] = await call(machine, _SystemRequest("get_state"), timeout)
    return state_data


async def suspend_machine(machine: Pid | str, timeout: float | None = 5.0) -> None:
    """Suspend a machine (OTP ``sys:suspend``): until resumed it handles no event.

    Messages keep arriving and stay queued in order; timers keep firing into
    the mailbox. A suspended machine still answers :func:`get_machine_state`,
    :func:`resume_machine` and :func:`stop`, and an exit from its parent.
    """
    await call(machine, _SystemRequest("suspend"), timeout)


async def resume_machine(machine: Pid | str, timeout: float | None = 5.0) -> None:
    """Resume a machine suspended by :func:`suspend_machine` (OTP ``sys:resume``)."""
    await call(machine, _SystemRequest("resume"), timeout)
