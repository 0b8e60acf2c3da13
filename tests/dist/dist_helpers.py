"""Helpers for the distribution tests: this test's own node, running code in a process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

import thunderline as tl
from thunderline import dist

BOUND = 20.0


@contextlib.asynccontextmanager
async def local_node(
    url: str, name: str = "a", instrument: Any = None, **options: Any
) -> AsyncIterator[dist.DistNode]:
    """This test's own node, joined to the cluster at ``url``."""
    async with (
        tl.open_node(instrument=instrument) as node,
        dist.open_distribution(node, name, url, **options) as d,
    ):
        yield d


async def in_process(fn: Callable[..., Awaitable[Any]], *args: Any, trap_exit: bool = False) -> Any:
    """Run ``fn(*args)`` as a process of the current node; return its result or raise its error."""
    box: dict[str, Any] = {}
    done = anyio.Event()

    async def body() -> None:
        try:
            box["value"] = await fn(*args)
        except (Exception, tl.ProcessExit) as exc:
            box["error"] = exc
            raise
        finally:
            done.set()

    tl.spawn(body, trap_exit=trap_exit)
    with anyio.fail_after(BOUND * 2):
        await done.wait()
    if "error" in box:
        raise box["error"]
    return box.get("value")


async def receive(*patterns: Any) -> Any:
    """The next matching message, bounded by :data:`BOUND`."""
    return await tl.receive(*patterns, timeout=BOUND)
