"""C-R* (selective receive with timeout)."""

from __future__ import annotations

import anyio
import pytest

import thunderline.runtime as tl
from process_helpers import drain, in_process

pytestmark = pytest.mark.anyio


def _fill(*messages: object) -> None:
    for message in messages:
        tl.send(tl.current_pid(), message)


async def test_c_r1_selective_receive_takes_the_match_and_keeps_the_rest(
    anyio_backend: str,
) -> None:
    async def main() -> tuple[object, list[object]]:
        _fill("a", "b", "c")
        return await tl.receive("b"), drain()

    async with tl.open_node():
        assert await in_process(main) == ("b", ["a", "c"])


async def test_c_r2_first_message_wins_then_first_pattern(anyio_backend: str) -> None:
    async def main() -> list[object]:
        _fill(1, "x", 2)
        first = await tl.receive(str, int)  # both patterns match; message order decides
        second = await tl.receive(lambda m: m == "x", str)
        return [first, second, drain()]

    async with tl.open_node():
        assert await in_process(main) == [1, "x", [2]]


async def test_c_r3_after_zero_does_not_block_or_consume(anyio_backend: str) -> None:
    async def main() -> tuple[float, list[object]]:
        _fill("a", "b")
        start = anyio.current_time()
        with pytest.raises(tl.ReceiveTimeout) as info:
            await tl.receive("zzz", timeout=0)
        assert info.value.timeout == 0
        return anyio.current_time() - start, drain()

    async with tl.open_node():
        elapsed, rest = await in_process(main)
    assert rest == ["a", "b"]
    assert elapsed < 1.0


async def test_c_r4_non_matching_arrivals_do_not_reset_the_timeout(anyio_backend: str) -> None:
    async def chatter(dest: tl.Pid, stop: anyio.Event) -> None:
        while not stop.is_set():
            tl.send(dest, "noise")
            await anyio.sleep(0.01)

    async def main() -> tuple[float, list[object]]:
        stop = anyio.Event()
        tl.spawn(chatter, tl.current_pid(), stop)
        start = anyio.current_time()
        with pytest.raises(tl.ReceiveTimeout):
            await tl.receive("match", timeout=0.2)
        elapsed = anyio.current_time() - start
        tl.send(tl.current_pid(), "match")
        got = await tl.receive("match", timeout=5)
        stop.set()
        return elapsed, [got]

    async with tl.open_node():
        elapsed, got = await in_process(main)
    assert 0.2 <= elapsed < 2.0  # the noise did not restart the wait
    assert got == ["match"]


async def test_c_r4_a_matching_message_ends_the_wait(anyio_backend: str) -> None:
    async def sender(dest: tl.Pid) -> None:
        tl.send(dest, "other")
        tl.send(dest, "wanted")

    async def main() -> tuple[object, list[object]]:
        tl.spawn(sender, tl.current_pid())
        got = await tl.receive("wanted", timeout=10)
        return got, drain()

    async with tl.open_node():
        assert await in_process(main) == ("wanted", ["other"])


async def test_c_r5_receive_with_only_a_timeout_leaves_the_queue(anyio_backend: str) -> None:
    async def main() -> list[object]:
        _fill("a", "b")
        with pytest.raises(tl.ReceiveTimeout):
            await tl.receive(lambda _m: False, timeout=0.01)
        return drain()

    async with tl.open_node():
        assert await in_process(main) == ["a", "b"]


async def test_receive_nowait_raises_would_block(anyio_backend: str) -> None:
    async def main() -> None:
        with pytest.raises(tl.WouldBlock):
            tl.receive_nowait()

    async with tl.open_node():
        await in_process(main)
