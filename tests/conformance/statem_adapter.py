"""gen_statem-conformance adapter: run a scenario of otp25/statem on thunderline.

Usage::

    python tests/conformance/statem_adapter.py [--backend asyncio|trio] SCENARIO.json

It prints the event log of the recorded corpus (``otp25/statem/README.md``)
on stdout, one JSON object per line; diagnostics go to stderr. Every ``s…``
machine is a real :class:`thunderline.runtime.StateMachine` whose callbacks
log their arguments, look up the scenario's rule table and return the rule's
value translated into result and action objects; every ``p…`` client is a real
process making :func:`thunderline.runtime.call` calls; the driver is a real
process that traps exits. The adapter decides nothing the machine engine
decides: which callback runs when, timers, postponing, replies and exit
reasons all come from the runtime.

How the contract's hooks are met:

* ``cb``/``init``/``terminate`` lines: the machine's own callbacks.
* ``exit`` lines: the node's instrument (``process_exited``), in the dying
  process's task.
* ``batch``: the driver suspends the machine (:func:`suspend_machine`, OTP's
  ``sys:suspend``), delivers the events in order (a client's call is in the
  mailbox once the client is blocked), then resumes it.
* ``get_state``: :func:`get_machine_state` (not an event).

Time is virtual on both backends: the clock stands still while anything can
run and jumps to the next deadline when every task is blocked (trio's
``MockClock`` with ``autojump_threshold=0``; on asyncio an event loop whose
selector advances the loop's clock instead of sleeping). Settling after an op
waits until every task is blocked, which has priority over a jump, so timers
fire only during a ``sleep`` or a driver call's wait, as the format requires.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import selectors
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
from conformance_support import load_module, run_driver

from thunderline.runtime import (
    IGNORE,
    BadActionError,
    BadEnterActionError,
    BadEnterResultError,
    BadInitResultError,
    BadReplyActionError,
    BadStateResultError,
    Call,
    CallExitError,
    CallNoProcError,
    CallTimeoutError,
    Crashed,
    Down,
    EventTimeout,
    From,
    GenericTimeout,
    HibernateAction,
    InitFailedError,
    InitialState,
    KeepState,
    KeepStateAndData,
    NextEvent,
    NextState,
    NoProcessError,
    Pid,
    Postpone,
    ProcessExit,
    Ref,
    RepeatState,
    RepeatStateAndData,
    ReplyTo,
    StateMachine,
    StateTimeout,
    StopAndReply,
    StopMachine,
    StopTimeoutError,
    TimeoutName,
    UnknownStateError,
    WouldBlock,
    call,
    cast,
    current_pid,
    exit,
    get_machine_state,
    is_alive,
    monitor,
    receive,
    receive_nowait,
    resume_machine,
    send,
    spawn,
    start_machine,
    start_machine_link,
    stop,
    suspend_machine,
    trap_exit,
)

HERE = Path(__file__).resolve().parent


# the Erlang term reader/printer shared with the process adapter (one copy)
terms = load_module("thunderline_conformance_process_adapter", HERE / "process_adapter.py")
Atom = terms.Atom
EList = terms.EList
Improper = terms.Improper
ErlangError = terms.ErlangError
parse_term = terms.parse_term
to_reason = terms.to_reason
write_atom = terms.write_atom

STACK = Atom("$stack")
FROM = Atom("$from")
RUNAWAY = 400


def error_term(exc: BaseException) -> Any:
    """The Erlang term an exception stands for (``error(E)`` gives E)."""
    if isinstance(exc, ErlangError):
        return exc.term
    if isinstance(exc, UnknownStateError):
        return Atom("undef")
    for cls, tag in (
        (BadStateResultError, "bad_return_from_state_function"),
        (BadEnterResultError, "bad_state_enter_return_from_state_function"),
        (BadInitResultError, "bad_return_from_init"),
    ):
        if isinstance(exc, cls):
            return (Atom(tag), exc.value)
    for cls, tag in (
        (BadEnterActionError, "bad_state_enter_action_from_state_function"),
        (BadActionError, "bad_action_from_state_function"),
        (BadReplyActionError, "bad_reply_action_from_state_function"),
    ):
        if isinstance(exc, cls):
            return (Atom(tag), exc.action)
    return Atom(type(exc).__name__)


class Printer(terms.Printer):  # type: ignore[misc,name-defined]
    """Prints machine values as Erlang terms: result and action objects as the terms they came
    from, states given as ``str`` as atoms, a ``From`` as ``'$from'``, event types as OTP's."""

    def __init__(self, origins: dict[int, tuple[Any, Any]]) -> None:
        super().__init__()
        self.origins = origins

    def _parts(self, v: Any) -> Iterator[str]:
        origin = self.origins.get(id(v))
        if origin is not None and origin[0] is v:
            yield from super()._parts(origin[1])
        elif isinstance(v, From):
            yield "'$from'"
        elif isinstance(v, str):
            yield write_atom(v)
        elif isinstance(v, Call):
            yield "{call,'$from'}"
        elif isinstance(v, TimeoutName):
            yield from super()._parts((Atom("timeout"), v.name))
        elif isinstance(v, Crashed):
            yield from super()._parts((error_term(v.exception), STACK))
        elif isinstance(v, BaseException):
            yield from super()._parts(error_term(v))
        else:
            yield from super()._parts(v)


