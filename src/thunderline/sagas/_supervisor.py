"""The saga supervisor: every saga a supervised process, registered by correlation id.

::

    sup = await start_saga_supervisor(name="bolt.sagas", max_concurrency=8)
    handle = await start_saga(sup, checkout, {"sku": "A1"}, correlation_id="order-17")
    await lookup(sup, "order-17")           # SagaInfo with step statuses, or None
    outcome = await await_saga(sup, "order-17")
    match outcome:
        case SagaSucceeded(value=value): ...
        case SagaFailed(error=error, rollback=report): ...

Structure. A saga supervisor is a :class:`~thunderline.runtime.Server` that
traps exits and owns two things: a
:class:`~thunderline.runtime.DynamicSupervisor` started (linked) in its
``init``, whose children are the saga processes (restart ``temporary``: a saga
is never restarted; shutdown ``infinity``: a stopped saga rolls back, shielded
and bounded by its ``rollback_timeout``, before its process ends), and the
:class:`~thunderline.sagas._registry.SagaRegistry`, which lives in the
server's state. Every API function is a ``call`` to the server, so registry
changes and lookups are serialised by its mailbox (S22).

Life of one saga (``start_saga``), all inside one ``handle_call``:

1. Drain the mailbox of saga ends already delivered (see below).
2. If the correlation id is registered: ``on_duplicate="reject"`` raises
   :class:`SagaAlreadyRunningError`, ``"join"`` returns the running saga's
   handle. Nothing is started, so a correlation id never runs twice at once.
3. Build the :class:`SagaRun` (inputs and options are checked here; a bad one
   fails the start and registers nothing). Every run of the supervisor shares
   one ``anyio.CapacityLimiter`` of ``max_concurrency`` step slots.
4. ``start_child`` the saga process under the dynamic supervisor, monitor it,
   register it, emit the ``saga_registered`` event, and only then send it the
   go-ahead: no step runs before the saga is registered and monitored.

The saga process runs ``SagaRun.execute()`` and sends the outcome to the
server *synchronously* as soon as ``execute`` returns, then exits. The server
removes the entry when it handles that message (or the process's ``Down``,
for a saga whose process ended without an outcome: killed, crashed, shut
down), caches how it ended, replies to every waiting caller, and emits
``saga_unregistered``. Before serving any request the server first takes
every such message already in its mailbox, so a saga whose ``execute`` has
returned or whose process is gone is never reported as running: lookups,
``list_sagas`` and ``statistics`` describe a state that existed at the moment
the request was served (linearizable), and a :class:`SagaInfo`'s run phase is
never ``FINISHED``.

Cancellation (``cancel_saga``) fails the run at once with
:class:`SagaCancelledError`, exactly as if a step had failed: no new attempt
starts, waiting steps are cancelled, in-flight attempts follow the run's
``in_flight`` policy ("await" lets them finish, "cancel" cancels them), and
every completed step is undone in reverse completion order. The caller gets
the outcome (normally :class:`SagaFailed`; a run that had already produced its
outcome when the request arrived keeps it).

Waiting (``await_saga``) returns the typed outcome; if the saga's process ended
without one, it raises :class:`SagaCrashedError` carrying the exit reason. It
also works shortly after the end: the registry keeps the last ``max_recent``
ended sagas (default 256; oldest evicted first).

Durability. With ``journal=`` every start is journaled first (step 3 also
refuses inputs the journal cannot encode, :class:`UnjournalableInputError`,
and a correlation id the journal already has, :class:`SagaAlreadyRanError`),
and every run writes its attempts, undos and outcome to it
(:mod:`thunderline.sagas._journal`). In ``init``, after the dynamic
supervisor started, the supervisor reads the runs without an outcome and,
for each, builds a recovery run from its records by its definition's policy
(:mod:`thunderline.sagas._recovery`: compensate or resume), starts it,
registers it under its correlation id and lets it go, exactly as step 4; so
a new start of a recovering id is a duplicate (S21). A run whose definition
(name and version) is not in ``definitions`` makes ``init`` fail with
:class:`UnknownSagaDefinitionError` rather than forget the run.

Instrument. The supervisor's :class:`SagaInstrument` is passed to every run
and additionally receives, through ``event`` and from the supervisor process,
``"saga_registered"`` (attributes ``pid``, ``supervisor``) before the run's
``saga_started``, and exactly one ``"saga_unregistered"`` (attributes ``pid``,
``supervisor``, ``ended``: ``"succeeded"``, ``"failed"``, ``"halted"`` or
``"crashed"``, ``cancelled``, and ``reason`` for a crash) after the run's
``saga_finished``; a crash is also announced as ``"saga_crashed"`` (``reason``).
The pair brackets the whole supervised run, for an outer span (``saga.run``).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Literal

import anyio
import attrs

from thunderline.runtime import (
    INFINITY,
    SHUTDOWN,
    CallExitError,
    ChildSpec,
    ChildType,
    Down,
    DynamicSupervisor,
    Exit,
    From,
    Hibernate,
    NoProcessError,
    NoReply,
    NotInProcessError,
    Ok,
    Pid,
    Reply,
    Server,
    Stop,
    WouldBlock,
    call,
    cancel_timer,
    current_pid,
    demonitor,
    is_alive,
    monitor,
    receive,
    receive_nowait,
    reply,
    send,
    send_after,
    spawn,
    spawn_link,
    start,
    start_child,
    start_link,
    stop,
    trap_exit,
)

from ._errors import SagaError
from ._executor import DEFAULT_MAX_UNDO_ATTEMPTS, DEFAULT_ROLLBACK_TIMEOUT, SagaRun
from ._instrument import SagaInstrument, get_default_instrument
from ._journal import JournalCodec, SagaJournal, SagaJournalError, open_journal
from ._recovery import SagaInterruptedError, recovery_state
from ._registry import (
    DEFAULT_MAX_RECENT,
    Ended,
    Entry,
    SagaAlreadyRunningError,
    SagaInfo,
    SagaRegistry,
    UnknownSagaError,
    Waiter,
)
from ._result import SagaFailed, SagaHalted, SagaOutcome, SagaSucceeded
from ._saga import Saga

__all__ = [
    "SagaArgumentError",
    "SagaAwaitTimeoutError",
    "SagaCancelledError",
    "SagaCrashedError",
    "SagaHandle",
    "SagaSupervisorStatistics",
    "await_saga",
    "cancel_saga",
    "list_sagas",
    "lookup",
    "saga_supervisor_spec",
    "start_saga",
    "start_saga_supervisor",
    "statistics",
]

OnDuplicate = Literal["reject", "join"]
InFlight = Literal["await", "cancel"]


# ---------------------------------------------------------------------- errors


class SagaCrashedError(SagaError):
    """A supervised saga's process ended without an outcome (killed, crashed, shut down).

    Attributes:
        correlation_id: The saga's correlation id.
        reason: The process's exit reason (e.g. ``KILLED``, ``SHUTDOWN``, ``Crashed(exc)``).
    """

    def __init__(self, correlation_id: str, reason: Any) -> None:
        self.correlation_id = correlation_id
        self.reason = reason
        super().__init__(
            f"saga {correlation_id!r} ended without an outcome: its process exited with {reason!r}"
        )


class SagaCancelledError(SagaError):
    """The error of a :class:`SagaFailed` produced by :func:`cancel_saga`.

    Attributes:
        correlation_id: The cancelled saga's correlation id.
    """

    def __init__(self, correlation_id: str) -> None:
        self.correlation_id = correlation_id
        super().__init__(f"saga {correlation_id!r} was cancelled")


class UnknownSagaDefinitionError(SagaJournalError, LookupError):
    """The journal has unfinished runs of a saga definition the supervisor was not given.

    The supervisor does not start (a run it cannot recover must not be
    forgotten): pass every such definition, by name and version, in
    ``definitions``.

    Attributes:
        location: The journal.
        missing: ``(saga name, version)`` pairs with unfinished runs.
        known: The ``(name, version)`` pairs given.
    """

    def __init__(
        self, location: str, missing: list[tuple[str, int]], known: list[tuple[str, int]]
    ) -> None:
        self.location = location
        self.missing = missing
        self.known = known
        names = ", ".join(f"{name!r} version {version}" for name, version in missing)
        given = ", ".join(f"{name!r} v{version}" for name, version in known) or "none"
        super().__init__(
            f"saga journal {location} has unfinished runs of {names}, but the saga supervisor "
            f"knows no such definition (definitions given: {given})"
        )


class SagaAwaitTimeoutError(SagaError, TimeoutError):
    """:func:`await_saga` or :func:`cancel_saga` got no outcome within its ``timeout``.

    The saga goes on (a cancellation already requested still happens).

    Attributes:
        correlation_id: The awaited saga.
        timeout: The bound in seconds.
    """

    def __init__(self, correlation_id: str, timeout: float) -> None:
        self.correlation_id = correlation_id
        self.timeout = timeout
        super().__init__(f"saga {correlation_id!r} gave no outcome within {timeout} s")


class SagaArgumentError(SagaError, TypeError, ValueError):
    """A saga supervisor function was given an argument of the wrong type or value.

    Attributes:
        function: The function called.
        argument: The argument at fault.
        accepted: What it accepts.
        received: What was given.
    """

    def __init__(self, function: str, argument: str, accepted: str, received: object) -> None:
        self.function = function
        self.argument = argument
        self.accepted = accepted
        self.received = received
        super().__init__(f"{function}: {argument} accepts {accepted}; received {received!r}")


# ------------------------------------------------------------------- records


@attrs.frozen
class SagaHandle:
    """What :func:`start_saga` returns.

    Attributes:
        correlation_id: The saga's correlation id.
        pid: The process running it.
        saga: The saga's name.
        run_id: The execution's ``run_id``.
        joined: True when ``on_duplicate="join"`` found this saga already running
            (nothing new was started).
    """

    correlation_id: str
    pid: Pid
    saga: str
    run_id: int
    joined: bool = False


@attrs.frozen
class SagaSupervisorStatistics:
    """A snapshot of a saga supervisor, from :func:`statistics`.

    Attributes:
        running: Sagas registered (running) now.
        peak_running: Most sagas running at once.
        started: Sagas started (joins and rejected starts not counted).
        succeeded: Ended with :class:`SagaSucceeded`.
        failed: Ended with :class:`SagaFailed` (cancelled ones included).
        halted: Ended with :class:`SagaHalted`.
        crashed: Ended without an outcome (process killed, crashed or shut down).
        cancelled: Cancellations requested by :func:`cancel_saga`.
        rejected: Starts rejected because the correlation id was running.
        joined: Starts that joined a running saga.
        recovered: Unfinished journaled runs this supervisor recovered at start-up.
        awaiting: Callers waiting for an outcome now.
        recent: Ended sagas whose outcome is cached.
        max_recent: Bound of that cache.
        max_children: Bound on running sagas (None: unbounded).
        max_concurrency: Step slots shared by all sagas (None: unbounded).
        slots_in_use: Step slots held right now.
    """

    running: int
    peak_running: int
    started: int
    succeeded: int
    failed: int
    halted: int
    crashed: int
    cancelled: int
    rejected: int
    joined: int
    recovered: int
    awaiting: int
    recent: int
    max_recent: int
    max_children: int | None
    max_concurrency: int | None
    slots_in_use: int


# ------------------------------------------------------------------ messages


@attrs.frozen(slots=True)
class _Start:
    saga: Saga
    inputs: Mapping[str, Any]
    correlation_id: str
    on_duplicate: OnDuplicate
    options: Mapping[str, Any]


@attrs.frozen(slots=True)
class _Lookup:
    correlation_id: str


@attrs.frozen(slots=True)
class _List:
    pass


@attrs.frozen(slots=True)
class _Await:
    correlation_id: str
    timeout: float | None


@attrs.frozen(slots=True)
class _Cancel:
    correlation_id: str
    timeout: float | None


@attrs.frozen(slots=True)
class _Statistics:
    pass


@attrs.frozen(slots=True)
class _Go:
    pass


@attrs.frozen(slots=True)
class _Finished:
    correlation_id: str
    run_id: int
    outcome: SagaOutcome


@attrs.frozen(slots=True)
class _WaitTimeout:
    correlation_id: str
    token: int
    timeout: float


@attrs.frozen(slots=True)
class _Failure:
    error: Exception


# --------------------------------------------------------------- saga process


@attrs.define
class _Ends:
    """Saga outcomes sent to the server and not handled yet (shared with the saga processes).

    Lets the server skip scanning its mailbox for them when there are none.
    """

    pending: int = 0


async def _saga_main(server: Pid, ends: _Ends, run: SagaRun) -> None:
    """A saga process: wait until registered, execute, report the outcome, exit normally."""
    await receive(_Go)
    outcome = await run.execute()
    # No checkpoint between execute returning and this send: while the server
    # has not seen this message, the run is still in execute (S22).
    ends.pending += 1
    send(server, _Finished(run.info.correlation_id, run.info.run_id, outcome))


async def _start_saga_process(server: Pid, ends: _Ends, run: SagaRun) -> Pid:
    """The dynamic supervisor's template start: spawn the saga process linked to it."""
    return spawn_link(_saga_main, server, ends, run)


