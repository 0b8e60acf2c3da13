"""Applications: a supervision tree started, watched and stopped as one unit.

An *application spec* names the top of a supervision tree: a
:class:`~thunderline.runtime.ChildSpec` (usually from ``supervisor_spec``), a
:class:`~thunderline.runtime.Supervisor` instance, or a zero-argument function
(sync or async) returning either. Embed it in an anyio program::

    async with open_application(supervisor_spec("app", children)) as app:
        print(app.pid)            # the top supervisor
        await serve_forever()     # leaving the block stops the tree

or block in a script until SIGINT/SIGTERM::

    run_application(supervisor_spec("app", children), backend="trio")

How it works (OTP's application master):

1. A *master* process traps exits and calls the spec's ``start``, which links
   the top supervisor to it.
2. Stopping sends the top supervisor ``exit(pid, SHUTDOWN)`` and waits for it
   up to the spec's ``shutdown`` (``INFINITY`` for supervisors), then kills it.
   The supervisor stops its own children newest first, each within its
   ``shutdown``, recursively.
3. If the top supervisor exits without being asked (for example after
   ``reached_max_restart_intensity``), the application has died: the body of
   ``open_application`` is cancelled and :class:`ApplicationExitedError` is
   raised, as an Erlang node stops when its permanent application dies.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any, Final

import anyio
import attrs

from thunderline.runtime._api import exit as send_exit
from thunderline.runtime._api import processes, receive, send, spawn, trap_exit
from thunderline.runtime._child_spec import BRUTAL_KILL, INFINITY, ChildSpec, ChildType, Restart
from thunderline.runtime._errors import NoNodeError, ReceiveTimeout, ThunderlineError
from thunderline.runtime._instrument import Instrument
from thunderline.runtime._messages import Exit
from thunderline.runtime._node import open_node
from thunderline.runtime._pid import Pid
from thunderline.runtime._process import current_process_var
from thunderline.runtime._reasons import KILL, SHUTDOWN, Crashed
from thunderline.runtime._server import InitFailedError, start_link
from thunderline.runtime._supervisor import Supervisor, exit_action

__all__ = [
    "Application",
    "ApplicationExitedError",
    "ApplicationSpecError",
    "ApplicationStartError",
    "open_application",
    "resolve_application",
    "run_application",
]

logger: Final = logging.getLogger("thunderline.application")

_ACCEPTED = (
    "a ChildSpec, a Supervisor instance, or a zero-argument function (sync or async) "
    "returning one of those"
)


class ApplicationSpecError(ThunderlineError, TypeError):
    """The application spec is not one of the accepted shapes.

    Attributes:
        received: what was given (or what the factory returned).
    """

    def __init__(self, received: object) -> None:
        self.received = received
        super().__init__(f"an application spec is {_ACCEPTED}; received {received!r}")


class ApplicationStartError(ThunderlineError):
    """The top supervisor failed to start.

    Attributes:
        id: the application's child id.
        reason: the start failure (``InitFailedError.reason``, or ``Crashed(exc)``).
    """

    def __init__(self, id: Hashable, reason: Any) -> None:
        self.id = id
        self.reason = reason
        super().__init__(f"application {id!r} failed to start: {reason!r}")


class ApplicationExitedError(ThunderlineError):
    """The top supervisor exited without being asked to (the application died).

    Attributes:
        id: the application's child id.
        pid: the top supervisor.
        reason: its exit reason (``SHUTDOWN`` when it reached its restart intensity).
    """

    def __init__(self, id: Hashable, pid: Pid, reason: Any) -> None:
        self.id = id
        self.pid = pid
        self.reason = reason
        super().__init__(
            f"application {id!r}: top supervisor {pid!r} exited by itself with reason {reason!r}"
        )


def _takes_no_arguments(fn: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters
    )


async def resolve_application(spec: object) -> ChildSpec:
    """Turn an application spec into the :class:`ChildSpec` of its top supervisor.

    Args:
        spec: a ChildSpec, a Supervisor instance, or a zero-argument function
            (sync or async) returning one of those.

    Returns:
        The ChildSpec whose ``start`` starts the top supervisor linked to the caller.

    Raises:
        ApplicationSpecError: ``spec`` (or what its factory returned) has another shape.
    """
    value = spec
    if not isinstance(value, ChildSpec | Supervisor) and callable(value):
        if not _takes_no_arguments(value):
            raise ApplicationSpecError(value)
        value = value()
        if inspect.isawaitable(value):
            value = await value
    if isinstance(value, ChildSpec):
        return value
    if isinstance(value, Supervisor):
        supervisor = value

        async def start() -> Pid | None:
            return await start_link(supervisor)

        return ChildSpec(id=supervisor.label, start=start, type=ChildType.SUPERVISOR)
    raise ApplicationSpecError(value)


class _Restarts(logging.Handler):
    """Counts restarts per (supervisor pid, child id) from ``child_terminated`` reports.

    The reports are logged in the supervisor's own process, so the current pid is
    the supervisor's. A report counts when :func:`exit_action` says the child is
    restarted; children restarted along with it (one_for_all, rest_for_one) are
    not counted.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: dict[tuple[Pid, Hashable], int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "context", None) != "child_terminated":
            return
        proc = current_process_var.get()
        offender = getattr(record, "offender", None)
        if proc is None or not isinstance(offender, dict):
            return
        try:
            restart = Restart(offender["restart"])
        except (KeyError, ValueError):
            return
        action, _ = exit_action(restart, getattr(record, "reason", None))
        if action == "restart":
            key = (proc.pid, offender.get("id"))
            self.counts[key] = self.counts.get(key, 0) + 1


