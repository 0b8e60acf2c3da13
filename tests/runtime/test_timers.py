"""C-TM* (timers)."""

from __future__ import annotations

import pytest

import thunderline.runtime as tl
from process_helpers import agent, do, drain, in_process, wait_down

pytestmark = pytest.mark.anyio


async def test_c_tm1_timer_to_a_pid_is_cancelled_when_it_dies(anyio_backend: str) -> None:
    async def main() -> tuple[float | None, float | None]:
        pid, ref = tl.spawn_monitor(agent)
        timer = tl.send_after(30.0, pid, "late")
        before = tl.read_timer(timer)
        tl.exit(pid, "boom")
        await wait_down(ref)
        return before, tl.read_timer(timer)

    async with tl.open_node():
        before, after = await in_process(main)
    assert before is not None
    assert 0 < before <= 30.0
    assert after is None
    # cancel_timer of a cancelled timer reports it is gone
    async with tl.open_node():
        assert await in_process(_cancel_after_death) is None


async def _cancel_after_death() -> float | None:
    pid, ref = tl.spawn_monitor(agent)
    timer = tl.send_after(30.0, pid, "late")
    tl.exit(pid, "boom")
    await wait_down(ref)
    return tl.cancel_timer(timer)


async def test_c_tm2_timer_to_a_name_resolves_when_it_fires(anyio_backend: str) -> None:
    async def main() -> tuple[object, list[object]]:
        first = tl.spawn(agent)
        tl.register("ticker", first)
        tl.send_after(0.05, "ticker", "tick")
        tl.unregister("ticker")
        tl.register("ticker")  # the caller holds the name when the timer fires
        got = await tl.receive("tick", timeout=10)
        return got, await do(first, drain)

    async with tl.open_node():
        got, at_first = await in_process(main)
    assert got == "tick"
    assert at_first == []


async def test_c_tm2_timer_to_an_unheld_name_is_dropped(anyio_backend: str) -> None:
    async def main() -> None:
        tl.send_after(0.01, "nobody_here", "tick")  # no error now
        tl.send_after(0.02, tl.current_pid(), "after")
        assert await tl.receive(timeout=10) == "after"

    async with tl.open_node():
        await in_process(main)


async def test_c_tm3_cancel_after_fire_returns_none_message_queued(anyio_backend: str) -> None:
    async with tl.open_node():
        assert await in_process(_fire_then_cancel) == (None, ["fired"])


async def _fire_then_cancel() -> tuple[float | None, list[object]]:
    timer = tl.send_after(0.01, tl.current_pid(), "fired")
    marker = tl.send_after(0.05, tl.current_pid(), "marker")
    await tl.receive("marker", timeout=10)  # the earlier timer has fired by now
    assert tl.read_timer(marker) is None
    return tl.cancel_timer(timer), drain()


async def test_cancel_before_fire_returns_time_left_and_nothing_arrives(
    anyio_backend: str,
) -> None:
    async def main() -> tuple[float | None, list[object]]:
        timer = tl.send_after(30.0, tl.current_pid(), "never")
        left = tl.cancel_timer(timer)
        tl.send_after(0.02, tl.current_pid(), "marker")
        await tl.receive("marker", timeout=10)
        return left, drain()

    async with tl.open_node():
        left, rest = await in_process(main)
    assert left is not None
    assert 0 < left <= 30.0
    assert rest == []