# ---------------------------------------------------------------- terms -> objects


def substitute(term: Any, values: dict[Atom, Any]) -> Any:
    """Replace the placeholder atoms of a rule's return term."""
    if isinstance(term, Atom):
        return values.get(term, term)
    if isinstance(term, EList):
        return EList(substitute(t, values) for t in term)
    if isinstance(term, Improper):
        return Improper(
            tuple(substitute(t, values) for t in term.items), substitute(term.tail, values)
        )
    if isinstance(term, tuple):
        return tuple(substitute(t, values) for t in term)
    return term


def _is(term: Any, *names: str) -> bool:
    return isinstance(term, Atom) and term.name in names


def _ms(value: Any) -> Any:
    """A timer time: ms integer to seconds, ``infinity`` to ``math.inf``; anything else raw."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value / 1000
    if _is(value, "infinity"):
        return math.inf
    if _is(value, "update", "cancel"):
        return value.name
    return value


class Translator:
    """Turns rule terms into the runtime's result and action objects, remembering each
    object's term so a bad one prints as the term the rule gave."""

    def __init__(self, state_functions: bool, origins: dict[int, tuple[Any, Any]]) -> None:
        self.state_functions = state_functions
        self.origins = origins

    def keep(self, obj: Any, term: Any) -> Any:
        self.origins[id(obj)] = (obj, term)
        return obj

    def state(self, term: Any) -> Any:
        # state_functions machines name their states with str (method names).
        if self.state_functions and isinstance(term, Atom):
            return term.name
        return term

    def event_type(self, term: Any) -> Any:
        if isinstance(term, Atom) and term.name in (
            "cast",
            "info",
            "internal",
            "timeout",
            "state_timeout",
        ):
            return term.name
        if isinstance(term, tuple) and len(term) == 2:
            if _is(term[0], "call") and isinstance(term[1], From):
                return Call(term[1])
            if _is(term[0], "timeout"):
                return TimeoutName(term[1])
        return term

    def action(self, term: Any) -> Any:
        if _is(term, "postpone"):
            return self.keep(Postpone(), term)
        if _is(term, "hibernate"):
            return self.keep(HibernateAction(), term)
        if (isinstance(term, int) and not isinstance(term, bool)) or _is(term, "infinity"):
            return self.keep(EventTimeout(_ms(term), term), term)
        if not isinstance(term, tuple) or not term:
            return term
        head = term[0]
        if len(term) == 2 and _is(head, "postpone", "hibernate") and _is(term[1], "true", "false"):
            cls = Postpone if head.name == "postpone" else HibernateAction
            return self.keep(cls(term[1].name == "true"), term)
        if len(term) == 3 and _is(head, "next_event"):
            return self.keep(NextEvent(self.event_type(term[1]), term[2]), term)
        if len(term) == 3 and _is(head, "reply"):
            return self.keep(ReplyTo(term[1], term[2]), term)
        kind: Callable[[Any, Any], Any] | None = None
        if _is(head, "timeout"):
            kind = EventTimeout
        elif _is(head, "state_timeout"):
            kind = StateTimeout
        elif isinstance(head, tuple) and len(head) == 2 and _is(head[0], "timeout"):
            name = head[1]

            def kind(time: Any, content: Any) -> Any:
                return GenericTimeout(name, time, content)

        if kind is not None:
            if len(term) == 2 and _is(term[1], "cancel"):
                return self.keep(kind("cancel", None), term)
            if len(term) == 3:
                return self.keep(kind(_ms(term[1]), term[2]), term)
        return term

    def actions(self, term: Any) -> list[Any]:
        items = list(term) if isinstance(term, EList) else [term]
        return [self.action(t) for t in items]

    def result(self, term: Any) -> Any:
        """A state callback's return term as a result object (a bad term stays a term)."""
        if _is(term, "keep_state_and_data"):
            return self.keep(KeepStateAndData(), term)
        if _is(term, "repeat_state_and_data"):
            return self.keep(RepeatStateAndData(), term)
        if _is(term, "stop"):
            return self.keep(StopMachine(), term)
        if not isinstance(term, tuple) or not term or not isinstance(term[0], Atom):
            return term
        tag, n = term[0].name, len(term)
        if tag == "next_state" and n in (3, 4):
            acts = self.actions(term[3]) if n == 4 else []
            return self.keep(NextState(self.state(term[1]), term[2], acts), term)
        if tag in ("keep_state", "repeat_state") and n in (2, 3):
            cls = KeepState if tag == "keep_state" else RepeatState
            acts = self.actions(term[2]) if n == 3 else []
            return self.keep(cls(term[1], acts), term)
        if tag in ("keep_state_and_data", "repeat_state_and_data") and n == 2:
            cls2 = KeepStateAndData if tag == "keep_state_and_data" else RepeatStateAndData
            return self.keep(cls2(self.actions(term[1])), term)
        if tag == "stop" and n == 2:
            return self.keep(StopMachine(to_reason(term[1])), term)
        if tag == "stop" and n == 3:
            return self.keep(StopMachine(to_reason(term[1]), term[2]), term)
        if tag == "stop_and_reply" and n in (3, 4):
            replies = self.actions(term[2])
            if n == 3:
                return self.keep(StopAndReply(to_reason(term[1]), replies), term)
            return self.keep(StopAndReply(to_reason(term[1]), replies, term[3]), term)
        return term

    def init_result(self, term: Any) -> Any:
        if _is(term, "ignore"):
            return IGNORE
        if isinstance(term, tuple) and term and _is(term[0], "ok") and len(term) in (3, 4):
            acts = self.actions(term[3]) if len(term) == 4 else []
            return self.keep(InitialState(self.state(term[1]), term[2], acts), term)
        if isinstance(term, tuple) and len(term) == 2 and _is(term[0], "stop"):
            return StopMachine(to_reason(term[1]))
        return term


