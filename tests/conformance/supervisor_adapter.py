"""Supervisor-conformance adapter: run a scenario of otp25/supervisor/.

Usage::

    python tests/conformance/supervisor_adapter.py [--backend asyncio|trio] SCENARIO.json

It implements the adapter contract of ``otp25/README.md`` and prints the
event log of ``otp25/supervisor/FORMAT.md`` section 2 on stdout (diagnostics go to
stderr). The supervisor is the real :class:`thunderline.runtime.Supervisor`,
every child a real thunderline process linked to it, every crash a real exit
(the child raises ``ProcessExit(reason)``; ``kill`` is a real ``exit(pid, KILL)``
from the driver), every shutdown the supervisor's own exit signals. The adapter
only translates ops into runtime calls and runtime values into Erlang term
syntax; it decides nothing the supervisor decides.

Where the events come from:

* ``start`` / ``start_ignored`` / ``start_error``: the children's start function,
  when it returns.
* ``exit`` and ``supervisor_exit``: the node's :class:`Instrument`
  (``process_exited``), synchronously in the dying process's task.
* ``shutdown_signal``: a trapping child, when it takes the ``Exit`` message.
* ``report``: a logging handler on ``thunderline.supervisor`` (the supervisor's
  structured report records).

Settling after an op: the driver calls the supervisor (the call is served after
everything queued before it) and waits until every task is blocked
(``anyio.wait_all_tasks_blocked``); it repeats while the supervisor still has
queued messages (a ``try_again_restart`` it sent itself).

Logical time (otp25/supervisor/FORMAT.md section 3): the supervisor reads time only from
``anyio.current_time()``. The adapter runs the event loop on a clock it can move
forward: on trio a custom ``trio.abc.Clock``, on asyncio an event loop whose
``time()`` adds an offset. A long sleep moves the offset forward by its length,
instantly; a short sleep really sleeps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import attrs

from thunderline.runtime import (
    BRUTAL_KILL,
    INFINITY,
    KILL,
    KILLED,
    NORMAL,
    SHUTDOWN,
    CallError,
    ChildAlreadyPresentError,
    ChildAlreadyStartedError,
    ChildNotFoundError,
    ChildRestartingError,
    ChildRunningError,
    ChildSpec,
    ChildSpecError,
    ChildStartError,
    Crashed,
    Down,
    Exit,
    FailedToStartChild,
    InitFailedError,
    Kill,
    Killed,
    NoProc,
    Normal,
    Pid,
    ProcessExit,
    Shutdown,
    delete_child,
    exit,
    is_alive,
    monitor,
    process_info,
    receive,
    restart_child,
    run,
    send,
    spawn_link,
    start_child,
    start_supervisor,
    terminate_child,
    trap_exit,
    which_children,
)

# ------------------------------------------------------------ Erlang terms


_ATOM = re.compile(r"[a-z][A-Za-z0-9_@]*\Z")
_TOKEN = re.compile(r"\s*(?:([{}\[\],])|(-?\d+)|([a-z][A-Za-z0-9_@]*)|'((?:[^'\\]|\\.)*)')")


def parse_term(text: str) -> Any:
    """Parse an Erlang term: atoms become str, tuples tuple, lists list, integers int."""
    pos = 0

    def token() -> tuple[str, Any]:
        nonlocal pos
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"cannot parse Erlang term {text!r} at {pos}")
        pos = match.end()
        punct, number, atom, quoted = match.groups()
        if punct is not None:
            return "punct", punct
        if number is not None:
            return "value", int(number)
        if atom is not None:
            return "value", atom
        return "value", re.sub(r"\\(.)", r"\1", quoted)

    def term(first: tuple[str, Any] | None = None) -> Any:
        kind, value = first or token()
        if kind == "value":
            return value
        if value in "{[":
            close = "}" if value == "{" else "]"
            items: list[Any] = []
            nxt = token()
            if nxt != ("punct", close):
                items.append(term(nxt))
                while (sep := token()) != ("punct", close):
                    if sep != ("punct", ","):
                        raise ValueError(f"bad Erlang term {text!r}")
                    items.append(term())
            return tuple(items) if close == "}" else items
        raise ValueError(f"bad Erlang term {text!r}")

    result = term()
    if text[pos:].strip():
        raise ValueError(f"trailing text in Erlang term {text!r}")
    return result


def to_reason(term: Any) -> Any:
    """An Erlang exit reason as the runtime's reason value."""
    if term == "normal":
        return NORMAL
    if term == "shutdown":
        return SHUTDOWN
    if term == "killed":
        return KILLED
    if term == "kill":
        return KILL
    if isinstance(term, tuple) and len(term) == 2 and term[0] == "shutdown":
        return Shutdown(term[1])
    return term


