"""StateMachine (gen_statem) from a user's side, on both backends.

The recorded OTP corpus (tests/conformance) pins the engine's rules down; these
tests cover the Python surface: results and actions as objects, both callback
modes, errors and their reasons, calls and casts through the Server API,
tracing, system requests and bad input.
"""

from __future__ import annotations

import contextvars
import math
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thunderline.runtime as tl
from process_helpers import BOUND, drain, in_process, wait_down

pytestmark = pytest.mark.anyio


class Switch(tl.StateMachine[str, int]):
    """off/on, counting flips; ``handle_event_function`` with enter calls."""

    state_enter = True

    def __init__(self) -> None:
        self.log: list[Any] = []

    async def init(self, start: str = "off") -> Any:
        return tl.InitialState(start, 0)

    async def handle_event(self, event_type: Any, content: Any, state: str, data: int) -> Any:
        self.log.append((event_type if isinstance(event_type, str) else "call", content, state))
        match event_type, content:
            case "enter", _:
                return tl.KEEP_STATE_AND_DATA
            case "cast", "flip":
                return tl.NextState("on" if state == "off" else "off", data + 1)
            case tl.Call(from_), "get":
                return tl.KeepStateAndData([tl.ReplyTo(from_, (state, data))])
            case tl.Call(from_), "later":
                return tl.KeepStateAndData([tl.EventTimeout(0, from_)])
            case "timeout", tl.From() as from_:
                return tl.KeepStateAndData(tl.ReplyTo(from_, "timed out"))
            case tl.Call(from_), "stop":
                return tl.StopAndReply(tl.NORMAL, [tl.ReplyTo(from_, "bye")], data + 100)
            case tl.Call(_), "garbage":
                return "not a result"
            case tl.Call(_), "boom":
                raise ValueError("boom")
        return tl.KEEP_STATE_AND_DATA

    async def terminate(self, reason: Any, state: str, data: int) -> None:
        self.log.append(("terminate", reason, state, data))


async def test_calls_casts_enter_calls_and_stop_and_reply(anyio_backend: str) -> None:
    machine = Switch()

    async def main() -> list[Any]:
        pid = await tl.start_machine_link(machine)
        assert pid is not None
        tl.cast(pid, "flip")
        got = [await tl.call(pid, "get"), await tl.call(pid, "later")]
        got.append(await tl.get_machine_state(pid))
        ref = tl.monitor(pid)
        got.append(await tl.call(pid, "stop"))
        got.append((await wait_down(ref)).reason)
        return got

    async with tl.open_node():
        got = await in_process(main)
    assert got == [("on", 1), "timed out", ("on", 1), "bye", tl.NORMAL]
    assert machine.log[0] == ("enter", "off", "off")  # the first enter call: old state = initial
    assert ("enter", "off", "on") in machine.log
    assert machine.log[-1] == ("terminate", tl.NORMAL, "on", 101)


@pytest.mark.parametrize(
    ("request_", "error"), [("garbage", tl.BadStateResultError), ("boom", ValueError)]
)
async def test_a_crash_reaches_terminate_bare_and_the_caller_as_crashed(
    anyio_backend: str, request_: str, error: type[Exception]
) -> None:
    machine = Switch()

    async def main() -> Any:
        pid = await tl.start_machine(machine)
        assert pid is not None
        with pytest.raises(tl.CallExitError) as info:
            await tl.call(pid, request_, timeout=BOUND)
        return info.value.reason

    async with tl.open_node():
        reason = await in_process(main)
    assert isinstance(reason, tl.Crashed)
    assert isinstance(reason.exception, error)
    terminate = machine.log[-1]
    assert terminate[0] == "terminate"
    assert terminate[1] is reason.exception  # gen_statem: terminate gets the bare error


