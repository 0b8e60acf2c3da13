"""Remote calls: the monitor travels with the request and ends with the reply (no demonitor)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from dist_helpers import BOUND, in_process, local_node, receive

import thunderline as tl
from thunderline import dist

pytestmark = pytest.mark.anyio


class Echo(tl.Server[None]):
    async def init(self, *args: Any) -> tl.Ok[None]:
        return tl.Ok(None)

    async def handle_call(self, request: Any, from_: tl.From, state: None) -> Any:
        if request == "crash":
            raise ValueError("asked to crash")
        if isinstance(request, tuple) and request[0] == "sleep":
            await anyio.sleep(request[1])
        if isinstance(request, tuple) and request[0] == "later":
            tl.spawn(answer_later, from_, request[1])  # another process of b replies
            return tl.NoReply(state)
        return tl.Reply(request, state)


async def answer_later(from_: tl.From, value: Any) -> None:
    tl.reply(from_, value)


async def host(owner: tl.Pid) -> None:
    server = await tl.start(Echo, name="echo")
    tl.send(owner, ("hosted", server))
    while True:
        message = await tl.receive()
        if message == "info":
            info = tl.process_info(server)
            monitored_by = info.monitored_by if info is not None else None
            tl.send(owner, ("info", monitored_by))


def tagged(tag: str) -> Any:
    return lambda m: isinstance(m, tuple) and len(m) == 2 and m[0] == tag


async def monitors_of_echo(hoster: tl.Pid) -> tuple[str, ...]:
    tl.send(hoster, "info")
    _tag, monitored_by = await receive(tagged("info"))
    return tuple(monitored_by)


async def test_calls_leave_no_monitor_on_either_side(cluster_url: str) -> None:
    async with local_node(cluster_url, "b") as b, local_node(cluster_url, "a"):
        b.functions["host"] = host

        async def body() -> None:
            me = tl.current_pid()
            hoster = await dist.spawn_remote("b", "host", me)
            _tag, server = await receive(tagged("hosted"))
            for i in range(50):
                assert await tl.call(("echo", "b"), i) == i
                assert await tl.call(server, ("x", i)) == ("x", i)
            assert await tl.call(("echo", "b"), ("later", "from another process")) == (
                "from another process"
            )
            info = tl.process_info(me)
            assert info is not None
            assert info.monitors == ()  # the caller forgot each monitor with its reply
            # the callee's node forgot them as the replies left (one may remain:
            # the reply came from another process, b keeps it until echo ends)
            assert len(await monitors_of_echo(hoster)) <= 1
            assert len(b.incoming_monitors) <= 1
            # no Down from a forgotten monitor arrives when the server stops
            await tl.stop(server)
            with pytest.raises(tl.ReceiveTimeout):
                await tl.receive(tl.Down, timeout=0.3)

        await in_process(body)


async def test_call_failures_name_their_cause(cluster_url: str) -> None:
    async with local_node(cluster_url, "b") as b, local_node(cluster_url, "a"):
        b.functions["host"] = host

        async def body() -> None:
            me = tl.current_pid()
            await dist.spawn_remote("b", "host", me)
            _tag, server = await receive(tagged("hosted"))
            with pytest.raises(tl.CallNoProcError):
                await tl.call(("nobody", "b"), 1, timeout=BOUND)
            with pytest.raises(tl.CallTimeoutError, match="may or may not"):
                await tl.call(server, ("sleep", 1.0), timeout=0.2)
            # the timed-out call's monitor is gone on both sides once b handled it
            with anyio.fail_after(BOUND):
                while b.incoming_monitors:
                    await anyio.sleep(0.02)
            info = tl.process_info(me)
            assert info is not None
            assert info.monitors == ()
            with pytest.raises(tl.CallExitError) as crashed:
                await tl.call(server, "crash", timeout=BOUND)
            assert isinstance(crashed.value.reason, tl.Crashed)
            # a dead pid of a live node: noproc, at once
            with pytest.raises(tl.CallNoProcError):
                await tl.call(server, 1, timeout=BOUND)

        await in_process(body)


async def test_call_to_a_node_that_is_not_there(cluster_url: str) -> None:
    async with local_node(cluster_url, "a"):

        async def body() -> None:
            with pytest.raises(tl.CallNodeDownError, match="may or may not"):
                await tl.call(("echo", "nowhere"), 1, timeout=BOUND)

        await in_process(body)