def write_atom(name: str) -> str:
    if _ATOM.match(name):
        return name
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


@attrs.frozen
class SpecRef:
    """The supervisor's child record in a ``start_child`` error (printed ``<spec:ID>``)."""

    id: str


class Formatter:
    """Runtime values in Erlang term syntax, pids as ``<ID#INCARNATION>``."""

    def __init__(self) -> None:
        self.pids: dict[Pid, str] = {}

    def __call__(self, value: Any) -> str:
        fmt = self
        if value is None:
            return "undefined"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            return write_atom(value)
        if isinstance(value, Normal):
            return "normal"
        if isinstance(value, Shutdown):
            return "shutdown" if value.detail is None else f"{{shutdown,{fmt(value.detail)}}}"
        if isinstance(value, Killed):
            return "killed"
        if isinstance(value, Kill):
            return "kill"
        if isinstance(value, NoProc):
            return "noproc"
        if isinstance(value, Pid):
            return self.pids.get(value, f"<unknown{value!r}>")
        if isinstance(value, SpecRef):
            return f"<spec:{value.id}>"
        if isinstance(value, FailedToStartChild):
            return f"{{failed_to_start_child,{fmt(value.id)},{fmt(value.reason)}}}"
        if isinstance(value, tuple):
            return "{" + ",".join(fmt(v) for v in value) + "}"
        if isinstance(value, list):
            return "[" + ",".join(fmt(v) for v in value) + "]"
        if isinstance(value, Crashed):
            return f"{{crashed,{write_atom(repr(value.exception))}}}"
        return write_atom(repr(value))


# ------------------------------------------------------------ the scenario


DEFAULTS: dict[str, Any] = {
    "restart": "permanent",
    "shutdown": 5000,
    "init": "ok",
    "trap_exit": False,
    "on_shutdown": "propagate",
}


def child_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    full = {**DEFAULTS, **spec}
    if isinstance(full["init"], str):
        full["init"] = [full["init"]]
    return full


def shutdown_value(value: Any) -> Any:
    if value == "brutal_kill":
        return BRUTAL_KILL
    if value == "infinity":
        return INFINITY
    return value / 1000


@attrs.frozen
class Crash:
    """Driver to child: exit with ``reason`` (the child calls ``exit(Reason)`` itself)."""

    reason: Any


class Events:
    """The event log, with the run's term formatter."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.fmt = Formatter()
        self.children: dict[Pid, tuple[str, int]] = {}
        self.supervisor: Pid | None = None

    def emit(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})


class ExitObserver:
    """The node's instrument: logs ``exit`` / ``supervisor_exit`` as a process dies."""

    def __init__(self, events: Events) -> None:
        self.events = events

    # The other hooks do nothing (written loosely: only process_exited matters here).
    def process_started(self, *args: Any) -> None:
        pass

    def capture(self, *args: Any) -> Any:
        return None

    def message_received(self, *args: Any) -> Any:
        return None

    def message_done(self, *args: Any) -> None:
        pass

    def child_restarted(self, *args: Any) -> None:
        pass

    def process_exited(self, pid: Pid, reason: Any) -> None:
        events = self.events
        if pid in events.children:
            child, incarnation = events.children[pid]
            events.emit("exit", child=child, incarnation=incarnation, reason=events.fmt(reason))
        elif pid == events.supervisor:
            events.emit("supervisor_exit", reason=events.fmt(reason))