class Door(tl.StateMachine[str, str]):
    """state_functions: a method per state; postpone and a state timeout."""

    callback_mode = "state_functions"

    async def init(self, code: str) -> Any:
        return tl.InitialState("locked", code)

    async def locked(self, event_type: Any, content: Any, code: str) -> Any:
        match event_type, content:
            case tl.Call(from_), ("unlock", guess):
                if guess == code:
                    return tl.NextState("open", code, [tl.ReplyTo(from_, "ok"), tl.StateTimeout(0)])
                return tl.KeepStateAndData([tl.ReplyTo(from_, "wrong")])
            case tl.Call(from_), "status":
                return tl.KeepStateAndData([tl.ReplyTo(from_, "locked")])
            case "info", "elsewhere":
                return tl.NextState("nowhere", code)
        return tl.KEEP_STATE_AND_DATA

    async def open(self, event_type: Any, content: Any, code: str) -> Any:
        if event_type == "state_timeout":
            return tl.NextState("locked", code)
        return tl.KeepStateAndData([tl.POSTPONE])


async def test_state_functions_postpone_and_unknown_state(anyio_backend: str) -> None:
    async def main() -> list[Any]:
        pid = await tl.start_machine(Door, "42")
        assert pid is not None
        got = [await tl.call(pid, ("unlock", "1")), await tl.call(pid, ("unlock", "42"))]
        got.append(await tl.call(pid, "status"))  # zero state timeout: locked again first
        ref = tl.monitor(pid)
        tl.send(pid, "elsewhere")
        tl.send(pid, "anything")
        got.append((await wait_down(ref)).reason)
        return got

    async with tl.open_node():
        wrong, ok, status, reason = await in_process(main)
    assert (wrong, ok, status) == ("wrong", "ok", "locked")
    assert isinstance(reason, tl.Crashed)
    assert isinstance(reason.exception, tl.UnknownStateError)
    assert reason.exception.state == "nowhere"


class Enterer(tl.StateMachine[str, None]):
    state_enter = True

    def __init__(self, enter_result: Any) -> None:
        self.enter_result = enter_result
        self.reasons: list[Any] = []

    async def init(self) -> Any:
        return tl.InitialState("a", None)

    async def handle_event(self, event_type: Any, content: Any, state: str, data: None) -> Any:
        if event_type == "enter":
            return tl.KEEP_STATE_AND_DATA if state == "a" else self.enter_result
        return tl.NextState("b", None)

    async def terminate(self, reason: Any, state: str, data: None) -> None:
        self.reasons.append((reason, state))


@pytest.mark.parametrize(
    ("enter_result", "error"),
    [
        (tl.NextState("a", None), tl.BadEnterResultError),
        (tl.KeepStateAndData([tl.POSTPONE]), tl.BadEnterActionError),
        (tl.KeepStateAndData([tl.NextEvent("internal", 1)]), tl.BadEnterActionError),
        (tl.KeepStateAndData(["no action"]), tl.BadActionError),
        (tl.KeepStateAndData([tl.StateTimeout(-1)]), tl.BadActionError),
    ],
)
async def test_what_an_enter_call_may_not_do(
    anyio_backend: str, enter_result: Any, error: type[Exception]
) -> None:
    machine = Enterer(enter_result)

    async def main() -> Any:
        pid = await tl.start_machine(machine)
        assert pid is not None
        ref = tl.monitor(pid)
        tl.cast(pid, "go")
        return (await wait_down(ref)).reason

    async with tl.open_node():
        reason = await in_process(main)
    assert isinstance(reason, tl.Crashed)
    assert isinstance(reason.exception, error)
    assert machine.reasons == [(reason.exception, "b")]


class Starter(tl.StateMachine[str, None]):
    async def init(self, how: str) -> Any:
        if how == "ignore":
            return tl.IGNORE
        if how == "stop":
            return tl.StopMachine("no")
        if how == "raise":
            raise KeyError("init")
        return ("not", "a", "result")


@pytest.mark.parametrize("how", ["ignore", "stop", "raise", "bad"])
async def test_init_results(anyio_backend: str, how: str) -> None:
    async def main() -> Any:
        try:
            return await tl.start_machine(Starter, how)
        except tl.InitFailedError as exc:
            return exc.reason

    async with tl.open_node():
        result = await in_process(main)
    if how == "ignore":
        assert result is None
    elif how == "stop":
        assert result == "no"
    elif how == "raise":
        assert isinstance(result, KeyError)
    else:
        assert isinstance(result, tl.BadInitResultError)
        assert result.value == ("not", "a", "result")


