"""Supervisors: OTP's supervisor behaviour (``supervisor.erl``) on thunderline servers.

A supervisor is a :class:`~thunderline.runtime.Server` that traps exits,
starts its children in list order, restarts them by its strategy when they
end, and stops them newest-first when it stops::

    sup = await start_supervisor(
        [ChildSpec(id="db", start=start_link, args=(Database,)),
         ChildSpec(id="web", start=start_link, args=(Web,), restart="transient")],
        strategy="rest_for_one",
    )

Reading order, as in supervisor.erl:

1. :meth:`Supervisor.init` starts the children (``init_children``); a child that
   fails to start aborts the start, stopping those already started.
2. A child's ``Exit`` reaches :meth:`Supervisor.handle_info`;
   :func:`exit_action` (``do_restart``) says whether it is restarted.
3. :meth:`Supervisor._restart` (``restart/2``) charges the restart to the
   intensity window (:class:`~thunderline.runtime._intensity.RestartWindow`, O(1)) and
   then :meth:`Supervisor._restart_by_strategy` (``restart/3``) has one arm per
   strategy.
4. A start that fails during a restart marks the child *restarting* and sends
   the supervisor a retry message (``try_again_restart``); the retry is another
   full restart, charged to the intensity like any other, so a child that
   cannot start eventually makes the supervisor give up, and requests such as
   a shutdown are served in between.
5. :meth:`Supervisor._shutdown` (``shutdown/1``) monitors the child, sends
   ``exit(child, SHUTDOWN)`` (or ``KILL`` for brutal_kill), waits for ``Down``
   up to the timeout, then kills; waiting on the monitor means a child that
   unlinked itself cannot hang the supervisor.

Reports (``child_terminated``, ``start_error``, ``shutdown_error``, and
``shutdown`` with ``reached_max_restart_intensity``) are structured log records
on the ``thunderline.supervisor`` logger, with ``supervisor``, ``context``,
``reason`` and ``offender`` in ``extra``. Quiet reasons (normal, shutdown,
shutdown with detail) are logged at INFO, every other report at ERROR.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import Any, Final

import anyio
import attrs

from thunderline.runtime._api import exit as send_exit
from thunderline.runtime._api import is_alive, monitor, trap_exit, unlink
from thunderline.runtime._child_spec import (
    BRUTAL_KILL,
    INFINITY,
    AutoShutdown,
    BrutalKill,
    ChildSpec,
    ChildSpecError,
    ChildType,
    Restart,
    Strategy,
    SupervisorFlags,
)
from thunderline.runtime._errors import ReceiveTimeout, ThunderlineError
from thunderline.runtime._intensity import RestartWindow, restart_stamp
from thunderline.runtime._messages import Down, Exit
from thunderline.runtime._pid import Pid
from thunderline.runtime._process import Process, current_process_var
from thunderline.runtime._reasons import (
    KILL,
    SHUTDOWN,
    Crashed,
    Killed,
    Shutdown,
    crash_of,
    is_quiet,
)
from thunderline.runtime._server import (
    From,
    InitFailedError,
    NoReply,
    Ok,
    Reply,
    Server,
    Stop,
    call,
    start_link,
)

__all__ = [
    "ChildAlreadyPresentError",
    "ChildAlreadyStartedError",
    "ChildCounts",
    "ChildInfo",
    "ChildNotFoundError",
    "ChildRestartingError",
    "ChildRunningError",
    "ChildStartError",
    "DynamicSupervisor",
    "DynamicSupervisorError",
    "FailedToStartChild",
    "MaxChildrenError",
    "Supervisor",
    "SupervisorError",
    "count_children",
    "delete_child",
    "exit_action",
    "get_childspec",
    "restart_child",
    "start_child",
    "start_supervisor",
    "supervisor_spec",
    "terminate_child",
    "which_children",
]

logger: Final = logging.getLogger("thunderline.supervisor")


# ---------------------------------------------------------------------- errors


class SupervisorError(ThunderlineError):
    """Base class of the errors the supervisor API raises; names the supervisor and child."""


class ChildNotFoundError(SupervisorError, LookupError):
    """No child with that id (or pid) (OTP ``{error, not_found}``)."""

    def __init__(self, supervisor: object, child: object) -> None:
        self.supervisor = supervisor
        self.child = child
        super().__init__(f"supervisor {supervisor!r} has no child {child!r}")


class ChildRunningError(SupervisorError):
    """The child is running; terminate it first (OTP ``{error, running}``)."""

    def __init__(self, supervisor: object, child: object) -> None:
        self.supervisor = supervisor
        self.child = child
        super().__init__(f"child {child!r} of supervisor {supervisor!r} is running")


class ChildRestartingError(SupervisorError):
    """The child is being restarted (OTP ``{error, restarting}``)."""

    def __init__(self, supervisor: object, child: object) -> None:
        self.supervisor = supervisor
        self.child = child
        super().__init__(f"child {child!r} of supervisor {supervisor!r} is restarting")


class ChildAlreadyPresentError(SupervisorError, ValueError):
    """A spec with that id exists but is not running (OTP ``{error, already_present}``)."""

    def __init__(self, supervisor: object, child: object) -> None:
        self.supervisor = supervisor
        self.child = child
        super().__init__(
            f"supervisor {supervisor!r} already has a child spec {child!r} (not running); "
            "use restart_child or delete_child"
        )


class ChildAlreadyStartedError(SupervisorError, ValueError):
    """A child with that id is running (OTP ``{error, {already_started, Pid}}``)."""

    def __init__(self, supervisor: object, child: object, pid: Pid) -> None:
        self.supervisor = supervisor
        self.child = child
        self.pid = pid
        super().__init__(f"child {child!r} of supervisor {supervisor!r} is running as {pid!r}")


class ChildStartError(SupervisorError):
    """A child's start function failed; ``reason`` is the failure."""

    def __init__(self, supervisor: object, child: object, reason: Any) -> None:
        self.supervisor = supervisor
        self.child = child
        self.reason = reason
        super().__init__(
            f"child {child!r} of supervisor {supervisor!r} failed to start: {reason!r}"
        )


