"""The saga executor: runs a :class:`Saga` on anyio (asyncio or trio).

::

    outcome = await run_saga(saga, {"sku": "A1"}, max_concurrency=4, timeout=30)

Algorithm of one run (:meth:`SagaRun.execute`)::

    1. Check the inputs. Start from the given state (fresh, or a halted state
       being resumed: its completed steps are never run again).
    2. Call instrument.saga_started. If there is a saga-level ``timeout``, run
       steps 3 to 5 inside a cancel scope with that deadline.
    3. Steps run in *workers*: the run's own task, and tasks of a task group
       opened only while two steps or more can run at once.
       a. Taking steps: unless stopping, every pending step whose dependencies
          have all completed (counters per step, decremented on completion;
          the dependency lists are computed once per Saga) may start, in
          definition order. A step with ``concurrent=False`` starts only when
          no other step of the run is running, and nothing else starts while
          it runs. Nothing starts once the saga deadline has passed.
       b. The run's task takes the ready steps. While they come one at a
          time, it runs each in turn itself (no task group, no task).
       c. When two or more can start: open a task group; the run's task is
          its first worker, with the taken steps as its queue. A worker
          drives each step of its queue in its own task, as ``await`` would.
          A step that finishes without suspending kept no other step waiting,
          so the worker goes on with the next one. At the first step that
          suspends, every other step of the queue starts at once, each in a
          new worker task, and the worker goes on driving the suspended step.
          With its queue done, a worker takes the steps that became ready as
          its new queue; with nothing to take it ends. The group closes when
          the last worker does, and the run's task goes back to (b).
       d. A worker holds its own cancel scope when _stop_waiters may cancel a
          step inside an attempt or a slot wait (``in_flight="cancel"`` or a
          limiter): that scope is registered for the step it runs. Otherwise
          only a step in compensate or in backoff can be cancelled alone, and
          that wait opens a scope of its own.
    4. Each step (in its worker):
       a. If the run is stopping, give up (the step stays pending). Resolve
          arguments (inputs, results and sub-paths, literals).
       b. For a nested saga: run it as a child run that shares the limiter and
          holds no slot itself, so it can never starve its own steps; its
          success completes the step, its failure (after it rolled back its own
          steps) fails the step, its halt halts this run.
       c. Otherwise: acquire a slot of the shared CapacityLimiter (none when
          the budget is unbounded), run one attempt (bounded by the step
          ``timeout``), release the slot. A result completes the step; Halt
          halts the run; an error goes to ``compensate`` (if defined):
          Continue completes, None fails, Retry retries, raising fails with
          CompensateFailedError.
       d. Retry: if 1 + max_retries attempts ran, fail with
          RetriesExceededError; otherwise sleep at least ``backoff`` seconds
          and go to (c).
       e. Before each attempt: if the run is stopping, give up quietly (the
          step stays pending: not completed, never undone).
    5. The first failure sets ``stopping`` at once (event "failure_detected"):
       no new attempt starts from then on (S5). Steps waiting for a slot, in
       compensate or in backoff are cancelled. Steps inside an attempt are, by policy
       ``in_flight``: "await" (default) -- their attempt finishes; a result
       still completes the step (and is undone below), anything else is
       dropped -- or "cancel" -- cancelled now; a cancelled step is not
       completed and is not undone. A running nested saga is aborted under
       "await" (it starts nothing new, finishes its in-flight attempts, rolls
       back its own steps, and fails with SagaAbortedError) and cancelled under
       "cancel" (it rolls back its own steps, shielded, then the cancellation
       goes on). A Halt sets ``stopping`` the same way
       (in-flight attempts are always awaited) unless a failure wins.
    6. Saga timeout: the run's cancel scope cancels every step; the run
       fails with SagaTimeoutError (cancelled steps are not completed).
    7. When no worker is left (so nothing can complete after the result is
       reported, S6):
       - failure -> rollback (8), result SagaFailed(error, step, report);
       - halt    -> result SagaHalted(reason, step, state) with state.resumable;
       - else    -> result SagaSucceeded(results[returns], state).
    8. Rollback: in a cancel scope shielded from outside cancellation and
       bounded by ``rollback_timeout``, for each completed step in *reverse
       completion order* (which also undoes every dependent before its
       dependencies): a nested saga step is undone as a unit by rolling back its
       child state in the child's own reverse order; a step with ``undo`` gets up
       to ``max_undo_attempts`` calls until one returns None (raising or
       returning Retry counts as a failed call). Failures are collected and the
       rollback goes on. Status ROLLED_BACK if every undo succeeded, else
       INCOMPLETE, with every error attached and the steps never reached.
    9. If anything escapes the run (outside cancellation, a crashing
       instrument), the completed steps are rolled back as in (8) before the
       exception propagates, and saga_finished gets the exception.
   10. Call instrument.saga_finished and return the result.

Time comes only from ``anyio.current_time()``/``anyio.sleep()``, so a virtual
clock (trio's MockClock) makes timeouts and backoffs instant in tests.
"""

