"""Process-conformance adapter: run a scenario of otp25/process/ on thunderline.

Usage::

    python tests/conformance/process_adapter.py [--backend asyncio|trio] SCENARIO.json

It implements the adapter contract of ``otp25/README.md`` and prints the
event log of ``otp25/process/FORMAT.md`` section 3 on stdout (diagnostics go to
stderr). Every scenario process is a real thunderline process and every ``s…``
server a real :class:`thunderline.runtime.Server`; the adapter only translates
ops into runtime calls and runtime values into Erlang term syntax. The
semantics (exit signals, links, monitors, names, gen_server behaviour) are the
runtime's own.

Settling (otp25/process/FORMAT.md section 4) waits until every task of the node is blocked
(``anyio.wait_all_tasks_blocked``) and no server is sleeping in a ``{sleep,Ms,X}``
request; servers sleep for real.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import anyio
from conformance_support import ExitLog as ExitLog  # distribution_adapter imports it from here
from conformance_support import run_driver

from thunderline.runtime import (
    IGNORE,
    KILL,
    KILLED,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    AlreadyStartedError,
    BadReturnError,
    CallExitError,
    CallingSelfError,
    CallNoProcError,
    CallTimeoutError,
    Crashed,
    Down,
    Exit,
    ForeignReferenceError,
    From,
    InitFailedError,
    Kill,
    Killed,
    NameNotRegisteredError,
    NoProc,
    NoProcessError,
    NoReply,
    Normal,
    Ok,
    Pid,
    ProcessExit,
    Ref,
    RegistrationError,
    Reply,
    Server,
    Shutdown,
    Stop,
    StopTimeoutError,
    WouldBlock,
    call,
    cast,
    current_pid,
    demonitor,
    exit,
    is_alive,
    link,
    monitor,
    process_info,
    receive,
    receive_nowait,
    register,
    reply,
    send,
    spawn,
    spawn_link,
    spawn_monitor,
    start,
    start_link,
    stop,
    trap_exit,
    unlink,
    unregister,
    whereis,
)

# ---------------------------------------------------------------------------
# Erlang terms: atoms, integers, tuples (Python tuples), lists (EList), strings
# (EList of character codes), improper lists.


class Atom:
    """An Erlang atom."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Atom) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("atom", self.name))

    def __repr__(self) -> str:
        return write_atom(self.name)


class EList(tuple[Any, ...]):
    """A proper Erlang list (a string is a list of character codes)."""

    def __repr__(self) -> str:
        return "EList(" + tuple.__repr__(self) + ")"


class Improper:
    """An improper list ``[H1,...,Hn|Tail]``."""

    def __init__(self, items: tuple[Any, ...], tail: Any) -> None:
        self.items = items
        self.tail = tail

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Improper) and (other.items, other.tail) == (self.items, self.tail)

    def __hash__(self) -> int:
        return hash((self.items, self.tail))


_RESERVED = frozenset(
    [
        "after",
        "and",
        "andalso",
        "band",
        "begin",
        "bnot",
        "bor",
        "bsl",
        "bsr",
        "bxor",
        "case",
        "catch",
        "cond",
        "div",
        "end",
        "fun",
        "if",
        "let",
        "not",
        "of",
        "or",
        "orelse",
        "receive",
        "rem",
        "try",
        "when",
        "xor",
        "maybe",
        "else",
    ]
)
_UNQUOTED = re.compile(r"^[a-z][A-Za-z0-9_@]*$")
_TOKEN = re.compile(
    r"\s*(?:(?P<int>-?\d+)|(?P<atom>[a-z][A-Za-z0-9_@]*)|'(?P<qatom>(?:[^'\\]|\\.)*)'"
    r'|"(?P<str>(?:[^"\\]|\\.)*)"|(?P<punct>[{}\[\],|]))'
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "s": " ", "e": "\x1b", "b": "\b", "f": "\f", "v": "\v"}


def write_atom(name: str) -> str:
    """``io_lib:write_atom``: quote unless a plain lower-case atom that is no keyword."""
    if _UNQUOTED.match(name) and name not in _RESERVED:
        return name
    out = []
    for ch in name:
        if ch in "'\\":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text)


