"""StateMachine hibernation (OTP gen_statem's ``hibernate`` transition option), on both
backends: a hibernated machine holds no task, every kind of wake-up is transparent
(call, cast, info, timers, system requests, a parent's exit), state, data, postponed
events, timers, links and name survive it, and it hibernates only when it would wait
for a mailbox message."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thunderline.runtime as tl
from process_helpers import BOUND, drain, hibernated, in_process, wait_down

pytestmark = pytest.mark.anyio

NAP = tl.HibernateAction()


class Napper(tl.StateMachine[str, list[Any]]):
    """Logs what it handles in its data; ``("nap", x)`` logs x and hibernates.

    ``"a"`` postpones ``"later"`` casts; ``"go"`` moves to ``"b"``. In either state:
    ``("timer", kind, t)`` starts a timer and hibernates, a timer event is logged
    and sent to ``watcher``, ``("internal", n)`` queues n internal events and
    hibernates, ``("flip", first, last)`` gives two hibernate actions.
    """

    state_enter = False

    def __init__(self, watcher: tl.Pid | None = None, *, trap: bool = False) -> None:
        self.watcher = watcher
        self.trap = trap
        self.terminated: list[Any] = []

    async def init(self, nap: bool = False) -> Any:
        if self.trap:
            tl.trap_exit(True)
        return tl.InitialState("a", [], [NAP] if nap else [])

    async def handle_event(self, event_type: Any, content: Any, state: str, data: Any) -> Any:
        match event_type, content:
            case tl.Call(from_), "get":
                return tl.KeepStateAndData([tl.ReplyTo(from_, (state, data))])
            case tl.Call(from_), ("nap", x):
                return tl.KeepState([*data, ("call", x)], [tl.ReplyTo(from_, x), NAP])
            case "cast", ("nap", x):
                return tl.KeepState([*data, ("cast", x)], [NAP])
            case "info", ("nap", x):
                return tl.KeepState([*data, ("info", x)], [NAP])
            case "cast", "later" if state == "a":
                return tl.KeepStateAndData([tl.POSTPONE, NAP])
            case "cast", "go":
                return tl.NextState("b", [*data, "go"], [NAP])
            case "cast", ("timer", "state", t):
                return tl.KeepStateAndData([tl.StateTimeout(t, "st"), NAP])
            case "cast", ("timer", "generic", t):
                return tl.KeepStateAndData([tl.GenericTimeout("g", t, "gt"), NAP])
            case "cast", ("internal", n):
                events = [tl.NextEvent("internal", i) for i in range(n)]
                return tl.KeepStateAndData([*events, NAP])
            case "internal", i:
                return tl.KeepState([*data, ("internal", i)], [NAP])
            case "cast", ("flip", first, last):
                actions = [tl.HibernateAction(first), tl.HibernateAction(last)]
                return tl.KeepState([*data, "flip"], actions)
            case ("state_timeout" | tl.TimeoutName("g")) as kind, _:
                if self.watcher is not None:
                    tl.send(self.watcher, ("fired", content))
                return tl.KeepState([*data, (str(kind), content)], [NAP])
            case "info", tl.Exit() as exit_:
                return tl.KeepState([*data, ("exit", exit_.reason)], [NAP])
            case _, x:
                return tl.KeepState([*data, (str(event_type), x)])

    async def terminate(self, reason: Any, state: str, data: Any) -> None:
        if self.watcher is not None:
            tl.send(self.watcher, ("terminated", reason, state, data))


async def is_hibernating(pid: tl.Pid) -> bool:
    """Whether ``pid`` hibernates once every task (its own included) is blocked."""
    await anyio.wait_all_tasks_blocked()
    info = tl.process_info(pid)
    assert info is not None
    return info.hibernating


async def start(*args: Any, watcher: bool = False, trap: bool = False) -> tl.Pid:
    me = tl.current_pid()
    pid = await tl.start_machine_link(
        Napper(me if watcher else None, trap=trap), *args, name="napper"
    )
    assert pid is not None
    return pid


async def test_hibernate_action_ends_the_task_and_a_call_wakes_it(anyio_backend: str) -> None:
    async def body() -> None:
        pid = await start()
        tl.cast(pid, ("nap", 1))
        assert await hibernated(pid)
        info = tl.process_info(pid)
        assert info is not None
        assert (info.status, info.links, info.registered_name) == (
            "waiting",
            (tl.current_pid(),),
            "napper",
        )
        assert await tl.call("napper", "get") == ("a", [("cast", 1)])
        # the "get" transition did not ask to hibernate: the machine now waits awake
        assert not await is_hibernating(pid)

    async with tl.open_node():
        await in_process(body)


async def test_cast_info_and_call_each_wake_it_and_it_hibernates_again(
    anyio_backend: str,
) -> None:
    async def body() -> None:
        pid = await start(True)  # init's actions ask to hibernate too
        assert await hibernated(pid)
        tl.cast(pid, ("nap", 1))
        assert await hibernated(pid)
        tl.send(pid, ("nap", 2))
        assert await hibernated(pid)
        assert await tl.call(pid, ("nap", 3)) == 3
        assert await hibernated(pid)
        assert await tl.call(pid, "get") == ("a", [("cast", 1), ("info", 2), ("call", 3)])

    async with tl.open_node():
        await in_process(body)


async def test_a_system_request_is_answered_and_the_machine_hibernates_again(
    anyio_backend: str,
) -> None:
    """OTP: a system message wakes a hibernated gen_statem, which goes back to hibernation
    (the flag belongs to the last transition, not to the wake-up)."""

    async def body() -> None:
        pid = await start()
        tl.cast(pid, ("nap", 1))
        assert await hibernated(pid)
        assert await tl.get_machine_state(pid) == ("a", [("cast", 1)])
        assert await hibernated(pid)
        await tl.suspend_machine(pid)
        assert await hibernated(pid)
        await tl.resume_machine(pid)
        assert await hibernated(pid)
        assert tl.process_info(pid) is not None

    async with tl.open_node():
        await in_process(body)


@pytest.mark.parametrize("kind", ["state", "generic"])
async def test_a_timer_wakes_a_hibernated_machine(anyio_backend: str, kind: str) -> None:
    async def body() -> None:
        pid = await start(watcher=True)
        tl.cast(pid, ("timer", kind, 0.05))
        assert await hibernated(pid)
        content = "st" if kind == "state" else "gt"
        assert await tl.receive(("fired", content), timeout=BOUND) == ("fired", content)
        assert await hibernated(pid)  # the timeout's transition hibernates again
        event = "state_timeout" if kind == "state" else str(tl.TimeoutName("g"))
        assert await tl.call(pid, "get") == ("a", [(event, content)])

    async with tl.open_node():
        await in_process(body)


async def test_postponed_events_survive_hibernation(anyio_backend: str) -> None:
    async def body() -> None:
        pid = await start()
        tl.cast(pid, "later")
        assert await hibernated(pid)
        tl.cast(pid, ("nap", 1))
        assert await hibernated(pid)
        tl.cast(pid, "go")  # the state changes: "later" is retried, in "b"
        assert await tl.call(pid, "get") == ("b", [("cast", 1), "go", ("cast", "later")])

    async with tl.open_node():
        await in_process(body)


async def test_queued_internal_events_run_before_it_hibernates(anyio_backend: str) -> None:
    """OTP ``loop_event``: with events queued a hibernation request only collects garbage;
    the machine hibernates once it would wait for the mailbox."""

    async def body() -> None:
        pid = await start()
        tl.cast(pid, ("internal", 3))
        assert await hibernated(pid)
        assert await tl.call(pid, "get") == (
            "a",
            [("internal", 0), ("internal", 1), ("internal", 2)],
        )

    async with tl.open_node():
        await in_process(body)


@pytest.mark.parametrize(("first", "last"), [(True, False), (False, True)])
async def test_the_last_hibernate_action_wins(anyio_backend: str, first: bool, last: bool) -> None:
    async def body() -> None:
        pid = await start()
        tl.cast(pid, ("flip", first, last))
        assert await tl.get_machine_state(pid) == ("a", ["flip"])
        assert await is_hibernating(pid) is last

    async with tl.open_node():
        await in_process(body)


async def test_a_trapped_exit_wakes_it_and_a_parent_exit_stops_it(anyio_backend: str) -> None:
    async def body() -> None:
        me = tl.current_pid()
        box: dict[str, Any] = {}

        async def parent() -> None:
            box["pid"] = await tl.start_machine_link(Napper(me, trap=True), True)
            await tl.receive("go")
            raise tl.ProcessExit("parent gone")

        parent_pid = tl.spawn(parent)
        with anyio.fail_after(BOUND):
            while "pid" not in box:
                await anyio.sleep(0.001)
        pid = box["pid"]
        assert await hibernated(pid)
        tl.exit(pid, "poke")  # not from the parent: an "info" event
        assert await tl.get_machine_state(pid) == ("a", [("exit", "poke")])
        assert await hibernated(pid)
        ref = tl.monitor(pid)
        tl.send(parent_pid, "go")
        down = await wait_down(ref)
        assert down.reason == "parent gone"
        terminated = await tl.receive(
            lambda m: isinstance(m, tuple) and m[0] == "terminated", timeout=BOUND
        )
        assert terminated == ("terminated", "parent gone", "a", [("exit", "poke")])
        drain()

    async with tl.open_node():
        await in_process(body, trap_exit=True)


async def test_stop_and_kill_end_a_hibernated_machine(anyio_backend: str) -> None:
    async def body() -> None:
        pid = await start(True, watcher=True)
        assert await hibernated(pid)
        await tl.stop(pid)
        assert await tl.receive(
            lambda m: isinstance(m, tuple) and m[0] == "terminated", timeout=BOUND
        ) == ("terminated", tl.NORMAL, "a", [])
        pid = await start(True)
        assert await hibernated(pid)
        ref = tl.monitor(pid)
        tl.exit(pid, tl.KILL)
        assert (await wait_down(ref)).reason == tl.KILLED
        assert tl.whereis("napper") is None

    async with tl.open_node():
        await in_process(body, trap_exit=True)


class Dozer(tl.Server[None]):
    async def init(self) -> Any:
        return tl.Hibernate(None)


@pytest.mark.parametrize("kind", ["machine", "server"])
async def test_a_killed_hibernated_process_is_forgotten_by_get_state(
    anyio_backend: str, kind: str
) -> None:
    """Killed while hibernated (no task to end), a machine or server is no longer marked
    as answering get_state (the mark would otherwise outlive it)."""
    from thunderline.runtime._server import _SERVER_PIDS

    async def body() -> None:
        pid = await (tl.start_machine(Napper, True) if kind == "machine" else tl.start(Dozer))
        assert pid is not None
        assert await hibernated(pid)
        assert pid in _SERVER_PIDS
        ref = tl.monitor(pid)
        tl.exit(pid, tl.KILL)
        assert (await wait_down(ref)).reason == tl.KILLED
        assert pid not in _SERVER_PIDS
        with pytest.raises(tl.CallNoProcError):
            await tl.get_state(pid)

    async with tl.open_node():
        await in_process(body)


async def test_node_close_stops_a_hibernated_machine(anyio_backend: str) -> None:
    stopped: list[Any] = []
    with anyio.fail_after(BOUND):
        async with tl.open_node():

            async def body() -> tl.Pid:
                pid = await tl.start_machine(Napper, True)
                assert pid is not None
                assert await hibernated(pid)
                return pid

            stopped.append(await in_process(body))
    assert stopped  # leaving the node did not hang on the hibernated machine


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.one_of(st.integers(0, 9), st.just("nap"), st.just("get")), max_size=12))
async def test_hibernating_between_events_changes_nothing(
    anyio_backend: str, ops: list[Any]
) -> None:
    """Any interleaving of plain casts, hibernating casts and system requests ends in the
    same data as a machine that never hibernates would have."""

    async def body() -> None:
        pid = await start()
        expected: list[Any] = []
        for op in ops:
            if op == "nap":
                tl.cast(pid, ("nap", len(expected)))
                expected.append(("cast", len(expected)))
            elif op == "get":
                assert await tl.get_machine_state(pid) == ("a", expected)
            else:
                tl.cast(pid, op)
                expected.append(("cast", op))
        assert await tl.call(pid, "get") == ("a", expected)

    async with tl.open_node():
        await in_process(body)