async def test_bad_machine_classes_are_refused(anyio_backend: str) -> None:
    class Wrong(tl.StateMachine[str, None]):
        callback_mode = "state_function"  # type: ignore[assignment]

    async def main() -> None:
        with pytest.raises(TypeError, match="callback_mode"):
            await tl.start_machine(Wrong)
        with pytest.raises(TypeError, match="StateMachine"):
            await tl.start_machine(object)  # type: ignore[arg-type]

    async with tl.open_node():
        await in_process(main)


async def test_machine_name_and_already_started(anyio_backend: str) -> None:
    async def main() -> Any:
        pid = await tl.start_machine(Switch, name="switch")
        with pytest.raises(tl.AlreadyStartedError):
            await tl.start_machine(Switch, name="switch")
        tl.cast("switch", "flip")
        return pid, await tl.call("switch", "get"), tl.whereis("switch")

    async with tl.open_node():
        pid, state, where = await in_process(main)
    assert state == ("on", 1)
    assert where == pid


class StuckMachine(tl.StateMachine[str, None]):
    """A machine whose ``init`` reports its pid to ``watcher`` and never returns."""

    async def init(self, watcher: tl.Pid) -> Any:
        tl.send(watcher, ("stuck", tl.current_pid()))
        await anyio.sleep_forever()


class StuckServer(tl.Server[None]):
    """The same for a Server (both start through one handshake)."""

    async def init(self, watcher: tl.Pid) -> Any:
        tl.send(watcher, ("stuck", tl.current_pid()))
        await anyio.sleep_forever()


@pytest.mark.parametrize("kind", ["machine", "server"])
async def test_a_start_timeout_kills_the_process_and_drops_its_link(
    anyio_backend: str, kind: str
) -> None:
    """OTP proc_lib: on a start timeout the starter unlinks and kills the process, so a
    trapping starter receives no exit signal from it and its name is free again."""

    async def main() -> Any:
        me = tl.current_pid()
        start: Any = (
            tl.start_machine_link(StuckMachine, me, name="stuck", timeout=0.05)
            if kind == "machine"
            else tl.start_link(StuckServer, me, name="stuck", timeout=0.05)
        )
        with pytest.raises(tl.StartTimeoutError) as caught:
            await start
        _, pid = await tl.receive(lambda m: isinstance(m, tuple) and m[0] == "stuck", timeout=BOUND)
        down = await wait_down(tl.monitor(pid))  # its exit signals have all been sent
        info = tl.process_info(me)
        assert info is not None
        return caught.value, down.reason, info.links, tl.whereis("stuck"), drain()

    async with tl.open_node():
        error, reason, links, where, left = await in_process(main, trap_exit=True)
    label = "StuckMachine" if kind == "machine" else "StuckServer"
    assert (error.server, error.timeout) == (label, 0.05)
    assert reason in (tl.KILLED, tl.NOPROC)
    assert links == ()
    assert where is None
    assert left == []  # no Exit from the killed process, no stray acknowledgement


@pytest.mark.parametrize("kind", ["machine", "server"])
async def test_a_bad_name_is_refused_inside_and_outside_a_process(
    anyio_backend: str, kind: str
) -> None:
    """Outside any process the start goes through a helper process: its error must reach
    the caller too (it once came back as None, as if ``init`` had ignored)."""

    async def start() -> Any:
        if kind == "machine":
            return await tl.start_machine(Switch, name="")
        return await tl.start(StuckServer, None, name="")  # init never runs

    async with tl.open_node():
        with pytest.raises(tl.InvalidNameError):
            await start()
        with pytest.raises(tl.InvalidNameError):
            await in_process(start)
        assert tl.registered() == []


async def test_started_from_outside_any_process(anyio_backend: str) -> None:
    async with tl.open_node():
        pid = await tl.start_machine(Switch)
        assert pid is not None

        async def main() -> Any:
            return await tl.get_machine_state(pid)

        assert await in_process(main) == ("off", 0)


