"""The asyncio backend (also uvloop): bare tasks, bare futures, one ``call_at`` per node.

* A process is a bare task from ``loop.create_task`` (no anyio task-group
  bookkeeping or cancel scope per process); the backend keeps the set of
  live tasks and :meth:`AsyncioBackend.open` waits for them when the node closes.
* A kill of a process that is not blocked in ``receive`` cancels its task;
  the task knows it is its own cancellation (``proc.exiting``) and uncancels.
* A blocked receive awaits a bare future resolved by :meth:`wake`; a timeout is
  an entry in the node's :class:`~._timers.Timers`, which keeps one
  ``loop.call_at`` handle armed for the earliest deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from thunderline.runtime._process import PROCESS_ENDINGS
from thunderline.runtime._reasons import NORMAL
from thunderline.runtime._timers import EXPIRED, Entry, Timers

if TYPE_CHECKING:
    from thunderline.runtime._backends import ProcessFn
    from thunderline.runtime._node import Node
    from thunderline.runtime._process import Process

__all__ = ["AsyncioBackend"]


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(EXPIRED)


class AsyncioBackend:
    """Processes as bare asyncio tasks; see the module docstring."""

    __slots__ = ("_handle", "_loop", "_new_future", "_new_task", "_tasks", "now", "timers")

    name = "asyncio"

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._tasks: set[asyncio.Task[None]] = set()
        self._handle: asyncio.TimerHandle | None = None
        self.timers = Timers(self._arm)
        #: The loop clock, read without a method of ours in between.
        self.now: Callable[[], float] = loop.time
        # A future per blocked receive: the default loop's create_future is a Python
        # method around Future(loop=loop), so the future is made directly; a loop
        # with its own create_future (uvloop) keeps it.
        self._new_future: Callable[[], asyncio.Future[Any]] = (
            functools.partial(asyncio.Future, loop=loop)
            if type(loop).create_future is asyncio.BaseEventLoop.create_future
            else loop.create_future
        )
        # A task per process: likewise Task(coro, loop=loop), which is what the
        # default loop's create_task does without a task factory (a factory or a
        # loop's own create_task present when the node opens is used instead).
        self._new_task: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]] = (
            functools.partial(asyncio.Task, loop=loop)
            if type(loop).create_task is asyncio.BaseEventLoop.create_task
            and loop.get_task_factory() is None
            else loop.create_task
        )

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            while self._tasks:
                await asyncio.wait(set(self._tasks))
                self._tasks = {task for task in self._tasks if not task.done()}

    # ---------------------------------------------------------------- timers

    def _arm(self, deadline: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._handle = None
        self.timers.fire(self._loop.time())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.timers.clear()

    # -------------------------------------------------------------- processes

    def spawn(self, node: Node, proc: Process, fn: ProcessFn, args: tuple[Any, ...]) -> None:
        self._tasks.add(self._new_task(self._run(node, proc, fn, args)))

    async def _run(self, node: Node, proc: Process, fn: ProcessFn, args: tuple[Any, ...]) -> None:
        """A process's task: the only frame between the task and the process function.

        The task is known to the process only once it runs: a kill that comes
        earlier is seen here (``proc.exiting``), since cancelling a task that
        never started would skip this function and its ``finally``. The task
        leaves the node's set here, as its last step (no done callback, which
        would cost one more loop hop per process); :meth:`open` also drops
        tasks that ended without running this function."""
        task = asyncio.current_task()
        proc._runner = task
        node.enter(proc)
        reason: Any = None
        try:
            if proc.exiting:
                raise asyncio.CancelledError
            await node.start_body(proc, fn, args)
            reason = NORMAL
        except PROCESS_ENDINGS as exc:
            reason = node.exit_reason(exc)
        except asyncio.CancelledError:
            if not proc.exiting:
                raise  # not ours: propagate
            if task is not None:
                task.uncancel()
        finally:
            proc._runner = None
            if task is not None:
                self._tasks.discard(task)
            node.leave(proc, reason)

    def interrupt(self, proc: Process) -> None:
        task = proc._runner
        if task is not None:
            task.cancel()

    # ------------------------------------------------------------ wait / wake

    def wake(self, waiter: Any) -> None:
        if not waiter.done():
            waiter.set_result(None)

    def park(self, proc: Process, deadline: float) -> tuple[Awaitable[Any], Entry | None]:
        future = self._new_future()
        proc._waiter = future
        if deadline == math.inf:
            return future, None
        return future, self.timers.schedule(deadline, _expire, future)
