"""Hibernation: memory per hibernated server, and a call that wakes one.

- ``hibernated_memory`` (backend-independent: a hibernated server has no task; measured
  once per run on the first backend, shown on both rows): n servers started with ``init`` returning
  ``Hibernate`` (no task, no coroutine frame each), against the same servers
  awake in their receive; fresh interpreter per sample (see ``memory.py``),
  RSS and tracemalloc readings. Target: at most 1 KiB per hibernated server,
  measured with 100,000 of them.
- ``hibernated_call``: ``call`` to a server whose ``handle_call`` answers with
  ``Hibernate(state, reply=...)`` (so every call wakes it from hibernation),
  against ``call`` to the same server awake. Target: at most 2x.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from benchmarks import _runners as r
from benchmarks._core import Contender, Target, Workload
from benchmarks.memory import in_subprocess

ORDER = 35


def server_calls(hibernate: bool) -> r.Body:
    async def body(n: int) -> float:
        from thunderline.runtime import (
            From,
            Hibernate,
            Ok,
            Reply,
            Server,
            call,
            process_info,
            start,
        )

        class Echo(Server[None]):
            async def init(self) -> Ok[None]:
                return Ok(None)

            async def handle_call(
                self, request: Any, from_: From, state: None
            ) -> Reply[None] | Hibernate[None]:
                if hibernate:
                    return Hibernate(state, reply=request)
                return Reply(request, state)

        pid = await start(Echo)
        assert pid is not None
        await call(pid, -1)
        start_time = perf_counter()
        for i in range(n):
            if await call(pid, i) != i:
                raise AssertionError("wrong reply")
        elapsed = perf_counter() - start_time
        info = process_info(pid)
        if info is None or info.hibernating is not hibernate:
            raise AssertionError(f"server state after the calls: {info!r}")
        return elapsed

    return body


WORKLOADS = [
    Workload(
        name="hibernated_memory",
        title="bytes per hibernated Server vs the same Server awake (fresh interpreter)",
        n=100_000,
        smoke_n=300,
        contenders=[
            Contender("thunderline", "hibernated Server (RSS)", in_subprocess("hibernated", "rss")),
            Contender("raw", "awake Server in receive (RSS)", in_subprocess("server", "rss")),
        ],
        target=Target(max_value=1024, beat_peers=False),
        unit="B",
        runs=1,
        note="RSS delta / n; the tracemalloc reading is in the next row",
    ),
    Workload(
        name="hibernated_memory_traced",
        title="tracemalloc bytes per hibernated Server vs the same Server awake",
        n=100_000,
        smoke_n=300,
        contenders=[
            Contender(
                "thunderline",
                "hibernated Server (traced)",
                in_subprocess("hibernated", "traced"),
                None,
            ),
            Contender("raw", "awake Server (traced)", in_subprocess("server", "traced"), None, 0.1),
        ],
        target=Target(max_value=1024, beat_peers=False),
        unit="B",
        runs=1,
        note="Python allocations only; taken in the same interpreters as the RSS row",
    ),
    Workload(
        name="hibernated_call",
        title="call() that wakes a hibernated Server vs call() to an awake one",
        n=10_000,
        smoke_n=100,
        contenders=[
            Contender(
                "thunderline", "call waking a hibernated Server", r.thunderline(server_calls(True))
            ),
            Contender("raw", "call to an awake Server", r.thunderline(server_calls(False))),
        ],
        target=Target(max_ratio=2.0, beat_peers=False),
    ),
]