# ---------------------------------------------------------------- the server


class _SagaSupervisor(Server["_SagaSupervisor"]):
    def __init__(
        self,
        *,
        name: str | None,
        max_concurrency: int | None,
        max_children: int | None,
        max_recent: int,
        instrument: SagaInstrument | None,
        journal: str | os.PathLike[str] | SagaJournal | None = None,
        definitions: Iterable[Saga] = (),
        journal_codec: JournalCodec | None = None,
    ) -> None:
        self.label = name or "saga_supervisor"
        self.journal_target = journal
        self.journal_codec = journal_codec
        self.journal: SagaJournal | None = None
        self.definitions = {(saga.name, saga.version): saga for saga in definitions}
        self.max_concurrency = max_concurrency
        self.max_children = max_children
        self.instrument = instrument if instrument is not None else get_default_instrument()
        self.registry = SagaRegistry(max_recent)
        self.counts: dict[str, int] = dict.fromkeys(
            (
                "started",
                "succeeded",
                "failed",
                "halted",
                "crashed",
                "cancelled",
                "rejected",
                "joined",
                "recovered",
            ),
            0,
        )
        self.tokens = itertools.count(1)
        self.ends = _Ends()
        self.me: Pid | None = None
        self.children: Pid | None = None
        self.limiter: anyio.CapacityLimiter | None = None

    async def init(self) -> Ok[_SagaSupervisor]:
        trap_exit(True)
        self.me = current_pid()
        self.limiter = anyio.CapacityLimiter(
            math.inf if self.max_concurrency is None else self.max_concurrency
        )
        template = ChildSpec(
            id=f"{self.label}.saga",
            # functools.partial rather than args=(self.me,): under mypy --strict,
            # ChildSpec's ``args`` (attrs converter=tuple) accepts no argument type.
            start=functools.partial(_start_saga_process, self.me, self.ends),
            restart="temporary",
            shutdown=INFINITY,
        )
        children = await start_link(
            DynamicSupervisor(
                template, max_children=self.max_children, name=f"{self.label}.children"
            )
        )
        assert children is not None
        self.children = children
        if self.journal_target is not None:
            await self._recover()
        return Ok(self)

    async def _recover(self) -> None:
        """Open the journal and start a recovery run for each unfinished run (see module doc)."""
        target = self.journal_target
        assert target is not None
        self.journal = (
            target
            if isinstance(target, SagaJournal)
            else open_journal(target, codec=self.journal_codec)
        )
        journal = self.journal
        unfinished = journal.runs(unfinished_only=True)
        unknown = sorted(
            {(r.saga, r.version) for r in unfinished} - set(self.definitions), key=repr
        )
        if unknown:
            raise UnknownSagaDefinitionError(journal.location, unknown, sorted(self.definitions))
        for journaled in unfinished:
            cid = journaled.correlation_id
            saga = self.definitions[journaled.saga, journaled.version]
            state, compensate = recovery_state(saga, journaled, journal.records(cid), journal.codec)
            run = SagaRun(
                state=state,
                correlation_id=cid,
                limiter=self.limiter,
                instrument=self.instrument,
                **_recovered_options(journaled.options),
            )
            run._journal = journal.recover(cid)
            if compensate:
                run._fail_at_start = SagaInterruptedError(cid, saga.name)
            assert self.children is not None
            pid = await start_child(self.children, run)
            assert pid is not None
            self.counts["recovered"] += 1
            self._register(run, pid, recovered=True)

    # ------------------------------------------------------------- requests

    async def handle_call(
        self, request: Any, from_: From, state: _SagaSupervisor
    ) -> Reply[_SagaSupervisor] | NoReply[_SagaSupervisor]:
        if self._may_have_ended(request):
            self._drain()
        match request:
            case _Start():
                return Reply(await self._start(request), self)
            case _Lookup(correlation_id=cid):
                entry = self.registry.lookup(cid)
                return Reply(None if entry is None else entry.info(), self)
            case _List():
                return Reply([entry.info() for entry in self.registry], self)
            case _Await(correlation_id=cid, timeout=timeout):
                return self._await(from_, cid, timeout)
            case _Cancel(correlation_id=cid, timeout=timeout):
                entry = self.registry.lookup(cid)
                if entry is None:
                    return Reply(_Failure(UnknownSagaError(cid)), self)
                if not entry.cancelled:
                    entry.cancelled = True
                    self.counts["cancelled"] += 1
                    # The run fails now, as if a step had failed (see the module docstring).
                    entry.run.cancel(SagaCancelledError(cid))
                return self._await(from_, cid, timeout)
            case _Statistics():
                return Reply(self._statistics(), self)
        error = SagaArgumentError(
            "saga supervisor call", "request", "a saga supervisor request", request
        )
        return Reply(_Failure(error), self)

    async def _start(self, request: _Start) -> SagaHandle | _Failure:
        cid = request.correlation_id
        current = self.registry.lookup(cid)
        if current is not None:
            if request.on_duplicate == "join":
                self.counts["joined"] += 1
                return self._handle(current, joined=True)
            self.counts["rejected"] += 1
            return _Failure(SagaAlreadyRunningError(cid, current.pid))
        assert self.children is not None
        journaled = None
        try:
            run = SagaRun(
                request.saga,
                request.inputs,
                correlation_id=cid,
                limiter=self.limiter,
                instrument=self.instrument,
                **request.options,
            )
            if self.journal is not None:
                # Refuses unjournalable inputs and a correlation id already journaled.
                journaled = run._journal = self.journal.begin(
                    request.saga, request.inputs, cid, request.options
                )
            pid = await start_child(self.children, run)
        except Exception as exc:  # noqa: BLE001 - the caller's start fails with it
            if journaled is not None and self.journal is not None:
                journaled.finished(None, exc, None)  # journaled, never ran
                self.journal.flush()
            return _Failure(exc)
        assert pid is not None
        self.counts["started"] += 1
        return self._handle(self._register(run, pid, recovered=False), joined=False)

    def _register(self, run: SagaRun, pid: Pid, *, recovered: bool) -> Entry:
        """Monitor and register a started saga process, then let it go (steps 4 above)."""
        entry = Entry(
            correlation_id=run.info.correlation_id,
            pid=pid,
            monitor=monitor(pid),
            run=run,
            started_at=anyio.current_time(),
        )
        self.registry.register(entry)
        attributes: dict[str, object] = {"pid": pid, "supervisor": self.label}
        if recovered:
            attributes["recovered"] = True
        self.instrument.event(run.info, "saga_registered", attributes)
        send(pid, _Go())
        return entry

    @staticmethod
    def _handle(entry: Entry, *, joined: bool) -> SagaHandle:
        return SagaHandle(
            correlation_id=entry.correlation_id,
            pid=entry.pid,
            saga=entry.run.info.saga.name,
            run_id=entry.run.info.run_id,
            joined=joined,
        )

    def _await(
        self, from_: From, cid: str, timeout: float | None
    ) -> Reply[_SagaSupervisor] | NoReply[_SagaSupervisor]:
        entry = self.registry.lookup(cid)
        if entry is None:
            ended = self.registry.recent(cid)
            if ended is None:
                return Reply(_Failure(UnknownSagaError(cid)), self)
            return Reply(self._answer(cid, ended), self)
        waiter = Waiter(from_, next(self.tokens))
        if timeout is not None:
            assert self.me is not None
            waiter.timer = send_after(timeout, self.me, _WaitTimeout(cid, waiter.token, timeout))
        entry.waiters.append(waiter)
        return NoReply(self)

    @staticmethod
    def _answer(cid: str, ended: Ended) -> SagaOutcome | _Failure:
        if ended.outcome is not None:
            return ended.outcome
        return _Failure(SagaCrashedError(cid, ended.reason))

    def _statistics(self) -> SagaSupervisorStatistics:
        registry = self.registry.statistics()
        assert self.limiter is not None
        return SagaSupervisorStatistics(
            running=registry.running,
            peak_running=registry.peak_running,
            awaiting=registry.awaiting,
            recent=registry.recent,
            max_recent=registry.max_recent,
            max_children=self.max_children,
            max_concurrency=self.max_concurrency,
            slots_in_use=int(self.limiter.borrowed_tokens),
            **self.counts,
        )

    # ------------------------------------------------------------ saga ends

    def _may_have_ended(self, request: Any) -> bool:
        """Whether a saga end may wait in the mailbox that this request must see first.

        Outcomes are counted as they are sent; a saga process that died without
        one (killed, crashed) is noticed by checking the processes the request
        reads. Only then is the mailbox scanned (:meth:`_drain`).
        """
        if self.ends.pending:
            return True
        cid = getattr(request, "correlation_id", None)
        if cid is not None:
            entry = self.registry.lookup(cid)
            return entry is not None and not is_alive(entry.pid)
        return any(not is_alive(entry.pid) for entry in self.registry)

    def _drain(self) -> None:
        """Handle every saga end already in the mailbox, so requests see the present (S22)."""
        while True:
            try:
                # Bookkeeping, not handling: keep the current request's trace context.
                message = receive_nowait(self._is_saga_end, adopt_context=False)
            except WouldBlock:
                return
            self._saga_end(message)

    def _is_saga_end(self, message: Any) -> bool:
        if type(message) is _Finished:
            return True
        return type(message) is Down and self.registry.by_monitor(message.ref) is not None

    def _saga_end(self, message: _Finished | Down) -> None:
        if type(message) is _Finished:
            self.ends.pending -= 1
            entry = self.registry.lookup(message.correlation_id)
            if entry is None or entry.run.info.run_id != message.run_id:
                return
            demonitor(entry.monitor, flush=True)
            self._ended(entry, Ended(message.outcome, cancelled=entry.cancelled))
            return
        assert type(message) is Down
        entry = self.registry.by_monitor(message.ref)
        if entry is not None:
            self._ended(entry, Ended(None, message.reason, cancelled=entry.cancelled))

    def _ended(self, entry: Entry, ended: Ended) -> None:
        cid = entry.correlation_id
        self.registry.unregister(cid, ended)
        outcome = ended.outcome
        kind = (
            "succeeded"
            if isinstance(outcome, SagaSucceeded)
            else "failed"
            if isinstance(outcome, SagaFailed)
            else "halted"
            if isinstance(outcome, SagaHalted)
            else "crashed"
        )
        self.counts[kind] += 1
        attributes: dict[str, object] = {
            "pid": entry.pid,
            "supervisor": self.label,
            "ended": kind,
            "cancelled": ended.cancelled,
        }
        if outcome is None:
            attributes["reason"] = ended.reason
            self.instrument.event(entry.run.info, "saga_crashed", {"reason": ended.reason})
        answer = self._answer(cid, ended)
        for waiter in entry.waiters:
            if waiter.timer is not None:
                cancel_timer(waiter.timer)
            reply(waiter.from_, answer)
        entry.waiters.clear()
        self.instrument.event(entry.run.info, "saga_unregistered", attributes)

    # ---------------------------------------------------------------- infos

    async def handle_info(
        self, message: Any, state: _SagaSupervisor
    ) -> NoReply[_SagaSupervisor] | Hibernate[_SagaSupervisor] | Stop[_SagaSupervisor]:
        if type(message) is _Finished or type(message) is Down:
            self._saga_end(message)
            return NoReply(self)
        if type(message) is _WaitTimeout:
            entry = self.registry.lookup(message.correlation_id)
            if entry is not None:
                for waiter in entry.waiters:
                    if waiter.token == message.token:
                        entry.waiters.remove(waiter)
                        error = SagaAwaitTimeoutError(message.correlation_id, message.timeout)
                        reply(waiter.from_, _Failure(error))
                        break
            return NoReply(self)
        if type(message) is Exit and message.pid == self.children:
            # The dynamic supervisor underneath is gone: so is every saga process.
            self.children = None
            return Stop(message.reason, self)
        return await super().handle_info(message, state)

    async def terminate(self, reason: Any, state: _SagaSupervisor) -> None:
        """Stop the saga processes (each rolls back), then answer every waiting caller."""
        if self.children is not None:
            try:
                await stop(self.children, SHUTDOWN)
            except (NoProcessError, CallExitError):
                pass
            self.children = None
        self._drain()
        for entry in list(self.registry):
            self._ended(entry, Ended(None, reason, cancelled=entry.cancelled))
        if self.journal is not None and not isinstance(self.journal_target, SagaJournal):
            self.journal.close()  # opened by this supervisor

    def format_status(self, state: _SagaSupervisor) -> Any:
        """Reports show the running correlation ids and pids."""
        return [(entry.correlation_id, entry.pid) for entry in self.registry]


