"""The global name registry on JetStream KV: one winner under races, release on death."""

from __future__ import annotations

import anyio
import pytest
from dist_helpers import BOUND, in_process, local_node, receive

import thunderline as tl
from thunderline import dist

pytestmark = pytest.mark.anyio


async def racer(owner: tl.Pid) -> None:
    won = await dist.register_global("race", tl.current_pid())
    tl.send(owner, ("raced", won))
    await tl.receive()


async def wait_unregistered(name: str) -> None:
    with anyio.fail_after(BOUND):
        while await dist.whereis_global(name) is not None:
            await anyio.sleep(0.02)


async def test_exactly_one_winner_and_release(cluster_url: str) -> None:
    async with local_node(cluster_url, "b") as b, local_node(cluster_url, "a"):
        b.functions["racer"] = racer

        async def body() -> None:
            assert await dist.connect_node("b", 20)
            me = tl.current_pid()
            remote = [await dist.spawn_remote("b", "racer", me) for _ in range(4)]
            local = [tl.spawn(racer, me) for _ in range(4)]
            results = [(await receive())[1] for _ in range(8)]
            assert results.count(True) == 1
            winner = await dist.whereis_global("race")
            assert winner in remote + local
            # a second name for the same process, and a taken name: no
            assert not await dist.register_global("race2", winner)
            assert not await dist.register_global("race", me)
            assert sorted(await dist.registered_global()) == ["race"]
            # the holder ends normally: the name goes
            tl.send(winner, "stop")
            await wait_unregistered("race")
            # a dead pid can be registered; the name is gone right after
            dead, _ref = tl.spawn_monitor(anyio.sleep, 0)
            await receive(tl.Down)
            assert await dist.register_global("ghost", dead)
            await wait_unregistered("ghost")
            # unregister, and unregistering an unknown name is fine
            assert await dist.register_global("mine", me)
            assert await dist.whereis_global("mine") == me
            await dist.unregister_global("mine")
            await dist.unregister_global("mine")
            assert await dist.whereis_global("mine") is None
            with pytest.raises(tl.NameNotRegisteredError):
                await dist.send_global("nobody", "hi")
            with pytest.raises(dist.GlobalNameError):
                await dist.register_global("bad name", me)

        await in_process(body)