class DynamicSupervisorError(SupervisorError, TypeError):
    """The operation needs a child id, which a dynamic supervisor's children do not have."""

    def __init__(self, supervisor: object, operation: str) -> None:
        self.supervisor = supervisor
        self.operation = operation
        super().__init__(
            f"{operation} is not supported by dynamic supervisor {supervisor!r} "
            "(its children have no ids; terminate them by pid)"
        )


class MaxChildrenError(SupervisorError):
    """A dynamic supervisor already has ``max_children`` children."""

    def __init__(self, supervisor: object, max_children: int) -> None:
        self.supervisor = supervisor
        self.max_children = max_children
        super().__init__(f"dynamic supervisor {supervisor!r} has max_children={max_children}")


@attrs.frozen
class FailedToStartChild:
    """Why a supervisor's start failed (OTP ``{failed_to_start_child, Id, E}``).

    The supervisor's start raises :class:`InitFailedError` with reason
    ``Shutdown(FailedToStartChild(id, reason))``.
    """

    id: Hashable
    reason: Any


# ------------------------------------------------------------------ snapshots


@attrs.frozen
class ChildInfo:
    """One row of :func:`which_children`.

    Attributes:
        id: the child id (None for a dynamic supervisor's children).
        pid: the running pid, or None (not running, or ``restarting``).
        restarting: True while a failed restart waits for its retry.
        type: worker or supervisor.
    """

    id: Hashable
    pid: Pid | None
    restarting: bool
    type: ChildType


@attrs.frozen
class ChildCounts:
    """:func:`count_children`: specs, running children, supervisors and workers among the specs,
    and the restarts currently counted in the intensity window."""

    specs: int
    active: int
    supervisors: int
    workers: int
    restarts: int


# ------------------------------------------------------------ decision tables


def exit_action(restart: Restart, reason: Any) -> tuple[str, bool]:
    """What a supervisor does when a child ends by itself (supervisor.erl ``do_restart/3``).

    Returns ``(action, report)``: ``action`` is ``"restart"`` or ``"drop"`` (the
    pid becomes None; a temporary child's spec is removed), ``report`` says
    whether a ``child_terminated`` report is emitted.

    ========== ============================== ======== ======
    restart    reason                         action   report
    ========== ============================== ======== ======
    permanent  any                            restart  yes
    transient  normal / shutdown / {shutdown} drop     no
    transient  anything else (killed too)     restart  yes
    temporary  normal / shutdown / {shutdown} drop     no
    temporary  anything else                  drop     yes
    ========== ============================== ======== ======
    """
    if restart is Restart.PERMANENT:
        return "restart", True
    if is_quiet(reason):
        return "drop", False
    if restart is Restart.TRANSIENT:
        return "restart", True
    return "drop", True