from __future__ import annotations

import bisect
import contextlib
import enum
import itertools
import math
import os
import types
from collections.abc import Coroutine, Generator, Iterator, Mapping, Sequence
from typing import Any, Final, Literal

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
    UndoFailedError,
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
from ._saga import ARG_INPUT, ARG_RESULT, ARG_VALUE, ArgumentPlan, Saga, StepResult, StepSpec
from ._step import Continue, FunctionStep, Halt, Retry, Step, StepContext

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


class StepStatus(enum.Enum):
    """Where one step of a run stands."""

    PENDING = "pending"
    """Not started (or given up before an attempt because the run is stopping)."""
    WAITING = "waiting"
    """Started, waiting for a concurrency slot or a backoff delay."""
    RUNNING = "running"
    """Inside an attempt (or, for a nested saga, its child run is executing)."""
    COMPLETED = "completed"
    """Has a result."""
    FAILED = "failed"
    """Failed for good."""
    UNDONE = "undone"
    """Completed, then rolled back."""
    UNDO_FAILED = "undo_failed"
    """Completed; rolling it back failed or was never reached."""


class SagaPhase(enum.Enum):
    """Where a run stands."""

    CREATED = "created"
    RUNNING = "running"
    ROLLING_BACK = "rolling_back"
    FINISHED = "finished"


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