def parse_term(text: str) -> Any:
    """Parse one Erlang term (``erl_parse:parse_term`` for the forms the corpus uses)."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip().removesuffix(".")
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise ValueError(f"cannot parse term {text!r} at {pos}")
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    index = 0

    def take() -> tuple[str, str]:
        nonlocal index
        if index >= len(tokens):
            raise ValueError(f"unexpected end of term {text!r}")
        index += 1
        return tokens[index - 1]

    def peek() -> str | None:
        return tokens[index][1] if index < len(tokens) and tokens[index][0] == "punct" else None

    def term() -> Any:
        kind, value = take()
        if kind == "int":
            return int(value)
        if kind == "atom":
            return Atom(value)
        if kind == "qatom":
            return Atom(_unescape(value))
        if kind == "str":
            return EList(ord(c) for c in _unescape(value))
        if value == "{":
            items = []
            if peek() == "}":
                take()
                return ()
            while True:
                items.append(term())
                _, sep = take()
                if sep == "}":
                    return tuple(items)
                if sep != ",":
                    raise ValueError(f"bad tuple in {text!r}")
        if value == "[":
            items = []
            if peek() == "]":
                take()
                return EList()
            while True:
                items.append(term())
                _, sep = take()
                if sep == "]":
                    return EList(items)
                if sep == "|":
                    tail = term()
                    if take()[1] != "]":
                        raise ValueError(f"bad list in {text!r}")
                    if isinstance(tail, EList):
                        return EList(items + list(tail))
                    return Improper(tuple(items), tail)
                if sep != ",":
                    raise ValueError(f"bad list in {text!r}")
        raise ValueError(f"unexpected {value!r} in {text!r}")

    result = term()
    if index != len(tokens):
        raise ValueError(f"trailing tokens in {text!r}")
    return result


def to_reason(term: Any) -> Any:
    """Map an exit-reason term onto the runtime's typed reasons."""
    if isinstance(term, Atom):
        return {
            "normal": NORMAL,
            "shutdown": SHUTDOWN,
            "kill": KILL,
            "killed": KILLED,
            "noproc": NOPROC,
        }.get(term.name, term)
    if isinstance(term, tuple) and len(term) == 2 and term[0] == Atom("shutdown"):
        return Shutdown(term[1])
    return term


class ErlangError(Exception):
    """``erlang:error(Term)`` raised by a scenario process."""

    def __init__(self, term: Any) -> None:
        super().__init__(term)
        self.term = term


class Throw(Exception):
    """``throw(Term)`` raised by a scenario process."""

    def __init__(self, term: Any) -> None:
        super().__init__(term)
        self.term = term


def _printable(codes: EList) -> bool:
    return bool(codes) and all(
        isinstance(c, int)
        and not isinstance(c, bool)
        and (32 <= c <= 126 or 160 <= c <= 255 or c in (8, 9, 10, 11, 12, 13, 27))
        for c in codes
    )


_STR_ESC = {8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 27: "\\e"}