# ------------------------------------------------------------------ the machines


def _rule(text: str) -> Any:
    return None if text == "_" else parse_term(text)


class ScenarioMachine(StateMachine[Any, Any]):
    """An ``s…`` machine (the format's section 2)."""

    def __init__(self, runner: Runner, name: str, spec: dict[str, Any]) -> None:
        self.runner = runner
        self.name = name
        self.spec = spec
        self.calls = 0
        self.translator = Translator(type(self).callback_mode == "state_functions", runner.origins)
        self.rules = [
            (_rule(state), None if kind == "_" else kind, _rule(content), parse_term(ret))
            for state, kind, content, ret in spec.get("rules", [])
        ]

    async def init(self, *args: Any) -> Any:
        self.runner.bind(self.name, current_pid(), "s")
        self.runner.log("init", proc=self.name)
        if self.spec.get("trap_exit", False):
            trap_exit(True)
        term = parse_term(self.spec.get("init", "{ok,a,0}"))
        return self.translator.init_result(self.evaluate(term, {}))

    def evaluate(self, term: Any, values: dict[Atom, Any]) -> Any:
        """``'$crash'``, ``'$error'`` and ``'$throw'`` (a throw is the callback's return)."""
        if isinstance(term, tuple) and len(term) == 2 and isinstance(term[0], Atom):
            if term[0].name == "$crash":
                raise ProcessExit(to_reason(term[1]))
            if term[0].name == "$error":
                raise ErlangError(term[1])
            if term[0].name == "$throw":
                return substitute(term[1], values)
        return substitute(term, values)

    async def callback(self, event_type: Any, content: Any, state: Any, data: Any) -> Any:
        self.calls += 1
        if self.calls > RUNAWAY:
            raise ProcessExit(Atom("runaway"))
        fmt = self.runner.fmt
        self.runner.log(
            "cb",
            proc=self.name,
            state=fmt(state),
            type=fmt(event_type),
            content=fmt(content),
            data=fmt(data),
        )
        term = self.match(event_type, content, state)
        values = {
            FROM: event_type.from_ if isinstance(event_type, Call) else Atom("nofrom"),
            Atom("$data"): data,
            Atom("$state"): Atom(state) if isinstance(state, str) else state,
            Atom("$event"): Atom(content) if isinstance(content, str) else content,
        }
        return self.translator.result(self.evaluate(term, values))

    def match(self, event_type: Any, content: Any, state: Any) -> Any:
        state_term = Atom(state) if isinstance(state, str) else state
        content_term = Atom(content) if isinstance(content, str) else content
        for rule_state, rule_type, rule_content, ret in self.rules:
            if rule_state is not None and rule_state != state_term:
                continue
            if rule_type is not None and not _type_matches(rule_type, event_type):
                continue
            if rule_content is not None and rule_content != content_term:
                continue
            return ret
        return Atom("keep_state_and_data")

    async def handle_event(self, event_type: Any, content: Any, state: Any, data: Any) -> Any:
        return await self.callback(event_type, content, state, data)

    async def terminate(self, reason: Any, state: Any, data: Any) -> None:
        if not self.runner.finished:
            fmt = self.runner.fmt
            self.runner.log(
                "terminate", proc=self.name, reason=fmt(reason), state=fmt(state), data=fmt(data)
            )


