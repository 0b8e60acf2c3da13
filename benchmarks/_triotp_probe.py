"""triotp peer probe: ``TRIOTP_PYTHON _triotp_probe.py WORKLOAD N`` prints ``{"seconds": t}``.

Runs in triotp's own environment (triotp pins trio < 0.20, the project needs a
newer trio), so it imports nothing from thunderline or from this package.
triotp mailboxes are trio memory channels of size 0: a send waits for the
receiver (a rendezvous), unlike OTP's unbounded mailboxes.
"""

from __future__ import annotations

import json
import sys
import types
from time import perf_counter
from typing import Any

import trio
from triotp import gen_server, mailbox


async def one_way(n: int) -> float:
    done = trio.Event()

    async def consumer(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with mailbox.open(name="sink") as mid:
            task_status.started()
            for _ in range(n):
                await mailbox.receive(mid)
            done.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(consumer)
        start = perf_counter()
        for i in range(n):
            await mailbox.send("sink", i)
        await done.wait()
        return perf_counter() - start


async def round_trip(n: int) -> float:
    async def echo(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with mailbox.open(name="echo") as mid:
            task_status.started()
            while True:
                sender, message = await mailbox.receive(mid)
                await mailbox.send(sender, message)

    async with trio.open_nursery() as nursery:
        await nursery.start(echo)
        async with mailbox.open() as me:
            start = perf_counter()
            for i in range(n):
                await mailbox.send("echo", (me, i))
                await mailbox.receive(me)
            elapsed = perf_counter() - start
        nursery.cancel_scope.cancel()
    return elapsed


async def _init(_arg: Any) -> None:
    return None


async def _handle_call(message: Any, _caller: Any, state: Any) -> Any:
    return gen_server.Reply(message), state


ECHO = types.SimpleNamespace(__name__="echo_server", init=_init, handle_call=_handle_call)


async def server_call(n: int) -> float:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gen_server.start, ECHO, None, "server")
        while mailbox._resolve("server") is None:  # started: its mailbox has its name
            await trio.sleep(0)
        start = perf_counter()
        for i in range(n):
            await gen_server.call("server", i)
        elapsed = perf_counter() - start
        nursery.cancel_scope.cancel()
    return elapsed


async def spawn_cycle(n: int) -> float:
    async def worker(reply_to: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with mailbox.open() as mid:
            task_status.started(mid)
            message = await mailbox.receive(mid)
            await mailbox.send(reply_to, message)

    async with trio.open_nursery() as nursery, mailbox.open() as me:
        start = perf_counter()
        for i in range(n):
            mid = await nursery.start(worker, me)
            await mailbox.send(mid, i)
            await mailbox.receive(me)
        return perf_counter() - start


WORKLOADS = {
    "one_way": one_way,
    "round_trip": round_trip,
    "server_call": server_call,
    "spawn_cycle": spawn_cycle,
}


async def _main(name: str, n: int) -> float:
    mailbox._init()
    return await WORKLOADS[name](n)


if __name__ == "__main__":
    seconds = trio.run(_main, sys.argv[1], int(sys.argv[2]))
    json.dump({"seconds": seconds}, sys.stdout)