class Printer:
    """Prints runtime values as Erlang terms, pids and refs by their scenario names."""

    def __init__(self) -> None:
        self.pids: dict[Pid, str] = {}
        self.refs: dict[Ref, str] = {}

    def __call__(self, value: Any) -> str:
        return "".join(self._parts(value))

    def _parts(self, v: Any) -> Iterator[str]:
        if isinstance(v, Atom):
            yield write_atom(v.name)
        elif isinstance(v, bool):
            yield "true" if v else "false"
        elif isinstance(v, int):
            yield str(v)
        elif v is None:
            yield "undefined"
        elif isinstance(v, EList):
            if _printable(v):
                yield '"'
                for c in v:
                    ch = chr(c)
                    yield _STR_ESC.get(c, "\\" + ch if ch in '"\\' else ch)
                yield '"'
            else:
                yield from self._seq("[", v, "]")
        elif isinstance(v, Improper):
            yield "["
            for n, item in enumerate(v.items):
                if n:
                    yield ","
                yield from self._parts(item)
            yield "|"
            yield from self._parts(v.tail)
            yield "]"
        elif isinstance(v, tuple):
            yield from self._seq("{", v, "}")
        elif isinstance(v, list):
            yield from self._seq("[", v, "]")
        elif isinstance(v, Pid):
            yield self.pids.get(v, "<?>")
        elif isinstance(v, Ref):
            yield self.refs.get(v, "#Ref")
        elif isinstance(v, str):  # a registered name standing for a monitored object
            yield "{" + write_atom(v) + ",nonode@nohost}"
        elif isinstance(v, Normal):
            yield "normal"
        elif isinstance(v, Shutdown):
            if v.detail is None:
                yield "shutdown"
            else:
                yield from self._seq("{", (Atom("shutdown"), v.detail), "}")
        elif isinstance(v, Kill):
            yield "kill"
        elif isinstance(v, Killed):
            yield "killed"
        elif isinstance(v, NoProc):
            yield "noproc"
        elif isinstance(v, Crashed):
            yield from self._parts(self._crash_term(v.exception))
        elif isinstance(v, Exit):
            yield from self._parts((Atom("EXIT"), v.pid, v.reason))
        elif isinstance(v, Down):
            yield from self._parts((Atom("DOWN"), v.ref, Atom("process"), v.pid, v.reason))
        else:
            yield write_atom(repr(v))

    def _seq(self, open_: str, items: Any, close: str) -> Iterator[str]:
        yield open_
        for n, item in enumerate(items):
            if n:
                yield ","
            yield from self._parts(item)
        yield close

    @staticmethod
    def _crash_term(exc: BaseException) -> Any:
        stack = Atom("$stack")
        if isinstance(exc, ErlangError):
            return (exc.term, stack)
        if isinstance(exc, Throw):
            return ((Atom("nocatch"), exc.term), stack)
        if isinstance(exc, BadReturnError):
            return (Atom("bad_return_value"), exc.value)
        return (Atom(type(exc).__name__), stack)


# ---------------------------------------------------------------------------
# The runner


_PROC_NAME = re.compile(r"^(?:[ps]\d+|driver)$")
_SLEEP = re.compile(r"^\{sleep,(\d+),")


class Skipped(Exception):
    """The op uses a dead actor or an unbound name or label."""


class OpRaised(Exception):
    """The op's expression raised ``{Class,Reason}`` (caught by the acting process)."""

    def __init__(self, cls: str, reason: Any) -> None:
        super().__init__(cls, reason)
        self.cls = cls
        self.reason = reason


class Command:
    """An op the driver hands to a scenario process (never logged, never recorded)."""

    __slots__ = ("done", "op", "result")

    def __init__(self, op: dict[str, Any]) -> None:
        self.op = op
        self.done = anyio.Event()
        self.result = "died"


class _Defer:
    """A server's private note to reply later (``{defer,X}``); not recorded."""

    __slots__ = ("from_", "value")

    def __init__(self, from_: From, value: Any) -> None:
        self.from_ = from_
        self.value = value


