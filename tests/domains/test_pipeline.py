"""Flow pipelines: batching by size and time, bounded concurrency, backpressure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
import pytest

import thunderline.runtime as tl
from thunderline.domains._pipeline import (
    Pipeline,
    PipelineOverloaded,
    PipelineSpec,
    PipelineStatistics,
    enqueue,
    pipeline_statistics,
    try_enqueue,
)

pytestmark = pytest.mark.anyio


async def _in_node(main: Any) -> None:
    async with tl.open_node() as node:
        done = anyio.Event()
        reasons: list[Any] = []
        pid, _ = node.spawn(main, (), parent=None, link=False, monitor=False, trap_exit=True)

        def finished(_pid: tl.Pid, reason: Any) -> None:
            reasons.append(reason)
            done.set()

        node.processes[pid].exit_callbacks.append(finished)
        with anyio.fail_after(30):
            await done.wait()
    assert reasons == [tl.NORMAL], reasons


async def _stats_when(
    name: str, condition: Callable[[PipelineStatistics], bool]
) -> PipelineStatistics:
    """The pipeline's statistics once ``condition`` holds (TimeoutError after 20 s)."""
    with anyio.fail_after(20):
        while True:
            stats = await pipeline_statistics(name)
            if condition(stats):
                return stats
            await anyio.wait_all_tasks_blocked()
            await anyio.sleep(0.005)  # let a batch timer come due


async def test_batches_by_size_and_by_time(anyio_backend: str) -> None:
    batches: list[tuple[int, ...]] = []
    got_all = anyio.Event()

    async def handler(batch: Sequence[int]) -> None:
        batches.append(tuple(batch))
        if sum(len(b) for b in batches) == 7:
            got_all.set()

    async def main() -> None:
        spec = PipelineSpec(
            name="p", handler=handler, batch_size=3, concurrency=1, batch_timeout=0.05
        )
        await tl.start_link(Pipeline(spec), name="p")
        for item in range(7):
            await enqueue("p", item)
        with anyio.fail_after(10):
            await got_all.wait()
        stats = await pipeline_statistics("p")
        assert stats.processed == 7
        assert stats.buffered == 0

    await _in_node(main)
    # Full batches of 3 are dispatched as they fill; the last item goes by timeout.
    assert [item for batch in batches for item in batch] == list(range(7))
    assert all(len(batch) <= 3 for batch in batches)
    assert batches[-1] == (6,)


async def test_backpressure_publisher_waits_and_try_enqueue_overloads(anyio_backend: str) -> None:
    release = anyio.Event()
    handled: list[int] = []
    running = {"now": 0, "max": 0}

    async def handler(batch: Sequence[int]) -> None:
        running["now"] += 1
        running["max"] = max(running["max"], running["now"])
        await release.wait()
        handled.extend(batch)
        running["now"] -= 1

    async def main() -> None:
        spec = PipelineSpec(
            name="bp", handler=handler, max_buffer=2, concurrency=2, batch_size=1, batch_timeout=1
        )
        await tl.start_link(Pipeline(spec), name="bp")
        # Two items occupy both workers, two more fill the buffer.
        for item in range(4):
            await enqueue("bp", item)
        with pytest.raises(PipelineOverloaded) as info:
            await try_enqueue("bp", 99)
        assert info.value.pipeline == "bp"
        assert info.value.max_buffer == 2
        # A waiting publisher blocks until a worker frees room.
        blocked = anyio.Event()
        admitted = anyio.Event()

        async def publisher() -> None:
            blocked.set()
            await enqueue("bp", 4)
            admitted.set()

        tl.spawn(publisher)
        await blocked.wait()
        stats = await _stats_when("bp", lambda st: st.waiting_publishers == 1)
        assert not admitted.is_set()
        assert stats.peak_buffered <= 2
        release.set()
        with anyio.fail_after(10):
            await admitted.wait()
        stats = await _stats_when("bp", lambda st: st.processed == 5)
        assert stats.peak_buffered == 2

    await _in_node(main)
    assert sorted(handled) == [0, 1, 2, 3, 4]
    assert running["max"] <= 2


async def test_failing_handler_is_counted_and_pipeline_survives(anyio_backend: str) -> None:
    async def handler(batch: Sequence[int]) -> None:
        if 0 in batch:
            raise ValueError("bad batch")

    async def main() -> None:
        spec = PipelineSpec(name="f", handler=handler, batch_size=1, concurrency=1)
        await tl.start_link(Pipeline(spec), name="f")
        await enqueue("f", 0)
        await enqueue("f", 1)
        stats = await _stats_when("f", lambda st: st.processed + st.failed == 2)
        assert (stats.processed, stats.failed, stats.workers) == (1, 1, 1)

    await _in_node(main)


def test_spec_validation_names_the_field() -> None:
    async def handler(batch: Sequence[Any]) -> None:
        return None

    with pytest.raises(ValueError, match=r"max_buffer must be an int >= 1, got 0"):
        PipelineSpec(name="x", handler=handler, max_buffer=0)
    with pytest.raises(ValueError, match=r"batch_timeout must be a number > 0"):
        PipelineSpec(name="x", handler=handler, batch_timeout=-1)
