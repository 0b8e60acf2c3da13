"""Global name leases: a name whose registrar is gone expires; a hung registrar fences itself."""

from __future__ import annotations

import signal
from typing import Any

import anyio
import pytest
from dist_helpers import BOUND, in_process, local_node

import thunderline as tl
from thunderline import dist

pytestmark = pytest.mark.anyio

LEASE = 1.0


async def register_eventually(name: str, pid: tl.Pid) -> None:
    """Try to take ``name`` until it is free (bounded)."""
    with anyio.fail_after(BOUND):
        while not await dist.register_global(name, pid):
            await anyio.sleep(0.05)


async def ask_until(request: Any, wanted: Any) -> list[Any]:
    """Ask b's ``ctr`` until it answers ``wanted``; every answer, in order (bounded)."""
    answers: list[Any] = []
    with anyio.fail_after(BOUND):
        while not answers or answers[-1] != wanted:
            try:
                answers.append(await tl.call(("ctr", "b"), request, timeout=2.0))
            except (tl.CallNodeDownError, tl.CallNoProcError, tl.CallTimeoutError):
                await anyio.sleep(0.1)
    return answers


async def test_name_of_a_killed_node_expires_without_survivors(
    cluster_url: str, start_node: Any
) -> None:
    """Nobody saw node b go (no survivor to release its name): the lease frees it."""
    b = await start_node("b", 1.0, LEASE)
    b.kill()  # kill -9 before any other node joined
    async with local_node(cluster_url, "a", tick=1.0, lease=LEASE):

        async def body() -> None:
            me = tl.current_pid()
            await register_eventually("g_b", me)
            assert await dist.whereis_global("g_b") == me

        await in_process(body)


async def test_hung_registrar_fences_itself(cluster_url: str, start_node: Any) -> None:
    """SIGSTOP the node holding ``g_b``: another node takes it; b never answers for it again."""
    async with local_node(cluster_url, "a", tick=1.0, lease=LEASE):
        b = await start_node("b", 1.0, LEASE)

        async def body() -> None:
            me = tl.current_pid()
            assert await dist.connect_node("b", BOUND)
            old = await dist.whereis_global("g_b")
            assert old is not None
            assert dist.node_of(old) == "b"
            assert not await dist.register_global("g_b", me)
            b.signal(signal.SIGSTOP)
            await register_eventually("g_b", me)
            b.signal(signal.SIGCONT)
            # b comes back (it was declared down; calls reconnect it). Until the
            # nodes see each other again b may answer None; never its old holder.
            answers = await ask_until(("whereis", "g_b"), me)
            await anyio.sleep(LEASE)  # b's renewal loop ran again: still not b's
            answers += await ask_until(("whereis", "g_b"), me)
            assert old not in answers
            assert set(answers) <= {None, me}
            assert await dist.whereis_global("g_b") == me

        await in_process(body)


async def test_renewed_name_outlives_its_lease(cluster_url: str) -> None:
    """A live registrar keeps renewing: the name survives many leases."""
    async with local_node(cluster_url, "a", tick=1.0, lease=0.4):

        async def body() -> None:
            me = tl.current_pid()
            assert await dist.register_global("kept", me)
            for _ in range(5):
                await anyio.sleep(0.4)
                assert await dist.whereis_global("kept") == me

        await in_process(body)


async def test_lease_is_a_cluster_setting(cluster_url: str) -> None:
    """The first node sets the lease; a later node with another value uses the cluster's."""
    async with (
        local_node(cluster_url, "a", lease=0.5) as a,
        local_node(cluster_url, "b", lease=9) as b,
    ):
        assert a.global_names.lease == 0.5
        assert b.global_names.lease == 0.5


async def test_bad_lease_is_refused(cluster_url: str) -> None:
    async with tl.open_node() as node:
        for bad in (0, -1, 0.1, float("nan"), "5", True):
            with pytest.raises(ValueError, match="lease"):
                async with dist.open_distribution(node, "a", cluster_url, lease=bad):
                    pass


async def test_one_winner_when_an_expired_name_is_raced(cluster_url: str, start_node: Any) -> None:
    """Eight processes on two nodes keep trying to take an expiring name: exactly one gets it."""
    b = await start_node("b", 1.0, LEASE)
    b.kill()
    async with (
        local_node(cluster_url, "c", tick=1.0, lease=LEASE) as c,
        local_node(cluster_url, "a", tick=1.0, lease=LEASE),
    ):

        async def racer(owner: tl.Pid) -> None:
            while True:
                won = await dist.register_global("g_b", tl.current_pid())
                if won or await dist.whereis_global("g_b") is not None:
                    tl.send(owner, ("raced", won, tl.current_pid()))
                    await tl.receive()
                    return
                await anyio.sleep(0.01)

        c.functions["racer"] = racer

        async def body() -> None:
            assert await dist.connect_node("c", BOUND)
            me = tl.current_pid()
            racers = [await dist.spawn_remote("c", "racer", me) for _ in range(4)]
            racers += [tl.spawn(racer, me) for _ in range(4)]
            results = [await tl.receive(timeout=BOUND * 2) for _ in range(8)]
            winners = [pid for _tag, won, pid in results if won]
            assert len(winners) == 1
            assert await dist.whereis_global("g_b") == winners[0]
            for pid in racers:
                tl.send(pid, "stop")

        await in_process(body)