class Runner:
    """Runs one scenario; collects the event log in :attr:`lines`."""

    def __init__(self, script: list[dict[str, Any]]) -> None:
        self.script = script
        self.lines: list[dict[str, Any]] = []
        self.fmt = Printer()
        self.procs: dict[str, Pid] = {}  # bound scenario names
        self.order: list[str] = []  # creation order (without the driver)
        self.kinds: dict[str, str] = {}
        self.labels: dict[str, Ref] = {}
        self.recorded: dict[str, list[Any]] = {}  # a server's recorded messages
        self.pending: dict[Pid, Command] = {}
        self.sleepers = 0
        self.woke: anyio.Event | None = None
        self.driver: Pid | None = None
        self.finished = False  # the log ended: the node's shutdown is not logged

    # -- bookkeeping

    def log(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})

    def bind(self, name: str, pid: Pid, kind: str) -> None:
        self.procs[name] = pid
        self.fmt.pids[pid] = name
        self.kinds[name] = kind
        if kind != "driver":
            self.order.append(name)
        if kind == "s":
            self.recorded[name] = []

    def bind_ref(self, label: str, ref: Ref) -> None:
        self.labels[label] = ref
        self.fmt.refs[ref] = label

    def on_exit(self, pid: Pid, reason: Any) -> None:
        name = self.fmt.pids.get(pid)
        if name is not None and name != "driver" and not self.finished:
            self.log("exit", proc=name, reason=self.fmt(reason))
        command = self.pending.pop(pid, None)
        if command is not None:
            command.done.set()

    def name_of(self, pid: Pid) -> str:
        return self.fmt.pids[pid]

    # -- resolving names

    def pid(self, name: str) -> Pid:
        pid = self.procs.get(name)
        if pid is None:
            raise Skipped(name)
        return pid

    def dest(self, name: str) -> Pid | str:
        return self.pid(name) if _PROC_NAME.match(name) else name

    def dest_term(self, name: str) -> Any:
        return self.pid(name) if _PROC_NAME.match(name) else Atom(name)

    def ref(self, label: str) -> Ref:
        ref = self.labels.get(label)
        if ref is None:
            raise Skipped(label)
        return ref

    def check_bound(self, op: dict[str, Any]) -> None:
        """Raise Skipped if the op uses a name or label that is not bound."""
        for key in ("proc", "target", "to"):
            value = op.get(key)
            if isinstance(value, str) and _PROC_NAME.match(value):
                self.pid(value)
        if op["op"] == "demonitor":
            self.ref(op["ref"])

    # -- evaluating one op inside the acting process

    async def execute(self, op: dict[str, Any], actor: str) -> str:
        """Evaluate ``op`` in the calling process; return its result string.

        ``exit`` and ``raise`` ops (and exit signals that kill the caller)
        propagate: the process dies.
        """
        try:
            self.check_bound(op)
            value = await self.evaluate(op, actor)
        except Skipped:
            return "skipped"
        except OpRaised as raised:
            return "{" + raised.cls + "," + self.fmt(raised.reason) + "}"
        return "{ok," + self.fmt(value) + "}"

    async def evaluate(self, op: dict[str, Any], actor: str) -> Any:
        kind = op["op"]
        if kind == "spawn":
            return self.do_spawn(op)
        if kind == "start_server":
            return await self.do_start_server(op)
        if kind == "link":
            try:
                link(self.pid(op["target"]))
            except NoProcessError:
                raise OpRaised("error", Atom("noproc")) from None
            return True
        if kind == "unlink":
            unlink(self.pid(op["target"]))
            return True
        if kind == "monitor":
            ref = monitor(self.dest(op["target"]))
            self.bind_ref(op["ref"], ref)
            return ref
        if kind == "demonitor":
            try:
                return demonitor(
                    self.ref(op["ref"]), flush=op.get("flush", False), info=op.get("info", False)
                )
            except ForeignReferenceError:
                raise OpRaised("error", Atom("badarg")) from None
        if kind == "trap_exit":
            return trap_exit(bool(op["value"]))
        if kind == "exit":
            raise ProcessExit(to_reason(parse_term(op["reason"])))
        if kind == "raise":
            term = parse_term(op.get("reason", "oops"))
            if op.get("class", "error") == "throw":
                raise Throw(term)
            raise ErlangError(term)
        if kind == "signal":
            exit(self.pid(op["target"]), to_reason(parse_term(op["reason"])))
            return True
        if kind == "register":
            target = self.pid(op.get("target", actor))
            try:
                register(op["name"], target)
            except (RegistrationError, NoProcessError):
                raise OpRaised("error", Atom("badarg")) from None
            return True
        if kind == "unregister":
            try:
                unregister(op["name"])
            except NameNotRegisteredError:
                raise OpRaised("error", Atom("badarg")) from None
            return True
        if kind == "whereis":
            pid = whereis(op["name"])
            return pid if pid is not None else Atom("undefined")
        if kind == "send":
            return self.do_send(op)
        if kind == "call":
            return await self.do_call(op)
        if kind == "cast":
            cast(self.dest(op["to"]), parse_term(op["request"]))
            return Atom("ok")
        if kind == "stop":
            return await self.do_stop(op)
        if kind == "flush":
            return self.do_flush(actor)
        raise ValueError(f"unknown op {kind!r}")

    def do_spawn(self, op: dict[str, Any]) -> Any:
        name = op["name"]
        trap = bool(op.get("trap_exit", False))
        ref: Ref | None = None
        if op.get("link", False):
            pid = spawn_link(self.plain_body, name, trap_exit=trap)
            if op.get("monitor", False):
                ref = monitor(pid)  # no checkpoint since the spawn: still atomic
        elif op.get("monitor", False):
            pid, ref = spawn_monitor(self.plain_body, name, trap_exit=trap)
        else:
            pid = spawn(self.plain_body, name, trap_exit=trap)
        self.bind(name, pid, "p")
        if ref is None:
            return pid
        self.bind_ref(op["ref"], ref)
        return (pid, ref)

    async def do_start_server(self, op: dict[str, Any]) -> Any:
        server = ScenarioServer(
            self, op["name"], bool(op.get("trap_exit", False)), parse_term(op.get("init", "ok"))
        )
        starter = start_link if op.get("link", False) else start
        try:
            pid = await starter(server, name=op.get("register"))
        except AlreadyStartedError as exc:
            return (Atom("error"), (Atom("already_started"), exc.pid))
        except InitFailedError as exc:
            return (Atom("error"), exc.reason)
        if pid is None:
            return Atom("ignore")
        return (Atom("ok"), pid)

    def do_send(self, op: dict[str, Any]) -> Any:
        message = parse_term(op["msg"])
        to = op["to"]
        if op.get("node", False):
            # {Name, node()} ! Msg: looked up on arrival, silently lost if unregistered.
            pid = whereis(to)
            if pid is not None:
                send(pid, message)
            return message
        try:
            send(self.dest(to), message)
        except NameNotRegisteredError:
            raise OpRaised("error", Atom("badarg")) from None
        return message

    async def do_call(self, op: dict[str, Any]) -> Any:
        request = parse_term(op["request"])
        timeout_ms = op.get("timeout", 5000)
        timeout = None if timeout_ms == "infinity" else timeout_ms / 1000
        try:
            return await call(self.dest(op["to"]), request, timeout)
        except (CallTimeoutError, CallNoProcError, CallingSelfError, CallExitError) as exc:
            if isinstance(exc, CallTimeoutError):
                reason: Any = Atom("timeout")
            elif isinstance(exc, CallNoProcError):
                reason = NOPROC
            elif isinstance(exc, CallingSelfError):
                reason = Atom("calling_self")
            else:
                reason = exc.reason
            mfa = (
                Atom("gen_server"),
                Atom("call"),
                EList(
                    [
                        self.dest_term(op["to"]),
                        request,
                        Atom("infinity") if timeout is None else timeout_ms,
                    ]
                ),
            )
            raise OpRaised("exit", (reason, mfa)) from None

    async def do_stop(self, op: dict[str, Any]) -> Any:
        reason = to_reason(parse_term(op.get("reason", "normal")))
        timeout_ms = op.get("timeout", "infinity")
        timeout = None if timeout_ms == "infinity" else timeout_ms / 1000
        try:
            await stop(self.dest(op["to"]), reason, timeout)
        except NoProcessError:
            raise OpRaised("exit", NOPROC) from None
        except CallingSelfError:
            raise OpRaised("exit", Atom("calling_self")) from None
        except StopTimeoutError:
            raise OpRaised("exit", Atom("timeout")) from None
        except CallExitError as exc:
            raise OpRaised("exit", exc.reason) from None
        return Atom("ok")

    def do_flush(self, actor: str) -> int:
        if self.kinds.get(actor) == "s":
            messages = self.recorded[actor]
            self.recorded[actor] = []
        else:
            messages = []
            while True:
                try:
                    messages.append(receive_nowait())
                except WouldBlock:
                    break
        for message in messages:
            self.log_message(actor, message)
        return len(messages)

    def log_message(self, actor: str, message: Any) -> None:
        if isinstance(message, Down):
            self.log(
                "down",
                proc=actor,
                ref=self.fmt(message.ref),
                target=self.fmt(message.pid),
                reason=self.fmt(message.reason),
            )
        else:
            self.log("msg", proc=actor, msg=self.fmt(message))

    # -- the processes

    async def plain_body(self, name: str) -> None:
        """A ``p…`` process: runs commands; every other message stays queued."""
        armed: dict[str, Any] | None = None
        while True:
            message = await (receive() if armed is not None else receive(Command))
            if isinstance(message, Command):
                op = message.op
                if op["op"] == "react":
                    # The then-op counts as part of the react op (otp25/process/FORMAT.md 1): a
                    # name or label it uses that is unbound skips the whole react.
                    try:
                        self.check_bound(op["then"])
                    except Skipped:
                        result = "skipped"
                    else:
                        armed = op["then"]
                        result = "{ok,armed}"
                else:
                    if op["op"] == "flush":
                        armed = None
                    result = await self.execute(op, name)
                self.answer(message, result)
            else:
                assert armed is not None
                then, armed = armed, None
                result = await self.execute(then, name)
                self.log("reaction", proc=name, msg=self.fmt(message), result=result)

    def answer(self, command: Command, result: str) -> None:
        command.result = result
        self.pending.pop(current_pid(), None)
        command.done.set()

    async def run_command(self, actor: str, op: dict[str, Any]) -> str:
        """Have ``actor`` evaluate ``op``; wait for its answer or its death."""
        pid = self.procs[actor]
        if actor == "driver":
            return await self.execute(op, actor)
        if not is_alive(pid):
            return "skipped"
        command = Command(op)
        if self.kinds[actor] == "s":
            try:
                return str(await call(pid, command, None))
            except CallExitError:
                return "died"
        self.pending[pid] = command
        send(pid, command)
        await command.done.wait()
        return command.result

    # -- settling

    async def settle(self) -> None:
        """Wait until everything the op set off has happened (otp25/process/FORMAT.md section 4)."""
        while True:
            await anyio.wait_all_tasks_blocked()
            if self.sleepers == 0:
                return
            woke = self.woke = anyio.Event()
            await woke.wait()

    async def sleep(self, ms: int) -> None:
        self.sleepers += 1
        try:
            await anyio.sleep(ms / 1000)
        finally:
            self.sleepers -= 1
            if self.woke is not None:
                self.woke.set()

    # -- the driver

    async def driver_main(self) -> None:
        self.bind("driver", current_pid(), "driver")
        self.driver = current_pid()
        for i, op in enumerate([*self.script, {"op": "flush_all"}]):
            self.log("op", i=i, **op)
            if op["op"] == "flush_all":
                total = 0
                for name in [*self.order, "driver"]:
                    if name == "driver" or is_alive(self.procs[name]):
                        flushed = await self.run_command(name, {"op": "flush"})
                        total += int(flushed[4:-1])
                result = f"{{ok,{total}}}"
            else:
                actor = op.get("proc", "driver")
                if actor not in self.procs:
                    result = "skipped"
                else:
                    result = await self.run_command(actor, op)
            await self.settle()
            self.log("result", i=i, result=result)
            self.snapshot()
        self.log("end")
        self.finished = True

    def snapshot(self) -> None:
        alive = [n for n in self.order if is_alive(self.procs[n])]
        self.log("alive", procs=alive)
        rank = {name: n for n, name in enumerate(["driver", *self.order])}
        links: dict[str, list[str]] = {}
        monitors: dict[str, list[str]] = {}
        trap: list[str] = []
        names: dict[str, str] = {}
        queues: dict[str, int] = {}
        for name in ["driver", *alive]:
            info = process_info(self.procs[name])
            if info is None:
                continue
            if name != "driver":
                if info.links:
                    partners = sorted(info.links, key=lambda p: rank.get(self.fmt(p), 1 << 30))
                    links[name] = [self.fmt(p) for p in partners]
                if info.monitors:
                    pids = [m for m in info.monitors if isinstance(m, Pid)]
                    by_name = sorted(m for m in info.monitors if isinstance(m, str))
                    pids.sort(key=lambda p: rank.get(self.fmt(p), 1 << 30))
                    monitors[name] = [self.fmt(m) for m in [*pids, *by_name]]
                if info.trap_exit:
                    trap.append(name)
                if info.registered_name is not None:
                    names[info.registered_name] = name
            count = len(self.recorded[name]) if self.kinds[name] == "s" else info.message_queue_len
            if count:
                queues[name] = count
        self.log("state", links=links, monitors=monitors, trap=trap, names=names, queues=queues)


