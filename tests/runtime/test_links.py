"""C-L* (links and the exit-signal table of docs/guarantees.md) and C-T* (trap_exit).

Agents (``process_helpers.agent``) run the link/unlink/exit calls inside the
processes concerned; every other message stays in their mailboxes, so the
tests read exactly what arrived with :func:`drain` run inside the agent.
"""

from __future__ import annotations

import anyio
import pytest

import thunderline.runtime as tl
from process_helpers import agent, do, drain, in_process, wait_down

pytestmark = pytest.mark.anyio


async def _agent(*, trap: bool = False) -> tuple[tl.Pid, tl.Ref]:
    pid, ref = tl.spawn_monitor(agent, trap_exit=trap)
    return pid, ref


async def test_c_l1_exit_normal_is_ignored_by_non_trapping(anyio_backend: str) -> None:
    async def main() -> bool:
        b, _ = await _agent()
        tl.exit(b, tl.NORMAL)
        await anyio.wait_all_tasks_blocked()
        return tl.is_alive(b) and await do(b, drain) == []

    async with tl.open_node():
        assert await in_process(main)


async def test_c_l2_exit_normal_to_trapping_is_exit_message_from_sender(anyio_backend: str) -> None:
    async def main() -> tuple[tl.Pid, list[object]]:
        b, _ = await _agent(trap=True)
        tl.exit(b, tl.NORMAL)
        return tl.current_pid(), await do(b, drain)

    async with tl.open_node():
        me, got = await in_process(main)
    assert got == [tl.Exit(me, tl.NORMAL)]


async def test_c_l3_exit_self_normal(anyio_backend: str) -> None:
    async def main() -> tuple[tl.Down, list[object]]:
        a, ref = await _agent()
        await do(a, lambda: tl.exit(tl.current_pid(), tl.NORMAL))
        down = await wait_down(ref)
        t, _ = await _agent(trap=True)  # a trapping caller gets a message instead
        await do(t, lambda: tl.exit(tl.current_pid(), tl.NORMAL))
        return down, await do(t, drain)

    async with tl.open_node():
        down, trapped = await in_process(main)
    assert down.reason == tl.NORMAL
    assert len(trapped) == 1
    assert isinstance(trapped[0], tl.Exit)
    assert trapped[0].reason == tl.NORMAL


async def test_c_l4_exit_kill_kills_a_trapping_process_with_killed(anyio_backend: str) -> None:
    async def main() -> tl.Down:
        b, ref = await _agent(trap=True)
        tl.exit(b, tl.KILL)
        return await wait_down(ref)

    async with tl.open_node():
        assert (await in_process(main)).reason == tl.KILLED


async def test_c_l5_kill_cascade_propagates_killed(anyio_backend: str) -> None:
    async def main() -> tuple[tl.Down, tl.Down]:
        b, ref_b = await _agent()
        c, ref_c = await _agent()
        await do(c, lambda: tl.link(b))
        tl.exit(b, tl.KILL)
        return await wait_down(ref_b), await wait_down(ref_c)

    async with tl.open_node():
        down_b, down_c = await in_process(main)
    assert down_b.reason == tl.KILLED
    assert down_c.reason == tl.KILLED


async def test_c_l6_own_exit_kill_is_trappable_kill_through_links(anyio_backend: str) -> None:
    async def main() -> tuple[object, ...]:
        a, ref_a = await _agent()
        b, ref_b = await _agent()
        c, _ = await _agent(trap=True)
        await do(b, lambda: tl.link(a))
        await do(c, lambda: tl.link(a))

        def die() -> None:
            raise tl.ProcessExit(tl.KILL)

        await do(a, die)
        down_a, down_b = await wait_down(ref_a), await wait_down(ref_b)
        return down_a.reason, down_b.reason, await do(c, drain), a

    async with tl.open_node():
        reason_a, reason_b, at_c, a = await in_process(main)
    assert reason_a == tl.KILL
    assert reason_b == tl.KILL  # row 4: a kill that travels through a link stays kill
    assert at_c == [tl.Exit(a, tl.KILL)]  # row 7: trapped, not killed


async def test_c_l7_normal_exit_of_link_partner(anyio_backend: str) -> None:
    async def main() -> tuple[bool, list[object], tl.Pid]:
        a, ref_a = await _agent()
        b, _ = await _agent()
        t, _ = await _agent(trap=True)
        await do(b, lambda: tl.link(a))
        await do(t, lambda: tl.link(a))
        tl.send(a, "unrelated")
        await do(a, lambda: tl.exit(tl.current_pid(), tl.NORMAL))
        await wait_down(ref_a)
        await anyio.wait_all_tasks_blocked()
        return tl.is_alive(b), await do(t, drain), a

    async with tl.open_node():
        b_alive, at_t, a = await in_process(main)
    assert b_alive
    assert at_t == [tl.Exit(a, tl.NORMAL)]


