"""The trio backend: one nursery per node, one trio cancel scope per process.

* A process is a task started in the node's own trio nursery (no anyio task
  group wrapper), inside one native ``trio.CancelScope`` that a kill cancels
  when the process is not blocked in ``receive``.
* A blocked receive parks the task with ``wait_task_rescheduled`` (the
  primitive trio's own synchronisation is built on); :meth:`TrioBackend.wake`
  reschedules it. A timeout is an entry in the node's :class:`~._timers.Timers`,
  not a cancel scope per wait: one timer task per node sleeps until the
  earliest deadline (a cancel scope whose deadline is moved when an earlier
  one is scheduled), fires what is due, and sleeps again. The timer task is
  started with the first timer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any

import outcome
import trio

from thunderline.runtime._process import PROCESS_ENDINGS
from thunderline.runtime._reasons import NORMAL
from thunderline.runtime._timers import EXPIRED, Entry, Timers

if TYPE_CHECKING:
    from thunderline.runtime._backends import ProcessFn
    from thunderline.runtime._node import Node
    from thunderline.runtime._process import Process

__all__ = ["TrioBackend"]


class _Waiter:
    __slots__ = ("done", "task")

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.done = False

    def abort(self, _raise_cancel: Any) -> trio.lowlevel.Abort:
        self.done = True
        return trio.lowlevel.Abort.SUCCEEDED


def _expire(waiter: _Waiter) -> None:
    if not waiter.done:
        waiter.done = True
        trio.lowlevel.reschedule(waiter.task, outcome.Value(EXPIRED))


class TrioBackend:
    """Processes as tasks of one trio nursery; see the module docstring."""

    __slots__ = ("_closed", "_nursery", "_sleep", "_timer_scope", "timers")

    name = "trio"

    def __init__(self) -> None:
        self._nursery: trio.Nursery | None = None
        self._timer_scope: trio.CancelScope | None = None
        self._sleep: trio.CancelScope | None = None
        self._closed = False
        self.timers = Timers(self._arm)

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            yield

    def now(self) -> float:
        return trio.current_time()

    # ---------------------------------------------------------------- timers

    def _arm(self, deadline: float) -> None:
        if self._closed or self._nursery is None:
            return
        if self._timer_scope is None:
            self._timer_scope = trio.CancelScope()
            self._nursery.start_soon(self._timer_task, name="thunderline timers")
        elif self._sleep is not None:
            self._sleep.deadline = deadline

    async def _timer_task(self) -> None:
        assert self._timer_scope is not None
        timers = self.timers
        with self._timer_scope:
            while True:
                with trio.CancelScope(deadline=timers.armed) as sleep:
                    self._sleep = sleep
                    await trio.sleep_forever()
                self._sleep = None
                timers.fire(trio.current_time())

    def close(self) -> None:
        self._closed = True
        if self._timer_scope is not None:
            self._timer_scope.cancel()
        self.timers.clear()

    # -------------------------------------------------------------- processes

    def spawn(self, node: Node, proc: Process, fn: ProcessFn, args: tuple[Any, ...]) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._run, node, proc, fn, args, name="thunderline process")

    @staticmethod
    async def _run(node: Node, proc: Process, fn: ProcessFn, args: tuple[Any, ...]) -> None:
        scope = trio.CancelScope()
        proc._runner = scope
        node.enter(proc)
        reason: Any = None
        try:
            with scope:
                if proc.exiting:
                    scope.cancel()
                try:
                    await node.start_body(proc, fn, args)
                    reason = NORMAL
                except PROCESS_ENDINGS as exc:
                    reason = node.exit_reason(exc)
        finally:
            proc._runner = None
            node.leave(proc, reason)

    def interrupt(self, proc: Process) -> None:
        scope = proc._runner
        if scope is not None:
            scope.cancel()

    # ------------------------------------------------------------ wait / wake

    def wake(self, waiter: Any) -> None:
        if not waiter.done:
            waiter.done = True
            trio.lowlevel.reschedule(waiter.task)

    def park(self, proc: Process, deadline: float) -> tuple[Awaitable[Any], Entry | None]:
        waiter = _Waiter(trio.lowlevel.current_task())
        proc._waiter = waiter
        parked = trio.lowlevel.wait_task_rescheduled(waiter.abort)
        if deadline == math.inf:
            return parked, None
        return parked, self.timers.schedule(deadline, _expire, waiter)
