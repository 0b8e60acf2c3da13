"""C-M* (monitors, demonitor with flush/info)."""

from __future__ import annotations

import anyio
import pytest

import thunderline.runtime as tl
from process_helpers import agent, do, drain, in_process, wait_down
from thunderline.lowlevel import remote

pytestmark = pytest.mark.anyio


async def test_c_m1_monitor_of_a_dead_pid_is_noproc_at_once(anyio_backend: str) -> None:
    async def main() -> tuple[tl.Down, tl.Ref, tl.Pid]:
        dead, ref = tl.spawn_monitor(agent)
        tl.exit(dead, tl.KILL)
        await wait_down(ref)
        ref2 = tl.monitor(dead)
        return tl.receive_nowait(tl.Down), ref2, dead

    async with tl.open_node():
        down, ref, dead = await in_process(main)
    assert down == tl.Down(ref, dead, tl.NOPROC)


async def test_c_m2_two_monitors_two_downs(anyio_backend: str) -> None:
    async def main() -> tuple[list[tl.Down], tl.Ref, tl.Ref]:
        pid = tl.spawn(agent)
        r1, r2 = tl.monitor(pid), tl.monitor(pid)
        tl.exit(pid, "boom")
        downs = [await wait_down(r1), await wait_down(r2)]
        await anyio.wait_all_tasks_blocked()
        assert drain() == []
        return downs, r1, r2

    async with tl.open_node():
        downs, r1, r2 = await in_process(main)
    assert r1 != r2
    assert [d.ref for d in downs] == [r1, r2]
    assert all(d.reason == "boom" for d in downs)


async def test_c_m3_demonitor_after_down_was_queued(anyio_backend: str) -> None:
    async def case(*, flush: bool, info: bool) -> tuple[bool, int]:
        pid = tl.spawn(agent)
        ref = tl.monitor(pid)
        tl.exit(pid, "boom")
        await anyio.wait_all_tasks_blocked()  # the Down is queued, not received
        result = tl.demonitor(ref, flush=flush, info=info)
        return result, len(drain())

    async def main() -> list[tuple[bool, int]]:
        return [
            await case(flush=False, info=False),
            await case(flush=False, info=True),
            await case(flush=True, info=False),
            await case(flush=True, info=True),
        ]

    async def before_death() -> bool:
        pid = tl.spawn(agent)
        ref = tl.monitor(pid)
        result = tl.demonitor(ref, info=True)
        tl.exit(pid, "boom")
        await anyio.wait_all_tasks_blocked()
        assert drain() == []
        return result

    async with tl.open_node():
        assert await in_process(main) == [(True, 1), (False, 1), (True, 0), (False, 0)]
        assert await in_process(before_death) is True


async def test_c_m3_demonitor_of_someone_elses_ref_is_a_no_op(anyio_backend: str) -> None:
    async def main() -> tuple[bool, bool, int]:
        owner = tl.spawn(agent)
        target = tl.spawn(agent)
        ref = await do(owner, lambda: tl.monitor(target))
        results = tl.demonitor(ref), tl.demonitor(ref, info=True)
        tl.exit(target, "boom")
        await anyio.wait_all_tasks_blocked()
        return results[0], results[1], len(await do(owner, drain))

    async with tl.open_node():
        assert await in_process(main) == (True, False, 1)


async def test_demonitor_of_another_nodes_reference_is_badarg(anyio_backend: str) -> None:
    """OTP: ``erlang:demonitor`` of a reference made on another node is ``badarg``
    (recorded in distribution scenario 288); the caller's own monitors are untouched."""

    async def main() -> tuple[str, bool]:
        target = tl.spawn(agent)
        ref = tl.monitor(target)
        foreign = remote.make_ref(remote.new_node_number(), 1)
        with pytest.raises(tl.ForeignReferenceError, match="demonitor") as raised:
            tl.demonitor(foreign, info=True)
        return str(raised.value), tl.demonitor(ref, info=True)

    async with tl.open_node():
        message, removed = await in_process(main)
    assert "another node" in message
    assert removed


async def test_c_m4_monitoring_never_kills_the_watcher(anyio_backend: str) -> None:
    async def main() -> tuple[bool, tl.Down]:
        watcher = tl.spawn(agent)
        target, ref_t = tl.spawn_monitor(agent)
        await do(watcher, lambda: tl.monitor(target))
        tl.exit(target, "boom")
        await wait_down(ref_t)
        await anyio.wait_all_tasks_blocked()
        messages = await do(watcher, drain)
        return tl.is_alive(watcher), messages[0]

    async with tl.open_node():
        alive, down = await in_process(main)
    assert alive
    assert down.reason == "boom"


@pytest.mark.parametrize("how", ["killed", "normal", "custom", "shutdown"])
async def test_c_m5_down_carries_exactly_the_reason(anyio_backend: str, how: str) -> None:
    async def main() -> object:
        pid, ref = tl.spawn_monitor(agent)
        if how == "killed":
            tl.exit(pid, tl.KILL)
        elif how == "normal":
            tl.send(pid, "x")  # irrelevant message; then a normal self-exit
            await do(pid, lambda: tl.exit(tl.current_pid(), tl.NORMAL))
        elif how == "custom":
            tl.exit(pid, {"custom": 1}.__repr__())
        else:
            tl.exit(pid, tl.Shutdown("detail"))
        return (await wait_down(ref)).reason

    expected = {
        "killed": tl.KILLED,
        "normal": tl.NORMAL,
        "custom": "{'custom': 1}",
        "shutdown": tl.Shutdown("detail"),
    }[how]
    async with tl.open_node():
        assert await in_process(main) == expected


async def test_monitor_by_name_reports_the_name(anyio_backend: str) -> None:
    async def main() -> tuple[tl.Down, tl.Down, tl.Ref, tl.Ref]:
        ref_missing = tl.monitor("ghost")
        missing = tl.receive_nowait(tl.Down)
        pid = tl.spawn(agent)
        tl.register("named", pid)
        ref = tl.monitor("named")
        tl.exit(pid, "boom")
        return missing, await wait_down(ref), ref_missing, ref

    async with tl.open_node():
        missing, down, ref_missing, ref = await in_process(main)
    assert missing == tl.Down(ref_missing, "ghost", tl.NOPROC)
    assert down == tl.Down(ref, "named", "boom")


async def test_monitoring_oneself_creates_no_monitor(anyio_backend: str) -> None:
    async def main() -> tuple[tuple[object, ...], bool]:
        ref = tl.monitor(tl.current_pid())
        info = tl.process_info(tl.current_pid())
        assert info is not None
        return info.monitors, tl.demonitor(ref, info=True)

    async with tl.open_node():
        assert await in_process(main) == ((), False)