async def test_c_l8_crash_propagates_through_a_chain(anyio_backend: str) -> None:
    async def main() -> list[object]:
        a, ref_a = await _agent()
        b, ref_b = await _agent()
        c, ref_c = await _agent()
        t, _ = await _agent(trap=True)
        await do(b, lambda: tl.link(a))
        await do(c, lambda: tl.link(b))
        await do(t, lambda: tl.link(c))

        def crash() -> None:
            raise tl.ProcessExit(("boom", 1))

        await do(a, crash)
        reasons = [(await wait_down(r)).reason for r in (ref_a, ref_b, ref_c)]
        return [*reasons, await do(t, drain), c]

    async with tl.open_node():
        ra, rb, rc, at_t, c = await in_process(main)
    assert ra == rb == rc == ("boom", 1)
    assert at_t == [tl.Exit(c, ("boom", 1))]


async def test_c_l9_unlink_then_peer_crash_sends_nothing(anyio_backend: str) -> None:
    async def main() -> tuple[bool, list[object]]:
        a, ref_a = await _agent()
        b, _ = await _agent(trap=True)
        await do(b, lambda: tl.link(a))
        await do(b, lambda: tl.unlink(a))
        tl.exit(a, "boom")
        await wait_down(ref_a)
        await anyio.wait_all_tasks_blocked()
        return tl.is_alive(b), await do(b, drain)

    async with tl.open_node():
        alive, got = await in_process(main)
    assert alive
    assert got == []


async def test_c_l10_link_to_a_dead_pid(anyio_backend: str) -> None:
    async def main() -> tuple[object, list[object], tl.Pid]:
        dead, ref = await _agent()
        tl.exit(dead, tl.KILL)
        await wait_down(ref)
        plain, _ = await _agent()
        with pytest.raises(tl.NoProcessError) as info:
            await do(plain, lambda: tl.link(dead))
        trapping, _ = await _agent(trap=True)
        assert await do(trapping, lambda: tl.link(dead)) is None
        assert tl.is_alive(plain)
        return info.value.target, await do(trapping, drain), dead

    async with tl.open_node():
        target, got, dead = await in_process(main)
    assert target == dead
    assert got == [tl.Exit(dead, tl.NOPROC)]


async def test_c_l11_double_link_one_unlink_removes_the_link(anyio_backend: str) -> None:
    async def main() -> tuple[tuple[tl.Pid, ...], bool]:
        a, ref_a = await _agent()
        b, _ = await _agent()
        await do(b, lambda: tl.link(a))
        await do(b, lambda: tl.link(a))
        info = tl.process_info(b)
        assert info is not None
        links = info.links
        await do(b, lambda: tl.unlink(a))
        tl.exit(a, "boom")
        await wait_down(ref_a)
        await anyio.wait_all_tasks_blocked()
        return links, tl.is_alive(b)

    async with tl.open_node():
        links, alive = await in_process(main)
    assert len(links) == 1
    assert alive


async def test_c_t1_trap_exit_returns_the_previous_value(anyio_backend: str) -> None:
    async def main() -> list[bool]:
        return [tl.trap_exit(True), tl.trap_exit(True), tl.trap_exit(False), tl.trap_exit(False)]

    async with tl.open_node():
        assert await in_process(main) == [False, True, True, False]


async def test_c_t2_exit_messages_take_part_in_selective_receive(anyio_backend: str) -> None:
    async def main() -> list[object]:
        a, ref_a = await _agent()
        tl.link(a)
        tl.send(tl.current_pid(), "first")
        tl.exit(a, "boom")
        await wait_down(ref_a)
        exit_msg = await tl.receive(tl.Exit, timeout=5)
        return [exit_msg, await tl.receive(timeout=0), a]

    async with tl.open_node():
        exit_msg, rest, a = await in_process(main, trap_exit=True)
    assert exit_msg == tl.Exit(a, "boom")
    assert rest == "first"


async def test_delivered_exit_survives_trap_off_then_next_signal_kills(anyio_backend: str) -> None:
    async def main() -> tuple[int, tl.Down]:
        a, ref_a = await _agent()
        b, ref_b = await _agent(trap=True)
        await do(b, lambda: tl.link(a))
        tl.exit(a, "boom")
        await wait_down(ref_a)
        await do(b, lambda: tl.trap_exit(False))
        queued = await do(b, lambda: len(drain()))
        tl.exit(b, "later")
        return queued, await wait_down(ref_b)

    async with tl.open_node():
        queued, down = await in_process(main)
    assert queued == 1
    assert down.reason == "later"
