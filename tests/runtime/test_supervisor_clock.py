"""C-SV8: the intensity window counts whole-second stamps with an inclusive boundary.

The supervisor reads time only from ``anyio.current_time()``, so these tests run
the node on an event loop whose clock the test moves: a custom ``trio.abc.Clock``
on trio, an event loop whose ``time()`` adds an offset on asyncio. Both start
on a whole second (1000.0); the test jumps the clock between two crashes.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import anyio
import pytest
import trio

from thunderline.runtime import (
    CallError,
    ChildSpec,
    Down,
    Pid,
    exit,
    monitor,
    receive,
    run,
    spawn_link,
    start_supervisor,
    trap_exit,
    which_children,
)


class VirtualTime:
    """Real monotonic time plus an offset; starts at 1000.0 and jumps on request."""

    def __init__(self) -> None:
        self.offset = 0.0

    def start(self, real_now: float) -> None:
        self.offset = 1000.0 - real_now

    def jump_to(self, when: float) -> None:
        now = anyio.current_time()
        assert when > now
        self.offset += when - now


def backend_options(backend: str, clock: VirtualTime) -> dict[str, Any]:
    if backend == "trio":

        class Clock(trio.abc.Clock):
            def start_clock(self) -> None:
                clock.start(time.perf_counter())

            def current_time(self) -> float:
                return time.perf_counter() + clock.offset

            def deadline_to_sleep_time(self, deadline: float) -> float:
                return deadline - self.current_time()

        return {"clock": Clock()}

    class Loop(asyncio.SelectorEventLoop):
        def __init__(self) -> None:
            super().__init__()
            clock.start(super().time())

        def time(self) -> float:
            return float(super().time()) + clock.offset

    return {"loop_factory": Loop}


async def idle_child() -> None:
    await receive(lambda m: False)


async def start() -> Pid | None:
    return spawn_link(idle_child)


async def crash_child(sup: Pid) -> bool:
    """Crash the child; return whether the supervisor survived it."""
    [row] = await which_children(sup)
    assert row.pid is not None
    ref = monitor(row.pid)
    exit(row.pid, "boom")
    await receive(lambda m: type(m) is Down and m.ref == ref)
    try:
        await which_children(sup)
    except CallError:
        return False
    return True


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(
    ("period", "second_crash_at", "survives"),
    [
        (1, 1000.5, False),  # same second
        (1, 1001.95, False),  # stamps 1000 and 1001: 1000 >= 1001 - 1 (inclusive)
        (1, 1002.05, True),  # stamps 1000 and 1002: forgotten
        (5, 1005.9, False),  # stamps 1000 and 1005: still in the window
        (5, 1006.0, True),
    ],
)
def test_c_sv8_whole_second_buckets_inclusive_boundary(
    backend: str, period: int, second_crash_at: float, survives: bool
) -> None:
    clock = VirtualTime()

    async def main() -> tuple[float, bool, bool]:
        trap_exit(True)
        with anyio.fail_after(20):  # far beyond the jump
            sup = await start_supervisor(
                [ChildSpec(id="c", start=start)], intensity=1, period=period
            )
            first_at = anyio.current_time()
            first = await crash_child(sup)
            clock.jump_to(second_crash_at)
            second = await crash_child(sup)
        return first_at, first, second

    first_at, first, second = run(
        main, backend=backend, backend_options=backend_options(backend, clock)
    )
    assert math.floor(first_at) == 1000
    assert first
    assert second is survives