def _recovered_options(text: str) -> dict[str, Any]:
    """A journaled run's options, as :class:`SagaRun` keywords (unknown keys dropped)."""
    try:
        options = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(options, dict):
        return {}
    keys = ("timeout", "in_flight", "rollback_timeout", "max_undo_attempts")
    return {key: options[key] for key in keys if key in options}


# -------------------------------------------------------------------- the API


def _check_optional_int(function: str, argument: str, value: object, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SagaArgumentError(function, argument, f"None or an int >= {minimum}", value)


def _check_timeout(function: str, timeout: object) -> float | None:
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or math.isnan(timeout)
        or timeout < 0
    ):
        raise SagaArgumentError(function, "timeout", "None or a number of seconds >= 0", timeout)
    return None if math.isinf(timeout) else float(timeout)


def _check_correlation_id(function: str, correlation_id: object) -> str:
    if not isinstance(correlation_id, str) or not correlation_id:
        raise SagaArgumentError(function, "correlation_id", "a non-empty str", correlation_id)
    return correlation_id


def _check_supervisor(function: str, supervisor: object) -> Pid | str:
    if not isinstance(supervisor, Pid | str):
        raise SagaArgumentError(
            function, "supervisor", "the Pid or registered name of a saga supervisor", supervisor
        )
    return supervisor


