"""A call's reply reaches the caller once, straight or through the mailbox, and never strays."""

from __future__ import annotations

from typing import Any

import pytest

import thunderline.runtime as tl
from process_helpers import drain, in_process, wait_down

pytestmark = pytest.mark.anyio


class Twice(tl.Server[None]):
    """Answers every call twice (the second answer must be dropped)."""

    async def init(self) -> tl.Ok[None]:
        return tl.Ok(None)

    async def handle_call(self, request: Any, from_: tl.From, state: None) -> Any:
        tl.reply(from_, ("first", request))
        tl.reply(from_, ("second", request))
        return tl.NoReply(state)


async def test_a_second_reply_to_one_call_is_dropped(anyio_backend: str) -> None:
    async def body() -> None:
        pid = await tl.start_link(Twice)
        assert pid is not None
        for i in range(3):
            assert await tl.call(pid, i) == ("first", i)
        assert await tl.call(pid, "x") == ("first", "x")
        assert drain() == []  # no stray reply left in the caller's mailbox
        info = tl.process_info(tl.current_pid())
        assert info is not None
        assert info.monitors == ()  # every call's monitor is gone

    async with tl.open_node():
        await in_process(body)


async def test_a_caller_killed_while_waiting_dies_even_if_the_reply_came(
    anyio_backend: str,
) -> None:
    class Slow(tl.Server[None]):
        async def init(self) -> tl.Ok[None]:
            return tl.Ok(None)

        async def handle_call(self, request: Any, from_: tl.From, state: None) -> Any:
            caller = from_.pid
            tl.exit(caller, "stop it")  # the signal first, then the reply
            return tl.Reply("late", state)

    async def body() -> None:
        pid = await tl.start(Slow)
        assert pid is not None

        async def caller() -> None:
            await tl.call(pid, "go")
            await tl.receive()  # never gets here alive

        _, ref = tl.spawn_monitor(caller)
        down = await wait_down(ref)
        assert down.reason == "stop it"

    async with tl.open_node():
        await in_process(body)


async def test_a_signal_right_after_the_reply_still_kills_the_caller(anyio_backend: str) -> None:
    class Quick(tl.Server[None]):
        async def init(self) -> tl.Ok[None]:
            return tl.Ok(None)

        async def handle_call(self, request: Any, from_: tl.From, state: None) -> Any:
            tl.reply(from_, "answer")  # handed to the parked caller
            tl.exit(from_.pid, "stop it")  # before the caller runs again
            return tl.NoReply(state)

    async def body() -> None:
        pid = await tl.start(Quick)
        assert pid is not None

        async def caller() -> None:
            assert await tl.call(pid, "go") == "answer"
            await tl.receive()  # its next checkpoint: it dies here

        _, ref = tl.spawn_monitor(caller)
        down = await wait_down(ref)
        assert down.reason == "stop it"

    async with tl.open_node():
        await in_process(body)