def _shutdown_accepted(spec: ChildSpec, reason: Any) -> bool:
    """Which exit reasons count as a clean shutdown (supervisor.erl ``shutdown/1``)."""
    if spec.shutdown is BRUTAL_KILL:
        if isinstance(reason, Killed):
            return True
    elif isinstance(reason, Shutdown) and reason.detail is None:
        return True
    return spec.restart is not Restart.PERMANENT and is_quiet(reason)


# --------------------------------------------------------------------- state


@attrs.define(eq=False)
class _Child:
    spec: ChildSpec
    pid: Pid | None = None
    restarting: bool = False
    dynamic: bool = False

    @property
    def key(self) -> Hashable:
        return self.pid if self.dynamic else self.spec.id


@attrs.frozen
class _TryAgain:
    child: _Child


@attrs.frozen
class _Failure:
    error: Exception


class Supervisor(Server["Supervisor"]):
    """A supervisor process's behaviour; start it with :func:`start_supervisor` or ``start_link``.

    Args:
        children: child specs, started in this order.
        strategy / intensity / period / auto_shutdown: see :class:`SupervisorFlags`.
        name: a label for reports (the registered name, when there is one).

    Raises:
        ChildSpecError: invalid flags, an invalid or duplicate child id, or
            ``significant`` children with ``auto_shutdown=never``.

    A supervisor hibernates after :attr:`hibernate_after` seconds without a
    message (default 5 s; None: never): an idle supervision tree then holds no
    task per supervisor. A child's exit, a request or a shutdown wakes it.
    """

    hibernate_after: float | None = 5.0

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        intensity: int = 1,
        period: float = 5,
        auto_shutdown: AutoShutdown | str = AutoShutdown.NEVER,
        name: str | None = None,
    ) -> None:
        self.flags = SupervisorFlags(
            strategy=strategy, intensity=intensity, period=period, auto_shutdown=auto_shutdown
        )
        # supervisor.erl check_startspec/4: each spec in list order is checked
        # whole (check_childspec, bad_combination included) before its id is
        # looked up among the earlier ones (duplicate_child_name).
        seen: set[Hashable] = set()
        for spec in children:
            if not isinstance(spec, ChildSpec):
                raise ChildSpecError("children", "ChildSpec objects", spec)
            self._check_significant(spec)
            if spec.id in seen:
                raise ChildSpecError("id", "ids unique within the supervisor", spec.id, spec.id)
            seen.add(spec.id)
        self.specs = tuple(children)
        self.label = name or type(self).__qualname__
        self.children: list[_Child] = []
        self.restarts = RestartWindow(self.flags.intensity, self.flags.period)
        self.template: ChildSpec | None = None
        self.max_children: int | None = None

    def _check_significant(self, spec: ChildSpec) -> None:
        """OTP's ``bad_combination`` checks, in OTP's order."""
        if not spec.significant:
            return
        if self.flags.auto_shutdown is AutoShutdown.NEVER:
            raise ChildSpecError(
                "significant",
                "True only under a supervisor with auto_shutdown other than never",
                "True with auto_shutdown=never",
                spec.id,
            )
        if spec.restart is Restart.PERMANENT:
            raise ChildSpecError(
                "significant",
                "True only for transient or temporary children",
                "True with restart=permanent",
                spec.id,
            )

    # ------------------------------------------------------------------ init

    async def init(self) -> Ok[Supervisor] | Stop[Supervisor]:
        """Trap exits and start every child in order (``init_children``)."""
        trap_exit(True)
        me = current_process_var.get()
        if me is not None and me.name is not None and self.label == type(self).__qualname__:
            self.label = me.name
        for spec in self.specs:
            child = _Child(spec)
            outcome = await self._start(child)
            if isinstance(outcome, _Failure):
                self._report("start_error", self._reason_of(outcome), child)
                await self._terminate_children(self.children)
                detail = FailedToStartChild(spec.id, self._reason_of(outcome))
                return Stop(Shutdown(detail))
            if outcome is None and spec.restart is Restart.TEMPORARY:
                continue
            child.pid = outcome
            self.children.append(child)
        return Ok(self)

    # -------------------------------------------------------------- messages

    async def handle_info(
        self, message: Any, state: Supervisor
    ) -> NoReply[Supervisor] | Stop[Supervisor]:
        """Handle a child's ``Exit`` (``restart_child/3``) and restart retries."""
        if type(message) is Exit:
            child = self._find_pid(message.pid)
            if child is None:
                return NoReply(self)
            return await self._child_exited(child, message.reason)
        if type(message) is _TryAgain:
            child = message.child
            retry = child.restarting and any(c is child for c in self.children)
            if retry and not await self._restart(child):
                return Stop(SHUTDOWN, self)
            return NoReply(self)
        logger.warning(
            "supervisor %s received unexpected message %r",
            self.label,
            message,
            extra={"supervisor": self.label, "thunderline_report": "unexpected_message"},
        )
        return NoReply(self)

    async def _child_exited(
        self, child: _Child, reason: Any
    ) -> NoReply[Supervisor] | Stop[Supervisor]:
        action, report = exit_action(child.spec.restart, reason)
        if report:
            self._report("child_terminated", reason, child)
        if action == "restart":
            old_pid = child.pid
            if not await self._restart(child):
                return Stop(SHUTDOWN, self)
            self._notify_restart(child, old_pid, reason)
            return NoReply(self)
        self._del_child(child)
        if self._auto_shutdown_triggered(child):
            return Stop(SHUTDOWN, self)
        return NoReply(self)

    def _notify_restart(self, child: _Child, old_pid: Pid | None, reason: Any) -> None:
        """Tell the node's instrument (telemetry) that a child was restarted."""
        me = current_process_var.get()
        if me is None or me.node.instrument is None:
            return
        me.node.call_hook(
            me.node.instrument.child_restarted, me.pid, child.spec.id, old_pid, child.pid, reason
        )

    def _auto_shutdown_triggered(self, child: _Child) -> bool:
        """supervisor.erl ``do_auto_shutdown/2``: only self-termination of significant children."""
        mode = self.flags.auto_shutdown
        if mode is AutoShutdown.NEVER or not child.spec.significant:
            return False
        if mode is AutoShutdown.ANY_SIGNIFICANT:
            return True
        # OTP counts every significant child whose pid is not undefined: a
        # restarting child ({restarting, Pid}) is still active.
        return not any(
            c.spec.significant and (c.pid is not None or c.restarting) for c in self.children
        )

    # -------------------------------------------------------------- restarts

    async def _restart(self, child: _Child) -> bool:
        """supervisor.erl ``restart/2``: charge the window, then restart by strategy.

        Returns False when the intensity is exceeded (the caller stops with SHUTDOWN).
        """
        if self.restarts.add(restart_stamp(anyio.current_time())):
            self._report("shutdown", "reached_max_restart_intensity", child)
            self._del_child(child)
            return False
        await self._restart_by_strategy(child)
        return True

    async def _restart_by_strategy(self, child: _Child) -> None:
        """supervisor.erl ``restart/3``: one arm per strategy."""
        match self.flags.strategy:
            case Strategy.ONE_FOR_ONE:
                outcome = await self._start(child)
                if isinstance(outcome, _Failure):
                    self._mark_restarting(child, outcome)
                else:
                    child.pid, child.restarting = outcome, False
            case Strategy.ONE_FOR_ALL:
                await self._restart_group(child, list(self.children))
            case Strategy.REST_FOR_ONE:
                index = next(i for i, c in enumerate(self.children) if c is child)
                await self._restart_group(child, self.children[index:])

    async def _restart_group(self, child: _Child, group: list[_Child]) -> None:
        """supervisor.erl ``restart_multiple_children/3``: stop the group newest-first,
        then start it in order; a failure marks that child restarting and retries later."""
        child.pid, child.restarting = None, False
        await self._terminate_children(group)
        for member in [c for c in group if any(c is k for k in self.children)]:
            outcome = await self._start(member)
            if isinstance(outcome, _Failure):
                self._mark_restarting(member, outcome)
                return
            if outcome is None and member.spec.restart is Restart.TEMPORARY:
                self._remove(member)
            else:
                member.pid, member.restarting = outcome, False

    def _mark_restarting(self, child: _Child, failure: _Failure) -> None:
        child.pid, child.restarting = None, True
        self._report("start_error", self._reason_of(failure), child)
        me = current_process_var.get()
        assert me is not None
        me.deliver(_TryAgain(child))

    # ------------------------------------------------------- start and stop

    async def _start(self, child: _Child) -> Pid | _Failure | None:
        """Call the child's start function (``do_start_child``)."""
        spec = child.spec
        try:
            result = await spec.start(*spec.args)
        except Exception as exc:  # noqa: BLE001 - a failed start is a value for the supervisor
            return _Failure(exc)
        if result is not None and not isinstance(result, Pid):
            return _Failure(
                TypeError(f"start of child {spec.id!r} returned {result!r}, not a Pid or None")
            )
        return result

    @staticmethod
    def _reason_of(failure: _Failure) -> Any:
        error = failure.error
        if isinstance(error, InitFailedError):
            return error.reason
        return Crashed(error)

    async def _terminate_children(self, children: Sequence[_Child]) -> None:
        """supervisor.erl ``terminate_children/2``: newest first; temporaries are removed."""
        for child in reversed(list(children)):
            await self._do_terminate(child)
            if child.spec.restart is Restart.TEMPORARY:
                self._remove(child)
            else:
                child.pid, child.restarting = None, False

    async def _do_terminate(self, child: _Child) -> None:
        if child.pid is None:
            return
        reason = await self._shutdown(child.pid, child.spec)
        if not _shutdown_accepted(child.spec, reason):
            self._report("shutdown_error", reason, child)
        child.pid = None

    async def _shutdown(self, pid: Pid, spec: ChildSpec) -> Any:
        """supervisor.erl ``shutdown/1``: monitor, signal, wait for Down, kill after the timeout.

        Returns the child's exit reason.
        """
        me = current_process_var.get()
        assert me is not None
        mark = len(me.mailbox)
        ref = monitor(pid)

        def is_down(message: Any) -> bool:
            return type(message) is Down and message.ref == ref

        if spec.shutdown is BRUTAL_KILL:
            send_exit(pid, KILL)
            down = await me.receive(is_down, None, adopt=False, start=mark)
        else:
            send_exit(pid, SHUTDOWN)
            timeout = spec.shutdown
            try:
                wait = None if isinstance(timeout, BrutalKill) or timeout == INFINITY else timeout
                down = await me.receive(is_down, wait, adopt=False, start=mark)
            except ReceiveTimeout:
                send_exit(pid, KILL)
                down = await me.receive(is_down, None, adopt=False, start=mark)
        return self._unlink_flush(me, pid, down.reason)

    @staticmethod
    def _unlink_flush(me: Process, pid: Pid, reason: Any) -> Any:
        """supervisor.erl ``unlink_flush/2``: drop the link and take the pending ``Exit``.

        A queued ``Exit`` from the child tells its real reason (the ``Down`` of a
        child that was already dead says ``NOPROC``); without one, the ``Down``
        reason stands (a child that unlinked itself and died gives ``NOPROC``).
        """
        unlink(pid)
        try:
            message = me.receive_nowait(lambda m: type(m) is Exit and m.pid == pid)
        except ThunderlineError:
            return reason
        return message.reason

    async def _terminate_dynamic(self) -> None:
        """Stop a dynamic supervisor's children in parallel with one shared timer."""
        me = current_process_var.get()
        assert me is not None
        running = [c for c in self.children if c.pid is not None]
        if not running:
            return
        spec = running[0].spec
        refs: dict[Any, _Child] = {}
        for child in running:
            assert child.pid is not None
            refs[monitor(child.pid)] = child
            send_exit(child.pid, KILL if spec.shutdown is BRUTAL_KILL else SHUTDOWN)
        reasons: dict[int, Any] = {}
        shutdown = spec.shutdown
        deadline = (
            None
            if isinstance(shutdown, BrutalKill) or shutdown == INFINITY
            else anyio.current_time() + shutdown
        )
        while refs:
            remaining = None if deadline is None else max(0.0, deadline - anyio.current_time())
            try:
                down = await me.receive(
                    lambda m: type(m) is Down and m.ref in refs, remaining, adopt=False
                )
            except ReceiveTimeout:
                for child in refs.values():
                    assert child.pid is not None
                    send_exit(child.pid, KILL)
                deadline = None
                continue
            child = refs.pop(down.ref)
            assert child.pid is not None
            reasons[id(child)] = self._unlink_flush(me, child.pid, down.reason)
        for child in running:
            reason = reasons[id(child)]
            if not _shutdown_accepted(child.spec, reason):
                self._report("shutdown_error", reason, child)
            child.pid = None
        self.children.clear()

    async def terminate(self, reason: Any, state: Supervisor) -> None:
        """Stop every child, newest first (dynamic supervisors: all at once)."""
        if self.template is not None:
            await self._terminate_dynamic()
        else:
            await self._terminate_children(self.children)

    # ---------------------------------------------------------- bookkeeping

    def _find_pid(self, pid: Pid) -> _Child | None:
        for child in self.children:
            if child.pid == pid:
                return child
        return None

    def _find(self, key: Hashable) -> _Child | None:
        if isinstance(key, Pid):
            return self._find_pid(key)
        for child in self.children:
            if not child.dynamic and child.spec.id == key:
                return child
        return None

    def _remove(self, child: _Child) -> None:
        self.children = [c for c in self.children if c is not child]

    def _del_child(self, child: _Child) -> None:
        """supervisor.erl ``del_child``: temporary and dynamic children go, others become idle."""
        if child.spec.restart is Restart.TEMPORARY or child.dynamic:
            self._remove(child)
        else:
            child.pid, child.restarting = None, False

    def _report(self, context: str, reason: Any, child: _Child) -> None:
        level = logging.INFO if is_quiet(reason) else logging.ERROR
        if not logger.isEnabledFor(level):
            return  # logger.log would drop it too: skip building the record
        offender = {
            "id": child.spec.id,
            "pid": child.pid,
            "restart": child.spec.restart.value,
            "shutdown": child.spec.shutdown,
            "type": child.spec.type.value,
        }
        logger.log(
            level,
            "supervisor %s: %s of child %r: %r",
            self.label,
            context,
            child.spec.id,
            reason,
            extra={
                "thunderline_report": "supervisor_report",
                "supervisor": self.label,
                "context": context,
                "reason": reason,
                "offender": offender,
                "child_id": child.spec.id,
            },
            exc_info=crash_of(reason),  # the child's traceback, as OTP's supervisor report
        )

    # -------------------------------------------------------------- the API

    async def handle_call(
        self, request: Any, from_: From, state: Supervisor
    ) -> Reply[Supervisor] | NoReply[Supervisor] | Stop[Supervisor]:
        """Serve the supervisor API (start/terminate/restart/delete_child, which/count, specs)."""
        try:
            match request:
                case _StartChild(args):
                    result: Any = await self._call_start_child(*args)
                case _TerminateChild(key):
                    await self._call_terminate_child(key)
                    result = None
                case _RestartChild(key):
                    result = await self._call_restart_child(key)
                case _DeleteChild(key):
                    await self._call_delete_child(key)
                    result = None
                case _WhichChildren():
                    result = await self._call_which_children()
                case _CountChildren():
                    result = await self._call_count_children()
                case _GetChildspec(key):
                    result = await self._call_get_childspec(key)
                case _:
                    error = SupervisorError(
                        f"supervisor {self.label!r}: unknown request {request!r}"
                    )
                    return Reply(_Failure(error), self)
        except (SupervisorError, ChildSpecError) as exc:
            return Reply(_Failure(exc), self)
        return Reply(result, self)

    async def _call_start_child(self, spec: ChildSpec) -> Pid | None:
        if not isinstance(spec, ChildSpec):
            raise ChildSpecError("spec", "a ChildSpec", spec)
        self._check_significant(spec)
        existing = self._find(spec.id)
        if existing is not None:
            if existing.pid is not None:
                raise ChildAlreadyStartedError(self.label, spec.id, existing.pid)
            raise ChildAlreadyPresentError(self.label, spec.id)
        child = _Child(spec)
        outcome = await self._start(child)
        if isinstance(outcome, _Failure):
            raise ChildStartError(self.label, spec.id, self._reason_of(outcome))
        if outcome is None and spec.restart is Restart.TEMPORARY:
            return None
        child.pid = outcome
        self.children.append(child)
        return outcome

    async def _call_terminate_child(self, key: Hashable) -> None:
        child = self._find(key)
        if child is None:
            raise ChildNotFoundError(self.label, key)
        await self._do_terminate(child)
        self._del_child(child)

    async def _call_restart_child(self, key: Hashable) -> Pid | None:
        child = self._find(key)
        if child is None or isinstance(key, Pid):
            raise ChildNotFoundError(self.label, key)
        if child.restarting:
            raise ChildRestartingError(self.label, key)
        if child.pid is not None:
            raise ChildRunningError(self.label, key)
        outcome = await self._start(child)
        if isinstance(outcome, _Failure):
            raise ChildStartError(self.label, key, self._reason_of(outcome))
        child.pid = outcome
        return outcome

    async def _call_delete_child(self, key: Hashable) -> None:
        child = self._find(key)
        if child is None or isinstance(key, Pid):
            raise ChildNotFoundError(self.label, key)
        if child.restarting:
            raise ChildRestartingError(self.label, key)
        if child.pid is not None:
            raise ChildRunningError(self.label, key)
        self._remove(child)

    async def _call_which_children(self) -> list[ChildInfo]:
        return [
            ChildInfo(
                id=None if c.dynamic else c.spec.id,
                pid=c.pid,
                restarting=c.restarting,
                type=c.spec.type,
            )
            for c in reversed(self.children)
        ]

    async def _call_count_children(self) -> ChildCounts:
        supervisors = sum(1 for c in self.children if c.spec.type is ChildType.SUPERVISOR)
        return ChildCounts(
            specs=len(self.children),
            active=sum(1 for c in self.children if c.pid is not None and is_alive(c.pid)),
            supervisors=supervisors,
            workers=len(self.children) - supervisors,
            restarts=len(self.restarts),
        )

    async def _call_get_childspec(self, key: Hashable) -> ChildSpec:
        child = self._find(key)
        if child is None:
            raise ChildNotFoundError(self.label, key)
        return child.spec

    def format_status(self, state: Supervisor) -> Any:
        """Reports show the children, not the whole object."""
        return [(c.spec.id, c.pid) for c in self.children]