def _make_server(
    function: str,
    *,
    name: str | None,
    max_concurrency: int | None,
    max_children: int | None,
    max_recent: int,
    instrument: SagaInstrument | None,
    journal: str | os.PathLike[str] | SagaJournal | None = None,
    definitions: Iterable[Saga] = (),
    journal_codec: JournalCodec | None = None,
) -> _SagaSupervisor:
    if name is not None and (not isinstance(name, str) or not name):
        raise SagaArgumentError(function, "name", "None or a non-empty str", name)
    _check_optional_int(function, "max_concurrency", max_concurrency, 1)
    _check_optional_int(function, "max_children", max_children, 0)
    if isinstance(max_recent, bool) or not isinstance(max_recent, int) or max_recent < 0:
        raise SagaArgumentError(function, "max_recent", "an int >= 0", max_recent)
    if instrument is not None and not isinstance(instrument, SagaInstrument):
        raise SagaArgumentError(function, "instrument", "None or a SagaInstrument", instrument)
    if journal is not None and not isinstance(journal, str | os.PathLike | SagaJournal):
        raise SagaArgumentError(
            function,
            "journal",
            "None, a SQLite path, a postgresql:// URL or a SagaJournal",
            journal,
        )
    if isinstance(journal, str) and not journal:
        raise SagaArgumentError(function, "journal", "a non-empty path or URL", journal)
    if journal_codec is not None and not isinstance(journal_codec, JournalCodec):
        raise SagaArgumentError(function, "journal_codec", "None or a JournalCodec", journal_codec)
    if isinstance(definitions, Saga) or not isinstance(definitions, Iterable):
        raise SagaArgumentError(function, "definitions", "an iterable of Saga", definitions)
    sagas = list(definitions)
    known: dict[tuple[str, int], Saga] = {}
    for saga in sagas:
        if not isinstance(saga, Saga):
            raise SagaArgumentError(function, "definitions", "an iterable of Saga", saga)
        if known.setdefault((saga.name, saga.version), saga) is not saga:
            raise SagaArgumentError(
                function,
                "definitions",
                "one definition per (name, version)",
                f"two definitions of {saga.name!r} version {saga.version}",
            )
    return _SagaSupervisor(
        name=name,
        max_concurrency=max_concurrency,
        max_children=max_children,
        max_recent=max_recent,
        instrument=instrument,
        journal=journal,
        definitions=sagas,
        journal_codec=journal_codec,
    )


