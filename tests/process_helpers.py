"""Helpers for the process-core tests: run code inside a process, wait for deaths.

Nothing here sleeps: waits are on messages or events, bounded by ``anyio.fail_after``
with bounds generous enough for a loaded machine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

import thunderline.runtime as tl

#: Upper bound for any single wait in these tests (never reached when all is well).
BOUND = 10.0


async def in_process(
    fn: Callable[..., Awaitable[Any]], *args: Any, trap_exit: bool = False, timeout: float = BOUND
) -> Any:
    """Run ``fn(*args)`` as a process of the current node; return its result or raise its error.

    A :class:`ProcessExit` ending the process is re-raised here too. ``timeout`` bounds
    the wait (a hung process fails the test instead of hanging it).
    """
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
    with anyio.fail_after(timeout):
        await done.wait()
    if "error" in box:
        raise box["error"]
    return box.get("value")


async def idle(*_: Any) -> None:
    """A process body that waits for the message ``"stop"`` and ends normally."""
    await tl.receive("stop")


async def wait_down(ref: tl.Ref) -> tl.Down:
    """Inside a process: wait for the ``Down`` of monitor ``ref``."""
    down = await tl.receive(lambda m: isinstance(m, tl.Down) and m.ref == ref, timeout=BOUND)
    assert isinstance(down, tl.Down)
    return down


async def wait_exit(pid: tl.Pid) -> tl.Exit:
    """Inside a trapping process: wait for the ``Exit`` from ``pid``."""
    message = await tl.receive(lambda m: isinstance(m, tl.Exit) and m.pid == pid, timeout=BOUND)
    assert isinstance(message, tl.Exit)
    return message


async def hibernated(pid: tl.Pid) -> bool:
    """Wait until ``pid`` hibernates (True), or until it is gone (False)."""
    with anyio.fail_after(BOUND):
        while True:
            info = tl.process_info(pid)
            if info is None:
                return False
            if info.hibernating:
                return True
            await anyio.sleep(0.001)


def drain() -> list[Any]:
    """Inside a process: take every queued message, in order."""
    messages = []
    while True:
        try:
            messages.append(tl.receive_nowait())
        except tl.WouldBlock:
            return messages


async def settle() -> None:
    """Let every runnable process run until all of them are blocked."""
    await anyio.wait_all_tasks_blocked()


class _Do:
    """A command for an :func:`agent`: run ``fn`` inside it (never left in its mailbox)."""

    __slots__ = ("box", "done", "fn")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = anyio.Event()
        self.box: dict[str, Any] = {}


async def agent() -> None:
    """A process body that runs the callables :func:`do` sends it; other messages stay queued."""
    while True:
        command = await tl.receive(_Do)
        try:
            result = command.fn()
            if isinstance(result, Awaitable):
                result = await result
            command.box["value"] = result
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            command.box["error"] = exc
        finally:
            command.done.set()


async def do(pid: tl.Pid, fn: Callable[[], Any]) -> Any:
    """Run ``fn()`` inside the agent ``pid``; return its result or raise its exception.

    Returns None if the agent died while running it (e.g. ``fn`` raised ProcessExit).
    """
    command = _Do(fn)
    tl.send(pid, command)
    with anyio.fail_after(BOUND):
        await command.done.wait()
    if "error" in command.box:
        raise command.box["error"]
    return command.box.get("value")


def mailbox(pid: tl.Pid) -> int:
    """The mailbox length of ``pid`` (it must be alive)."""
    info = tl.process_info(pid)
    assert info is not None, f"{pid!r} is not alive"
    return info.message_queue_len
