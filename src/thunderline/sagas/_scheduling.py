"""How a run's steps get a task: the scheduling mechanics of the executor.

The executor (:mod:`thunderline.sagas._executor`) decides *which* steps may
start (``take``) and what one step does (``run_step``); this module only
decides *in which task* each step runs, so that a saga whose steps come one at
a time costs no task at all:

1. The run's own task takes the ready steps. While they come one at a time, it
   runs each in turn itself (no task group, no task).
2. When two or more can start: open a task group; the run's task is its first
   *worker*, with the taken steps as its queue. A worker drives each step of its
   queue in its own task, as ``await`` would. A step that finishes without
   suspending kept no other step waiting, so the worker goes on with the next
   one. At the first step that suspends, every other step of the queue starts
   at once, each in a new worker task, and the worker goes on driving the
   suspended step. With its queue done, a worker takes the steps that became
   ready as its new queue; with nothing to take it ends. The group closes when
   the last worker does, and the run's task goes back to (1).
3. When the run may cancel a step inside an attempt (``scoped``: policy
   ``in_flight="cancel"`` or a concurrency limiter), every worker runs in a
   cancel scope of its own, registered for the step it drives
   (``register_scope``); the run cancels that scope to stop the step.

``drive`` returns when no step is ready and none is running.
"""

from __future__ import annotations

import types
from collections.abc import Coroutine, Generator, Sequence
from typing import Any, Protocol

import anyio
import anyio.abc

from ._saga import StepSpec

__all__ = ["Schedulable", "drive"]


class Schedulable(Protocol):
    """What :func:`drive` needs from a run."""

    @property
    def scoped(self) -> bool:
        """Whether each step runs in a cancel scope the run may cancel."""
        ...

    def take(self) -> list[StepSpec]:
        """Mark the steps that may start now as started and return them."""
        ...

    def run_step(self, spec: StepSpec) -> Coroutine[Any, Any, None]:
        """Everything one taken step does, until it completed, failed or gave up."""
        ...

    def register_scope(self, name: str, scope: anyio.CancelScope) -> None:
        """The cancel scope in which step ``name`` runs from now on."""
        ...

    def abandon(self, specs: Sequence[StepSpec]) -> None:
        """Undo the taking of steps that never started (their worker is crashing)."""
        ...


async def drive(run: Schedulable) -> None:
    """Run ``run``'s steps until none is ready and none is running (steps 1-2 above)."""
    batch = run.take()
    while batch:
        if len(batch) == 1:
            if run.scoped:
                with anyio.CancelScope() as scope:
                    batch = await _run_alone(run, batch[0], scope)
                if scope.cancelled_caught:
                    return  # the run cancelled the step: it is stopping
            else:
                batch = await _run_alone(run, batch[0], None)
            continue
        async with anyio.create_task_group() as tg:
            await _work(run, tg, batch)
        batch = run.take()


async def _run_alone(
    run: Schedulable, spec: StepSpec, scope: anyio.CancelScope | None
) -> list[StepSpec]:
    """Run steps in this task while they come one at a time; return the next batch."""
    while True:
        if scope is not None:
            run.register_scope(spec.name, scope)
        await run.run_step(spec)
        batch = run.take()
        if len(batch) != 1:
            return batch
        spec = batch[0]


async def _work(run: Schedulable, tg: anyio.abc.TaskGroup, specs: list[StepSpec]) -> None:
    """A worker of the task group: runs ``specs``, then the steps it takes."""
    if run.scoped:
        with anyio.CancelScope() as scope:
            await _work_loop(run, tg, specs, scope)
    else:
        await _work_loop(run, tg, specs, None)


async def _work_loop(
    run: Schedulable,
    tg: anyio.abc.TaskGroup,
    queue: list[StepSpec],
    scope: anyio.CancelScope | None,
) -> None:
    i = 0
    try:
        while True:
            while i < len(queue):
                spec = queue[i]
                i += 1
                if scope is not None:
                    run.register_scope(spec.name, scope)
                # Drive the step in this task, as ``await`` would; if it
                # finishes without suspending, no other step had to wait.
                step = run.run_step(spec)
                try:
                    suspended_at = step.send(None)
                except StopIteration:
                    continue
                # It waits: every other step of the queue starts now, in a
                # task of its own, while this task goes on driving it.
                for other in queue[i:]:
                    tg.start_soon(_work, run, tg, [other], name=f"saga step {other.name}")
                i = len(queue)
                await _resume(step, suspended_at)
            queue = run.take()
            i = 0
            if not queue:
                return
    except BaseException:
        run.abandon(queue[i:])
        raise


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], suspended_at: Any) -> Generator[Any, Any, None]:
    """Go on driving ``coro``, which suspended yielding ``suspended_at``, from the current task.

    The same delegation as ``await coro`` (PEP 380's ``yield from``): whatever
    the event loop sends or throws in goes to ``coro``, whatever it yields goes
    to the event loop.
    """
    while True:
        try:
            sent = yield suspended_at
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - delivered to the coroutine
            try:
                suspended_at = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                suspended_at = coro.send(sent)
            except StopIteration:
                return
