"""Helpers for the distribution tests: this test's own node, running code in a process."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import process_helpers
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


#: Run a function as a process of the current node (tests/process_helpers.py), with
#: this module's longer bound: a node over NATS answers slower than a local one.
in_process = functools.partial(process_helpers.in_process, timeout=BOUND * 2)


async def receive(*patterns: Any) -> Any:
    """The next matching message, bounded by :data:`BOUND`."""
    return await tl.receive(*patterns, timeout=BOUND)
