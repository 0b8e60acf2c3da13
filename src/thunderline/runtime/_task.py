"""Tasks as Elixir has them: one function run in its own process, awaited by its owner.

::

    task = task_async(fetch, url)          # linked to the caller and monitored
    page = await task_await(task, 5)       # the result, or TaskTimeoutError (task killed)

* :func:`task_async` links the task to its owner and monitors it. A crashing
  task takes its owner down through the link (unless the owner traps exits);
  :func:`task_await` raises :class:`TaskExitError` when the task ended without
  replying, and :class:`TaskTimeoutError` after killing a task that did not
  answer in time: every awaited task is answered or killed.
* :func:`task_yield` waits without killing: ``None`` on timeout.
* :func:`task_shutdown` stops a task and reports a reply that arrived meanwhile.
* :func:`start_task_supervisor` and :func:`task_async_nolink`: tasks supervised
  elsewhere and only monitored by the caller; a crash arrives as a ``Down``
  (or as ``TaskExit`` from await/yield), never as an exit signal.
* :func:`task_async_stream` maps a function over items with at most
  ``max_concurrency`` tasks at a time, in input order or as completed, each
  item with its own timeout (``on_timeout="exit"`` stops the stream and
  raises, ``"kill_task"`` kills that task and yields ``TaskExit("timeout")``).

The protocol: a task sends ``_TaskReply(ref, value)`` to its owner, ``ref``
being the owner's monitor of the task, then exits normally; the owner takes
the reply or the ``Down`` for ``ref`` by selective receive. A supervised task
waits for the ``ref`` from its owner before it runs, so its monitor exists
before anything it does.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Final, Literal

import attrs

from thunderline.runtime._api import (
    current_pid,
    demonitor,
    exit,
    monitor,
    receive,
    send,
    spawn_link,
    unlink,
)
from thunderline.runtime._child_spec import BrutalKill, ChildSpec, Restart
from thunderline.runtime._errors import ReceiveTimeout, ThunderlineError
from thunderline.runtime._messages import Down
from thunderline.runtime._node import current_node
from thunderline.runtime._pid import Pid, Ref
from thunderline.runtime._reasons import KILL, SHUTDOWN, Killed, NoProc, Shutdown
from thunderline.runtime._server import start_link
from thunderline.runtime._supervisor import DynamicSupervisor, start_child

__all__ = [
    "Task",
    "TaskError",
    "TaskExit",
    "TaskExitError",
    "TaskOk",
    "TaskOptionError",
    "TaskOwnerError",
    "TaskTimeoutError",
    "start_task_supervisor",
    "task_async",
    "task_async_nolink",
    "task_async_stream",
    "task_await",
    "task_shutdown",
    "task_yield",
]

TIMEOUT: Final = "timeout"


@attrs.frozen
class Task:
    """A running task: its pid, the owner's monitor reference, and the owner."""

    pid: Pid
    ref: Ref
    owner: Pid


@attrs.frozen
class TaskOk:
    """The task answered ``value`` (Elixir ``{:ok, value}``)."""

    value: Any


@attrs.frozen
class TaskExit:
    """The task ended without answering, with ``reason`` (Elixir ``{:exit, reason}``)."""

    reason: Any


class TaskError(ThunderlineError):
    """Base class of the task errors."""


class TaskExitError(TaskError):
    """The awaited task ended with ``reason`` before replying."""

    def __init__(self, task: Task, reason: Any) -> None:
        self.task = task
        self.reason = reason
        super().__init__(f"task {task.pid!r} exited with {reason!r} before replying")


class TaskTimeoutError(TaskError, TimeoutError):
    """The task did not reply within ``timeout`` seconds; it was killed."""

    def __init__(self, task: Task, timeout: float) -> None:
        self.task = task
        self.timeout = timeout
        super().__init__(f"task {task.pid!r} did not reply within {timeout} s (it was killed)")


class TaskOptionError(TaskError, ValueError):
    """An option of :func:`task_async_stream` has an unusable value."""

    def __init__(self, option: str, accepted: str, received: object) -> None:
        self.option = option
        self.received = received
        super().__init__(f"task_async_stream: {option} must be {accepted}, got {received!r}")


class TaskOwnerError(TaskError, ValueError):
    """Only the process that started a task may await, yield or shut it down."""

    def __init__(self, task: Task, caller: Pid, operation: str) -> None:
        self.task = task
        self.caller = caller
        super().__init__(
            f"{operation}: task {task.pid!r} belongs to {task.owner!r}, not to {caller!r}"
        )


@attrs.frozen(slots=True)
class _TaskReply:
    ref: Ref
    value: Any


@attrs.frozen(slots=True)
class _Go:
    ref: Ref


