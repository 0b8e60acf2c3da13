"""The saga executor: runs a :class:`Saga` on anyio (asyncio or trio).

::

    outcome = await run_saga(saga, {"sku": "A1"}, max_concurrency=4, timeout=30)

The algorithm of one run (:meth:`SagaRun.execute`); *how* steps get a task is
:mod:`thunderline.sagas._scheduling`'s business, undo is
:mod:`thunderline.sagas._rollback`'s::

    execute(run):
        check the inputs; completed := the given state's completed steps (a
        halted state being resumed: never run again)
        saga_started
        until no step is ready and none is running (bounded by the saga timeout):
            ready steps: pending, every dependency completed, not stopping,
                before the deadline; a step with concurrent=False only when no
                other step runs, and nothing else starts while it runs
            each ready step, concurrently: run_step(step)
        on saga timeout: fail(SagaTimeoutError)  -- cancelled steps not completed
        failure -> rollback(completed), SagaFailed(error, step, report)
        halt    -> SagaHalted(reason, step, resumable state)
        else    -> SagaSucceeded(results[returns], state)
        journal the outcome; saga_finished
        (anything escaping -- outside cancellation, a crashing hook --: rollback,
         journal, saga_finished(error), re-raise)

    run_step(step):
        args := resolve(inputs, results, literals, sub-paths)  -- error: fail
        for attempt in 1, 2, ...:
            stopping?                     -> give up (step stays pending)
            [take a concurrency slot: leaf steps, when the budget is bounded]
            begin(step, attempt)          -- journal "attempt started", hook
            value, error := one attempt   -- run(args) within the step timeout,
                                             or a nested saga's child run
            then := settle(step, attempt, value, error)
            then is compensate            -> then := compensate(error)
            [release the slot]
            then is done                  -> return
            then is again(reason)         -> attempts left? else fail with
                                             RetriesExceededError; wait the
                                             backoff; next attempt

    settle(step, attempt, value, error):  -- the one place an attempt becomes
                                             an outcome and what follows is decided
        journal "attempt finished" (with the result when completed); hook
        a result            -> complete(step, value): dependents may become ready; done
                               (with a journal: once the record is committed)
        Halt(reason)        -> halt the run; done
        Retry(reason)       -> again(reason)
        error (raised, timed out, Continue from run, a failed child saga):
            nested saga     -> again(error)  -- the child already rolled back
            stopping, or no compensate -> fail(error); done
            else            -> compensate: Continue(v) completes with v,
                               Retry(r) -> again(r), None -> fail(error),
                               raising -> fail(CompensateFailedError)

    fail(error, step): first failure only: stopping := true
        ("failure_detected": from now on no attempt starts, S5); steps waiting
        for a slot, in compensate or in backoff are cancelled; attempts in
        flight follow ``in_flight``: "await" lets them finish (a result still
        completes the step and is undone), "cancel" cancels them (not completed,
        not undone); running child sagas stop at once (they start nothing new)
        and roll back their own steps, their rollback part of this run's report
    halt(reason, step): stopping := true unless a failure wins; in-flight
        attempts are awaited

    rollback(completed): shielded, bounded by rollback_timeout: reverse
        completion order, nested sagas as units, each undo retried up to
        max_undo_attempts, failures collected (ROLLED_BACK or INCOMPLETE)

Nothing completes after the outcome is reported (S6): the outcome is made when
no step is running any more. Time comes only from ``anyio.current_time()`` and
``anyio.sleep()``, so a virtual clock (trio's MockClock) makes timeouts and
backoffs instant in tests.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import attrs

from ._errors import (
    ArgumentPathError,
    CompensateFailedError,
    InvalidResultError,
    MissingInputError,
    NestedSagaFailedError,
    ResumeError,
    RetriesExceededError,
    SagaAbortedError,
    SagaAlreadyExecutedError,
    SagaTimeoutError,
    StepTimeoutError,
)
from ._instrument import SagaInstrument, SagaRunInfo, get_default_instrument
from ._result import (
    CompletedStep,
    RollbackReport,
    RollbackStatus,
    SagaFailed,
    SagaHalted,
    SagaOutcome,
    SagaState,
    SagaSucceeded,
)
from ._rollback import merge_reports, rollback_state
from ._saga import ARG_INPUT, ARG_RESULT, ARG_VALUE, ArgumentPlan, Saga, StepResult, StepSpec
from ._scheduling import drive
from ._status import SagaPhase, StepStatus
from ._step import Continue, FunctionStep, Halt, Retry, Step, StepContext

if TYPE_CHECKING:
    from ._journal import RunJournal

__all__ = [
    "SagaPhase",
    "SagaRun",
    "SagaRunStatistics",
    "StepStatus",
    "resume_saga",
    "run_saga",
    "undo_saga",
]

InFlightPolicy = Literal["await", "cancel"]
DEFAULT_MAX_UNDO_ATTEMPTS = 5
DEFAULT_ROLLBACK_TIMEOUT = 60.0

_run_ids = itertools.count(1)
_NOTHING_RESUMED: Final[frozenset[str]] = frozenset()


@attrs.frozen(slots=True)
class _Again:
    """What follows an attempt: another one, after the backoff (``reason``: why)."""

    reason: object


@attrs.frozen(slots=True)
class _Compensate:
    """What follows an attempt: the step's ``compensate`` decides about ``error``."""

    error: BaseException


