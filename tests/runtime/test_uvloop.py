"""uvloop as anyio offers it: ``run(..., uvloop=True)`` or ``backend_options``."""

from __future__ import annotations

import asyncio

import pytest

import thunderline.runtime as tl


class Echo(tl.Server[None]):
    async def init(self) -> tl.Ok[None]:
        return tl.Ok(None)

    async def handle_call(self, request: object, from_: tl.From, state: None) -> tl.Reply[None]:
        return tl.Reply(request, state)


async def _main() -> tuple[str, object]:
    pid = await tl.start_link(Echo)
    assert pid is not None
    loop = type(asyncio.get_running_loop()).__module__
    return loop, await tl.call(pid, "ping")


def test_run_on_uvloop() -> None:
    pytest.importorskip("uvloop")
    loop, answer = tl.run(_main, uvloop=True)
    assert loop.startswith("uvloop")
    assert answer == "ping"
    loop, _ = tl.run(_main, backend_options={"use_uvloop": True})
    assert loop.startswith("uvloop")


def test_default_loop_is_not_uvloop() -> None:
    loop, answer = tl.run(_main)
    assert not loop.startswith("uvloop")
    assert answer == "ping"


def test_uvloop_on_trio_is_a_clear_error() -> None:
    with pytest.raises(tl.LoopUnavailableError, match="trio"):
        tl.run(_main, backend="trio", uvloop=True)