class ReportHandler(logging.Handler):
    """Turns the supervisor's report records into ``report`` events."""

    def __init__(self, events: Events) -> None:
        super().__init__(logging.DEBUG)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "thunderline_report", None) != "supervisor_report":
            return
        fields = record.__dict__
        self.events.emit(
            "report",
            context=fields["context"],
            child=self.events.fmt(fields["child_id"]),
            reason=self.events.fmt(fields["reason"]),
        )


def spec_error_term(error: ChildSpecError) -> str:
    """OTP's check_childspec error term for the spec errors a scenario can cause."""
    if error.field == "significant" and "auto_shutdown=never" in str(error.received):
        return "{bad_combination,[{auto_shutdown,never},{significant,true}]}"
    if error.field == "significant" and "restart=permanent" in str(error.received):
        return "{bad_combination,[{restart,permanent},{significant,true}]}"
    if error.field == "id" and "unique" in error.accepted:
        return f"{{duplicate_child_name,{error.received}}}"
    raise error


class TestChild:
    """One scenario child spec: its start function and the process it starts."""

    def __init__(self, spec: dict[str, Any], events: Events, counters: dict[str, int]) -> None:
        self.spec = child_defaults(spec)
        self.events = events
        self.counters = counters
        self.attempts = 0

    def child_spec(self) -> ChildSpec:
        spec = self.spec
        extra: dict[str, Any] = {}
        if "significant" in spec:
            extra["significant"] = spec["significant"]
        return ChildSpec(
            id=spec["id"],
            start=self.start,
            restart=spec["restart"],
            shutdown=shutdown_value(spec["shutdown"]),
            **extra,
        )

    async def start(self) -> Pid | None:
        spec = self.spec
        child = spec["id"]
        plan = spec["init"]
        self.attempts += 1
        action = plan[min(self.attempts, len(plan)) - 1]
        self.counters[child] = incarnation = self.counters.get(child, 0) + 1
        if action == "ignore":
            self.events.emit("start_ignored", child=child, incarnation=incarnation)
            return None
        if action == "error":
            self.events.emit("start_error", child=child, incarnation=incarnation)
            raise InitFailedError(f"child {child}", "init_error")
        pid = spawn_link(self.body, child, incarnation, trap_exit=spec["trap_exit"])
        self.events.children[pid] = (child, incarnation)
        self.events.fmt.pids[pid] = f"<{child}#{incarnation}>"
        self.events.emit("start", child=child, incarnation=incarnation)
        return pid

    async def body(self, child: str, incarnation: int) -> None:
        on_shutdown = self.spec["on_shutdown"]
        while True:
            message = await receive()
            if type(message) is Crash:
                raise ProcessExit(message.reason)
            if type(message) is Exit:
                reason = self.events.fmt(message.reason)
                self.events.emit(
                    "shutdown_signal", child=child, incarnation=incarnation, reason=reason
                )
                if on_shutdown == "hang":
                    continue
                if on_shutdown == "propagate":
                    raise ProcessExit(message.reason)
                raise ProcessExit(to_reason(parse_term(on_shutdown)))


# ------------------------------------------------------------ the driver