class _NoSlot:
    """A no-op stand-in for the capacity limiter when the budget is unbounded."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


_NO_SLOT: Final = _NoSlot()


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
        self._init(saga, inputs, state, correlation_id, options, None, None)

    @classmethod
    def _child(
        cls,
        saga: Saga,
        inputs: Mapping[str, Any],
        state: SagaState | None,
        options: _Options,
        parent: SagaRunInfo,
        parent_step: str,
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
        )
        self._plan = plan
        self._path = self.info.path
        self._hooks = type(options.instrument) is not SagaInstrument
        # Whether _stop_waiters may cancel a step inside an attempt or a slot
        # wait: then every worker task runs in a cancel scope of its own.
        # Otherwise only compensate and backoff waits can be cancelled, and
        # they open a scope just for themselves (_wait_scope).
        self._scoped = options.in_flight == "cancel" or options.limiter is not None
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
        self._child_reports: list[tuple[str, RollbackReport]] = []
        self._phase = SagaPhase.CREATED
        self._rolled_back = False

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
        try:
            outcome = await self._execute()
        except BaseException as exc:
            self._fail_now(exc, None)
            if not self._rolled_back:
                with anyio.CancelScope(shield=True):
                    await self._rollback()
            self._phase = SagaPhase.FINISHED
            instrument.saga_finished(self.info, None, exc)
            raise
        self._phase = SagaPhase.FINISHED
        if self._hooks:
            instrument.saga_finished(self.info, outcome, None)
        return outcome

    async def _execute(self) -> SagaOutcome:
        timeout = self._opts.timeout
        if timeout is None:
            await self._forward()
        else:
            self._deadline = anyio.current_time() + timeout
            with anyio.CancelScope(deadline=self._deadline) as scope:
                await self._forward()
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

    async def _forward(self) -> None:
        """Algorithm step 3: run steps until none is ready and none is running."""
        batch = self._take()
        while batch:
            if len(batch) == 1:
                if self._scoped:
                    with anyio.CancelScope() as scope:
                        batch = await self._run_alone(batch[0], scope)
                    if scope.cancelled_caught:
                        return  # cancelled by _stop_waiters: the run is stopping
                else:
                    batch = await self._run_alone(batch[0], None)
                continue
            async with anyio.create_task_group() as tg:
                await self._work(tg, batch)
            batch = self._take()

    async def _run_alone(self, spec: StepSpec, scope: anyio.CancelScope | None) -> list[StepSpec]:
        """Run steps in this task while they come one at a time (3b).

        Returns the next batch when it has two steps or more (or none).
        """
        while True:
            if scope is not None:
                self._scopes[spec.name] = scope
            await self._run_step(spec)
            batch = self._take()
            if len(batch) != 1:
                return batch
            spec = batch[0]

    async def _work(self, tg: anyio.abc.TaskGroup, specs: list[StepSpec]) -> None:
        """A worker of the task group: runs ``specs``, then the steps it takes (3c)."""
        if self._scoped:
            with anyio.CancelScope() as scope:
                await self._work_loop(tg, specs, scope)
        else:
            await self._work_loop(tg, specs, None)

    async def _work_loop(
        self, tg: anyio.abc.TaskGroup, queue: list[StepSpec], scope: anyio.CancelScope | None
    ) -> None:
        i = 0
        try:
            while True:
                while i < len(queue):
                    spec = queue[i]
                    i += 1
                    if scope is not None:
                        self._scopes[spec.name] = scope
                    # Drive the step in this task, as ``await`` would; if it
                    # finishes without suspending, no other step had to wait.
                    step = self._run_step(spec)
                    try:
                        suspended_at = step.send(None)
                    except StopIteration:
                        continue
                    # It waits: every other step of the queue starts now, in a
                    # task of its own, while this task goes on driving it.
                    for other in queue[i:]:
                        tg.start_soon(self._work, tg, [other], name=f"saga step {other.name}")
                    i = len(queue)
                    await _resume(step, suspended_at)
                queue = self._take()
                i = 0
                if not queue:
                    return
        except BaseException:
            self._abandon(queue[i:])
            raise

    def _abandon(self, specs: Sequence[StepSpec]) -> None:
        """Undo the taking of steps that never started (the worker is crashing)."""
        for spec in specs:
            self._active -= 1
            if self._exclusive == spec.name:
                self._exclusive = None
            if self._status[spec.name] is StepStatus.WAITING:
                self._status[spec.name] = StepStatus.PENDING

    def _take(self) -> list[StepSpec]:
        """Mark the steps that may start now as started and return them (3a)."""
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

    async def _run_step(self, spec: StepSpec) -> None:
        """Algorithm step 4, in the calling task (its cancel scope is registered)."""
        try:
            if self._stopping:
                return
            name = spec.name
            try:
                args = _resolve_arguments(
                    spec, self._plan.arguments_of[name], self._inputs, self._results
                )
            except ArgumentPathError as exc:
                self._fail_now(exc, name)
                self._status[name] = StepStatus.FAILED
                return
            impl = spec.impl
            if (
                type(impl) is not FunctionStep
                or spec.timeout is not None
                or self._opts.limiter is not None
            ):
                if isinstance(impl, Saga):
                    await self._run_nested(spec, impl, args)
                else:
                    await self._run_leaf(spec, impl, args)
                return
            # The common case, a function without timeout or slot: its first
            # attempt runs right here; anything but a plain result goes on in
            # _run_leaf, which handles attempts in general (4c-4e).
            hooks = self._hooks
            self._attempts[name] = 1
            self._status[name] = StepStatus.RUNNING
            if hooks:
                self._opts.instrument.step_attempt_started(self.info, name, 1)
            try:
                value = await impl._run(**args)
            except Exception as exc:  # noqa: BLE001 - a step failure, handled in _run_leaf
                await self._run_leaf(spec, impl, args, (None, exc))
                return
            except BaseException:
                self._interrupted.append(name)
                if hooks:
                    self._opts.instrument.step_attempt_finished(
                        self.info, name, 1, "cancelled", None
                    )
                raise
            if isinstance(value, Retry | Halt | Continue):
                await self._run_leaf(spec, impl, args, (value, None))
                return
            if hooks:
                self._opts.instrument.step_attempt_finished(self.info, name, 1, "ok", None)
            self._complete(spec, value, args)
        finally:
            self._scopes.pop(spec.name, None)
            self._active -= 1
            if self._exclusive == spec.name:
                self._exclusive = None
            if self._status[spec.name] in (StepStatus.WAITING, StepStatus.RUNNING):
                self._status[spec.name] = StepStatus.PENDING

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
        cancel_running = self._failure is not None and self._opts.in_flight == "cancel"
        for name, scope in self._scopes.items():
            if self._status[name] is StepStatus.WAITING or cancel_running:
                scope.cancel()
        if self._failure is not None and not cancel_running:
            for child in self._children.values():
                child._fail_now(SagaAbortedError(child._saga.name, child.info.parent_step), None)

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

    async def _run_leaf(
        self,
        spec: StepSpec,
        step: Step,
        args: Mapping[str, Any],
        first: tuple[Any, Exception | None] | None = None,
    ) -> None:
        """Attempts of a leaf step (4c-4e); ``first``: the outcome of attempt 1, already run."""
        instrument = self._opts.instrument
        hooks = self._hooks
        info = self.info
        name = spec.name
        attempt = 0
        limiter = self._opts.limiter
        # An unbounded budget needs no slot: skip the limiter's checkpoints.
        slots: contextlib.AbstractAsyncContextManager[Any] = (
            _NO_SLOT if limiter is None or limiter.total_tokens == math.inf else limiter
        )
        # A FunctionStep's run ignores its context: call the function directly.
        function = step._run if type(step) is FunctionStep else None
        ctx: StepContext | None = None
        value: Any = None
        error: BaseException | None = None
        while True:
            async with slots:
                ctx = None
                if first is not None:
                    value, error = first
                    first = None
                    attempt = 1
                else:
                    if self._stopping:
                        return
                    attempt += 1
                    self._attempts[name] = attempt
                    self._status[name] = StepStatus.RUNNING
                    if hooks:
                        instrument.step_attempt_started(info, name, attempt)
                    error = None
                    try:
                        timed_out = False
                        if spec.timeout is None:
                            if function is not None:
                                value = await function(**args)
                            else:
                                ctx = self._context(spec, attempt)
                                value = await step.run(args, ctx)
                        else:
                            ctx = self._context(spec, attempt)
                            with anyio.move_on_after(spec.timeout) as attempt_scope:
                                value = await step.run(args, ctx)
                            timed_out = attempt_scope.cancelled_caught
                        if timed_out:
                            assert spec.timeout is not None
                            error = StepTimeoutError(name, spec.timeout)
                    except Exception as exc:  # noqa: BLE001 - a step failure, in the outcome
                        error = exc
                    except BaseException:
                        self._interrupted.append(name)
                        if hooks:
                            instrument.step_attempt_finished(info, name, attempt, "cancelled", None)
                        raise
                if error is None and isinstance(value, Continue):
                    error = InvalidResultError(
                        name, "run", "a result, Retry(...) or Halt(...)", value
                    )
                if error is not None:
                    if hooks:
                        instrument.step_attempt_finished(info, name, attempt, "error", error)
                elif isinstance(value, Retry):
                    if hooks:
                        instrument.step_attempt_finished(info, name, attempt, "retry", None)
                elif isinstance(value, Halt):
                    if hooks:
                        instrument.step_attempt_finished(info, name, attempt, "halt", None)
                    self._halt_now(value.reason, name)
                    return
                else:
                    if hooks:
                        instrument.step_attempt_finished(info, name, attempt, "ok", None)
                    self._complete(spec, value, args)
                    return
                self._status[name] = StepStatus.WAITING
                if ctx is None:
                    ctx = self._context(spec, attempt)
                if error is not None:
                    if self._stopping or not step.can_compensate:
                        self._fail_now(error, name)
                        return
                    if self._scoped:
                        decision = await self._compensate(spec, step, error, args, ctx)
                    else:
                        with self._wait_scope(name) as wait:
                            decision = await self._compensate(spec, step, error, args, ctx)
                        if wait.cancelled_caught:
                            return
                    if isinstance(decision, Continue):
                        self._complete(spec, decision.value, args)
                        return
                    if not isinstance(decision, Retry):
                        self._fail_now(decision, name)
                        return
                    reason: object = decision.reason if decision.reason is not None else error
                else:
                    assert isinstance(value, Retry)
                    reason = value.reason
            if not await self._before_retry(spec, step, args, ctx, reason):
                return

    async def _compensate(
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
        step: Step,
        args: Mapping[str, Any],
        ctx: StepContext,
        reason: object,
    ) -> bool:
        """Fail the step if retries ran out, else wait out the backoff; True to retry."""
        if ctx.attempt >= 1 + spec.max_retries:
            self._fail_now(RetriesExceededError(spec.name, ctx.attempt, reason), spec.name)
            return False
        if self._stopping:
            return False
        try:
            delay = max(0.0, float(step.backoff(reason, args, ctx)))
        except Exception as exc:  # noqa: BLE001 - the step fails with it
            self._fail_now(exc, spec.name)
            return False
        self._opts.instrument.event(
            self.info,
            "retry_scheduled",
            {"step": spec.name, "attempt": ctx.attempt, "delay": delay},
        )
        target = anyio.current_time() + delay
        if self._scoped:
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

    async def _run_nested(self, spec: StepSpec, saga: Saga, args: Mapping[str, Any]) -> None:
        instrument = self._opts.instrument
        attempt = 0
        while not self._stopping:
            attempt += 1
            self._attempts[spec.name] = attempt
            self._status[spec.name] = StepStatus.RUNNING
            child = SagaRun._child(
                saga,
                args,
                self._halted_children.pop(spec.name, None),
                self._opts,
                self.info,
                spec.name,
            )
            instrument.step_attempt_started(self.info, spec.name, attempt)
            self._children[spec.name] = child
            try:
                outcome = await child.execute()
            except BaseException:
                self._interrupted.append(spec.name)
                instrument.step_attempt_finished(self.info, spec.name, attempt, "cancelled", None)
                raise
            finally:
                del self._children[spec.name]
            if isinstance(outcome, SagaSucceeded):
                instrument.step_attempt_finished(self.info, spec.name, attempt, "ok", None)
                self._complete(spec, outcome.value, args, outcome.state)
                return
            if isinstance(outcome, SagaHalted):
                instrument.step_attempt_finished(self.info, spec.name, attempt, "halt", None)
                self._halted_children[spec.name] = outcome.state
                self._halt_now(outcome.reason, spec.name)
                return
            error = NestedSagaFailedError(
                spec.name, saga.name, outcome.error, outcome.step, outcome.rollback
            )
            instrument.step_attempt_finished(self.info, spec.name, attempt, "error", error)
            self._child_reports.append((spec.name, outcome.rollback))
            self._status[spec.name] = StepStatus.WAITING
            if attempt >= 1 + spec.max_retries:
                if spec.max_retries:
                    self._fail_now(RetriesExceededError(spec.name, attempt, error), spec.name)
                else:
                    self._fail_now(error, spec.name)
                return

    async def _rollback(self) -> RollbackReport:
        self._rolled_back = True
        self._phase = SagaPhase.ROLLING_BACK
        instrument = self._opts.instrument
        instrument.event(self.info, "rollback_started", {})
        undone: list[str] = []
        failures: list[UndoFailedError] = []
        not_undone: list[str] = []
        for prefix, report in self._child_reports:
            undone.extend(f"{prefix}/{p}" for p in report.undone)
            failures.extend(_prefixed(prefix, f) for f in report.failures)
            not_undone.extend(f"{prefix}/{p}" for p in report.not_undone)
        own = await _rollback_state(
            self._state(), self.info, self._opts, self._undo_attempts, self._status
        )
        undone.extend(own.undone)
        failures.extend(own.failures)
        not_undone.extend(own.not_undone)
        status = (
            RollbackStatus.ROLLED_BACK
            if not failures and not not_undone
            else RollbackStatus.INCOMPLETE
        )
        instrument.event(
            self.info,
            "saga_rolled_back" if status is RollbackStatus.ROLLED_BACK else "rollback_incomplete",
            {},
        )
        return RollbackReport(
            status=status,
            undone=tuple(undone),
            failures=tuple(failures),
            not_undone=tuple(not_undone),
        )


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


def _prefixed(prefix: str, failure: UndoFailedError) -> UndoFailedError:
    return UndoFailedError(f"{prefix}/{failure.step}", failure.attempts, failure.errors)


async def _rollback_state(
    state: SagaState,
    info: SagaRunInfo,
    opts: _Options,
    undo_attempts: dict[str, int] | None = None,
    statuses: dict[str, StepStatus] | None = None,
) -> RollbackReport:
    """Undo ``state``'s completed steps, newest first, shielded and bounded (algorithm step 8)."""
    undone: list[str] = []
    failures: list[UndoFailedError] = []
    with anyio.CancelScope(
        shield=True, deadline=anyio.current_time() + opts.rollback_timeout
    ) as scope:
        await _undo_completed(
            state, info, opts, (), undone, failures, undo_attempts or {}, statuses
        )
    not_undone: list[str] = []
    if scope.cancelled_caught:
        reached = set(undone) | {f.step for f in failures}
        not_undone = [p for p in _undoable_paths(state, ()) if p not in reached]
    status = (
        RollbackStatus.ROLLED_BACK if not failures and not not_undone else RollbackStatus.INCOMPLETE
    )
    return RollbackReport(
        status=status, undone=tuple(undone), failures=tuple(failures), not_undone=tuple(not_undone)
    )


