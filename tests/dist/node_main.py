"""A cluster node in its own OS process, for the distribution tests.

``python node_main.py URL NAME BACKEND [TICK [LEASE]]`` joins the cluster of URL as
NAME and hosts: ``echo`` (a registered process; ``("ping", pid, x)`` is
answered with ``("pong", x)``, ``("burst", pid, n)`` with ``("seq", 0..n-1)``),
``ctr`` (a registered server: ``("add", n)`` replies the new total,
``("sleep", s, x)`` replies x after s seconds, ``("whereis", name)`` replies
``whereis_global(name)`` on this node, ``"crash"`` raises), the global
name ``g_NAME`` (the echo process) and the spawnable function ``worker``.
It prints ``ready`` and runs until killed.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio

import thunderline as tl
from thunderline import dist


async def echo() -> None:
    while True:
        message = await tl.receive()
        if isinstance(message, tuple) and message[0] == "ping":
            tl.send(message[1], ("pong", message[2]))
        elif isinstance(message, tuple) and message[0] == "burst":
            for i in range(message[2]):
                tl.send(message[1], ("seq", i))


class Counter(tl.Server[int]):
    async def init(self, *args: Any) -> tl.Ok[int]:
        return tl.Ok(0)

    async def handle_call(self, request: Any, from_: tl.From, state: int) -> tl.Reply[int]:
        if request == "crash":
            raise ValueError("asked to crash")
        if request[0] == "whereis":
            return tl.Reply(await dist.whereis_global(request[1]), state)
        if request[0] == "sleep":
            await anyio.sleep(request[1])
            return tl.Reply(request[2], state)
        return tl.Reply(state + request[1], state + request[1])

    async def handle_cast(self, request: Any, state: int) -> tl.NoReply[int]:
        return tl.NoReply(state + request[1])


async def worker(owner: tl.Pid, tag: str) -> None:
    tl.send(owner, ("worker_started", tag, tl.current_pid()))
    message = await tl.receive()
    if message == "crash":
        raise ValueError("worker crash")


async def main(name: str) -> None:
    pid = tl.spawn(echo)
    tl.register("echo", pid)
    await tl.start(Counter, name="ctr")
    dist.register_function("worker", worker)
    await dist.register_global(f"g_{name}", pid)
    print("ready", flush=True)
    await tl.receive()


if __name__ == "__main__":
    url, name, backend = sys.argv[1], sys.argv[2], sys.argv[3]
    tick = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0
    lease = float(sys.argv[5]) if len(sys.argv) > 5 else None
    tl.run(main, name, backend=backend, node=name, cluster=url, tick=tick, lease=lease)