class Driver:
    """Runs the script as the supervisor's parent process (it traps exits)."""

    def __init__(self, scenario: dict[str, Any], clock: Clock) -> None:
        self.scenario = scenario
        self.clock = clock
        self.events = Events()
        self.counters: dict[str, int] = {}
        self.sup: Pid | None = None

    async def main(self) -> None:
        trap_exit(True)
        scenario = self.scenario
        emit = self.events.emit
        fmt = self.events.fmt
        children = [TestChild(c, self.events, self.counters) for c in scenario.get("children", [])]
        try:
            sup = await start_supervisor(
                [c.child_spec() for c in children],
                strategy=scenario.get("strategy", "one_for_one"),
                intensity=scenario.get("intensity", 1),
                period=scenario.get("period", 5),
                auto_shutdown=scenario.get("auto_shutdown", "never"),
            )
        except InitFailedError as failed:
            emit("supervisor_start", result=f"{{error,{fmt(failed.reason)}}}")
            emit("end")
            return
        except ChildSpecError as invalid:
            # supervisor:init/1 checks the specs first: {error,{start_spec,What}}
            emit("supervisor_start", result=f"{{error,{{start_spec,{spec_error_term(invalid)}}}}}")
            emit("end")
            return
        self.sup = self.events.supervisor = sup
        emit("supervisor_start", result="ok")
        script = list(scenario.get("script", []))
        for index, op in enumerate(script):
            if not await self.step(index, op):
                break
        else:
            await self.step(len(script), {"op": "stop_supervisor"})
        emit("end")

    async def step(self, index: int, op: dict[str, Any]) -> bool:
        """Run one op; returns whether the supervisor is still alive afterwards."""
        sup = self.sup
        assert sup is not None
        name = op["op"]
        header: dict[str, Any] = {"i": index, "op": name}
        if name in ("crash", "terminate_child", "restart_child", "delete_child"):
            header["child"] = op["child"]
        if name == "start_child":
            header["child"] = op["spec"]["id"]
        if name == "crash":
            header["reason"] = op.get("reason", "boom")
        if name == "sleep":
            header["ms"] = op["ms"]
        self.events.emit("op", **header)
        result = await getattr(self, f"op_{name}")(op)
        await self.settle()
        self.events.emit("result", i=index, result=result)
        if not is_alive(sup):
            return False
        rows = await which_children(sup)
        listing = [
            {
                "id": row.id,
                "pid": "restarting" if row.restarting else self.events.fmt(row.pid),
            }
            for row in rows
        ]
        self.events.emit("children", children=listing)
        return True

    async def settle(self) -> None:
        """Wait until the supervisor has handled everything the op caused."""
        sup = self.sup
        assert sup is not None
        while True:
            if not is_alive(sup):
                return
            try:
                await which_children(sup)
            except CallError:
                return
            await anyio.wait_all_tasks_blocked()
            info = process_info(sup)
            if info is None or info.message_queue_len == 0:
                return

    # ------------------------------------------------------------ ops

    async def op_crash(self, op: dict[str, Any]) -> str:
        sup = self.sup
        assert sup is not None
        row = next((r for r in await which_children(sup) if r.id == op["child"]), None)
        if row is None:
            return "{error,not_found}"
        if row.pid is None:
            return "{error,not_running}"
        pid = row.pid
        ref = monitor(pid)
        text = op.get("reason", "boom")
        if text == "kill":
            exit(pid, KILL)
        else:
            send(pid, Crash(to_reason(parse_term(text))))
        # The child's Down comes after its Exit reached the supervisor (links first).
        await receive(lambda m: type(m) is Down and m.ref == ref)
        return "ok"

    async def op_terminate_child(self, op: dict[str, Any]) -> str:
        assert self.sup is not None
        try:
            await terminate_child(self.sup, op["child"])
        except ChildNotFoundError:
            return "{error,not_found}"
        return "ok"

    async def op_restart_child(self, op: dict[str, Any]) -> str:
        assert self.sup is not None
        try:
            pid = await restart_child(self.sup, op["child"])
        except ChildStartError as failed:
            return f"{{error,{self.events.fmt(failed.reason)}}}"
        except (ChildNotFoundError, ChildRunningError, ChildRestartingError) as error:
            return self.api_error(error)
        return f"{{ok,{self.events.fmt(pid)}}}"

    async def op_delete_child(self, op: dict[str, Any]) -> str:
        assert self.sup is not None
        try:
            await delete_child(self.sup, op["child"])
        except (ChildNotFoundError, ChildRunningError, ChildRestartingError) as error:
            return self.api_error(error)
        return "ok"

    async def op_start_child(self, op: dict[str, Any]) -> str:
        assert self.sup is not None
        child = TestChild(op["spec"], self.events, self.counters)
        fmt = self.events.fmt
        try:
            pid = await start_child(self.sup, child.child_spec())
        except ChildSpecError as invalid:
            # check_childspec runs before the id is looked up: {error,What}
            return f"{{error,{spec_error_term(invalid)}}}"
        except ChildAlreadyStartedError as error:
            return f"{{error,{{already_started,{fmt(error.pid)}}}}}"
        except ChildAlreadyPresentError:
            return "{error,already_present}"
        except ChildStartError as failed:
            return f"{{error,{{{fmt(failed.reason)},{fmt(SpecRef(op['spec']['id']))}}}}}"
        return f"{{ok,{fmt(pid)}}}"

    async def op_sleep(self, op: dict[str, Any]) -> str:
        ms = op["ms"]
        period = self.scenario.get("period", 5)
        if ms <= 200:
            await anyio.sleep(ms / 1000)
        elif ms >= (period + 1) * 1000 + 200:
            self.clock.advance(ms / 1000)
            await anyio.sleep(0)
        else:
            raise ValueError(f"sleep of {ms} ms is neither short nor long (FORMAT.md section 3)")
        return "ok"

    async def op_stop_supervisor(self, op: dict[str, Any]) -> str:
        sup = self.sup
        assert sup is not None
        ref = monitor(sup)
        exit(sup, SHUTDOWN)
        await receive(lambda m: type(m) is Down and m.ref == ref)
        return "ok"

    @staticmethod
    def api_error(error: Exception) -> str:
        kinds: list[tuple[type[Exception], str]] = [
            (ChildNotFoundError, "not_found"),
            (ChildRunningError, "running"),
            (ChildRestartingError, "restarting"),
        ]
        for kind, atom in kinds:
            if isinstance(error, kind):
                return f"{{error,{atom}}}"
        raise error