async def _task_body(
    owner: Pid, ref: Ref | None, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
) -> None:
    if ref is None:  # supervised: wait until the owner monitors us
        go = await receive(lambda m: type(m) is _Go, adopt_context=False)
        ref = go.ref
    assert ref is not None
    value = await fn(*args)
    send(owner, _TaskReply(ref, value))


def task_async(fn: Callable[..., Awaitable[Any]], *args: Any) -> Task:
    """Run ``await fn(*args)`` in a new process linked to and monitored by the caller.

    Raises:
        NotInProcessError: called outside a process.
    """
    owner = current_pid()
    # No checkpoint between spawn_link and monitor: the task has not run yet.
    pid = spawn_link(_task_body, owner, None, fn, args)
    ref = monitor(pid)
    send(pid, _Go(ref))
    return Task(pid, ref, owner)


def _check_owner(task: Task, operation: str) -> None:
    if type(task) is not Task:
        raise TypeError(f"{operation}: expected a Task, got {type(task).__name__} {task!r}")
    caller = current_pid()
    if caller != task.owner:
        raise TaskOwnerError(task, caller, operation)


def _matcher(ref: Ref) -> Callable[[Any], bool]:
    def match(message: Any) -> bool:
        mtype = type(message)
        return (mtype is _TaskReply and message.ref == ref) or (
            mtype is Down and message.ref == ref
        )

    return match


def _signal_kill(task: Task) -> None:
    unlink(task.pid)  # its death must not reach the owner as an exit signal
    exit(task.pid, KILL)


async def _reap(task: Task) -> None:
    """Wait for a killed task's ``Down``; a reply it sent just before is dropped."""
    match = _matcher(task.ref)
    while type(await receive(match, adopt_context=False)) is not Down:
        pass


async def _kill(task: Task) -> None:
    """Kill a task and return once it is dead (its reply, if any, is dropped)."""
    _signal_kill(task)
    await _reap(task)


async def _take(task: Task, timeout: float | None) -> TaskOk | TaskExit | None:
    try:
        message = await receive(_matcher(task.ref), timeout=timeout, adopt_context=False)
    except ReceiveTimeout:
        return None
    if type(message) is _TaskReply:
        demonitor(task.ref, flush=True)
        return TaskOk(message.value)
    return TaskExit(message.reason)


async def task_await(task: Task, timeout: float | None = 5.0) -> Any:
    """Wait for the task's reply and return it (Elixir ``Task.await``).

    Raises:
        TaskTimeoutError: no reply within ``timeout`` seconds (None waits forever);
            the task was killed first and is dead.
        TaskExitError: the task ended without replying (seen only when the
            owner traps exits or the task is not linked).
        TaskOwnerError: the caller did not start the task.
    """
    _check_owner(task, "task_await")
    outcome = await _take(task, timeout)
    if outcome is None:
        await _kill(task)
        raise TaskTimeoutError(task, timeout if timeout is not None else math.inf)
    if isinstance(outcome, TaskExit):
        raise TaskExitError(task, outcome.reason)
    return outcome.value


async def task_yield(task: Task, timeout: float | None = 5.0) -> TaskOk | TaskExit | None:
    """Wait up to ``timeout`` for the task: ``TaskOk``, ``TaskExit``, or None (still running)."""
    _check_owner(task, "task_yield")
    return await _take(task, timeout)


async def task_shutdown(task: Task, timeout: float | BrutalKill = 5.0) -> TaskOk | TaskExit | None:
    """Stop the task (Elixir ``Task.shutdown``).

    The task gets ``exit(pid, SHUTDOWN)`` (``BRUTAL_KILL``: ``KILL``); after
    ``timeout`` seconds it is killed. Returns ``TaskOk`` if its reply arrived
    meanwhile, ``TaskExit`` if it ended for another reason than the shutdown,
    else None.
    """
    _check_owner(task, "task_shutdown")
    unlink(task.pid)
    exit(task.pid, KILL if isinstance(timeout, BrutalKill) else SHUTDOWN)
    match = _matcher(task.ref)
    wait = None if isinstance(timeout, BrutalKill) else timeout
    try:
        message = await receive(match, timeout=wait, adopt_context=False)
    except ReceiveTimeout:
        exit(task.pid, KILL)
        message = await receive(match, adopt_context=False)
    if type(message) is _TaskReply:
        demonitor(task.ref, flush=True)
        return TaskOk(message.value)
    reason = message.reason
    if isinstance(reason, Shutdown | Killed | NoProc):
        return None
    return TaskExit(reason)


# ------------------------------------------------------------ task supervisor


async def _start_supervised(
    owner: Pid, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
) -> Pid:
    return spawn_link(_task_body, owner, None, fn, args)