class DynamicSupervisor(Supervisor):
    """A one_for_one supervisor whose children all come from one template (OTP
    ``simple_one_for_one``, Elixir ``DynamicSupervisor``).

    ``start_child(sup, *extra)`` starts ``template.start(*template.args, *extra)``.
    Children have no ids: terminate them by pid; ``restart_child`` and
    ``delete_child`` raise :class:`DynamicSupervisorError`. At shutdown all
    children are stopped at once, sharing one timeout.

    Args:
        template: the spec every child is started from (its ``id`` is only a label).
        max_children: optional bound; more raises :class:`MaxChildrenError`.
        intensity / period: restart intensity (Erlang defaults, 1 in 5 s).
    """

    def __init__(
        self,
        template: ChildSpec,
        *,
        max_children: int | None = None,
        intensity: int = 1,
        period: float = 5,
        name: str | None = None,
    ) -> None:
        super().__init__((), intensity=intensity, period=period, name=name)
        if not isinstance(template, ChildSpec):
            raise ChildSpecError("template", "a ChildSpec", template)
        if max_children is not None and (
            isinstance(max_children, bool) or not isinstance(max_children, int) or max_children < 0
        ):
            raise ChildSpecError("max_children", "None or an int >= 0", max_children)
        self.template = template
        self.max_children = max_children

    async def _call_start_child(self, *extra: Any) -> Pid | None:
        template = self.template
        assert template is not None
        if self.max_children is not None and len(self.children) >= self.max_children:
            raise MaxChildrenError(self.label, self.max_children)
        spec = attrs.evolve(template, args=(*template.args, *extra))
        child = _Child(spec, dynamic=True)
        outcome = await self._start(child)
        if isinstance(outcome, _Failure):
            raise ChildStartError(self.label, template.id, self._reason_of(outcome))
        if outcome is None:
            return None
        child.pid = outcome
        self.children.append(child)
        return outcome

    async def _call_terminate_child(self, key: Hashable) -> None:
        if not isinstance(key, Pid):
            raise DynamicSupervisorError(self.label, "terminate_child by id")
        await super()._call_terminate_child(key)

    async def _call_restart_child(self, key: Hashable) -> Pid | None:
        raise DynamicSupervisorError(self.label, "restart_child")

    async def _call_delete_child(self, key: Hashable) -> None:
        raise DynamicSupervisorError(self.label, "delete_child")

    async def _call_get_childspec(self, key: Hashable) -> ChildSpec:
        raise DynamicSupervisorError(self.label, "get_childspec")