# ------------------------------------------------------------ clocks


class Clock:
    """The event loop's clock: real monotonic time plus an offset that long sleeps move forward.

    Segments (otp25/supervisor/FORMAT.md section 3) start on a whole second, so a segment that
    really lasts less than ``period`` seconds has all its restart stamps within
    ``period`` of each other, as logical time says.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def start(self, real_now: float) -> None:
        self.offset = 1000.0 - real_now

    def advance(self, seconds: float) -> None:
        """Jump forward by at least ``seconds``, to the next whole second."""
        now = anyio.current_time()
        self.offset += math.ceil(now + seconds) - now


def _trio_clock(clock: Clock) -> Any:
    import trio

    # anyio's wait_all_tasks_blocked on trio imports trio.testing (and pytest
    # with it) on first use: up to a second of real time inside the first
    # segment, which would age its restarts. Import it before the clock starts.
    import trio.testing

    class OffsetClock(trio.abc.Clock):
        """trio's clock: real monotonic time plus the adapter's offset."""

        def start_clock(self) -> None:
            clock.start(time.perf_counter())

        def current_time(self) -> float:
            return time.perf_counter() + clock.offset

        def deadline_to_sleep_time(self, deadline: float) -> float:
            return deadline - self.current_time()

    return OffsetClock()


def _asyncio_loop_factory(clock: Clock) -> Callable[[], asyncio.AbstractEventLoop]:
    class OffsetLoop(asyncio.SelectorEventLoop):
        """asyncio's loop: its ``time()`` (all scheduling) plus the adapter's offset."""

        def __init__(self) -> None:
            super().__init__()
            clock.start(super().time())

        def time(self) -> float:
            return float(super().time()) + clock.offset

    return OffsetLoop


def run_scenario(scenario: dict[str, Any], backend: str = "asyncio") -> list[dict[str, Any]]:
    """Run one scenario on ``backend`` and return its event log."""
    clock = Clock()
    driver = Driver(scenario, clock)
    handler = ReportHandler(driver.events)
    supervisor_logger = logging.getLogger("thunderline.supervisor")
    supervisor_logger.addHandler(handler)
    level = supervisor_logger.level
    supervisor_logger.setLevel(logging.DEBUG)  # quiet reports are INFO records
    options: dict[str, Any] = (
        {"clock": _trio_clock(clock)}
        if backend == "trio"
        else {"loop_factory": _asyncio_loop_factory(clock)}
    )
    try:
        run(
            driver.main,
            backend=backend,
            instrument=ExitObserver(driver.events),
            backend_options=options,
        )
    finally:
        supervisor_logger.removeHandler(handler)
        supervisor_logger.setLevel(level)
    return driver.events.lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args(argv)
    scenario = json.loads(args.scenario.read_text())
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    for line in run_scenario(scenario, args.backend):
        sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
