"""The event-loop backends: one module per loop, chosen once when a node opens.

Like anyio's ``_backends``, everything the runtime does differently per event
loop lives in one class per loop, in its own module, and nothing else in the
runtime branches on the loop:

* :mod:`._backend_asyncio` (asyncio, including uvloop),
* :mod:`._backend_trio`.

A backend provides the five primitives the runtime is built on:

``spawn``
    start a process's task (which runs :meth:`Node.run_process`);
``interrupt``
    make a process's next checkpoint raise (it is dying);
``park`` / ``wake``
    block a process in ``receive`` on the loop's cheapest native primitive
    and wake it (a bare future on asyncio, ``wait_task_rescheduled`` on trio);
``now``
    the loop clock (what ``anyio.current_time()`` returns), read directly;

plus the node's shared timer facility (:class:`~._timers.Timers`) armed on one
native timer, and ``open``, the scope that owns the node's tasks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

import sniffio

from thunderline.runtime._errors import UnsupportedBackendError
from thunderline.runtime._timers import Entry, Timers

if TYPE_CHECKING:
    from thunderline.runtime._node import Node
    from thunderline.runtime._process import Process

#: A process function.
ProcessFn = Callable[..., Awaitable[Any]]

__all__ = ["Backend", "select_backend"]


class Backend(Protocol):
    """The per-event-loop primitives of a node (see the module docstring)."""

    name: str
    timers: Timers

    def open(self) -> AbstractAsyncContextManager[None]:
        """The scope owning the node's tasks: leaving it waits for every one of them."""

    def now(self) -> float:
        """The event loop's clock."""

    def spawn(self, node: Node, proc: Process, fn: ProcessFn, args: tuple[Any, ...]) -> None:
        """Start a task running ``fn(*args)`` as ``proc``: ``node.enter``, then in the task's
        own frame ``await node.start_body(...)`` with :meth:`Node.exit_reason` for what
        ends it, then ``node.leave`` with the exit reason, whatever happens."""

    def interrupt(self, proc: Process) -> None:
        """Make ``proc``'s next checkpoint raise (a kill of a process not blocked in receive)."""

    def wake(self, waiter: Any) -> None:
        """Wake the process blocked on ``waiter`` (idempotent)."""

    def park(self, proc: Process, deadline: float) -> tuple[Awaitable[Any], Entry | None]:
        """Prepare to block ``proc`` until woken or until ``deadline`` passes.

        Sets ``proc._waiter`` and returns an awaitable that resumes with
        :data:`~._timers.EXPIRED` when the deadline passed (anything else: woken),
        plus the timer entry to cancel afterwards (None without a deadline). The
        caller awaits it directly (no coroutine frame of the backend's in
        between), then resets ``proc._waiter`` and cancels the entry.
        """

    def close(self) -> None:
        """Stop the native timer and drop every timer (the node is closing)."""


def select_backend() -> Backend:
    """The backend of the event loop running the caller (call from async code)."""
    library = sniffio.current_async_library()
    if library == "asyncio":
        from thunderline.runtime._backend_asyncio import AsyncioBackend

        return AsyncioBackend()
    if library == "trio":
        from thunderline.runtime._backend_trio import TrioBackend

        return TrioBackend()
    raise UnsupportedBackendError(library)