def _type_matches(rule_type: str, event_type: Any) -> bool:
    if rule_type == "call":
        return isinstance(event_type, Call)
    if isinstance(event_type, str):
        return rule_type == event_type
    if isinstance(event_type, TimeoutName):
        return parse_term(rule_type) == (Atom("timeout"), event_type.name)
    return False


def _state_function(state: str) -> Callable[..., Any]:
    async def method(self: ScenarioMachine, event_type: Any, content: Any, data: Any) -> Any:
        return await self.callback(event_type, content, state, data)

    method.__name__ = state
    return method


def machine_class(spec: dict[str, Any]) -> type[ScenarioMachine]:
    """A machine class for ``spec``: its callback mode, state enter flag and state methods."""
    mode = spec.get("mode", "handle_event_function")
    namespace: dict[str, Any] = {"callback_mode": mode, "state_enter": bool(spec.get("enter"))}
    if mode == "state_functions":
        namespace.update({s: _state_function(s) for s in ("a", "b", "c", "d")})
    return type("Machine", (ScenarioMachine,), namespace)


# ----------------------------------------------------------------------- the run


class Skipped(Exception):
    """The op names a process that does not exist."""


class Command:
    """A call the driver hands to a client (never logged)."""

    __slots__ = ("i", "op")

    def __init__(self, i: int, op: dict[str, Any]) -> None:
        self.i = i
        self.op = op


