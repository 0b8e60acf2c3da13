"""Tasks as Elixir documents them (Task, Task.Supervisor, async_stream), on both backends."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thunderline.runtime as tl
from process_helpers import BOUND, drain, in_process, wait_down

pytestmark = pytest.mark.anyio


async def double(x: int) -> int:
    return 2 * x


async def forever(*_: Any) -> None:
    await tl.receive("never")


async def crash(*_: Any) -> None:
    raise ValueError("task crashed")


async def test_await_returns_the_value_and_leaves_nothing_behind(anyio_backend: str) -> None:
    async def main() -> Any:
        task = tl.task_async(double, 21)
        value = await tl.task_await(task)
        await anyio.sleep(0)
        return value, tl.is_alive(task.pid), drain(), tl.process_info(tl.current_pid())

    async with tl.open_node():
        value, alive, left, info = await in_process(main)
    assert value == 42
    assert not alive
    assert left == []
    assert info.monitors == ()


async def test_await_timeout_kills_the_task_and_the_owner_survives(anyio_backend: str) -> None:
    async def main() -> Any:
        task = tl.task_async(forever)
        with pytest.raises(tl.TaskTimeoutError) as info:
            await tl.task_await(task, timeout=0.01)
        assert info.value.task == task
        ref = tl.monitor(task.pid)
        down = await wait_down(ref)
        return down.reason, drain()

    async with tl.open_node():
        reason, left = await in_process(main)
    assert reason == tl.NOPROC  # already dead when await raised
    assert left == []


async def test_a_crashing_linked_task_takes_its_owner_down(anyio_backend: str) -> None:
    async def owner() -> None:
        task = tl.task_async(crash)
        await tl.task_await(task)

    async def main() -> Any:
        _, ref = tl.spawn_monitor(owner)
        return (await wait_down(ref)).reason

    async with tl.open_node():
        reason = await in_process(main)
    assert isinstance(reason, tl.Crashed)
    assert isinstance(reason.exception, ValueError)


async def test_a_trapping_owner_sees_the_crash_from_await(anyio_backend: str) -> None:
    async def main() -> Any:
        task = tl.task_async(crash)
        with pytest.raises(tl.TaskExitError) as info:
            await tl.task_await(task)
        return info.value.reason

    async with tl.open_node():
        reason = await in_process(main, trap_exit=True)
    assert isinstance(reason, tl.Crashed)


async def test_yield_does_not_kill_and_shutdown_stops(anyio_backend: str) -> None:
    async def main() -> Any:
        task = tl.task_async(forever)
        first = await tl.task_yield(task, timeout=0.01)
        alive = tl.is_alive(task.pid)
        stopped = await tl.task_shutdown(task)
        quick = tl.task_async(double, 2)
        await anyio.sleep(0.01)
        replied = await tl.task_shutdown(quick)
        brutal = await tl.task_shutdown(tl.task_async(forever), tl.BRUTAL_KILL)
        return first, alive, stopped, tl.is_alive(task.pid), replied, brutal, drain()

    async with tl.open_node():
        first, alive, stopped, still, replied, brutal, left = await in_process(main)
    assert first is None
    assert alive
    assert stopped is None
    assert not still
    assert replied == tl.TaskOk(4)
    assert brutal is None
    assert left == []


async def test_only_the_owner_may_await(anyio_backend: str) -> None:
    async def main() -> Any:
        task = tl.task_async(forever)
        box: dict[str, Any] = {}

        async def other() -> None:
            try:
                await tl.task_await(task)
            except tl.TaskOwnerError as exc:
                box["error"] = exc
            tl.send(task.owner, "done")

        tl.spawn(other)
        await tl.receive("done", timeout=BOUND)
        await tl.task_shutdown(task)
        return box["error"]

    async with tl.open_node():
        error = await in_process(main)
    assert isinstance(error, tl.TaskOwnerError)


async def test_nolink_crash_arrives_as_down(anyio_backend: str) -> None:
    async def main() -> Any:
        sup = await tl.start_task_supervisor()
        task = await tl.task_async_nolink(sup, crash)
        down = await wait_down(task.ref)
        ok = await tl.task_await(await tl.task_async_nolink(sup, double, 5))
        failing = await tl.task_async_nolink(sup, crash)
        with pytest.raises(tl.TaskExitError):
            await tl.task_await(failing)
        return down, ok, (await tl.count_children(sup)).active

    async with tl.open_node():
        down, ok, active = await in_process(main)
    assert isinstance(down.reason, tl.Crashed)
    assert ok == 10
    assert active == 0


async def test_async_stream_ordered_unordered_and_bounded(anyio_backend: str) -> None:
    running = 0
    peak = 0

    async def slow(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.001 * (5 - x % 5))
        running -= 1
        return x * x

    async def main() -> Any:
        ordered = [r async for r in tl.task_async_stream(slow, range(10), max_concurrency=3)]
        unordered = [
            r async for r in tl.task_async_stream(slow, range(10), ordered=False, max_concurrency=2)
        ]
        return ordered, unordered

    async with tl.open_node():
        ordered, unordered = await in_process(main)
    assert ordered == [tl.TaskOk(x * x) for x in range(10)]
    assert sorted(r.value for r in unordered) == [x * x for x in range(10)]
    assert peak <= 3


async def test_async_stream_timeouts(anyio_backend: str) -> None:
    async def maybe(x: int) -> int:
        if x == 1:
            await tl.receive("never")
        return x

    async def main() -> Any:
        killed = [
            r
            async for r in tl.task_async_stream(
                maybe, [0, 1, 2], timeout=0.02, on_timeout="kill_task"
            )
        ]
        with pytest.raises(tl.TaskTimeoutError):
            async for _ in tl.task_async_stream(maybe, [0, 1, 2], timeout=0.02):
                pass
        await anyio.sleep(0)
        return killed, drain()

    async with tl.open_node():
        killed, left = await in_process(main)
    assert killed == [tl.TaskOk(0), tl.TaskExit("timeout"), tl.TaskOk(2)]
    assert left == []


async def test_async_stream_supervised_crash_is_an_exit_item(anyio_backend: str) -> None:
    async def item(x: int) -> int:
        if x == 2:
            raise ValueError("two")
        return x

    async def main() -> Any:
        sup = await tl.start_task_supervisor()
        return [r async for r in tl.task_async_stream(item, range(4), supervisor=sup)]

    async with tl.open_node():
        results = await in_process(main)
    assert results[:2] == [tl.TaskOk(0), tl.TaskOk(1)]
    assert isinstance(results[2], tl.TaskExit)
    assert results[3] == tl.TaskOk(3)


async def test_bad_stream_options(anyio_backend: str) -> None:
    async def main() -> None:
        with pytest.raises(tl.TaskOptionError, match="max_concurrency"):
            async for _ in tl.task_async_stream(double, [1], max_concurrency=0):
                pass
        with pytest.raises(tl.TaskOptionError, match="on_timeout"):
            async for _ in tl.task_async_stream(double, [1], on_timeout="ignore"):  # type: ignore[arg-type]
                pass
        with pytest.raises(TypeError, match="Task"):
            await tl.task_await("not a task")  # type: ignore[arg-type]

    async with tl.open_node():
        await in_process(main)


KINDS = ["reply", "forever", "late"]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=8), nolink=st.booleans())
async def test_every_awaited_task_is_answered_or_killed(
    anyio_backend: str, kinds: list[str], nolink: bool
) -> None:
    """Whatever the tasks do, await either returns the task's value or raises
    TaskTimeoutError with the task dead; nothing of the task is left in the
    owner's mailbox and the owner survives."""

    async def body(n: int, kind: str) -> int:
        if kind == "forever":
            await tl.receive("never")
        if kind == "late":
            await anyio.sleep(0.002)
        return n

    async def main() -> list[tuple[str, Any, bool]]:
        sup = await tl.start_task_supervisor() if nolink else None
        tasks = []
        for n, kind in enumerate(kinds):
            if sup is None:
                tasks.append(tl.task_async(body, n, kind))
            else:
                tasks.append(await tl.task_async_nolink(sup, body, n, kind))
        outcomes = []
        for n, task in enumerate(tasks):
            try:
                outcomes.append(("ok", await tl.task_await(task, timeout=0.05), True))
            except tl.TaskTimeoutError:
                outcomes.append(("killed", n, not tl.is_alive(task.pid)))
        await anyio.sleep(0.01)
        leftovers = drain()
        assert leftovers == [], leftovers
        return outcomes

    with anyio.fail_after(BOUND):
        async with tl.open_node():
            outcomes = await in_process(main)
    for n, (kind, (how, value, dead)) in enumerate(zip(kinds, outcomes, strict=True)):
        assert value == n
        if kind == "forever":
            assert how == "killed"
        if how == "killed":
            assert dead


async def test_shutdown_kills_a_task_that_ignores_the_shutdown(anyio_backend: str) -> None:
    async def stubborn() -> None:
        tl.trap_exit(True)
        while True:
            await tl.receive()  # takes the SHUTDOWN exit as a message and goes on

    async def main() -> Any:
        task = tl.task_async(stubborn)
        await anyio.sleep(0)
        outcome = await tl.task_shutdown(task, timeout=0.02)
        return outcome, tl.is_alive(task.pid), drain()

    async with tl.open_node():
        outcome, alive, left = await in_process(main)
    assert outcome is None
    assert not alive
    assert left == []