class Safe(tl.StateMachine[str, dict[str, Any]]):
    """A machine that redacts its code in ``format_status``."""

    callback_mode = "state_functions"

    async def init(self) -> Any:
        return tl.InitialState("locked", {"code": "1234", "tries": 0})

    async def locked(self, event_type: Any, content: Any, data: dict[str, Any]) -> Any:
        if event_type == "cast" and content == "try":
            return tl.KeepState({**data, "tries": data["tries"] + 1}, [tl.HibernateAction()])
        return tl.KEEP_STATE_AND_DATA

    def format_status(self, state: str, data: dict[str, Any]) -> Any:
        return (state, {**data, "code": "***"})


async def test_get_state_answers_for_a_machine_as_sys_get_state(anyio_backend: str) -> None:
    """OTP sys:get_state gives a gen_statem's {State, Data}; thunderline's get_state shows
    it through format_status (as for a Server), get_machine_state shows it raw."""

    async def main() -> Any:
        switch = await tl.start_machine(Switch, name="switch")
        assert switch is not None
        tl.cast(switch, "flip")
        default = await tl.get_state("switch")
        safe = await tl.start_machine(Safe)
        assert safe is not None
        tl.cast(safe, "try")  # and hibernate: the system request wakes it
        redacted = await tl.get_state(safe)
        raw = await tl.get_machine_state(safe)
        await tl.suspend_machine(safe)
        while_suspended = await tl.get_state(safe)
        await tl.stop(safe)
        with pytest.raises(tl.CallNoProcError):
            await tl.get_state(safe)
        return default, redacted, raw, while_suspended

    async with tl.open_node():
        default, redacted, raw, while_suspended = await in_process(main)
    assert default == ("on", 1)
    assert redacted == while_suspended == ("locked", {"code": "***", "tries": 1})
    assert raw == ("locked", {"code": "1234", "tries": 1})


class Ticker(tl.StateMachine[str, list[Any]]):
    """Generic timeouts survive state changes; an event timeout dies with any event."""

    def __init__(self, watcher: tl.Pid) -> None:
        self.watcher = watcher

    async def init(self) -> Any:
        return tl.InitialState(
            "a",
            [],
            [tl.GenericTimeout("tick", 0.05, "t1"), tl.EventTimeout(math.inf)],
        )

    async def handle_event(self, event_type: Any, content: Any, state: str, data: Any) -> Any:
        match event_type, content:
            case tl.TimeoutName("tick"), _:
                tl.send(self.watcher, "ticked")
                return tl.KeepState([*data, ("tick", content, state)])
            case "cast", "move":
                return tl.NextState("b", [*data, "moved"], [tl.EventTimeout(60, "never")])
            case "cast", "poke":
                return tl.KeepState([*data, "poked"])
            case tl.Call(from_), "log":
                return tl.KeepStateAndData([tl.ReplyTo(from_, data)])
        return tl.KEEP_STATE_AND_DATA


async def test_generic_timeout_survives_a_state_change(anyio_backend: str) -> None:
    async def main() -> Any:
        pid = await tl.start_machine_link(Ticker(tl.current_pid()))
        assert pid is not None
        tl.cast(pid, "move")
        tl.cast(pid, "poke")  # cancels the 60 s event timeout
        await tl.receive("ticked", timeout=BOUND)
        return await tl.call(pid, "log")

    async with tl.open_node():
        log = await in_process(main)
    assert log == ["moved", "poked", ("tick", "t1", "b")]


async def test_suspended_machine_keeps_events_queued(anyio_backend: str) -> None:
    async def main() -> Any:
        pid = await tl.start_machine(Switch)
        assert pid is not None
        await tl.suspend_machine(pid)
        tl.cast(pid, "flip")
        tl.cast(pid, "flip")
        tl.cast(pid, "flip")
        during = await tl.get_machine_state(pid)
        await tl.resume_machine(pid)
        return during, await tl.call(pid, "get")

    async with tl.open_node():
        during, after = await in_process(main)
    assert during == ("off", 0)
    assert after == ("on", 3)


TRACE: contextvars.ContextVar[Any] = contextvars.ContextVar("trace", default=None)


class Carriers(tl.BaseInstrument):
    """Each send carries a label; a taken message sets TRACE to it while handled."""

    def __init__(self) -> None:
        self.count = 0
        self.tokens: dict[int, contextvars.Token[Any]] = {}

    def capture(self, sender: Any, dest: Any, dest_label: str, operation: str) -> Any:
        self.count += 1
        return f"{operation}-{self.count}"

    def message_received(self, pid: Any, label: str, carrier: Any) -> Any:
        return TRACE.set(carrier)

    def message_done(self, pid: Any, token: Any) -> None:
        try:
            TRACE.reset(token)
        except ValueError:
            TRACE.set(None)