class Runner:
    """Runs one scenario; the event log collects in :attr:`lines`."""

    def __init__(self, script: list[dict[str, Any]], idle: Callable[[], Any]) -> None:
        self.script = script
        self.idle = idle
        self.lines: list[dict[str, Any]] = []
        self.origins: dict[int, tuple[Any, Any]] = {}
        self.fmt = Printer(self.origins)
        self.procs: dict[str, Pid] = {}
        self.order: list[str] = []
        self.labels: dict[str, Ref] = {}
        self.finished = False

    def log(self, event: str, **fields: Any) -> None:
        if not self.finished:  # the node's shutdown after "end" is not logged
            self.lines.append({"event": event, **fields})

    def bind(self, name: str, pid: Pid, kind: str) -> None:
        self.procs[name] = pid
        self.fmt.pids[pid] = name
        if kind != "driver":
            self.order.append(name)

    def on_exit(self, pid: Pid, reason: Any) -> None:
        name = self.fmt.pids.get(pid)
        if name is not None and name != "driver" and not self.finished:
            self.log("exit", proc=name, reason=self.print(reason))

    def print(self, value: Any) -> str:
        result: str = self.fmt(value)
        return result

    def pid(self, name: str) -> Pid:
        pid = self.procs.get(name)
        if pid is None:
            raise Skipped(name)
        return pid

    # -- ops

    async def driver_main(self) -> None:
        self.bind("driver", current_pid(), "driver")
        for i, op in enumerate([*self.script, {"op": "flush_all"}]):
            self.log("op", i=i, **op)
            try:
                result = await self.perform(i, op)
            except Skipped:
                result = "skipped"
            await self.idle()
            self.log("result", i=i, result=result)
            self.log("alive", procs=[n for n in self.order if is_alive(self.procs[n])])
        self.log("end")
        self.finished = True

    async def perform(self, i: int, op: dict[str, Any]) -> str:
        kind = op["op"]
        if kind == "start":
            return "{ok," + self.print(await self.do_start(op)) + "}"
        if kind == "spawn":
            pid = spawn(self.client_body, op["name"])
            self.bind(op["name"], pid, "p")
            return "{ok," + op["name"] + "}"
        if kind == "call":
            proc = op.get("proc", "driver")
            if proc != "driver":
                send(self.pid(proc), Command(i, op))
                return "{ok,sent}"
            return await self.do_call(op)
        if kind == "cast":
            cast(self.pid(op["to"]), parse_term(op["msg"]))
            return "{ok,ok}"
        if kind == "send":
            message = parse_term(op["msg"])
            send(self.pid(op["to"]), message)
            return "{ok," + self.print(message) + "}"
        if kind == "batch":
            return await self.do_batch(i, op)
        if kind == "sleep":
            await anyio.sleep(op["ms"] / 1000)
            return "{ok,ok}"
        if kind == "stop":
            return await self.do_stop(op)
        if kind == "signal":
            exit(self.pid(op["to"]), to_reason(parse_term(op["reason"])))
            return "{ok,true}"
        if kind == "get_state":
            return await self.do_get_state(op)
        if kind in ("flush", "flush_all"):
            return "{ok," + str(self.do_flush()) + "}"
        raise ValueError(f"unknown op {kind!r}")

    async def do_start(self, op: dict[str, Any]) -> Any:
        name = op.get("name", f"s{sum(1 for n in self.order if n.startswith('s')) + 1}")
        spec = op.get("spec", {})
        machine = machine_class(spec)(self, name, spec)
        starter = start_machine_link if op.get("link", False) else start_machine
        try:
            pid = await starter(machine)
        except InitFailedError as exc:
            result: Any = (Atom("error"), exc.reason)
        else:
            result = Atom("ignore") if pid is None else (Atom("ok"), pid)
        label = op.get("monitor")
        if label is not None:
            ref = monitor(self.procs[name])
            self.labels[label] = ref
            self.fmt.refs[ref] = label
        return result

    async def do_call(self, op: dict[str, Any]) -> str:
        timeout_text = op.get("timeout", 1000)
        if isinstance(timeout_text, int):
            given: Any = timeout_text
            seconds: float | None = timeout_text / 1000
        elif timeout_text == "infinity":
            given, seconds = Atom("infinity"), None
        else:
            given = parse_term(timeout_text)
            seconds = given[1] / 1000 if isinstance(given[1], int) else None
        target = self.pid(op["to"])
        request = parse_term(op["request"])
        try:
            value = await call(target, request, seconds)
        except (CallTimeoutError, CallNoProcError, CallExitError) as exc:
            if isinstance(exc, CallTimeoutError):
                reason: Any = Atom("timeout")
            elif isinstance(exc, CallNoProcError):
                reason = Atom("noproc")
            else:
                reason = exc.reason
            mfa = (Atom("gen_statem"), Atom("call"), EList([target, request, given]))
            return "{exit," + self.print((reason, mfa)) + "}"
        return "{ok," + self.print(value) + "}"

    async def do_batch(self, i: int, op: dict[str, Any]) -> str:
        target = self.pid(op["to"])
        if not is_alive(target):
            return "skipped"
        await suspend_machine(target)
        for event in op["events"]:
            kind = event[0]
            if kind == "cast":
                cast(target, parse_term(event[1]))
            elif kind == "info":
                send(target, parse_term(event[1]))
            else:  # ["call", Client, Msg, Timeout]: the client's request must be queued
                _, client, request, timeout = event
                call_op = {"op": "call", "to": op["to"], "request": request, "timeout": timeout}
                send(self.pid(client), Command(i, call_op))
                await self.idle()
        await resume_machine(target)
        return "{ok," + str(len(op["events"])) + "}"

    async def do_stop(self, op: dict[str, Any]) -> str:
        reason = to_reason(parse_term(op.get("reason", "normal")))
        timeout = op.get("timeout", "infinity")
        try:
            await stop(
                self.pid(op["to"]), reason, None if timeout == "infinity" else timeout / 1000
            )
        except NoProcessError:
            return "{exit,noproc}"
        except StopTimeoutError:
            return "{exit,timeout}"
        except CallExitError as exc:
            return "{exit," + self.print(exc.reason) + "}"
        return "{ok,ok}"

    async def do_get_state(self, op: dict[str, Any]) -> str:
        target = self.pid(op["to"])
        try:
            state, data = await get_machine_state(target)
        except (CallNoProcError, CallExitError, CallTimeoutError) as exc:
            if isinstance(exc, CallNoProcError):
                reason: Any = Atom("noproc")
            elif isinstance(exc, CallTimeoutError):
                reason = Atom("timeout")
            else:
                reason = exc.reason
            mfa = (Atom("sys"), Atom("get_state"), EList([target]))
            return "{exit," + self.print((reason, mfa)) + "}"
        return "{ok," + self.print((state, data)) + "}"

    def do_flush(self) -> int:
        count = 0
        while True:
            try:
                message = receive_nowait()
            except WouldBlock:
                return count
            count += 1
            if isinstance(message, Down):
                self.log(
                    "down",
                    proc="driver",
                    ref=self.fmt(message.ref),
                    target=self.fmt(message.pid),
                    reason=self.print(message.reason),
                )
            else:
                self.log("msg", proc="driver", msg=self.print(message))

    async def client_body(self, name: str) -> None:
        """A ``p…`` client: makes the calls the driver hands it, one after another."""
        while True:
            command = await receive(Command)
            result = await self.do_call(command.op)
            self.log("reply", proc=name, i=command.i, result=result)


