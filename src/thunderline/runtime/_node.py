"""The node: the process table, spawning, and what happens when a process ends.

A :class:`Node` hosts processes inside one anyio task group. Open one with
:func:`open_node` inside an anyio program, or let :func:`run` do it::

    async def main() -> None:
        pid = thunderline.spawn(worker)
        thunderline.send(pid, "hello")

    thunderline.run(main, backend="trio")

When a process ends, :meth:`Node.finalize` runs in its task, synchronously, in
OTP's order: the process leaves the table, its registered name and registry
entries are released, its timers are cancelled, then its link partners get
exit signals and only then its monitors fire (``Down``). So an observer of
``Exit``/``Down`` already finds the name free (OTP: "directly visible
resources" are released before the signals go out).

Leaving the node stops every remaining process (reason ``Shutdown()``); no
task outlives it.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio

from thunderline.runtime._backends import Backend, select_backend
from thunderline.runtime._errors import LoopUnavailableError, NodeClosingError, NoNodeError
from thunderline.runtime._instrument import Instrument, get_default_instrument
from thunderline.runtime._messages import Down
from thunderline.runtime._pid import Pid, Ref, next_node_id
from thunderline.runtime._process import (
    Hibernating,
    Process,
    ProcessExit,
    add_link,
    add_monitor,
    current_process_var,
)
from thunderline.runtime._reasons import NORMAL, SHUTDOWN, Crashed, is_quiet

if TYPE_CHECKING:
    from thunderline.runtime._remote import Distribution

__all__ = ["Node", "current_node", "open_node", "run"]

logger: Final = logging.getLogger("thunderline.runtime")

current_node_var: ContextVar[Node | None] = ContextVar("thunderline_node", default=None)

T = TypeVar("T")


class Node:
    """A runtime node: hosts processes, names and timers. Create it with :func:`open_node`."""

    def __init__(self, backend: Backend, instrument: Instrument | None) -> None:
        self.id = next_node_id()
        self.processes: dict[Pid, Process] = {}
        self.names: dict[str, Pid] = {}
        self.instrument = instrument if instrument is not None else get_default_instrument()
        self.backend = backend
        self.timers: dict[Ref, Any] = {}
        self._pid_numbers = itertools.count(1)
        self._ref_numbers = itertools.count(1)
        self._closing = False
        #: Signals for other nodes go here (``thunderline.dist``); None: single node.
        self.dist: Distribution | None = None
        #: The context hibernated processes wake up in (set by open_node).
        self.context = contextvars.copy_context()

    # ------------------------------------------------------------ identities

    def make_ref(self) -> Ref:
        """A new unique reference."""
        return Ref._make(self.id, next(self._ref_numbers))

    # ----------------------------------------------------------------- spawn

    def spawn(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        *,
        parent: Process | None,
        link: bool,
        monitor: bool,
        trap_exit: bool,
        label: str | None = None,
    ) -> tuple[Pid, Ref | None]:
        """Create a process running ``fn(*args)``; link/monitor are set up atomically."""
        if self._closing:
            raise NodeClosingError(self.id, "spawn")
        pid = Pid._make(self.id, next(self._pid_numbers))
        proc = Process(
            self,
            pid,
            parent.pid if parent is not None else None,
            label or str(getattr(fn, "__qualname__", None) or repr(fn)),
        )
        proc.trap_exit = trap_exit
        self.processes[pid] = proc
        ref: Ref | None = None
        if parent is not None:
            if link:
                add_link(parent, proc)
            if monitor:
                ref = self.make_ref()
                add_monitor(ref, parent, proc, pid)
        self.backend.spawn(self, proc, fn, args)
        return pid, ref

    @staticmethod
    def start_body(proc: Process, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> Any:
        """``fn(*args)``, checked to be an awaitable: what a process's task awaits.

        The backend's task awaits it in its own frame (no coroutine of the
        node's in between: every frame of the chain is resumed again at each
        wake-up) and turns what ends it into the exit reason with
        :meth:`exit_reason`: the whole body is ``try: await start_body(...);
        reason = NORMAL except PROCESS_ENDINGS as exc: reason = exit_reason(exc)``.
        """
        awaitable = fn(*args)
        if not isinstance(awaitable, Awaitable):
            raise TypeError(
                f"process function {proc.label} returned {awaitable!r}, "
                "not an awaitable: spawn takes an async function"
            )
        return awaitable

    @staticmethod
    def exit_reason(exc: ProcessExit | Hibernating | Exception) -> Any:
        """The exit reason of a process body that raised ``exc`` (one of :data:`PROCESS_ENDINGS`):
        ``ProcessExit``'s reason, the :class:`Hibernating` request itself, or ``Crashed``."""
        if isinstance(exc, ProcessExit):
            return exc.reason
        if isinstance(exc, Hibernating):
            return exc
        return Crashed(exc)

    def resume(
        self, proc: Process, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> None:
        """Start a new task for a hibernated process (in the node's own context, not the
        waker's: nothing of the sender's context variables leaks into it)."""
        self.context.run(self.backend.spawn, self, proc, fn, args)

    def enter(self, proc: Process) -> None:
        """The process's task starts running (called by the backend, in that task)."""
        current_process_var.set(proc)
        if proc._resume is not None:  # woken from hibernation: not a new process
            proc._resume = None
            return
        instrument = self.instrument
        if instrument is not None:
            self.call_hook(instrument.process_started, proc.pid, proc.parent, proc.label)

    def leave(self, proc: Process, reason: Any) -> None:
        """The process's task ends with ``reason`` (None: stopped from outside)."""
        killed_by_signal = proc.exiting
        if killed_by_signal:
            reason = proc.exit_reason
        elif reason is None:
            reason = NORMAL
        elif type(reason) is Hibernating:
            proc.hibernate(reason.fn, reason.args)
            if proc.mailbox:  # a message came while the task was ending
                proc._thaw()
            return
        # OTP writes crash reports for processes that fail by themselves; one
        # terminated by an exit signal runs no code and reports nothing.
        self.finalize(proc, reason, report=not killed_by_signal)

    # ----------------------------------------------------------------- death

    def finalize(self, proc: Process, reason: Any, *, report: bool = True) -> None:
        """Release what ``proc`` held, then signal links (``Exit``) and monitors (``Down``)."""
        pid = proc.pid
        if self.processes.get(pid) is not proc:
            return
        del self.processes[pid]
        # Directly visible resources first: names, registry entries, timers.
        if proc.name is not None:
            self.names.pop(proc.name, None)
            proc.name = None
        if proc.exit_callbacks:
            for callback in proc.exit_callbacks:
                try:
                    callback(pid, reason)
                except Exception:
                    logger.exception("exit callback of %r failed", pid)
            proc.exit_callbacks.clear()
        if proc.timers:
            timers = self.backend.timers
            for timer_ref in proc.timers:
                entry = self.timers.pop(timer_ref, None)
                if entry is not None:
                    timers.cancel(entry)
            proc.timers.clear()
        proc._call_ref = None
        if proc.monitors_out:
            for ref, mon in proc.monitors_out.items():
                target = self.processes.get(mon.target)
                if target is not None:
                    target.monitors_in.pop(ref, None)
                elif self.dist is not None and mon.target._node != self.id:
                    self.dist.demonitor(pid, mon.target, ref)
            proc.monitors_out.clear()
        # Then the signals: link partners first, then monitor owners (ERTS order).
        # (A process that nobody links to or monitors, the common short-lived
        # one, skips both loops: an empty dict is all it costs.)
        observed = False
        if proc.links:
            observed = True
            links = list(proc.links)
            proc.links.clear()
            for other_pid in links:
                other = self.processes.get(other_pid)
                if other is not None:
                    other.links.pop(pid, None)
                    other.exit_signal(pid, reason, linked=True)
                elif self.dist is not None and other_pid._node != self.id:
                    self.dist.exit(pid, other_pid, reason, True)
        if proc.monitors_in:
            monitors = list(proc.monitors_in.values())
            proc.monitors_in.clear()
            for mon in monitors:
                if mon.owner != pid:
                    observed = True
                owner = self.processes.get(mon.owner)
                if owner is not None:
                    if owner.monitors_out.pop(mon.ref, None) is not None:
                        owner.deliver(Down(mon.ref, mon.reported, reason))
                elif self.dist is not None and mon.owner._node != self.id:
                    self.dist.down(mon.owner, mon.ref, reason)
        if proc.mailbox:
            proc.mailbox.clear()
        if self.instrument is not None:
            self.call_hook(self.instrument.process_exited, pid, reason)
            proc.release_carrier()
        if report and not observed and not is_quiet(reason) and not self._closing:
            report_crash(pid, proc.label, reason)

    def call_hook(self, hook: Callable[..., None], *args: Any) -> None:
        """Call an instrument hook; a failing hook is logged, never propagated."""
        try:
            hook(*args)
        except Exception:
            logger.exception("instrument hook %s failed", getattr(hook, "__qualname__", hook))

    def close(self) -> None:
        """Stop every remaining process with reason ``Shutdown()`` (the backend's scope then
        waits for their tasks)."""
        self._closing = True
        for proc in list(self.processes.values()):
            proc.kill(SHUTDOWN)
        self.timers.clear()
        self.backend.close()


def report_crash(pid: Pid, label: str, reason: Any) -> None:
    """Log the abnormal exit of a process nobody links to or monitors (OTP crash report).

    The record's ``extra`` fields: ``thunderline_report`` (``"crash_report"``),
    ``pid``, ``label`` (the process's function), ``reason`` and ``traceback``.
    """
    traceback_text = reason.traceback if isinstance(reason, Crashed) else None
    logger.error(
        "process %r (%s) exited: %r",
        pid,
        label,
        reason,
        extra={
            "thunderline_report": "crash_report",
            "pid": repr(pid),
            # not "process": LogRecord already has that attribute (the OS pid),
            # and logging refuses to overwrite it.
            "label": label,
            "reason": repr(reason),
            "traceback": traceback_text,
        },
        exc_info=(
            (type(reason.exception), reason.exception, reason.exception.__traceback__)
            if isinstance(reason, Crashed)
            else None
        ),
    )


def current_node(operation: str = "current_node") -> Node:
    """The node of the calling context; raises :class:`NoNodeError` outside one."""
    node = current_node_var.get()
    if node is None:
        raise NoNodeError(operation)
    return node


@contextlib.asynccontextmanager
async def open_node(*, instrument: Instrument | None = None) -> AsyncIterator[Node]:
    """Run a node for the duration of the ``async with`` block.

    Inside the block (and inside every process spawned from it) the runtime
    functions (``spawn``, ``send``, ``whereis`` ...) act on this node. Leaving
    the block stops every remaining process with reason ``Shutdown()`` and
    waits until all of them have ended.

    Args:
        instrument: optional :class:`Instrument` (e.g. from ``thunderline.telemetry``);
            without one, the default (:func:`set_default_instrument`) at this moment.
    """
    backend = select_backend()
    async with backend.open():
        node = Node(backend, instrument)
        token = current_node_var.set(node)
        node.context = contextvars.copy_context()
        try:
            yield node
        finally:
            current_node_var.reset(token)
            node.close()


def check_uvloop(backend: str) -> None:
    """Raise :class:`LoopUnavailableError` unless uvloop can run ``backend``."""
    if backend != "asyncio":
        raise LoopUnavailableError("uvloop", f"it is an asyncio loop, not one for {backend}")
    if importlib.util.find_spec("uvloop") is None:
        raise LoopUnavailableError(
            "uvloop", "it is not installed (pip install 'thunderline[uvloop]')"
        )


def run(
    main: Callable[..., Awaitable[T]],
    *args: Any,
    backend: str = "asyncio",
    instrument: Instrument | None = None,
    backend_options: dict[str, Any] | None = None,
    setup: Callable[[Node], contextlib.AbstractAsyncContextManager[Any]] | None = None,
    uvloop: bool = False,
) -> T:
    """Run ``main(*args)`` as the first process of a new node and return its result.

    Blocks until ``main`` returns; then every process still running is stopped.
    If ``main`` raises, the exception is re-raised here; if it is killed by an
    exit signal, :class:`ProcessExit` with that reason is raised.

    Args:
        main: an async function, run as a process.
        backend: ``"asyncio"`` or ``"trio"``.
        instrument: optional :class:`Instrument`.
        backend_options: passed to :func:`anyio.run`.
        setup: optional factory of an async context manager entered with the
            node before ``main`` starts and left after it ended (before the
            remaining processes are stopped); ``thunderline.dist`` uses it.
        uvloop: run asyncio on uvloop (anyio's ``use_uvloop``; ``pip install
            'thunderline[uvloop]'``). Same as ``backend_options={"use_uvloop": True}``.

    Raises:
        LoopUnavailableError: ``uvloop=True`` with trio, or uvloop is not installed.
    """
    if backend not in ("asyncio", "trio"):
        raise ValueError(f"backend must be 'asyncio' or 'trio', got {backend!r}")
    if uvloop or (backend_options or {}).get("use_uvloop"):
        backend_options = {**(backend_options or {}), "use_uvloop": True}
        check_uvloop(backend)
    outcome: dict[str, Any] = {}

    async def body() -> None:
        try:
            outcome["value"] = await main(*args)
        except Exception as exc:
            outcome["error"] = exc
            raise

    async def amain() -> None:
        async with open_node(instrument=instrument) as node, contextlib.AsyncExitStack() as stack:
            if setup is not None:
                try:
                    await stack.enter_async_context(setup(node))
                except Exception as exc:  # noqa: BLE001 - re-raised by run as itself, not in a group
                    outcome["error"] = exc
                    return
            done = anyio.Event()
            pid, _ = node.spawn(
                body, (), parent=None, link=False, monitor=False, trap_exit=False, label="main"
            )
            proc = node.processes[pid]

            def on_exit(_pid: Pid, reason: Any) -> None:
                if "value" not in outcome and "error" not in outcome:
                    outcome["exit"] = reason
                done.set()

            proc.exit_callbacks.append(on_exit)
            await done.wait()

    anyio.run(amain, backend=backend, backend_options=backend_options)
    if "error" in outcome:
        raise outcome["error"]
    if "exit" in outcome:
        raise ProcessExit(outcome["exit"])
    return outcome["value"]  # type: ignore[no-any-return]
