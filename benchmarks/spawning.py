"""Spawn cycle: start a process, send it one message, get the reply, let it exit.

The processes are started one after the other (the parent waits for each
reply), so the figure is the full life of one short-lived process.
"""

from __future__ import annotations

import asyncio
import math
from time import perf_counter
from typing import Any

from benchmarks import _runners as r
from benchmarks._core import Contender, Target, Workload

ORDER = 20


async def tl_spawn_cycle(n: int) -> float:
    import anyio

    from thunderline.runtime import current_pid, processes, receive, send, spawn

    me = current_pid()

    async def worker() -> None:
        sender, message = await receive()
        send(sender, message)

    start = perf_counter()
    for i in range(n):
        pid = spawn(worker)
        send(pid, (me, i))
        await receive()
    while len(processes()) > 1:  # the last worker has not finished exiting yet
        await anyio.sleep(0)
    return perf_counter() - start


async def asyncio_spawn_cycle(n: int) -> float:
    replies: asyncio.Queue[int] = asyncio.Queue()

    async def worker(inbox: asyncio.Queue[int]) -> None:
        replies.put_nowait(await inbox.get())

    start = perf_counter()
    task = None
    for i in range(n):
        inbox: asyncio.Queue[int] = asyncio.Queue()
        task = asyncio.create_task(worker(inbox))
        inbox.put_nowait(i)
        await replies.get()
    if task is not None:
        await task
    return perf_counter() - start


async def trio_spawn_cycle(n: int) -> float:
    import trio

    rep_send, rep_recv = trio.open_memory_channel[int](math.inf)

    async def worker(inbox: trio.MemoryReceiveChannel[int]) -> None:
        rep_send.send_nowait(await inbox.receive())

    async with trio.open_nursery() as nursery:
        start = perf_counter()
        for i in range(n):
            in_send, in_recv = trio.open_memory_channel[int](math.inf)
            nursery.start_soon(worker, in_recv)
            in_send.send_nowait(i)
            await rep_recv.receive()
    return perf_counter() - start


async def anyio_spawn_cycle(n: int) -> float:
    import anyio
    from anyio.streams.memory import MemoryObjectReceiveStream

    rep_send, rep_recv = anyio.create_memory_object_stream[int](math.inf)

    async def worker(inbox: MemoryObjectReceiveStream[int]) -> None:
        rep_send.send_nowait(await inbox.receive())

    async with anyio.create_task_group() as tg:
        start = perf_counter()
        for i in range(n):
            in_send, in_recv = anyio.create_memory_object_stream[int](math.inf)
            tg.start_soon(worker, in_recv)
            in_send.send_nowait(i)
            await rep_recv.receive()
    return perf_counter() - start


def pykka_spawn_cycle(n: int) -> float:
    r.pykka_available()
    import pykka

    class Worker(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            return message

    start = perf_counter()
    for i in range(n):
        ref = Worker.start()
        ref.ask(i)
        ref.stop()
    return perf_counter() - start


WORKLOADS = [
    Workload(
        name="spawn_cycle",
        title="spawn + one message + reply + exit, one process after the other",
        n=10_000,
        smoke_n=100,
        contenders=[
            Contender(
                "thunderline", "thunderline spawn/send/receive", r.thunderline(tl_spawn_cycle)
            ),
            Contender(
                "raw",
                "asyncio.create_task + asyncio.Queue",
                r.raw_asyncio(asyncio_spawn_cycle),
                ("asyncio",),
            ),
            Contender(
                "raw",
                "trio nursery.start_soon + memory channel",
                r.raw_trio(trio_spawn_cycle),
                ("trio",),
            ),
            Contender(
                "anyio", "anyio task group + memory object stream", r.on_anyio(anyio_spawn_cycle)
            ),
            Contender(
                "pykka",
                "pykka start + ask + stop (one thread each)",
                r.in_thread_world(pykka_spawn_cycle),
                None,
                0.2,
            ),
            Contender(
                "triotp", "triotp task + mailbox.open", r.triotp("spawn_cycle"), ("trio",), 0.2
            ),
        ],
        target=Target(max_ratio=2.0),
    ),
]