async def start_task_supervisor(*, name: str | None = None) -> Pid:
    """Start a task supervisor linked to the caller (Elixir ``Task.Supervisor``).

    Its children are temporary tasks (never restarted), each stopped with a
    5 s shutdown when the supervisor stops.
    """
    template = ChildSpec(id="task", start=_start_supervised, restart=Restart.TEMPORARY)
    pid = await start_link(DynamicSupervisor(template, name=name), name=name)
    assert pid is not None
    return pid


async def task_async_nolink(
    supervisor: Pid | str, fn: Callable[..., Awaitable[Any]], *args: Any
) -> Task:
    """Run ``await fn(*args)`` under ``supervisor``, monitored (not linked) by the caller.

    A crash reaches the caller as ``Down(task.ref, pid, reason)``, or as
    ``TaskExit``/:class:`TaskExitError` from :func:`task_yield`/:func:`task_await`.
    """
    owner = current_pid()
    pid = await start_child(supervisor, owner, fn, args)
    assert pid is not None
    ref = monitor(pid)
    send(pid, _Go(ref))
    return Task(pid, ref, owner)


# ---------------------------------------------------------------- async_stream


async def task_async_stream(
    fn: Callable[[Any], Awaitable[Any]],
    items: Iterable[Any],
    *,
    max_concurrency: int = 8,
    ordered: bool = True,
    timeout: float | None = 5.0,
    on_timeout: Literal["exit", "kill_task"] = "exit",
    supervisor: Pid | str | None = None,
) -> AsyncIterator[TaskOk | TaskExit]:
    """Map ``fn`` over ``items`` in tasks, at most ``max_concurrency`` at a time.

    Yields ``TaskOk(value)`` per item, or ``TaskExit(reason)`` for a task that
    ended without replying (seen when the tasks are not linked: with a
    ``supervisor``, or when the caller traps exits) or that was killed after
    ``timeout`` seconds with ``on_timeout="kill_task"`` (reason ``"timeout"``).
    ``ordered`` yields in the order of ``items``, else as tasks finish. Each
    task's timeout runs from its own start. Leaving the iteration early kills
    the tasks still running.

    Raises:
        TaskTimeoutError: a task timed out with ``on_timeout="exit"``; every
            task of the stream was killed first.
        TaskOptionError: ``max_concurrency`` < 1 or an unknown ``on_timeout``.
    """
    if not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise TaskOptionError("max_concurrency", "an int >= 1", max_concurrency)
    if on_timeout not in ("exit", "kill_task"):
        raise TaskOptionError("on_timeout", "'exit' or 'kill_task'", on_timeout)
    waiting = iter(enumerate(items))
    running: dict[Ref, tuple[int, Task, float]] = {}
    done: dict[int, TaskOk | TaskExit] = {}
    next_index = 0
    exhausted = False
    clock = current_node("task_async_stream").backend

    def matches(message: Any) -> bool:
        mtype = type(message)
        return (mtype is _TaskReply or mtype is Down) and message.ref in running

    try:
        while True:
            while not exhausted and len(running) < max_concurrency:
                try:
                    index, item = next(waiting)
                except StopIteration:
                    exhausted = True
                    break
                if supervisor is None:
                    task = task_async(fn, item)
                else:
                    task = await task_async_nolink(supervisor, fn, item)
                deadline = math.inf if timeout is None else clock.now() + timeout
                running[task.ref] = (index, task, deadline)
            if ordered:
                while next_index in done:
                    yield done.pop(next_index)
                    next_index += 1
            if not running:
                return
            first = min(deadline for _, _, deadline in running.values())
            wait = None if first == math.inf else max(0.0, first - clock.now())
            try:
                message = await receive(matches, timeout=wait, adopt_context=False)
            except ReceiveTimeout:
                now = clock.now()
                for ref, (index, task, deadline) in list(running.items()):
                    if deadline <= now:
                        if on_timeout == "exit":
                            raise TaskTimeoutError(task, timeout or 0.0) from None
                        del running[ref]
                        await _kill(task)
                        outcome: TaskOk | TaskExit = TaskExit(TIMEOUT)
                        if ordered:
                            done[index] = outcome
                        else:
                            yield outcome
                continue
            index, task, _ = running.pop(message.ref)
            if type(message) is _TaskReply:
                demonitor(message.ref, flush=True)
                outcome = TaskOk(message.value)
            else:
                outcome = TaskExit(message.reason)
            if ordered:
                done[index] = outcome
            else:
                yield outcome
    finally:
        for _, task, _ in running.values():
            _signal_kill(task)
        for _, task, _ in running.values():
            await _reap(task)