@attrs.frozen(slots=True)
class _Durable:
    """What follows an attempt: complete with ``value`` once the journal committed it."""

    value: Any
    child: SagaState | None


_Then = _Again | _Compensate | _Durable | None
_MARKERS: Final = (
    Retry,
    Halt,
    Continue,
)  # what run() may return besides a result  # None: the step is done (completed, halted or failed)


@attrs.frozen
class SagaRunStatistics:
    """A snapshot of a run, from :meth:`SagaRun.statistics`.

    Attributes:
        saga: The saga's name.
        correlation_id: The run's correlation id.
        phase: :class:`SagaPhase`.
        steps: Step name to :class:`StepStatus`.
        running: Steps inside an attempt right now.
        completed: Steps completed so far (including those resumed).
        attempts: Step name to attempts started in this run.
        undo_attempts: Step name to undo calls made in this run.
    """

    saga: str
    correlation_id: str
    phase: SagaPhase
    steps: Mapping[str, StepStatus]
    running: int
    completed: int
    attempts: Mapping[str, int]
    undo_attempts: Mapping[str, int]


@attrs.frozen
class _Options:
    limiter: anyio.CapacityLimiter | None  # None: unbounded, no slot to take
    timeout: float | None
    in_flight: InFlightPolicy
    rollback_timeout: float
    max_undo_attempts: int
    instrument: SagaInstrument


_default_options: list[_Options | None] = [None]  # the last options made from the defaults


def _make_options(
    *,
    max_concurrency: int | None,
    limiter: anyio.CapacityLimiter | None,
    timeout: float | None,
    in_flight: str,
    rollback_timeout: float,
    max_undo_attempts: int,
    instrument: SagaInstrument | None,
) -> _Options:
    if (
        max_concurrency is None
        and limiter is None
        and timeout is None
        and in_flight == "await"
        and rollback_timeout == DEFAULT_ROLLBACK_TIMEOUT
        and max_undo_attempts == DEFAULT_MAX_UNDO_ATTEMPTS
        and type(max_undo_attempts) is int
    ):
        # The defaults (but the instrument): immutable, no limiter, so shared.
        resolved = instrument if instrument is not None else get_default_instrument()
        cached = _default_options[0]
        if cached is not None and cached.instrument is resolved:
            return cached
        cached = _Options(
            limiter=None,
            timeout=None,
            in_flight="await",
            rollback_timeout=DEFAULT_ROLLBACK_TIMEOUT,
            max_undo_attempts=DEFAULT_MAX_UNDO_ATTEMPTS,
            instrument=resolved,
        )
        _default_options[0] = cached
        return cached
    if limiter is not None and max_concurrency is not None:
        raise ValueError("pass max_concurrency or limiter, not both")
    if limiter is None:
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise ValueError(
                f"max_concurrency must be None or an int >= 1, got {max_concurrency!r}"
            )
        if max_concurrency is not None:
            limiter = anyio.CapacityLimiter(max_concurrency)
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be None or > 0, got {timeout!r}")
    if in_flight not in ("await", "cancel"):
        raise ValueError(f"in_flight must be 'await' or 'cancel', got {in_flight!r}")
    if not rollback_timeout > 0:
        raise ValueError(f"rollback_timeout must be > 0, got {rollback_timeout!r}")
    if isinstance(max_undo_attempts, bool) or not isinstance(max_undo_attempts, int):
        raise ValueError(f"max_undo_attempts must be an int >= 1, got {max_undo_attempts!r}")
    if max_undo_attempts < 1:
        raise ValueError(f"max_undo_attempts must be an int >= 1, got {max_undo_attempts!r}")
    return _Options(
        limiter=limiter,
        timeout=timeout,
        in_flight="cancel" if in_flight == "cancel" else "await",
        rollback_timeout=rollback_timeout,
        max_undo_attempts=max_undo_attempts,
        instrument=instrument if instrument is not None else get_default_instrument(),
    )


def _resolve_arguments(
    spec: StepSpec, plan: ArgumentPlan, inputs: Mapping[str, Any], results: Mapping[str, Any]
) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for name, kind, key in plan:
        if kind == ARG_RESULT:
            args[name] = results[key]
        elif kind == ARG_INPUT:
            args[name] = inputs[key]
        elif kind == ARG_VALUE:
            args[name] = key
        else:
            args[name] = _follow_path(spec.name, name, key, results[key.step])
    return args


def _follow_path(step: str, argument: str, source: StepResult, value: Any) -> Any:
    for key in source.path:
        try:
            if isinstance(value, Mapping):  # noqa: SIM114 - split for the type checker
                value = value[key]
            elif isinstance(value, Sequence) and isinstance(key, int):
                value = value[key]
            elif isinstance(key, str):
                value = getattr(value, key)
            else:
                raise LookupError(key)
        except (LookupError, AttributeError, TypeError):
            raise ArgumentPathError(step, argument, source.step, source.path, key) from None
    return value