# ------------------------------------------------------------------- the API


async def start_supervisor(
    children: Sequence[ChildSpec] = (),
    *,
    strategy: Strategy | str = Strategy.ONE_FOR_ONE,
    intensity: int = 1,
    period: float = 5,
    auto_shutdown: AutoShutdown | str = AutoShutdown.NEVER,
    name: str | None = None,
) -> Pid:
    """Start a supervisor linked to the caller and return its pid once every child started.

    Raises:
        ChildSpecError: invalid flags or specs (nothing is started).
        InitFailedError: a child failed to start; ``reason`` is
            ``Shutdown(FailedToStartChild(id, error))`` and the children already
            started were stopped.
    """
    supervisor = Supervisor(
        children,
        strategy=strategy,
        intensity=intensity,
        period=period,
        auto_shutdown=auto_shutdown,
        name=name,
    )
    pid = await start_link(supervisor, name=name)
    assert pid is not None
    return pid


def supervisor_spec(
    id: Hashable,
    children: Sequence[ChildSpec] = (),
    *,
    restart: Restart | str = Restart.PERMANENT,
    name: str | None = None,
    **flags: Any,
) -> ChildSpec:
    """A :class:`ChildSpec` for a nested supervisor (type supervisor, shutdown infinity)."""

    Supervisor(children, name=name, **flags)  # invalid flags or specs fail here, not at start
    # reports name the supervisor by its registered name, else by its id
    label = name if name is not None else str(id)

    async def start() -> Pid | None:
        return await start_link(Supervisor(children, name=label, **flags), name=name)

    return ChildSpec(id=id, start=start, restart=restart, type=ChildType.SUPERVISOR)