def _in_process() -> bool:
    try:
        current_pid()
    except NotInProcessError:
        return False
    return True


async def start_saga_supervisor(
    *,
    name: str | None = None,
    max_concurrency: int | None = None,
    max_children: int | None = None,
    max_recent: int = DEFAULT_MAX_RECENT,
    instrument: SagaInstrument | None = None,
    journal: str | os.PathLike[str] | SagaJournal | None = None,
    definitions: Iterable[Saga] = (),
    journal_codec: JournalCodec | None = None,
) -> Pid:
    """Start a saga supervisor and return its pid.

    Called from a process, the supervisor is linked to it (``start_link``);
    called from outside any process (e.g. directly inside ``open_node()``), it
    is started unlinked.

    Args:
        name: Register the supervisor under this name (also its label in reports).
        max_concurrency: Step slots shared by every saga of this supervisor
            (``None``: unbounded).
        max_children: Most sagas running at once; one more start raises
            :class:`~thunderline.runtime.MaxChildrenError` (``None``: unbounded).
        max_recent: How many ended sagas :func:`await_saga` still answers for.
        instrument: Hooks for every run and the supervisor's events (default:
            :func:`get_default_instrument` when the supervisor starts).
        journal: Journal every run here (see "Durability" in the module
            docstring): a SQLite file (a directory: ``<dir>/sagas.db``), a
            ``postgresql://`` URL (schema ``thunderline_sagas``), or an open
            :class:`SagaJournal` (then the caller closes it). ``None``: no journal.
        definitions: The saga definitions its unfinished runs may need at
            start-up, matched by name and version.
        journal_codec: How the journal it opens encodes values (default JSON;
            see :class:`JournalCodec`).

    Raises:
        SagaArgumentError: an argument has the wrong type or value.
        AlreadyStartedError: ``name`` is taken.
        InitFailedError: the supervisor could not start (e.g. the journal has
            another format version, or unfinished runs of a definition not given:
            the reason is a :class:`SagaJournalError`).
    """
    server = _make_server(
        "start_saga_supervisor",
        name=name,
        max_concurrency=max_concurrency,
        max_children=max_children,
        max_recent=max_recent,
        instrument=instrument,
        journal=journal,
        definitions=definitions,
        journal_codec=journal_codec,
    )
    if _in_process():
        pid = await start_link(server, name=name)
    else:
        pid = await start(server, name=name)
    assert pid is not None
    return pid