class ScenarioServer(Server[None]):
    """An ``s…`` server (otp25/process/FORMAT.md section 2, "Servers")."""

    def __init__(self, runner: Runner, name: str, trap: bool, init: Any) -> None:
        self.runner = runner
        self.name = name
        self.trap = trap
        self.init_term = init

    async def init(self, *args: Any) -> Any:
        self.runner.bind(self.name, current_pid(), "s")
        trap_exit(self.trap)
        term = self.init_term
        if term == Atom("ok"):
            return Ok(None)
        if term == Atom("ignore"):
            return IGNORE
        if isinstance(term, tuple) and len(term) == 2:
            tag, arg = term
            if tag == Atom("stop"):
                return Stop(to_reason(arg))
            if tag == Atom("crash"):
                raise ProcessExit(to_reason(arg))
            if tag == Atom("raise"):
                raise ErlangError(arg)
        raise ValueError(f"bad init term {term!r}")

    async def handle_call(self, request: Any, from_: From, state: None) -> Any:
        if isinstance(request, Command):
            try:
                return Reply(await self.runner.execute(request.op, self.name), state)
            except Throw as thrown:
                return thrown.term  # a throw is taken as the callback's return value
        return await self._request(request, state, from_)

    async def handle_cast(self, request: Any, state: None) -> Any:
        self.runner.recorded[self.name].append((Atom("$gen_cast"), request))
        return await self._request(request, state, None)

    async def handle_info(self, message: Any, state: None) -> Any:
        if isinstance(message, _Defer):
            reply(message.from_, message.value)
        else:
            self.runner.recorded[self.name].append(message)
        return NoReply(state)

    async def _request(self, request: Any, state: None, from_: From | None) -> Any:
        tag = request[0] if isinstance(request, tuple) and request else request
        if tag == Atom("reply"):
            return Reply(request[1], state) if from_ is not None else NoReply(state)
        if tag == Atom("defer"):
            if from_ is not None:
                send(current_pid(), _Defer(from_, request[1]))
            return NoReply(state)
        if tag == Atom("sleep"):
            await self.runner.sleep(request[1])
            return Reply(request[2], state) if from_ is not None else NoReply(state)
        if tag == Atom("crash"):
            raise ProcessExit(to_reason(request[1]))
        if tag == Atom("raise"):
            raise ErlangError(request[1])
        if tag == Atom("stop"):
            if len(request) == 3 and from_ is not None:
                return Stop(to_reason(request[1]), state, reply=request[2])
            return Stop(to_reason(request[1]), state)
        if tag == Atom("noreply"):
            return NoReply(state)
        raise ValueError(f"bad request {request!r}")

    async def terminate(self, reason: Any, state: None) -> None:
        if not self.runner.finished:
            self.runner.log("terminate", proc=self.name, reason=self.runner.fmt(reason))


# ---------------------------------------------------------------------------
# Entry points


def run_scenario(scenario: dict[str, Any], backend: str = "asyncio") -> list[dict[str, Any]]:
    """Run a parsed scenario on ``backend``; return the event log (a list of dicts)."""
    runner = Runner(scenario["script"])
    anyio.run(run_driver, runner, backend=backend)
    return runner.lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("scenario")
    args = parser.parse_args(argv)
    with open(args.scenario, encoding="utf-8") as f:
        scenario = json.load(f)
    runner = Runner(scenario["script"])
    status = 0
    try:
        anyio.run(run_driver, runner, backend=args.backend)
    except Exception as exc:  # noqa: BLE001 - print what was logged, then fail
        print(f"adapter failed: {exc!r}", file=sys.stderr)
        traceback.print_exc()
        status = 1
    out: Callable[[str], Any] = sys.stdout.write
    for line in runner.lines:
        out(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
