"""How a process blocked in ``receive`` waits and is woken: one native primitive per backend.

A blocked receive must cost little: it happens once per message in every
request/reply exchange, and an idle process sits in it for its whole life. So
instead of an ``anyio.Event`` plus an ``anyio.CancelScope`` per wait, the node
picks the backend's own primitive once, when it opens:

* asyncio: a bare future from the running loop, resolved by the sender; a
  timeout is a ``loop.call_at`` handle, scheduled only when there is one.
* trio: ``wait_task_rescheduled`` / ``reschedule``, the primitive trio's own
  synchronisation is built on; a timeout is a native ``move_on_at`` scope.

Both are cancelled by anyio cancel scopes as usual (an exit signal that kills
a process blocked elsewhere cancels its scope; one that reaches it here wakes
it instead).
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, Final, Protocol

import sniffio

from thunderline.runtime._errors import UnsupportedBackendError

if TYPE_CHECKING:
    from thunderline.runtime._process import Process

__all__ = ["Waiting", "select_waiting"]

_EXPIRED: Final[Any] = object()


class Waiting(Protocol):
    """The wait/wake primitive of one backend."""

    def now(self) -> float:
        """The event loop's clock (what ``anyio.current_time()`` returns), without lookups."""

    def wake(self, waiter: Any) -> None:
        """Wake the process blocked on ``waiter`` (idempotent)."""

    async def wait(self, proc: Process, deadline: float) -> bool:
        """Block ``proc`` until woken (True) or until ``deadline`` passes (False)."""


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(_EXPIRED)


class _AsyncioWaiting:
    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()

    def now(self) -> float:
        return self._loop.time()

    def wake(self, waiter: Any) -> None:
        if not waiter.done():
            waiter.set_result(None)

    async def wait(self, proc: Process, deadline: float) -> bool:
        loop = self._loop
        future: asyncio.Future[Any] = loop.create_future()
        proc._waiter = future
        handle = None if deadline == math.inf else loop.call_at(deadline, _expire, future)
        try:
            return (await future) is not _EXPIRED
        finally:
            proc._waiter = None
            if handle is not None:
                handle.cancel()


class _TrioWaiter:
    __slots__ = ("done", "task")

    def __init__(self, task: Any) -> None:
        self.task = task
        self.done = False


class _TrioWaiting:
    __slots__ = ("_trio",)

    def __init__(self) -> None:
        import trio

        self._trio = trio

    def now(self) -> float:
        return float(self._trio.current_time())

    def wake(self, waiter: Any) -> None:
        if not waiter.done:
            waiter.done = True
            self._trio.lowlevel.reschedule(waiter.task)

    async def wait(self, proc: Process, deadline: float) -> bool:
        trio = self._trio
        waiter = _TrioWaiter(trio.lowlevel.current_task())

        def abort(_raise_cancel: Any) -> Any:
            waiter.done = True
            return trio.lowlevel.Abort.SUCCEEDED

        proc._waiter = waiter
        try:
            if deadline == math.inf:
                await trio.lowlevel.wait_task_rescheduled(abort)
                return True
            with trio.move_on_at(deadline):
                await trio.lowlevel.wait_task_rescheduled(abort)
                return True
            return False
        finally:
            proc._waiter = None


def select_waiting() -> Waiting:
    """The primitive for the backend running the caller (call from async code)."""
    library = sniffio.current_async_library()
    if library == "trio":
        return _TrioWaiting()
    if library == "asyncio":
        return _AsyncioWaiting()
    raise UnsupportedBackendError(library)