def saga_supervisor_spec(
    id: Hashable = "saga_supervisor",
    *,
    name: str | None = None,
    max_concurrency: int | None = None,
    max_children: int | None = None,
    max_recent: int = DEFAULT_MAX_RECENT,
    instrument: SagaInstrument | None = None,
    journal: str | os.PathLike[str] | SagaJournal | None = None,
    definitions: Iterable[Saga] = (),
    journal_codec: JournalCodec | None = None,
) -> ChildSpec:
    """A :class:`~thunderline.runtime.ChildSpec` to nest a saga supervisor in an application.

    The child is of type supervisor (shutdown ``infinity``: its sagas roll back
    before it ends) and permanent. Arguments as for :func:`start_saga_supervisor`;
    they are checked here, and each (re)start gets a fresh supervisor.

    Raises:
        SagaArgumentError: an argument has the wrong type or value.
    """
    options: dict[str, Any] = {
        "name": name,
        "max_concurrency": max_concurrency,
        "max_children": max_children,
        "max_recent": max_recent,
        "instrument": instrument,
        "journal": journal,
        "definitions": tuple(definitions) if isinstance(definitions, Iterable) else definitions,
        "journal_codec": journal_codec,
    }
    _make_server("saga_supervisor_spec", **options)

    async def start_saga_supervisor_child() -> Pid | None:
        return await start_link(_make_server("saga_supervisor_spec", **options), name=name)

    return ChildSpec(id=id, start=start_saga_supervisor_child, type=ChildType.SUPERVISOR)