# The supervisor API's requests: one typed message each, dispatched with match.


@attrs.frozen(slots=True)
class _StartChild:
    args: tuple[Any, ...]


@attrs.frozen(slots=True)
class _TerminateChild:
    key: Hashable


@attrs.frozen(slots=True)
class _RestartChild:
    key: Hashable


@attrs.frozen(slots=True)
class _DeleteChild:
    key: Hashable


@attrs.frozen(slots=True)
class _WhichChildren:
    pass


@attrs.frozen(slots=True)
class _CountChildren:
    pass


@attrs.frozen(slots=True)
class _GetChildspec:
    key: Hashable


async def _request(supervisor: Pid | str, request: Any) -> Any:
    result = await call(supervisor, request, timeout=None)
    if isinstance(result, _Failure):
        raise result.error
    return result


async def start_child(supervisor: Pid | str, *args: Any) -> Pid | None:
    """Add and start a child: a :class:`ChildSpec` for a supervisor, extra args for a dynamic one.

    Returns the child's pid, or None if its start returned None (ignore).

    Raises:
        ChildAlreadyStartedError / ChildAlreadyPresentError: the id exists.
        ChildStartError: the start function failed (the spec is not kept).
        MaxChildrenError: a dynamic supervisor is full.
    """
    result: Pid | None = await _request(supervisor, _StartChild(args))
    return result


