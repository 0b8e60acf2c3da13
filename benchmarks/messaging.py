"""Messaging: one-way throughput, raw request/reply round trip, and a Server call.

Raw floors: asyncio tasks with ``asyncio.Queue`` (asyncio), trio memory
channels (trio); plus anyio memory object streams on each backend. Peers:
pykka (threads), triotp (separate environment, trio 0.19).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from time import perf_counter
from typing import Any

from benchmarks import _runners as r
from benchmarks._core import Contender, Target, Unavailable, Workload

ORDER = 10

# ------------------------------------------------------------------ one-way


async def tl_one_way(n: int) -> float:
    from thunderline.runtime import current_pid, receive, send, spawn

    me = current_pid()

    async def consumer(count: int) -> None:
        for _ in range(count):
            await receive()
        send(me, "done")

    pid = spawn(consumer, n)
    start = perf_counter()
    for i in range(n):
        send(pid, i)
    await receive()
    return perf_counter() - start


async def asyncio_one_way(n: int) -> float:
    inbox: asyncio.Queue[int] = asyncio.Queue()
    done = asyncio.get_running_loop().create_future()

    async def consumer(count: int) -> None:
        for _ in range(count):
            await inbox.get()
        done.set_result(None)

    task = asyncio.create_task(consumer(n))
    start = perf_counter()
    for i in range(n):
        inbox.put_nowait(i)
    await done
    elapsed = perf_counter() - start
    await task
    return elapsed


async def trio_one_way(n: int) -> float:
    import trio

    send_ch, recv_ch = trio.open_memory_channel[int](math.inf)
    done = trio.Event()

    async def consumer(count: int) -> None:
        for _ in range(count):
            await recv_ch.receive()
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer, n)
        start = perf_counter()
        for i in range(n):
            send_ch.send_nowait(i)
        await done.wait()
        elapsed = perf_counter() - start
    return elapsed


async def anyio_one_way(n: int) -> float:
    import anyio

    send_st, recv_st = anyio.create_memory_object_stream[int](math.inf)
    done = anyio.Event()

    async def consumer(count: int) -> None:
        for _ in range(count):
            await recv_st.receive()
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer, n)
        start = perf_counter()
        for i in range(n):
            send_st.send_nowait(i)
        await done.wait()
        elapsed = perf_counter() - start
    return elapsed


def pykka_one_way(n: int) -> float:
    r.pykka_available()
    import pykka

    class Sink(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            return message

    ref = Sink.start()
    try:
        start = perf_counter()
        for i in range(n):
            ref.tell(i)
        ref.ask("sync")
        return perf_counter() - start
    finally:
        ref.stop()


# ------------------------------------------------------------ round trip


async def tl_round_trip(n: int) -> float:
    from thunderline.runtime import current_pid, receive, send, spawn

    me = current_pid()

    async def echo() -> None:
        while True:
            sender, message = await receive()
            send(sender, message)

    pid = spawn(echo)
    start = perf_counter()
    for i in range(n):
        send(pid, (me, i))
        await receive()
    return perf_counter() - start


async def asyncio_round_trip(n: int) -> float:
    requests: asyncio.Queue[int] = asyncio.Queue()
    replies: asyncio.Queue[int] = asyncio.Queue()

    async def echo() -> None:
        while True:
            replies.put_nowait(await requests.get())

    task = asyncio.create_task(echo())
    start = perf_counter()
    for i in range(n):
        requests.put_nowait(i)
        await replies.get()
    elapsed = perf_counter() - start
    task.cancel()
    return elapsed


async def trio_round_trip(n: int) -> float:
    import trio

    req_send, req_recv = trio.open_memory_channel[int](math.inf)
    rep_send, rep_recv = trio.open_memory_channel[int](math.inf)

    async def echo() -> None:
        while True:
            rep_send.send_nowait(await req_recv.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo)
        start = perf_counter()
        for i in range(n):
            req_send.send_nowait(i)
            await rep_recv.receive()
        elapsed = perf_counter() - start
        nursery.cancel_scope.cancel()
    return elapsed


async def anyio_round_trip(n: int) -> float:
    import anyio

    req_send, req_recv = anyio.create_memory_object_stream[int](math.inf)
    rep_send, rep_recv = anyio.create_memory_object_stream[int](math.inf)

    async def echo() -> None:
        while True:
            rep_send.send_nowait(await req_recv.receive())

    async with anyio.create_task_group() as tg:
        tg.start_soon(echo)
        start = perf_counter()
        for i in range(n):
            req_send.send_nowait(i)
            await rep_recv.receive()
        elapsed = perf_counter() - start
        tg.cancel_scope.cancel()
    return elapsed


def pykka_ask(n: int) -> float:
    r.pykka_available()
    import pykka

    class Echo(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            return message

    ref = Echo.start()
    try:
        start = perf_counter()
        for i in range(n):
            ref.ask(i)
        return perf_counter() - start
    finally:
        ref.stop()


# ------------------------------------------------------------ server call


async def tl_server_call(n: int) -> float:
    from thunderline.runtime import From, Ok, Reply, Server, call, start_link

    class Echo(Server[None]):
        async def init(self) -> Ok[None]:
            return Ok(None)

        async def handle_call(self, request: Any, from_: From, state: None) -> Reply[None]:
            return Reply(request, state)

    pid = await start_link(Echo)
    assert pid is not None
    start = perf_counter()
    for i in range(n):
        await call(pid, i)
    return perf_counter() - start


def on_uvloop(body: r.Body, *, thunderline: bool) -> Callable[[str, int], float]:
    """Run ``body`` on uvloop: through ``thunderline.run(..., uvloop=True)`` or ``asyncio.run``."""

    def sample(backend: str, n: int) -> float:
        try:
            import uvloop
        except ImportError as exc:
            raise Unavailable(
                "uvloop is not installed (pip install 'thunderline[uvloop]')"
            ) from exc
        if thunderline:
            from thunderline.runtime import run

            elapsed: float = run(body, n, backend="asyncio", uvloop=True)
            return elapsed / n
        return float(uvloop.run(body(n))) / n

    return sample


def _uvloop_contenders(tl_body: r.Body, what: str) -> list[Contender]:
    # uvloop is an asyncio loop: every cell is measured once per run and shown on both rows.
    return [
        Contender(
            "thunderline",
            f"thunderline {what} on uvloop",
            on_uvloop(tl_body, thunderline=True),
            None,
        ),
        Contender(
            "raw",
            "asyncio tasks + asyncio.Queue on uvloop",
            on_uvloop(asyncio_round_trip, thunderline=False),
            None,
        ),
        Contender(
            "default_loop",
            "asyncio tasks + asyncio.Queue on the default loop",
            r.raw_asyncio(asyncio_round_trip),
            None,
        ),
    ]


def _raw_floor(asyncio_body: r.Body, trio_body: r.Body) -> list[Contender]:
    return [
        Contender(
            "raw", "asyncio tasks + asyncio.Queue", r.raw_asyncio(asyncio_body), ("asyncio",)
        ),
        Contender("raw", "trio tasks + trio memory channel", r.raw_trio(trio_body), ("trio",)),
    ]


WORKLOADS = [
    Workload(
        name="one_way",
        title="one message sent to one process and received (throughput)",
        n=200_000,
        smoke_n=500,
        contenders=[
            Contender("thunderline", "thunderline send/receive", r.thunderline(tl_one_way)),
            *_raw_floor(asyncio_one_way, trio_one_way),
            Contender("anyio", "anyio memory object stream", r.on_anyio(anyio_one_way)),
            Contender(
                "pykka", "pykka ThreadingActor tell", r.in_thread_world(pykka_one_way), None, 0.25
            ),
            Contender(
                "triotp", "triotp mailbox.send (trio 0.19)", r.triotp("one_way"), ("trio",), 0.1
            ),
        ],
        target=Target(max_ratio=2.5),
    ),
    Workload(
        name="round_trip",
        title="request/reply between two processes (send + receive both ways)",
        n=20_000,
        smoke_n=200,
        contenders=[
            Contender("thunderline", "thunderline send/receive", r.thunderline(tl_round_trip)),
            *_raw_floor(asyncio_round_trip, trio_round_trip),
            Contender("anyio", "anyio memory object streams", r.on_anyio(anyio_round_trip)),
            Contender("pykka", "pykka ask().get()", r.in_thread_world(pykka_ask), None, 0.5),
            Contender(
                "triotp", "triotp mailbox round trip", r.triotp("round_trip"), ("trio",), 0.25
            ),
        ],
        target=Target(max_ratio=1.5),
    ),
    Workload(
        name="server_call",
        title="call() through a Server vs the raw request/reply floor",
        n=20_000,
        smoke_n=200,
        contenders=[
            Contender("thunderline", "thunderline Server call", r.thunderline(tl_server_call)),
            *_raw_floor(asyncio_round_trip, trio_round_trip),
            Contender("anyio", "anyio memory object streams", r.on_anyio(anyio_round_trip)),
            Contender("pykka", "pykka ask().get()", r.in_thread_world(pykka_ask), None, 0.5),
            Contender("triotp", "triotp gen_server.call", r.triotp("server_call"), ("trio",), 0.25),
        ],
        target=Target(max_ratio=1.5),
    ),
    Workload(
        name="uvloop_round_trip",
        title="send/receive round trip on uvloop vs raw asyncio on uvloop and on the default loop",
        n=20_000,
        smoke_n=200,
        contenders=_uvloop_contenders(tl_round_trip, "send/receive"),
        target=Target(max_ratio=1.2, beat_peers=False),
        note="asyncio only (uvloop is an asyncio loop): one measurement shown on both rows",
    ),
    Workload(
        name="uvloop_server_call",
        title="Server call on uvloop vs the raw round trip on uvloop and on the default loop",
        n=20_000,
        smoke_n=200,
        contenders=_uvloop_contenders(tl_server_call, "Server call"),
        target=Target(max_ratio=1.5, beat_peers=False),
        note="asyncio only (uvloop is an asyncio loop): one measurement shown on both rows",
    ),
]