async def _request(supervisor: Pid | str, request: Any) -> Any:
    """``call`` the saga supervisor, from a process or (through a helper process) from outside."""
    if _in_process():
        result = await call(supervisor, request, timeout=None)
    else:
        box: dict[str, Any] = {}
        done = anyio.Event()

        async def caller() -> None:
            try:
                box["result"] = await call(supervisor, request, timeout=None)
            except Exception as exc:  # noqa: BLE001 - re-raised in the outside caller
                box["error"] = exc
            finally:
                done.set()

        spawn(caller)
        await done.wait()
        if "error" in box:
            raise box["error"]
        if "result" not in box:
            raise SagaError(
                f"the helper process calling saga supervisor {supervisor!r} was stopped "
                f"before it got a reply to {request!r}"
            )
        result = box["result"]
    if isinstance(result, _Failure):
        raise result.error
    return result


async def start_saga(
    supervisor: Pid | str,
    saga: Saga,
    inputs: Mapping[str, Any] | None = None,
    *,
    correlation_id: str,
    on_duplicate: OnDuplicate = "reject",
    timeout: float | None = None,
    in_flight: InFlight = "await",
    rollback_timeout: float = DEFAULT_ROLLBACK_TIMEOUT,
    max_undo_attempts: int = DEFAULT_MAX_UNDO_ATTEMPTS,
) -> SagaHandle:
    """Start ``saga`` with ``inputs`` as a supervised process registered under ``correlation_id``.

    Args:
        supervisor: The saga supervisor (pid or registered name).
        saga: The definition.
        inputs: Values of its declared inputs.
        correlation_id: The registry key; at most one running saga per id.
        on_duplicate: With the id running: ``"reject"`` raises
            :class:`SagaAlreadyRunningError`; ``"join"`` returns the running
            saga's handle (``joined=True``) and starts nothing.
        timeout / in_flight / rollback_timeout / max_undo_attempts: The run's
            options, as for :class:`SagaRun` (``in_flight`` also governs
            :func:`cancel_saga`).

    Returns:
        A :class:`SagaHandle`.

    Raises:
        SagaAlreadyRunningError: the id is running and ``on_duplicate="reject"``.
        SagaArgumentError: ``saga``, ``correlation_id`` or ``on_duplicate`` is invalid.
        MissingInputError: inputs are missing or undeclared (nothing is registered).
        UnjournalableInputError: with a journal, an input it cannot encode.
        SagaAlreadyRanError: with a journal, the id already has a journaled run.
        ValueError: invalid run options.
        MaxChildrenError: the supervisor already runs ``max_children`` sagas.
    """
    _check_supervisor("start_saga", supervisor)
    if not isinstance(saga, Saga):
        raise SagaArgumentError("start_saga", "saga", "a Saga (from SagaBuilder.build())", saga)
    cid = _check_correlation_id("start_saga", correlation_id)
    if on_duplicate not in ("reject", "join"):
        raise SagaArgumentError("start_saga", "on_duplicate", "'reject' or 'join'", on_duplicate)
    if inputs is not None and not isinstance(inputs, Mapping):
        raise SagaArgumentError("start_saga", "inputs", "None or a mapping", inputs)
    options = {
        "timeout": timeout,
        "in_flight": in_flight,
        "rollback_timeout": rollback_timeout,
        "max_undo_attempts": max_undo_attempts,
    }
    request = _Start(saga, dict(inputs or {}), cid, on_duplicate, options)
    handle: SagaHandle = await _request(supervisor, request)
    return handle


