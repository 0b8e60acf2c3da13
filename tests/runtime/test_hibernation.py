"""Hibernation (OTP ``hibernate``): a hibernated server holds no task, every kind of
wake-up is transparent (call, cast, info, exit signal while trapping, timer,
monitor ``Down``), and state, links, monitors and name survive it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thunderline.runtime as tl
from process_helpers import BOUND, hibernated, idle, in_process, wait_down

pytestmark = pytest.mark.anyio


class Sleeper(tl.Server[list[Any]]):
    """Records what it handles; ``("hibernate", x)`` casts record x and hibernate."""

    async def init(self, mode: str = "ok", watch: tl.Pid | None = None) -> Any:
        if mode == "trap":
            tl.trap_exit(True)
        if watch is not None:
            tl.monitor(watch)
        if mode == "hibernate":
            return tl.Hibernate(["init"])
        return tl.Ok([])

    async def handle_call(self, request: Any, from_: tl.From, state: list[Any]) -> Any:
        if request == "get":
            return tl.Reply(list(state), state)
        if request == "get_and_hibernate":
            return tl.Hibernate(state, reply=list(state))
        return tl.Reply(request, [*state, ("call", request)])

    async def handle_cast(self, request: Any, state: list[Any]) -> Any:
        if isinstance(request, tuple) and request[0] == "hibernate":
            return tl.Hibernate([*state, ("cast", request[1])])
        if isinstance(request, tuple) and request[0] == "timer":
            tl.send_after(request[1], tl.current_pid(), "tick")
            return tl.Hibernate(state)
        return tl.NoReply([*state, ("cast", request)])

    async def handle_info(self, message: Any, state: list[Any]) -> Any:
        if isinstance(message, tl.Exit):
            return tl.Hibernate([*state, ("exit", message.reason)])
        if isinstance(message, tl.Down):
            return tl.Hibernate([*state, ("down", message.reason)])
        return tl.Hibernate([*state, ("info", message)])


async def handled_while_hibernated(pid: tl.Pid, count: int) -> None:
    """Wait, without waking ``pid``, until it has handled ``count`` messages and hibernates."""
    with anyio.fail_after(BOUND):
        while True:
            info = tl.process_info(pid)
            assert info is not None
            if info.messages_handled >= count and info.hibernating:
                return
            await anyio.sleep(0.001)


async def test_hibernate_result_ends_the_task_and_call_wakes_it(anyio_backend: str) -> None:
    async def body() -> None:
        pid = await tl.start_link(Sleeper)
        assert pid is not None
        tl.cast(pid, ("hibernate", 1))
        assert await hibernated(pid)
        info = tl.process_info(pid)
        assert info is not None
        assert info.status == "waiting"
        assert info.links == (tl.current_pid(),)
        assert await tl.call(pid, "get") == [("cast", 1)]
        info = tl.process_info(pid)
        assert info is not None
        assert not info.hibernating

    async with tl.open_node():
        await in_process(body)


async def test_cast_wakes_a_hibernated_server(anyio_backend: str) -> None:
    async def body() -> None:
        pid = await tl.start_link(Sleeper)
        assert pid is not None
        tl.cast(pid, ("hibernate", 1))
        assert await hibernated(pid)
        tl.cast(pid, ("hibernate", 2))  # wakes it, handled, hibernates again
        tl.cast(pid, 3)
        assert await tl.call(pid, "get") == [("cast", 1), ("cast", 2), ("cast", 3)]

    async with tl.open_node():
        await in_process(body)


async def test_info_wakes_a_hibernated_server(anyio_backend: str) -> None:
    async def body() -> None:
        pid = await tl.start_link(Sleeper)
        assert pid is not None
        tl.cast(pid, ("hibernate", 1))
        assert await hibernated(pid)
        tl.send(pid, "hello")
        assert await hibernated(pid)  # handle_info hibernates again
        assert await tl.call(pid, "get") == [("cast", 1), ("info", "hello")]

    async with tl.open_node():
        await in_process(body)


async def test_exit_signal_wakes_a_trapping_hibernated_server(anyio_backend: str) -> None:
    async def body() -> None:
        pid = await tl.start_link(Sleeper, "trap")
        assert pid is not None
        tl.cast(pid, ("hibernate", 1))
        assert await hibernated(pid)

        async def stranger() -> None:
            tl.exit(pid, "bye")  # not from the parent: an Exit message for handle_info

        _, ref = tl.spawn_monitor(stranger)
        await wait_down(ref)  # the signal was sent; the call below queues behind it
        assert await tl.call(pid, "get") == [("cast", 1), ("exit", "bye")]

    async with tl.open_node():
        await in_process(body)


async def test_parent_exit_stops_a_trapping_hibernated_server(anyio_backend: str) -> None:
    async def body() -> None:
        ref_box: dict[str, Any] = {}

        async def parent() -> None:
            pid = await tl.start_link(Sleeper, "trap")
            assert pid is not None
            ref_box["pid"] = pid
            tl.cast(pid, ("hibernate", 1))
            await tl.receive("go")
            raise tl.ProcessExit("parent gone")

        me = tl.current_pid()
        parent_pid = tl.spawn(parent)
        with anyio.fail_after(BOUND):
            while "pid" not in ref_box:
                await anyio.sleep(0.001)
        server = ref_box["pid"]
        assert await hibernated(server)
        ref = tl.monitor(server)
        tl.send(parent_pid, "go")
        down = await wait_down(ref)
        assert down.reason == "parent gone"  # terminate ran, then it stopped
        del me

    async with tl.open_node():
        await in_process(body)


async def test_timer_wakes_a_hibernated_server(anyio_backend: str) -> None:
    async def body() -> None:
        pid = await tl.start_link(Sleeper)
        assert pid is not None
        tl.cast(pid, ("timer", 0.01))  # arms the timer, then hibernates
        assert await hibernated(pid)
        await handled_while_hibernated(pid, 2)  # the cast, then the timer's message
        assert await tl.call(pid, "get") == [("info", "tick")]

    async with tl.open_node():
        await in_process(body)


async def test_monitor_down_wakes_a_hibernated_server(anyio_backend: str) -> None:
    async def body() -> None:
        watched = tl.spawn(idle)
        pid = await tl.start_link(Sleeper, "ok", watched)
        assert pid is not None
        tl.cast(pid, ("hibernate", 1))
        assert await hibernated(pid)
        before = tl.process_info(pid)
        assert before is not None
        tl.exit(watched, "gone")
        await handled_while_hibernated(pid, before.messages_handled + 1)
        assert await tl.call(pid, "get") == [("cast", 1), ("down", "gone")]

    async with tl.open_node():
        await in_process(body)


async def test_kill_ends_a_hibernated_server_and_fires_links_and_monitors(
    anyio_backend: str,
) -> None:
    async def body() -> None:
        pid = await tl.start_link(Sleeper)
        assert pid is not None
        tl.cast(pid, ("hibernate", 1))
        assert await hibernated(pid)
        ref = tl.monitor(pid)
        tl.exit(pid, tl.KILL)
        down = await wait_down(ref)
        assert down.reason == tl.KILLED
        message = await tl.receive(tl.Exit, timeout=BOUND)
        assert message == tl.Exit(pid, tl.KILLED)

    async with tl.open_node():
        await in_process(body, trap_exit=True)


async def test_hibernate_after_idle_then_call(anyio_backend: str) -> None:
    async def body() -> None:
        pid = await tl.start_link(Sleeper, name="sleepy", hibernate_after=0.01)
        assert pid is not None
        assert await tl.call("sleepy", "x") == "x"
        assert await hibernated(pid)
        assert tl.whereis("sleepy") == pid  # the name survives
        assert await tl.call("sleepy", "get") == [("call", "x")]
        assert await hibernated(pid)  # and idles into hibernation again

    async with tl.open_node():
        await in_process(body)


async def test_reply_and_hibernate_and_init_hibernate(anyio_backend: str) -> None:
    async def body() -> None:
        pid = await tl.start_link(Sleeper, "hibernate")
        assert pid is not None
        assert await hibernated(pid)
        assert await tl.call(pid, "get_and_hibernate") == ["init"]
        assert await hibernated(pid)

    async with tl.open_node():
        await in_process(body)


async def test_bad_hibernate_after_is_rejected(anyio_backend: str) -> None:
    async def body() -> None:
        with pytest.raises(tl.InvalidTimeoutError):
            await tl.start_link(Sleeper, hibernate_after=-1)

    async with tl.open_node():
        await in_process(body)


async def test_node_close_stops_hibernated_servers(anyio_backend: str) -> None:
    stopped: list[Any] = []

    async with tl.open_node():

        async def body() -> tl.Pid:
            pid = await tl.start(Sleeper)
            assert pid is not None
            tl.cast(pid, ("hibernate", 1))
            assert await hibernated(pid)
            return pid

        pid = await in_process(body)
        stopped.append(pid)
    assert stopped  # leaving the node did not hang on the hibernated server


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.one_of(st.integers(0, 9), st.just("h")), max_size=12))
async def test_hibernating_between_messages_changes_nothing(
    anyio_backend: str, ops: list[Any]
) -> None:
    """Any interleaving of plain casts and hibernations leaves the same state."""

    async def body() -> None:
        pid = await tl.start_link(Sleeper)
        assert pid is not None
        expected: list[Any] = []
        for op in ops:
            if op == "h":
                tl.cast(pid, ("hibernate", "h"))
            else:
                tl.cast(pid, op)
            expected.append(("cast", op))
        assert await tl.call(pid, "get") == expected

    async with tl.open_node():
        await in_process(body)
