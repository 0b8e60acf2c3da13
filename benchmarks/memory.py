"""Memory per idle process: n processes blocked in receive, each with its own mailbox.

Method: every sample runs in a fresh interpreter (``python -m benchmarks.memory
IMPL BACKEND N``) so earlier workloads cannot lend it freed memory. It
warms up (100 processes started and ended), collects garbage, reads the
baseline, starts N idle processes, waits until every one of them is blocked in
its receive, collects garbage, and reads again; the delta divided by N is the
sample. Two readings, taken one after the other in the same interpreter:

- ``rss``: resident set size from ``/proc/self/statm`` (resident pages x page
  size); what the OS pays, including allocator slack. This one has the target.
- ``traced``: ``tracemalloc`` current traced bytes (Python allocations only,
  exact, no allocator slack), tracing started just before the baseline, after
  the RSS phase was torn down (tracemalloc only sees allocations made while it
  traces, so the reused memory does not hide anything).
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

from benchmarks import _core as c
from benchmarks import _runners as r
from benchmarks._core import Contender, Target, Workload

ORDER = 30

WARMUP = 100


def rss_bytes() -> int:
    """Resident set size of this process in bytes (Linux ``/proc/self/statm``)."""
    try:
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: peak RSS is the best stdlib can do
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reading(mode: str) -> int:
    gc.collect()
    if mode == "traced":
        return tracemalloc.get_traced_memory()[0]
    return rss_bytes()


def start_reading(mode: str) -> int:
    if mode == "traced":
        tracemalloc.start()
    return reading(mode)


# ------------------------------------------------------------ the contenders
# Each holder(n, mode) starts a warm-up batch, then n idle processes, and
# returns the bytes per process.


async def tl_idle(n: int, mode: str) -> float:
    import anyio

    from thunderline.runtime import receive, send, spawn

    started = [0]

    async def idle() -> None:
        started[0] += 1
        await receive()

    warm = [spawn(idle) for _ in range(WARMUP)]
    while started[0] < WARMUP:
        await anyio.sleep(0)
    for pid in warm:
        send(pid, "stop")
    await anyio.sleep(0)
    del warm
    started[0] = 0
    before = start_reading(mode)
    for _ in range(n):
        spawn(idle)
    while started[0] < n:
        await anyio.sleep(0)
    await anyio.sleep(0)
    return (reading(mode) - before) / n
    # returning ends the node, which stops every idle process


async def asyncio_idle(n: int, mode: str) -> float:
    started = [0]

    async def idle(inbox: asyncio.Queue[Any]) -> None:
        started[0] += 1
        await inbox.get()

    async def batch(count: int) -> list[tuple[asyncio.Task[None], asyncio.Queue[Any]]]:
        held = []
        for _ in range(count):
            inbox: asyncio.Queue[Any] = asyncio.Queue()
            held.append((asyncio.create_task(idle(inbox)), inbox))
        while started[0] < count:
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        return held

    warm = await batch(WARMUP)
    for _task, inbox in warm:
        inbox.put_nowait("stop")
    await asyncio.gather(*(task for task, _ in warm))
    del warm
    started[0] = 0
    before = start_reading(mode)
    held = await batch(n)
    result = (reading(mode) - before) / n
    for task, _ in held:
        task.cancel()
    await asyncio.gather(*(task for task, _ in held), return_exceptions=True)
    return result


async def trio_idle(n: int, mode: str) -> float:
    import trio

    started = [0]

    async def idle(inbox: trio.MemoryReceiveChannel[Any]) -> None:
        started[0] += 1
        await inbox.receive()

    async with trio.open_nursery() as nursery:

        async def batch(count: int) -> list[Any]:
            held = []
            for _ in range(count):
                send_ch, recv_ch = trio.open_memory_channel[Any](math.inf)
                nursery.start_soon(idle, recv_ch)
                held.append(send_ch)
            while started[0] < count:
                await trio.sleep(0)
            await trio.sleep(0)
            return held

        warm = await batch(WARMUP)
        for send_ch in warm:
            send_ch.send_nowait("stop")
        await trio.sleep(0)
        del warm
        started[0] = 0
        before = start_reading(mode)
        held = await batch(n)
        result = (reading(mode) - before) / n
        del held
        nursery.cancel_scope.cancel()
    return result


async def anyio_idle(n: int, mode: str) -> float:
    import anyio
    from anyio.streams.memory import MemoryObjectReceiveStream

    started = [0]

    async def idle(inbox: MemoryObjectReceiveStream[Any]) -> None:
        started[0] += 1
        with inbox:
            await inbox.receive()

    async with anyio.create_task_group() as tg:

        async def batch(count: int) -> list[Any]:
            held = []
            for _ in range(count):
                send_st, recv_st = anyio.create_memory_object_stream[Any](math.inf)
                tg.start_soon(idle, recv_st)
                held.append(send_st)
            while started[0] < count:
                await anyio.sleep(0)
            await anyio.sleep(0)
            return held

        warm = await batch(WARMUP)
        for send_st in warm:
            send_st.send_nowait("stop")
            send_st.close()
        await anyio.sleep(0)
        del warm
        started[0] = 0
        before = start_reading(mode)
        held = await batch(n)
        result = (reading(mode) - before) / n
        tg.cancel_scope.cancel()
    for send_st in held:
        send_st.close()
    return result


async def tl_servers(n: int, mode: str, hibernated: bool) -> float:
    """n idle ``Server`` processes, hibernated (``init`` returns ``Hibernate``) or awake."""
    from thunderline.runtime import Hibernate, Ok, Server, process_info, start

    class Idle(Server[None]):
        async def init(self) -> Ok[None] | Hibernate[None]:
            return Hibernate(None) if hibernated else Ok(None)

    for _ in range(WARMUP):
        await start(Idle)
    before = start_reading(mode)
    pids = [await start(Idle) for _ in range(n)]
    result = (reading(mode) - before) / n
    info = process_info(pids[-1]) if pids[-1] is not None else None
    if info is None or info.hibernating is not hibernated:
        raise AssertionError(f"server state: {info!r}")
    return result


def probe(impl: str, backend: str, n: int, mode: str) -> float:
    """One reading in this interpreter (call it in a fresh one)."""
    if impl in ("hibernated", "server"):
        from thunderline.runtime import run

        value = run(tl_servers, n, mode, impl == "hibernated", backend=backend)
        return float(value)
    if impl == "thunderline":
        from thunderline.runtime import run

        value: float = run(tl_idle, n, mode, backend=backend)
        return value
    if impl == "raw" and backend == "asyncio":
        return asyncio.run(asyncio_idle(n, mode))
    if impl == "raw" and backend == "trio":
        import trio

        value = trio.run(trio_idle, n, mode)
        return value
    if impl == "anyio":
        import anyio

        value = anyio.run(anyio_idle, n, mode, backend=backend)
        return value
    raise ValueError(f"unknown memory probe {impl!r} on {backend!r}")


#: Readings a subprocess made that the other memory workload has not used yet.
_unused: dict[tuple[str, str, int, str], list[float]] = {}


def in_subprocess(impl: str, mode: str) -> Callable[[str, int], float]:
    """One fresh interpreter takes both readings: RSS first, then (torn down) tracemalloc.

    The reading of the other mode is kept for the other memory workload's next sample,
    so a full run starts each interpreter once per (implementation, backend, run).
    """

    def sample(backend: str, n: int) -> float:
        pending = _unused.get((impl, backend, n, mode))
        if pending:
            return pending.pop(0)
        if c.SMOKE:  # a forked child: no interpreter start-up, numbers not meaningful
            result = r.forked_json(lambda: {m: probe(impl, backend, n, m) for m in MODES})
        else:
            result = r.subprocess_json("benchmarks.memory", impl, backend, str(n))
        for other in MODES:
            if other != mode:
                _unused.setdefault((impl, backend, n, other), []).append(result[other])
        return float(result[mode])

    return sample


MODES = ("rss", "traced")


def _contenders(mode: str) -> list[Contender]:
    return [
        Contender(
            "thunderline", "thunderline process in receive()", in_subprocess("thunderline", mode)
        ),
        Contender("raw", "asyncio task in Queue.get()", in_subprocess("raw", mode), ("asyncio",)),
        Contender(
            "raw", "trio task in memory channel receive()", in_subprocess("raw", mode), ("trio",)
        ),
        Contender(
            "anyio", "anyio task in memory object stream receive()", in_subprocess("anyio", mode)
        ),
    ]


WORKLOADS = [
    Workload(
        name="idle_memory",
        title="RSS delta per idle process blocked in receive (fresh interpreter per sample)",
        n=10_000,
        smoke_n=500,
        contenders=_contenders("rss"),
        target=Target(max_value=4096, beat_peers=False),
        unit="B",
        runs=3,
        note="/proc/self/statm resident pages; the target (4 KiB) is absolute",
    ),
    Workload(
        name="idle_memory_traced",
        title="tracemalloc bytes per idle process blocked in receive (fresh interpreter)",
        n=10_000,
        smoke_n=500,
        contenders=_contenders("traced"),
        target=Target(max_value=4096, beat_peers=False),
        unit="B",
        runs=3,
        note="Python allocations only, no allocator slack; same 4 KiB bar for reference",
    ),
]


def _main(argv: list[str]) -> None:
    impl, backend, n = argv[0], argv[1], int(argv[2])
    readings = {mode: probe(impl, backend, n, mode) for mode in MODES}
    json.dump(readings, sys.stdout)


if __name__ == "__main__":
    _main(sys.argv[1:])