async def lookup(supervisor: Pid | str, correlation_id: str) -> SagaInfo | None:
    """The running saga registered under ``correlation_id``, or None if none is running.

    Raises:
        SagaArgumentError: ``correlation_id`` is not a non-empty str.
    """
    _check_supervisor("lookup", supervisor)
    cid = _check_correlation_id("lookup", correlation_id)
    info: SagaInfo | None = await _request(supervisor, _Lookup(cid))
    return info


async def list_sagas(supervisor: Pid | str) -> list[SagaInfo]:
    """Every running saga, oldest first, each with its step statuses."""
    _check_supervisor("list_sagas", supervisor)
    infos: list[SagaInfo] = await _request(supervisor, _List())
    return infos


async def await_saga(
    supervisor: Pid | str, correlation_id: str, timeout: float | None = None
) -> SagaOutcome:
    """Wait for the outcome of the saga registered under ``correlation_id``.

    If it already ended and is still in the recent-outcome cache (see
    :func:`start_saga_supervisor`'s ``max_recent``), its outcome is returned at once.

    Returns:
        :class:`SagaSucceeded`, :class:`SagaFailed` or :class:`SagaHalted`.

    Raises:
        UnknownSagaError: no such saga is running or recently ended.
        SagaCrashedError: its process ended without an outcome (``reason``: exit reason).
        SagaAwaitTimeoutError: no outcome within ``timeout`` seconds.
        SagaArgumentError: invalid ``correlation_id`` or ``timeout``.
    """
    _check_supervisor("await_saga", supervisor)
    cid = _check_correlation_id("await_saga", correlation_id)
    checked = _check_timeout("await_saga", timeout)
    outcome: SagaOutcome = await _request(supervisor, _Await(cid, checked))
    return outcome


async def cancel_saga(
    supervisor: Pid | str, correlation_id: str, timeout: float | None = None
) -> SagaOutcome:
    """Cancel a running saga: it fails at once and its completed steps are undone.

    Returns the outcome: a :class:`SagaFailed` whose ``error`` is
    :class:`SagaCancelledError` and whose ``rollback`` reports the undo, or,
    if the run had already produced its outcome when the request was served,
    that outcome (likewise a run already failing keeps its own error).

    Raises:
        UnknownSagaError: no such saga is running.
        SagaCrashedError: its process ended without an outcome.
        SagaAwaitTimeoutError: no outcome within ``timeout`` (the cancellation goes on).
        SagaArgumentError: invalid ``correlation_id`` or ``timeout``.
    """
    _check_supervisor("cancel_saga", supervisor)
    cid = _check_correlation_id("cancel_saga", correlation_id)
    checked = _check_timeout("cancel_saga", timeout)
    outcome: SagaOutcome = await _request(supervisor, _Cancel(cid, checked))
    return outcome


async def statistics(supervisor: Pid | str) -> SagaSupervisorStatistics:
    """A :class:`SagaSupervisorStatistics` snapshot of the saga supervisor."""
    _check_supervisor("statistics", supervisor)
    result: SagaSupervisorStatistics = await _request(supervisor, _Statistics())
    return result