class Application:
    """A running application: its top supervisor and how to stop it.

    Created by :func:`open_application`; do not instantiate it yourself.

    Attributes:
        id: the application's child id (the ChildSpec's ``id``).
        spec: the ChildSpec of the top supervisor.
        pid: the top supervisor.
    """

    def __init__(self, spec: ChildSpec, pid: Pid, master: Pid, restarts: _Restarts) -> None:
        self.id: Hashable = spec.id
        self.spec = spec
        self.pid = pid
        self._master = master
        self._restarts = restarts
        self._stopping = False
        self._exited = anyio.Event()
        self._exit_reason: Any = None
        self._died = False

    @property
    def exit_reason(self) -> Any:
        """The top supervisor's exit reason once it has exited, else None."""
        return self._exit_reason

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called (or the block is being left)."""
        return self._stopping

    def restart_counts(self) -> dict[tuple[Pid, Hashable], int]:
        """Restarts seen so far, keyed by (supervisor pid, child id).

        Counted from the ``child_terminated`` reports of the ``thunderline.supervisor``
        logger, so only reports that logger lets through (INFO and above) count.
        """
        return dict(self._restarts.counts)

    async def stop(self) -> Any:
        """Stop the tree (newest child first, each within its shutdown) and wait for it.

        Returns:
            The top supervisor's exit reason. Calling it again just waits.
        """
        if not self._stopping and not self._exited.is_set():
            self._stopping = True
            send(self._master, _StopRequest())
        await self._exited.wait()
        return self._exit_reason

    async def wait_exited(self) -> Any:
        """Wait until the top supervisor has exited; returns its reason."""
        await self._exited.wait()
        return self._exit_reason

    def _finished(self, reason: Any) -> None:
        self._exit_reason = reason
        self._died = not self._stopping
        self._exited.set()

    def __repr__(self) -> str:
        return f"<Application {self.id!r} top={self.pid!r}>"


@attrs.frozen
class _StopRequest:
    pass


def _shutdown_timeout(spec: ChildSpec) -> float | None:
    shutdown = spec.shutdown
    if shutdown is BRUTAL_KILL or shutdown == INFINITY:
        return None
    assert isinstance(shutdown, float)
    return shutdown


async def _master(
    spec: ChildSpec,
    started: Callable[[Pid | None, Any], None],
    finished: Callable[[Any], None],
) -> None:
    """The application master: start the top supervisor, then wait for its end or a stop."""
    trap_exit(True)
    try:
        pid = await spec.start(*spec.args)
    except InitFailedError as exc:
        started(None, exc.reason)
        return
    except Exception as exc:  # noqa: BLE001 - a failed start is reported to the opener
        started(None, Crashed(exc))
        return
    if not isinstance(pid, Pid):
        started(None, f"start returned {pid!r}, not the pid of a running supervisor")
        return
    started(pid, None)
    reason: Any = None
    try:
        message = await receive(
            lambda m: (type(m) is Exit and m.pid == pid) or type(m) is _StopRequest
        )
        if type(message) is Exit:
            reason = message.reason
            return
        logger.info("stopping application %r (top supervisor %r)", spec.id, pid)
        send_exit(pid, KILL if spec.shutdown is BRUTAL_KILL else SHUTDOWN)
        try:
            down = await receive(
                lambda m: type(m) is Exit and m.pid == pid, timeout=_shutdown_timeout(spec)
            )
        except ReceiveTimeout:
            logger.error(
                "application %r: top supervisor %r did not stop within %s s; killing it",
                spec.id,
                pid,
                spec.shutdown,
            )
            send_exit(pid, KILL)
            down = await receive(lambda m: type(m) is Exit and m.pid == pid)
        reason = down.reason
    finally:
        finished(reason)


def _current_node_exists() -> bool:
    try:
        processes()
    except NoNodeError:
        return False
    return True


@contextlib.asynccontextmanager
async def open_application(
    spec: object, *, instrument: Instrument | None = None
) -> AsyncIterator[Application]:
    """Start an application's supervision tree for the duration of the ``async with`` block.

    Inside a running node (``open_node``, ``run``, a process) the tree joins that
    node; otherwise a node is opened for the block (with ``instrument``).
    Leaving the block stops the tree: the top supervisor stops its children
    newest first, each within its ``shutdown``, recursively. The stop is
    shielded from cancellation so the tree is always taken down in order.

    Args:
        spec: an application spec (see :func:`resolve_application`).
        instrument: for a node opened here; ignored when joining a running node.

    Yields:
        The :class:`Application`.

    Raises:
        ApplicationSpecError: ``spec`` has none of the accepted shapes.
        ApplicationStartError: the top supervisor failed to start.
        ApplicationExitedError: the top supervisor exited by itself; the body
            was cancelled.
    """
    child_spec = await resolve_application(spec)
    failure: ThunderlineError | None = None
    async with contextlib.AsyncExitStack() as stack:
        # Errors are raised after the node (if opened here) is closed, so they are
        # not wrapped in the node task group's ExceptionGroup.
        if not _current_node_exists():
            await stack.enter_async_context(open_node(instrument=instrument))
        restarts = _Restarts()
        supervisor_logger = logging.getLogger("thunderline.supervisor")
        supervisor_logger.addHandler(restarts)
        stack.callback(supervisor_logger.removeHandler, restarts)

        body = anyio.CancelScope()
        ready = anyio.Event()
        box: dict[str, Any] = {}

        def started(pid: Pid | None, reason: Any) -> None:
            box["pid"], box["reason"] = pid, reason
            ready.set()

        def finished(reason: Any) -> None:
            app = box.get("app")
            if app is None:
                return
            app._finished(reason)
            if app._died:
                body.cancel()

        master = spawn(_master, child_spec, started, finished)
        await ready.wait()
        if box["pid"] is None:
            failure = ApplicationStartError(child_spec.id, box["reason"])
        else:
            app = Application(child_spec, box["pid"], master, restarts)
            box["app"] = app
            logger.info("application %r started (top supervisor %r)", app.id, app.pid)
            try:
                with body:
                    yield app
            finally:
                with anyio.CancelScope(shield=True):
                    reason = await app.stop()
            if app._died:
                logger.error(
                    "application %r: top supervisor %r exited by itself: %r",
                    app.id,
                    app.pid,
                    reason,
                )
                failure = ApplicationExitedError(app.id, app.pid, reason)
            else:
                logger.info("application %r stopped", app.id)
    if failure is not None:
        raise failure


def run_application(
    spec: object,
    *,
    backend: str = "asyncio",
    instrument: Instrument | None = None,
    backend_options: dict[str, Any] | None = None,
) -> None:
    """Run an application until SIGINT or SIGTERM, then stop it in order and return.

    Blocks the calling thread (the main thread: signals are handled there).

    Args:
        spec: an application spec (see :func:`resolve_application`).
        backend: ``"asyncio"`` or ``"trio"``.
        instrument: optional :class:`Instrument` for the node.
        backend_options: passed to :func:`anyio.run`.

    Raises:
        ApplicationSpecError / ApplicationStartError: see :func:`open_application`.
        ApplicationExitedError: the top supervisor exited by itself.
    """
    if backend not in ("asyncio", "trio"):
        raise ValueError(f"backend must be 'asyncio' or 'trio', got {backend!r}")

    async def main() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with open_application(spec, instrument=instrument) as app:
                async for signum in signals:
                    logger.info(
                        "%s received; stopping application %r", signal.Signals(signum).name, app.id
                    )
                    break

    anyio.run(main, backend=backend, backend_options=backend_options)