class SagaRun:
    """One execution of a saga: create it, ``await execute()``, ask ``statistics()`` meanwhile.

    :func:`run_saga` and :func:`resume_saga` are shortcuts for the common case.

    Args:
        saga: The definition (ignored when ``state`` is given).
        inputs: Values of every declared input.
        state: A resumable state from :class:`SagaHalted` to continue from.
        correlation_id: Identifies the saga across resumes; generated if absent.
        max_concurrency: Bound on steps running at once (``None``: unbounded).
        limiter: A shared ``anyio.CapacityLimiter`` instead of ``max_concurrency``
            (e.g. one budget for many sagas).
        timeout: Bound in seconds on the forward phase (``None``: unbounded).
        in_flight: What happens to attempts in flight when a step fails:
            ``"await"`` (default) or ``"cancel"``.
        rollback_timeout: Bound in seconds on the rollback (which is shielded
            from outside cancellation).
        max_undo_attempts: Calls of one step's ``undo`` before giving up on it.
        instrument: Hooks observing the run (default: see
            :func:`set_default_instrument`).

    Raises:
        MissingInputError: if inputs are missing or undeclared.
        ResumeError: if ``state`` is not resumable.
        ValueError: for invalid options.
    """

    def __init__(
        self,
        saga: Saga | None = None,
        inputs: Mapping[str, Any] | None = None,
        *,
        state: SagaState | None = None,
        correlation_id: str | None = None,
        max_concurrency: int | None = None,
        limiter: anyio.CapacityLimiter | None = None,
        timeout: float | None = None,
        in_flight: InFlightPolicy = "await",
        rollback_timeout: float = DEFAULT_ROLLBACK_TIMEOUT,
        max_undo_attempts: int = DEFAULT_MAX_UNDO_ATTEMPTS,
        instrument: SagaInstrument | None = None,
    ) -> None:
        options = _make_options(
            max_concurrency=max_concurrency,
            limiter=limiter,
            timeout=timeout,
            in_flight=in_flight,
            rollback_timeout=rollback_timeout,
            max_undo_attempts=max_undo_attempts,
            instrument=instrument,
        )
        self._init(saga, inputs, state, correlation_id, options, None, None, None)

    @classmethod
    def _child(
        cls,
        saga: Saga,
        inputs: Mapping[str, Any],
        state: SagaState | None,
        options: _Options,
        parent: SagaRunInfo,
        parent_step: str,
        journal: RunJournal | None,
    ) -> SagaRun:
        run = cls.__new__(cls)
        run._init(
            saga,
            inputs,
            state,
            f"{parent.correlation_id}/{parent_step}",
            options,
            parent,
            parent_step,
            journal,
        )
        return run

    def _init(
        self,
        saga: Saga | None,
        inputs: Mapping[str, Any] | None,
        state: SagaState | None,
        correlation_id: str | None,
        options: _Options,
        parent: SagaRunInfo | None,
        parent_step: str | None,
        journal: RunJournal | None,
    ) -> None:
        if state is not None:
            if not state.resumable:
                raise ResumeError(state.saga.name, "only the state of a SagaHalted result is")
            saga, inputs = state.saga, state.inputs
            correlation_id = correlation_id or state.correlation_id
        if not isinstance(saga, Saga):
            raise TypeError(f"expected a Saga (or state=...), got {saga!r}")
        plan = saga._plan
        inputs = dict(inputs) if inputs else {}
        if inputs.keys() != plan.inputs:
            missing = [name for name in saga.inputs if name not in inputs]
            unexpected = [name for name in inputs if name not in saga.inputs]
            raise MissingInputError(saga.name, missing, unexpected)
        self._saga = saga
        self._inputs: Mapping[str, Any] = inputs
        self._opts = options
        self._journal = journal
        if state is None:
            self._completed: list[CompletedStep] = []
            self._results: dict[str, Any] = {}
            self._halted_children: dict[str, SagaState] = {}
        else:
            self._completed = list(state.completed)
            self._results = {c.name: c.value for c in self._completed}
            self._halted_children = dict(state.halted_children)
        self.info = SagaRunInfo(
            saga=saga,
            run_id=next(_run_ids),
            correlation_id=correlation_id or os.urandom(16).hex(),
            parent=parent,
            parent_step=parent_step,
            resumed=frozenset(self._results) if self._results else _NOTHING_RESUMED,
            resumed_from=state.run.run_id if state is not None and state.run else None,
            inputs=self._inputs,
        )
        self._plan = plan
        self._path = self.info.path
        self._hooks = type(options.instrument) is not SagaInstrument
        limiter = options.limiter
        # An unbounded budget needs no slot: skip the limiter altogether.
        self._slots = None if limiter is None or limiter.total_tokens == math.inf else limiter
        # Whether _stop_waiters may cancel a step inside an attempt or a slot
        # wait: then every step runs in a cancel scope of its own (see
        # _scheduling). Otherwise only compensate and backoff waits can be
        # cancelled, and they open a scope just for themselves (_wait_scope).
        self.scoped = options.in_flight == "cancel" or limiter is not None
        # Unmet dependencies per pending step; ready: positions of pending steps
        # with none, ascending (definition order), not taken yet.
        self._status: dict[str, StepStatus] = dict.fromkeys(plan.names, StepStatus.PENDING)
        self._missing: list[int] = list(plan.unmet)
        self._ready: list[int] = list(plan.roots)
        if self._results:  # resumed: count only what is still missing
            self._ready = []
            for i, (name, deps) in enumerate(zip(plan.names, plan.dependencies, strict=True)):
                if name in self._results:
                    self._status[name] = StepStatus.COMPLETED
                    self._missing[i] = 0
                    continue
                self._missing[i] = unmet = sum(dep not in self._results for dep in deps)
                if not unmet:
                    self._ready.append(i)
        self._active = 0  # steps taken and not finished
        self._deadline: float | None = None
        self._deadline_passed = False
        self._attempts: dict[str, int] = {}
        self._undo_attempts: dict[str, int] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._children: dict[str, SagaRun] = {}
        self._interrupted: list[str] = []
        self._exclusive: str | None = None
        self._stopping = False
        self._failure: tuple[BaseException, str | None] | None = None
        self._halt: tuple[object, str] | None = None
        self._child_reports: list[tuple[str | None, RollbackReport]] = []
        self._phase = SagaPhase.CREATED
        self._rolled_back = False
        self._report: RollbackReport | None = None  # what the rollback did
        self._fail_at_start: BaseException | None = None  # a recovery that compensates

    def statistics(self) -> SagaRunStatistics:
        """A snapshot of the run's progress (see :class:`SagaRunStatistics`)."""
        return SagaRunStatistics(
            saga=self._saga.name,
            correlation_id=self.info.correlation_id,
            phase=self._phase,
            steps=dict(self._status),
            running=sum(s is StepStatus.RUNNING for s in self._status.values()),
            completed=len(self._completed),
            attempts=dict(self._attempts),
            undo_attempts=dict(self._undo_attempts),
        )

    def _state(self, *, resumable: bool = False) -> SagaState:
        return SagaState(
            saga=self._saga,
            inputs=self._inputs,
            correlation_id=self.info.correlation_id,
            completed=tuple(self._completed),
            halted_children=dict(self._halted_children),
            run=self.info,
            resumable=resumable,
        )

    # ------------------------------------------------------------- the run

    async def execute(self) -> SagaOutcome:
        """Run to a result (see the module docstring for the algorithm).

        Returns:
            :class:`SagaSucceeded`, :class:`SagaFailed` or :class:`SagaHalted`.

        Raises:
            SagaAlreadyExecutedError: if this run was already executed.
            BaseException: outside cancellation, after the rollback finished.
        """
        if self._phase is not SagaPhase.CREATED:
            raise SagaAlreadyExecutedError(self.info.correlation_id)
        self._phase = SagaPhase.RUNNING
        instrument = self._opts.instrument
        if self._hooks:
            instrument.saga_started(self.info)
            instrument.event(self.info, "saga_started", {})
        if self._fail_at_start is not None:
            self._fail_now(self._fail_at_start, None)
        try:
            outcome = await self._execute()
        except BaseException as exc:
            self._fail_now(exc, None)
            if not self._rolled_back:
                with anyio.CancelScope(shield=True):
                    await self._rollback()
            self._phase = SagaPhase.FINISHED
            if self._journal is not None:
                with anyio.CancelScope(shield=True):
                    await self._journal_outcome(None, exc)
            instrument.saga_finished(self.info, None, exc)
            raise
        self._phase = SagaPhase.FINISHED
        if self._journal is not None:
            await self._journal_outcome(outcome, None)
        if self._hooks:
            instrument.saga_finished(self.info, outcome, None)
        return outcome

    async def _journal_outcome(
        self, outcome: SagaOutcome | None, error: BaseException | None
    ) -> None:
        # A nested run's outcome is its parent step's attempt end.
        if self._journal is None or self.info.parent is not None:
            return
        if outcome is None:
            assert error is not None
            with contextlib.suppress(Exception):  # a broken journal is the error itself
                self._journal.finished(None, error, self._report)
                await self._journal.sync()
            return
        self._journal.finished(outcome, None, None)
        await self._journal.sync()

    async def _execute(self) -> SagaOutcome:
        timeout = self._opts.timeout
        if timeout is None:
            await drive(self)
        else:
            self._deadline = anyio.current_time() + timeout
            with anyio.CancelScope(deadline=self._deadline) as scope:
                await drive(self)
            if scope.cancelled_caught or self._deadline_passed:
                self._fail_now(SagaTimeoutError(self._saga.name, timeout, self._interrupted), None)
        instrument = self._opts.instrument
        if self._failure is not None:
            error, step = self._failure
            report = await self._rollback()
            instrument.event(self.info, "saga_failed", {"step": step, "error": error})
            return SagaFailed(error=error, step=step, rollback=report, state=self._state())
        if self._halt is not None:
            reason, step = self._halt
            instrument.event(self.info, "saga_halted", {"step": step, "reason": reason})
            return SagaHalted(reason=reason, step=step, state=self._state(resumable=True))
        if self._hooks:
            instrument.event(self.info, "saga_completed", {})
        return SagaSucceeded(value=self._results[self._saga.returns], state=self._state())

    # ------------------------------------------- what _scheduling.drive uses

    def take(self) -> list[StepSpec]:
        """Mark the steps that may start now as started and return them."""
        ready = self._ready
        if not ready or self._stopping or self._exclusive is not None:
            return []
        if self._deadline is not None and anyio.current_time() >= self._deadline:
            self._deadline_passed = True  # the run's scope cancels whatever still runs
            return []
        steps = self._saga.steps
        taken: list[StepSpec] = []
        i = 0
        while i < len(ready):
            spec = steps[ready[i]]
            if not spec.concurrent:
                if self._active:
                    i += 1
                    continue
                self._exclusive = spec.name
            del ready[i]
            self._status[spec.name] = StepStatus.WAITING
            self._active += 1
            taken.append(spec)
            if self._exclusive is not None:
                break
        return taken

    def register_scope(self, name: str, scope: anyio.CancelScope) -> None:
        """Step ``name`` runs in ``scope`` from now on (cancelled by _stop_waiters)."""
        self._scopes[name] = scope

    def abandon(self, specs: Sequence[StepSpec]) -> None:
        """Undo the taking of steps that never started (their worker is crashing)."""
        for spec in specs:
            self._release(spec.name)

    def _release(self, name: str) -> None:
        self._active -= 1
        if self._exclusive == name:
            self._exclusive = None
        if self._status[name] in (StepStatus.WAITING, StepStatus.RUNNING):
            self._status[name] = StepStatus.PENDING

    async def run_step(self, spec: StepSpec) -> None:
        """One taken step, attempt after attempt, until it is done (``run_step`` above)."""
        name = spec.name
        try:
            if self._stopping:
                return
            try:
                args = _resolve_arguments(
                    spec, self._plan.arguments_of[name], self._inputs, self._results
                )
            except ArgumentPathError as exc:
                self._fail_now(exc, name)
                return
            impl = spec.impl
            # A FunctionStep without timeout ignores its context: call the
            # function right here (the common case, kept cheap).
            function = impl._run if type(impl) is FunctionStep and spec.timeout is None else None
            slots = self._slots
            if slots is not None and isinstance(impl, Saga):
                slots = None  # a nested saga holds no slot: its own steps do
            attempt = 0
            while True:
                attempt += 1
                if slots is not None:
                    await slots.acquire()
                try:
                    if self._stopping:
                        return
                    # begin: the attempt starts (journaled first).
                    self._attempts[name] = attempt
                    self._status[name] = StepStatus.RUNNING
                    if self._journal is not None:
                        self._journal.attempt_started("/".join((*self._path, name)), attempt)
                    if self._hooks:
                        self._opts.instrument.step_attempt_started(self.info, name, attempt)
                    if function is not None:
                        try:
                            value = await function(**args)
                        except Exception as exc:  # noqa: BLE001 - a step failure, settled below
                            then = self._settle(spec, args, attempt, None, exc)
                        except BaseException:
                            self._interrupted_attempt(name, attempt)
                            raise
                        else:
                            then = self._settle(spec, args, attempt, value, None)
                    else:
                        then = await self._call(spec, impl, args, attempt)
                    if type(then) is _Compensate:
                        assert isinstance(impl, Step)
                        then = await self._compensate(spec, impl, args, attempt, then.error)
                    if type(then) is _Durable:
                        # Shielded: once its record may be committed, the step completes
                        # (and is undone if the run fails), whatever cancels it now.
                        assert self._journal is not None
                        with anyio.CancelScope(shield=True):
                            await self._journal.sync()
                        self._complete(spec, then.value, args, then.child)
                        then = None
                finally:
                    if slots is not None:
                        slots.release()
                if then is None:
                    return
                assert isinstance(then, _Again)
                if not await self._before_retry(spec, impl, args, attempt, then.reason):
                    return
        finally:
            self._scopes.pop(name, None)
            self._release(name)

    # ------------------------------------------------------ one attempt

    def _interrupted_attempt(self, name: str, attempt: int) -> None:
        """The attempt was cancelled (saga timeout, ``in_flight="cancel"``, outside)."""
        self._interrupted.append(name)
        if self._journal is not None:
            self._journal.attempt_finished(
                "/".join((*self._path, name)), attempt, "cancelled", None, None
            )
        if self._hooks:
            self._opts.instrument.step_attempt_finished(self.info, name, attempt, "cancelled", None)

    async def _call(
        self, spec: StepSpec, impl: Step | Saga, args: Mapping[str, Any], attempt: int
    ) -> _Then:
        """One attempt of a step that needs its context, a timeout, or is a nested saga."""
        if isinstance(impl, Saga):
            return await self._call_nested(spec, impl, args, attempt)
        ctx = self._context(spec, attempt)
        try:
            if spec.timeout is None:
                value = await impl.run(args, ctx)
            else:
                with anyio.move_on_after(spec.timeout) as attempt_scope:
                    value = await impl.run(args, ctx)
                if attempt_scope.cancelled_caught:
                    error = StepTimeoutError(spec.name, spec.timeout)
                    return self._settle(spec, args, attempt, None, error)
        except Exception as exc:  # noqa: BLE001 - a step failure, settled below
            return self._settle(spec, args, attempt, None, exc)
        except BaseException:
            self._interrupted_attempt(spec.name, attempt)
            raise
        return self._settle(spec, args, attempt, value, None)

    async def _call_nested(
        self, spec: StepSpec, saga: Saga, args: Mapping[str, Any], attempt: int
    ) -> _Then:
        """One attempt of a nested saga step: a child run sharing the budget, holding no slot."""
        name = spec.name
        child = SagaRun._child(
            saga,
            args,
            self._halted_children.pop(name, None),
            self._opts,
            self.info,
            name,
            self._journal,
        )
        self._children[name] = child
        try:
            outcome = await child.execute()
        except BaseException:
            # Cancelled (in_flight="cancel", timeout, outside): the child rolled
            # its own steps back before the cancellation went on; that rollback
            # belongs to this run's report.
            if child._report is not None:
                self._child_reports.append((name, child._report))
            self._interrupted_attempt(name, attempt)
            raise
        finally:
            del self._children[name]
        if isinstance(outcome, SagaSucceeded):
            return self._settle(spec, args, attempt, outcome.value, None, outcome.state)
        if isinstance(outcome, SagaHalted):
            self._halted_children[name] = outcome.state
            return self._settle(spec, args, attempt, Halt(outcome.reason), None)
        self._child_reports.append((name, outcome.rollback))
        error = NestedSagaFailedError(
            name, saga.name, outcome.error, outcome.step, outcome.rollback
        )
        return self._settle(spec, args, attempt, None, error)

    def _settle(
        self,
        spec: StepSpec,
        args: Mapping[str, Any],
        attempt: int,
        value: Any,
        error: BaseException | None,
        child: SagaState | None = None,
    ) -> _Then:
        """Where an attempt becomes an outcome, and the one place deciding what follows.

        Journals and reports the attempt's end, then: a result completes the
        step, Halt halts the run (both: done); Retry asks for another attempt;
        an error fails the step, asks for another attempt (a nested saga) or
        for ``compensate``.
        """
        name = spec.name
        journal = self._journal
        hooks = self._hooks
        if error is None:
            if not isinstance(value, _MARKERS):
                if hooks:
                    self._opts.instrument.step_attempt_finished(
                        self.info, name, attempt, "ok", None
                    )
                if journal is not None:
                    journal.attempt_finished(
                        "/".join((*self._path, name)), attempt, "ok", None, value
                    )
                    return _Durable(value, child)  # completes once committed
                self._complete(spec, value, args, child)
                return None
            if isinstance(value, Continue):
                error = InvalidResultError(name, "run", "a result, Retry(...) or Halt(...)", value)
            else:
                kind: Literal["halt", "retry"] = "halt" if isinstance(value, Halt) else "retry"
                if journal is not None:
                    journal.attempt_finished(
                        "/".join((*self._path, name)), attempt, kind, None, None
                    )
                if hooks:
                    self._opts.instrument.step_attempt_finished(
                        self.info, name, attempt, kind, None
                    )
                if isinstance(value, Halt):
                    self._halt_now(value.reason, name)
                    return None
                self._status[name] = StepStatus.WAITING
                return _Again(value.reason)
        if journal is not None:
            journal.attempt_finished("/".join((*self._path, name)), attempt, "error", error, None)
        if hooks:
            self._opts.instrument.step_attempt_finished(self.info, name, attempt, "error", error)
        self._status[name] = StepStatus.WAITING
        impl = spec.impl
        if isinstance(impl, Saga):
            return _Again(error)  # the child rolled back its own steps; try it again
        if self._stopping or not impl.can_compensate:
            self._fail_now(error, name)
            return None
        return _Compensate(error)

    def _complete(
        self, spec: StepSpec, value: Any, args: Mapping[str, Any], child: SagaState | None = None
    ) -> None:
        self._completed.append(CompletedStep(spec.name, value, args, child))
        self._results[spec.name] = value
        self._status[spec.name] = StepStatus.COMPLETED
        missing = self._missing
        for i in self._plan.dependents_of[spec.name]:
            missing[i] -= 1
            if not missing[i]:
                bisect.insort(self._ready, i)
        if self._hooks:
            self._opts.instrument.event(self.info, "step_completed", {"step": spec.name})

    async def _compensate(
        self,
        spec: StepSpec,
        step: Step,
        args: Mapping[str, Any],
        attempt: int,
        error: BaseException,
    ) -> _Then:
        """The step's own failure handler decides what follows the failed attempt."""
        name = spec.name
        ctx = self._context(spec, attempt)
        if self.scoped:
            decision = await self._call_compensate(spec, step, error, args, ctx)
        else:
            with self._wait_scope(name) as wait:
                decision = await self._call_compensate(spec, step, error, args, ctx)
            if wait.cancelled_caught:
                return None
        if isinstance(decision, Continue):
            if self._journal is not None:
                self._journal.completed("/".join((*self._path, name)), decision.value)
                return _Durable(decision.value, None)
            self._complete(spec, decision.value, args)
            return None
        if isinstance(decision, Retry):
            return _Again(decision.reason if decision.reason is not None else error)
        self._fail_now(decision, name)
        return None

    async def _call_compensate(
        self,
        spec: StepSpec,
        step: Step,
        error: BaseException,
        args: Mapping[str, Any],
        ctx: StepContext,
    ) -> Continue | Retry | BaseException:
        """Call ``compensate``; return its decision, or the error the step fails with."""
        instrument = self._opts.instrument
        instrument.compensate_started(self.info, spec.name, ctx.attempt)
        try:
            decision = await step.compensate(error, args, ctx)
        except Exception as exc:  # noqa: BLE001 - reported as CompensateFailedError
            instrument.compensate_finished(self.info, spec.name, ctx.attempt, exc)
            return CompensateFailedError(spec.name, error, exc)
        except BaseException as exc:
            instrument.compensate_finished(self.info, spec.name, ctx.attempt, exc)
            raise
        instrument.compensate_finished(self.info, spec.name, ctx.attempt, None)
        if decision is None:
            return error
        if isinstance(decision, Continue | Retry):
            return decision
        return InvalidResultError(
            spec.name, "compensate", "Continue(value), Retry(...) or None", decision
        )

    async def _before_retry(
        self,
        spec: StepSpec,
        impl: Step | Saga,
        args: Mapping[str, Any],
        attempt: int,
        reason: object,
    ) -> bool:
        """Fail the step if its attempts ran out, else wait out the backoff; True to retry."""
        if attempt >= 1 + spec.max_retries:
            nested = isinstance(impl, Saga)
            if nested and not spec.max_retries:
                assert isinstance(reason, BaseException)
                self._fail_now(reason, spec.name)
            else:
                self._fail_now(RetriesExceededError(spec.name, attempt, reason), spec.name)
            return False
        if self._stopping:
            return False
        if isinstance(impl, Saga):
            return True  # a failed child is tried again at once
        try:
            delay = max(0.0, float(impl.backoff(reason, args, self._context(spec, attempt))))
        except Exception as exc:  # noqa: BLE001 - the step fails with it
            self._fail_now(exc, spec.name)
            return False
        self._opts.instrument.event(
            self.info,
            "retry_scheduled",
            {"step": spec.name, "attempt": attempt, "delay": delay},
        )
        target = anyio.current_time() + delay
        if self.scoped:
            while (now := anyio.current_time()) < target:
                await anyio.sleep(target - now)
        else:
            with self._wait_scope(spec.name) as wait:
                while (now := anyio.current_time()) < target:
                    await anyio.sleep(target - now)
            if wait.cancelled_caught:
                return False
        return not self._stopping

    @contextlib.contextmanager
    def _wait_scope(self, name: str) -> Iterator[anyio.CancelScope]:
        """A cancel scope for one wait of step ``name``, registered for _stop_waiters."""
        with anyio.CancelScope() as scope:
            self._scopes[name] = scope
            try:
                yield scope
            finally:
                del self._scopes[name]

    def _context(self, spec: StepSpec, attempt: int) -> StepContext:
        return StepContext(
            saga=self._saga.name,
            step=spec.name,
            correlation_id=self.info.correlation_id,
            run_id=self.info.run_id,
            path=(*self._path, spec.name),
            attempt=attempt,
            max_retries=spec.max_retries,
        )

    # ---------------------------------------------------- stopping the run

    def cancel(self, error: BaseException) -> None:
        """Fail the run now with ``error``, as if a step had failed.

        No new step starts; in-flight steps are awaited or cancelled according
        to ``in_flight``; then completed steps are undone in reverse order and
        :meth:`execute` returns :class:`SagaFailed` with ``error`` (and no
        failing step). Does nothing if the run already failed.
        """
        self._fail_now(error, None)

    def _fail_now(self, error: BaseException, step: str | None) -> None:
        if step is not None:
            self._status[step] = StepStatus.FAILED
        if self._failure is not None:
            return
        self._failure = (error, step)
        self._stopping = True
        self._opts.instrument.event(self.info, "failure_detected", {"step": step, "error": error})
        self._stop_waiters()

    def _halt_now(self, reason: object, step: str) -> None:
        if self._halt is None:
            self._halt = (reason, step)
        if not self._stopping:
            self._stopping = True
            self._stop_waiters()

    def _stop_waiters(self) -> None:
        failed = self._failure is not None
        if failed:
            # Running child sagas stop now, before any of their steps gets the
            # chance to start (S5 across nesting); under "cancel" their scope
            # is cancelled below as well, and they roll back on the way out.
            for child in self._children.values():
                child._fail_now(SagaAbortedError(child._saga.name, child.info.parent_step), None)
        cancel_running = failed and self._opts.in_flight == "cancel"
        for name, scope in self._scopes.items():
            if cancel_running or self._status[name] is StepStatus.WAITING:
                scope.cancel()

    # ------------------------------------------------------------ rollback

    async def _rollback(self) -> RollbackReport:
        self._rolled_back = True
        self._phase = SagaPhase.ROLLING_BACK
        if self._journal is not None and self.info.parent is None and self._failure is not None:
            # From here on a recovery compensates, whatever the saga's policy.
            self._journal.failure(self._failure[1], self._failure[0])
            with anyio.CancelScope(shield=True):
                await self._journal.sync()
        instrument = self._opts.instrument
        instrument.event(self.info, "rollback_started", {})
        own = await rollback_state(
            self._state(),
            self.info,
            instrument=instrument,
            rollback_timeout=self._opts.rollback_timeout,
            max_undo_attempts=self._opts.max_undo_attempts,
            journal=self._journal,
            undo_attempts=self._undo_attempts,
            statuses=self._status,
        )
        report = merge_reports([*self._child_reports, (None, own)])
        self._report = report
        instrument.event(
            self.info,
            "saga_rolled_back"
            if report.status is RollbackStatus.ROLLED_BACK
            else "rollback_incomplete",
            {},
        )
        return report