async def terminate_child(supervisor: Pid | str, child: Hashable) -> None:
    """Stop a child (by id, or by pid). Its spec is kept unless it is temporary or dynamic;
    the exit is not treated as a crash and not counted as a restart.

    Raises:
        ChildNotFoundError: no such child.
        DynamicSupervisorError: an id given to a dynamic supervisor.
    """
    await _request(supervisor, _TerminateChild(child))


async def restart_child(supervisor: Pid | str, child: Hashable) -> Pid | None:
    """Start again a child that is not running. Not counted toward intensity.

    Raises:
        ChildRunningError / ChildRestartingError / ChildNotFoundError; ChildStartError.
    """
    result: Pid | None = await _request(supervisor, _RestartChild(child))
    return result


async def delete_child(supervisor: Pid | str, child: Hashable) -> None:
    """Remove the spec of a child that is not running.

    Raises:
        ChildRunningError / ChildRestartingError / ChildNotFoundError.
    """
    await _request(supervisor, _DeleteChild(child))


async def which_children(supervisor: Pid | str) -> list[ChildInfo]:
    """Every child, newest first (OTP order)."""
    result: list[ChildInfo] = await _request(supervisor, _WhichChildren())
    return result


async def count_children(supervisor: Pid | str) -> ChildCounts:
    """Counts of specs, running children, supervisors and workers, and restarts in the window."""
    result: ChildCounts = await _request(supervisor, _CountChildren())
    return result


async def get_childspec(supervisor: Pid | str, child: Hashable) -> ChildSpec:
    """The spec of a child.

    Raises:
        ChildNotFoundError: no such child.
    """
    result: ChildSpec = await _request(supervisor, _GetChildspec(child))
    return result
