"""Outbound order when nats-py's own buffer is full (a publish suspends: the writer finishes it)."""

from __future__ import annotations

from typing import Any

import pytest
from dist_helpers import BOUND, in_process, local_node

import thunderline as tl
from thunderline import dist

pytestmark = pytest.mark.anyio

COUNT = 400


async def collector(owner: tl.Pid) -> None:
    got = [await tl.receive(timeout=BOUND) for _ in range(COUNT)]
    tl.send(owner, ("got", got))


async def test_burst_past_the_client_buffer_arrives_in_order(cluster_url: str) -> None:
    # 2 KiB of client buffer: a burst of 400 sends of ~100 bytes overflows it
    # many times (nats-py then flushes before taking more).
    small = {"pending_size": 2048}
    async with (
        local_node(cluster_url, "b") as b,
        local_node(cluster_url, "a", connect_options=small),
    ):
        b.functions["collector"] = collector

        async def body() -> None:
            me = tl.current_pid()
            assert await dist.connect_node("b", BOUND)
            sink = await dist.spawn_remote("b", "collector", me)
            for i in range(COUNT):
                tl.send(sink, (i, "x" * 80))
            tag, got = await tl.receive(timeout=BOUND * 2)
            assert tag == "got"
            assert [item[0] for item in got] == list(range(COUNT))

        result: Any = await in_process(body)
        assert result is None