def _undoable_paths(state: SagaState, prefix: tuple[str, ...]) -> list[str]:
    paths: list[str] = []
    for completed in reversed(state.completed):
        if completed.child is not None:
            paths.extend(_undoable_paths(completed.child, (*prefix, completed.name)))
        else:
            impl = state.saga.step(completed.name).impl
            if isinstance(impl, Step) and impl.can_undo:
                paths.append("/".join((*prefix, completed.name)))
    return paths


async def _undo_completed(
    state: SagaState,
    info: SagaRunInfo,
    opts: _Options,
    prefix: tuple[str, ...],
    undone: list[str],
    failures: list[UndoFailedError],
    undo_attempts: dict[str, int],
    statuses: dict[str, StepStatus] | None,
) -> None:
    instrument = opts.instrument
    for completed in reversed(state.completed):
        path = "/".join((*prefix, completed.name))
        spec = state.saga.step(completed.name)
        if completed.child is not None:
            child_info = completed.child.run or info
            before = len(failures)
            await _undo_completed(
                completed.child,
                child_info,
                opts,
                (*prefix, completed.name),
                undone,
                failures,
                {},
                None,
            )
            if statuses is not None:
                statuses[completed.name] = (
                    StepStatus.UNDONE if len(failures) == before else StepStatus.UNDO_FAILED
                )
            continue
        impl = spec.impl
        assert isinstance(impl, Step)
        if not impl.can_undo:
            continue
        errors: list[object] = []
        for attempt in range(1, opts.max_undo_attempts + 1):
            undo_attempts[completed.name] = attempt
            ctx = StepContext(
                saga=state.saga.name,
                step=completed.name,
                correlation_id=info.correlation_id,
                run_id=info.run_id,
                path=(*info.path, completed.name),
                attempt=attempt,
                max_retries=opts.max_undo_attempts - 1,
            )
            instrument.undo_started(info, completed.name, attempt)
            try:
                result = await impl.undo(completed.value, completed.arguments, ctx)
            except Exception as exc:  # noqa: BLE001 - collected in the rollback report
                instrument.undo_finished(info, completed.name, attempt, "error", exc)
                errors.append(exc)
                continue
            except BaseException:
                instrument.undo_finished(info, completed.name, attempt, "cancelled", None)
                if statuses is not None:
                    statuses[completed.name] = StepStatus.UNDO_FAILED
                raise
            if result is None:
                instrument.undo_finished(info, completed.name, attempt, "ok", None)
                undone.append(path)
                break
            if isinstance(result, Retry):
                instrument.undo_finished(info, completed.name, attempt, "retry", None)
                errors.append(result.reason)
                continue
            invalid = InvalidResultError(completed.name, "undo", "None or Retry(...)", result)
            instrument.undo_finished(info, completed.name, attempt, "error", invalid)
            errors.append(invalid)
        else:
            failures.append(UndoFailedError(path, opts.max_undo_attempts, errors))
        if statuses is not None:
            statuses[completed.name] = (
                StepStatus.UNDONE if undone and undone[-1] == path else StepStatus.UNDO_FAILED
            )


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
    return await _rollback_state(state, info, opts)