async def run_saga(
    saga: Saga,
    inputs: Mapping[str, Any] | None = None,
    *,
    correlation_id: str | None = None,
    max_concurrency: int | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    timeout: float | None = None,
    in_flight: InFlightPolicy = "await",
    rollback_timeout: float = DEFAULT_ROLLBACK_TIMEOUT,
    max_undo_attempts: int = DEFAULT_MAX_UNDO_ATTEMPTS,
    instrument: SagaInstrument | None = None,
) -> SagaOutcome:
    """Run ``saga`` with ``inputs`` and return its outcome; options as for :class:`SagaRun`.

    Returns:
        :class:`SagaSucceeded`, :class:`SagaFailed` or :class:`SagaHalted`.
        Step failures are reported in the outcome, never raised.

    Raises:
        MissingInputError: if inputs are missing or undeclared.
        ValueError: for invalid options.
    """
    return await SagaRun(
        saga,
        inputs,
        correlation_id=correlation_id,
        max_concurrency=max_concurrency,
        limiter=limiter,
        timeout=timeout,
        in_flight=in_flight,
        rollback_timeout=rollback_timeout,
        max_undo_attempts=max_undo_attempts,
        instrument=instrument,
    ).execute()


async def resume_saga(
    state: SagaState,
    *,
    max_concurrency: int | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    timeout: float | None = None,
    in_flight: InFlightPolicy = "await",
    rollback_timeout: float = DEFAULT_ROLLBACK_TIMEOUT,
    max_undo_attempts: int = DEFAULT_MAX_UNDO_ATTEMPTS,
    instrument: SagaInstrument | None = None,
) -> SagaOutcome:
    """Continue a halted run from :attr:`SagaHalted.state`; completed steps are not run again.

    If the resumed run fails, the steps completed before the halt are rolled
    back too. Retry counters start afresh for the steps that run.

    Raises:
        ResumeError: if ``state`` is not the state of a :class:`SagaHalted`.
    """
    return await SagaRun(
        state=state,
        max_concurrency=max_concurrency,
        limiter=limiter,
        timeout=timeout,
        in_flight=in_flight,
        rollback_timeout=rollback_timeout,
        max_undo_attempts=max_undo_attempts,
        instrument=instrument,
    ).execute()


async def undo_saga(
    state: SagaState,
    *,
    rollback_timeout: float = DEFAULT_ROLLBACK_TIMEOUT,
    max_undo_attempts: int = DEFAULT_MAX_UNDO_ATTEMPTS,
    instrument: SagaInstrument | None = None,
) -> RollbackReport:
    """Roll back a whole run later, e.g. from :attr:`SagaSucceeded.state`.

    Completed steps are undone newest first (nested sagas as units), shielded
    and bounded, exactly as a failed run's rollback.
    """
    if not isinstance(state, SagaState):
        raise TypeError(f"expected a SagaState, got {state!r}")
    opts = _make_options(
        max_concurrency=None,
        limiter=None,
        timeout=None,
        in_flight="await",
        rollback_timeout=rollback_timeout,
        max_undo_attempts=max_undo_attempts,
        instrument=instrument,
    )
    info = state.run or SagaRunInfo(
        saga=state.saga, run_id=next(_run_ids), correlation_id=state.correlation_id
    )
    return await rollback_state(
        state,
        info,
        instrument=opts.instrument,
        rollback_timeout=opts.rollback_timeout,
        max_undo_attempts=opts.max_undo_attempts,
    )
