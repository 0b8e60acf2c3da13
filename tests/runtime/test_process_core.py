"""C-P* (creation, termination, reasons) and C-S* (signal ordering), plus fairness."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import thunderline.runtime as tl
from process_helpers import BOUND, idle, in_process, wait_down, wait_exit

pytestmark = pytest.mark.anyio


async def test_c_p1_returning_body_ends_normal(anyio_backend: str) -> None:
    async def returns() -> str:
        return "done"

    async def main() -> tl.Down:
        pid, ref = tl.spawn_monitor(returns)
        down = await wait_down(ref)
        assert down.pid == pid
        return down

    async with tl.open_node():
        down = await in_process(main)
    assert down.reason == tl.NORMAL


async def test_c_p2_raising_body_ends_with_the_exception(anyio_backend: str) -> None:
    error = ValueError("bad value")

    async def raises() -> None:
        raise error

    async def main() -> tl.Down:
        _, ref = tl.spawn_monitor(raises)
        return await wait_down(ref)

    async with tl.open_node():
        down = await in_process(main)
    assert isinstance(down.reason, tl.Crashed)
    assert down.reason.exception is error
    assert "bad value" in down.reason.traceback
    assert "raises" in down.reason.traceback


async def test_c_p3_spawn_link_of_instant_crash_kills_parent(anyio_backend: str) -> None:
    error = RuntimeError("instant")

    async def crash() -> None:
        raise error

    async def parent() -> None:
        tl.spawn_link(crash)
        await tl.receive("never")

    async def main() -> tl.Down:
        _, ref = tl.spawn_monitor(parent)
        return await wait_down(ref)

    async with tl.open_node():
        down = await in_process(main)
    assert down.reason == tl.Crashed(error)


async def test_c_p4_spawn_monitor_of_instant_return_gives_one_down(anyio_backend: str) -> None:
    async def instant() -> None:
        return None

    async def main() -> list[Any]:
        pid, ref = tl.spawn_monitor(instant)
        down = await wait_down(ref)
        assert down.pid == pid
        await anyio.wait_all_tasks_blocked()
        rest = [m for m in _drain() if isinstance(m, tl.Down)]
        return [down, *rest]

    async with tl.open_node():
        downs = await in_process(main)
    assert len(downs) == 1
    assert downs[0].reason == tl.NORMAL


def _drain() -> list[Any]:
    out = []
    while True:
        try:
            out.append(tl.receive_nowait())
        except tl.WouldBlock:
            return out


async def test_c_p5_name_is_free_when_down_and_exit_arrive(anyio_backend: str) -> None:
    async def named() -> None:
        tl.register("worker")
        await tl.receive("stop")

    async def main() -> tuple[Any, Any, Any]:
        pid = tl.spawn_link(named)
        ref = tl.monitor(pid)
        await anyio.wait_all_tasks_blocked()
        assert tl.whereis("worker") == pid
        tl.send(pid, "stop")
        exit_msg = await wait_exit(pid)
        at_exit = tl.whereis("worker")
        await wait_down(ref)
        at_down = tl.whereis("worker")
        tl.register("worker")  # can be taken back at once
        return exit_msg.reason, at_exit, at_down

    async with tl.open_node():
        reason, at_exit, at_down = await in_process(main, trap_exit=True)
    assert reason == tl.NORMAL
    assert at_exit is None
    assert at_down is None


async def test_c_s1_messages_from_one_sender_arrive_in_order(anyio_backend: str) -> None:
    async def collector(count: int) -> list[Any]:
        return [await tl.receive() for _ in range(count)]

    async def sender(dest: tl.Pid, tag: str) -> None:
        for n in range(50):
            tl.send(dest, (tag, n))
            if n % 7 == 0:
                await anyio.lowlevel.checkpoint()

    async def main() -> list[Any]:
        box: list[Any] = []

        async def collect() -> None:
            box.extend(await collector(100))

        pid, ref = tl.spawn_monitor(collect)
        tl.spawn(sender, pid, "a")
        tl.spawn(sender, pid, "b")
        await wait_down(ref)
        return box

    async with tl.open_node():
        got = await in_process(main)
    for tag in ("a", "b"):
        assert [n for t, n in got if t == tag] == list(range(50))


async def test_c_s2_message_then_exit_signal_keeps_order(anyio_backend: str) -> None:
    seen: list[Any] = []

    async def victim() -> None:
        seen.append(await tl.receive())  # the message queued before the signal
        await tl.receive()

    async def main() -> tl.Down:
        pid, ref = tl.spawn_monitor(victim)
        await anyio.wait_all_tasks_blocked()
        tl.send(pid, "before")
        tl.exit(pid, "boom")
        return await wait_down(ref)

    async with tl.open_node():
        down = await in_process(main)
    assert down.reason == "boom"
    assert seen == ["before"]


async def test_c_s3_link_then_message_is_ordered(anyio_backend: str) -> None:
    async def crash_on_message() -> None:
        await tl.receive("crash")
        raise tl.ProcessExit("crashed on request")

    async def main() -> tl.Exit:
        pid = tl.spawn(crash_on_message)
        tl.link(pid)
        tl.send(pid, "crash")  # after the link: the crash must reach us
        return await wait_exit(pid)

    async with tl.open_node():
        message = await in_process(main, trap_exit=True)
    assert message.reason == "crashed on request"


async def test_two_flooded_processes_both_make_progress(anyio_backend: str) -> None:
    """The receive budget: a process with a full mailbox still yields to others."""
    count = 20 * tl.RECEIVE_BUDGET
    progress = {"a": 0, "b": 0}
    both_started: list[tuple[int, int]] = []

    async def consumer(tag: str) -> None:
        for _ in range(count):
            await tl.receive()
            progress[tag] += 1
            if progress["a"] and progress["b"] and not both_started:
                both_started.append((progress["a"], progress["b"]))

    async def main() -> None:
        a, ref_a = tl.spawn_monitor(consumer, "a")
        b, ref_b = tl.spawn_monitor(consumer, "b")
        for n in range(count):  # both mailboxes full before either runs
            tl.send(a, n)
            tl.send(b, n)
        await wait_down(ref_a)
        await wait_down(ref_b)

    async with tl.open_node():
        await in_process(main)
    assert progress == {"a": count, "b": count}
    # The second consumer started long before the first had finished its mailbox.
    first, second = both_started[0]
    assert min(first, second) <= tl.RECEIVE_BUDGET
    assert max(first, second) < count // 2


async def test_process_killed_while_busy_dies_at_next_checkpoint(anyio_backend: str) -> None:
    reached: list[str] = []

    async def busy() -> None:
        while True:
            reached.append("loop")
            await anyio.lowlevel.checkpoint()

    async def main() -> tl.Down:
        pid, ref = tl.spawn_monitor(busy)
        await anyio.lowlevel.checkpoint()
        tl.exit(pid, tl.KILL)
        return await wait_down(ref)

    async with tl.open_node():
        with anyio.fail_after(BOUND):
            down = await in_process(main)
    assert down.reason == tl.KILLED
    assert reached


async def test_leaving_the_node_stops_every_process(anyio_backend: str) -> None:
    async with tl.open_node():
        pids = [tl.spawn(idle) for _ in range(5)]
        await anyio.wait_all_tasks_blocked()
        assert all(tl.is_alive(p) for p in pids)
    # no task outlives the block: reaching this line means the task group closed