class Traced(tl.StateMachine[str, list[Any]]):
    async def init(self) -> Any:
        return tl.InitialState("s", [])

    async def handle_event(self, event_type: Any, content: Any, state: str, data: Any) -> Any:
        if isinstance(event_type, tl.Call):
            return tl.KeepStateAndData([tl.ReplyTo(event_type.from_, data)])
        return tl.KeepState([*data, (content, TRACE.get())])


async def test_each_event_is_handled_in_the_trace_its_message_carried(anyio_backend: str) -> None:
    async def main() -> Any:
        pid = await tl.start_machine(Traced)
        assert pid is not None
        tl.cast(pid, "first")
        tl.send(pid, "second")
        return await tl.call(pid, "log")

    async with tl.open_node(instrument=Carriers()):
        log = await in_process(main)
    assert [content for content, _ in log] == ["first", "second"]
    assert log[0][1].startswith("cast-")
    assert log[1][1].startswith("send-")
    assert log[0][1] != log[1][1]


@pytest.mark.parametrize("marker", ["class Door(", "task_async_stream(", "pg_monitor("])
def test_readme_toolbox_examples_print_the_same_on_trio(marker: str, tmp_path: Any) -> None:
    """tests/test_readme.py runs the README blocks on asyncio; these also run on trio."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = Path(__file__).resolve().parents[2] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```\s*```text\n(.*?)```", readme.read_text(), re.S)
    code, output = next((c, o) for c, o in blocks if marker in c)
    assert code.count("tl.run(main)") == 1
    script = tmp_path / "example.py"
    script.write_text(code.replace("tl.run(main)", 'tl.run(main, backend="trio")'))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == output


class Postponer(tl.StateMachine[str, frozenset[int]]):
    """Each event ``(n, kind)``: ``postpone`` postpones itself the first time it is
    seen, ``change`` flips the state a/b, ``same`` goes to the same state; every
    handling is reported to the watcher as ``(n, state)``."""

    def __init__(self, watcher: tl.Pid) -> None:
        self.watcher = watcher

    async def init(self) -> Any:
        return tl.InitialState("a", frozenset())

    async def handle_event(self, event_type: Any, content: Any, state: str, seen: Any) -> Any:
        if isinstance(event_type, tl.Call):
            return tl.KeepStateAndData([tl.ReplyTo(event_type.from_, "done")])
        n, kind = content
        tl.send(self.watcher, (n, state))
        if kind == "postpone" and n not in seen:
            return tl.KeepState(seen | {n}, [tl.POSTPONE])
        if kind == "change":
            return tl.NextState("b" if state == "a" else "a", seen)
        return tl.NextState(state, seen)


def postpone_model(events: list[str]) -> list[tuple[int, str]]:
    """OTP's rule: postponed events come back, oldest first, after a state change only."""
    queue = list(enumerate(events))
    postponed: list[tuple[int, str]] = []
    seen: set[int] = set()
    state, log = "a", []
    while queue:
        n, kind = queue.pop(0)
        log.append((n, state))
        if kind == "postpone" and n not in seen:
            seen.add(n)
            postponed.append((n, kind))
        elif kind == "change":
            state = "b" if state == "a" else "a"
            queue[:0], postponed = postponed, []
    return log


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(st.sampled_from(["postpone", "change", "same"]), max_size=20))
async def test_postponed_events_follow_the_otp_rule(anyio_backend: str, events: list[str]) -> None:
    async def main() -> list[Any]:
        pid = await tl.start_machine_link(Postponer(tl.current_pid()))
        assert pid is not None
        await tl.suspend_machine(pid)  # every event queued before the first is handled
        for n, kind in enumerate(events):
            tl.cast(pid, (n, kind))
        await tl.resume_machine(pid)
        await tl.call(pid, "sync")
        return drain()

    async with tl.open_node():
        log = await in_process(main)
    assert log == postpone_model(events)
