"""Crash-to-restarted-and-serving latency under a one_for_one supervisor.

One operation: the child crashes (an exception in a handler), its supervisor
restarts it, and the restarted child answers a call. The clock runs from the
crash request to the reply. The supervisor gets a huge restart intensity (the
default, 1 restart per 5 s, would give up at the second crash).

Crash reports are logged by the runtime at ERROR; stdlib logging is disabled
during the sample (``logging.disable``) so the table measures the runtime,
not the terminal, and the hand-written loops log nothing either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Any

from benchmarks import _runners as r
from benchmarks._core import Contender, Target, Workload

ORDER = 40


class Crash(RuntimeError):
    """What the child raises when told to crash."""


@contextmanager
def logging_off() -> Iterator[None]:
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def quiet(sample: Callable[[str, int], float]) -> Callable[[str, int], float]:
    def run(backend: str, n: int) -> float:
        with logging_off():
            return sample(backend, n)

    return run


async def tl_restart(n: int) -> float:
    from thunderline.runtime import (
        ChildSpec,
        From,
        NoReply,
        Ok,
        Pid,
        Reply,
        Server,
        call,
        cast,
        current_pid,
        receive,
        send,
        start_link,
        start_supervisor,
    )

    bench = current_pid()

    class Worker(Server[None]):
        async def init(self) -> Ok[None]:
            send(bench, ("up", current_pid()))
            return Ok(None)

        async def handle_call(self, request: Any, from_: From, state: None) -> Reply[None]:
            return Reply(request, state)

        async def handle_cast(self, request: Any, state: None) -> NoReply[None]:
            raise Crash(request)

    async def start_worker() -> Pid | None:
        return await start_link(Worker)

    await start_supervisor(
        [ChildSpec(id="worker", start=start_worker)],
        strategy="one_for_one",
        intensity=10 * n + 10,
        period=1,
    )
    _, pid = await receive(tuple)
    start = perf_counter()
    for i in range(n):
        cast(pid, "crash")
        _, pid = await receive(tuple)
        await call(pid, i)
    return perf_counter() - start


async def asyncio_restart(n: int) -> float:
    """A hand-written restart loop: a supervisor task re-creates the worker task on a crash."""
    ups: asyncio.Queue[asyncio.Queue[Any]] = asyncio.Queue()

    async def worker() -> None:
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        ups.put_nowait(inbox)
        while True:
            kind, payload, reply_to = await inbox.get()
            if kind == "call":
                reply_to.set_result(payload)
            else:
                raise Crash(payload)

    async def supervisor() -> None:
        while True:
            try:
                await asyncio.create_task(worker())
            except Crash:
                continue

    loop = asyncio.get_running_loop()
    sup = asyncio.create_task(supervisor())
    inbox = await ups.get()
    start = perf_counter()
    for i in range(n):
        inbox.put_nowait(("crash", "crash", None))
        inbox = await ups.get()
        answer = loop.create_future()
        inbox.put_nowait(("call", i, answer))
        await answer
    elapsed = perf_counter() - start
    sup.cancel()
    return elapsed


async def trio_restart(n: int) -> float:
    """The same loop on trio: each incarnation runs in its own nursery."""
    import math

    import trio

    up_send, up_recv = trio.open_memory_channel[Any](math.inf)

    async def worker() -> None:
        in_send, in_recv = trio.open_memory_channel[Any](math.inf)
        up_send.send_nowait(in_send)
        while True:
            kind, payload, reply_to = await in_recv.receive()
            if kind == "call":
                reply_to.send_nowait(payload)
            else:
                raise Crash(payload)

    async def supervisor() -> None:
        while True:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(worker)
            except* Crash:
                pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(supervisor)
        inbox = await up_recv.receive()
        rep_send, rep_recv = trio.open_memory_channel[Any](math.inf)
        start = perf_counter()
        for i in range(n):
            inbox.send_nowait(("crash", "crash", None))
            inbox = await up_recv.receive()
            inbox.send_nowait(("call", i, rep_send))
            await rep_recv.receive()
        elapsed = perf_counter() - start
        nursery.cancel_scope.cancel()
    return elapsed


WORKLOADS = [
    Workload(
        name="restart",
        title="crash -> one_for_one restart -> restarted child answers a call",
        n=1_000,
        smoke_n=20,
        contenders=[
            Contender(
                "thunderline", "thunderline Supervisor + Server", quiet(r.thunderline(tl_restart))
            ),
            Contender(
                "raw",
                "hand-written asyncio restart loop",
                r.raw_asyncio(asyncio_restart),
                ("asyncio",),
            ),
            Contender(
                "raw",
                "hand-written trio restart loop (nursery)",
                r.raw_trio(trio_restart),
                ("trio",),
            ),
        ],
        target=Target(max_ratio=2.0),
        note="logging disabled during samples (see module docstring)",
    ),
]