# ---------------------------------------------------------------- virtual clocks


class _IdleSelector(selectors.BaseSelector):
    """An asyncio selector that, instead of sleeping, wakes idle waiters or jumps the clock."""

    def __init__(self, loop: VirtualLoop) -> None:
        self._inner = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_map(self) -> Any:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._inner.select(0)
        if ready or timeout == 0:
            return ready
        loop = self._loop
        if loop.idle_waiters:
            waiters, loop.idle_waiters = loop.idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            return []
        if timeout is None:
            return self._inner.select(None)
        loop.now += timeout
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time that stands still while anything can run."""

    def __init__(self) -> None:
        self.now = 0.0
        self.idle_waiters: list[asyncio.Future[None]] = []
        super().__init__(_IdleSelector(self))

    def time(self) -> float:
        return self.now


async def wait_idle() -> None:
    """Return once every task of the loop is blocked (no timer is due meanwhile)."""
    loop = asyncio.get_running_loop() if _backend() == "asyncio" else None
    if isinstance(loop, VirtualLoop):
        waiter: asyncio.Future[None] = loop.create_future()
        loop.idle_waiters.append(waiter)
        await waiter
        return
    import trio.testing

    await trio.testing.wait_all_tasks_blocked()


def _backend() -> str:
    import sniffio

    return sniffio.current_async_library()


def _backend_options(backend: str) -> dict[str, Any]:
    if backend == "trio":
        import trio.testing

        return {"clock": trio.testing.MockClock(autojump_threshold=0)}
    return {"loop_factory": VirtualLoop}


def run_scenario(scenario: dict[str, Any], backend: str = "asyncio") -> list[dict[str, Any]]:
    """Run a parsed scenario on ``backend``; return the event log."""
    runner = Runner(scenario["script"], wait_idle)
    anyio.run(run_driver, runner, backend=backend, backend_options=_backend_options(backend))
    return runner.lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("scenario")
    args = parser.parse_args(argv)
    try:
        with open(args.scenario, encoding="utf-8") as f:
            scenario = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"statem_adapter: cannot read {args.scenario}: {exc}", file=sys.stderr)
        return 2
    runner = Runner(scenario["script"], wait_idle)
    status = 0
    try:
        anyio.run(
            run_driver,
            runner,
            backend=args.backend,
            backend_options=_backend_options(args.backend),
        )
    except Exception as exc:  # noqa: BLE001 - print what was logged, then fail
        print(f"statem_adapter failed: {exc!r}", file=sys.stderr)
        traceback.print_exc()
        status = 1
    for line in runner.lines:
        sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
