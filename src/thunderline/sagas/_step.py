"""The step contract: what ``run``, ``compensate``, ``undo`` and ``backoff`` may return.

A step is a subclass of :class:`Step` (or plain async functions wrapped by
:func:`step_from_functions`). The executor calls its callbacks like this::

    class Reserve(Step):
        async def run(self, args, ctx):
            return await stock.reserve(args["sku"])        # the step's result

        async def undo(self, value, args, ctx):
            await stock.release(value)                      # roll back that result

Vocabulary (as in Reactor): **compensate** reacts to *this step's own* failure;
**undo** rolls back *this step's earlier success* when the saga fails later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

__all__ = [
    "Continue",
    "FunctionStep",
    "Halt",
    "Retry",
    "Step",
    "StepContext",
]


@attrs.frozen
class Retry:
    """Ask the executor to run the step again.

    Returned from :meth:`Step.run`, :meth:`Step.compensate` or :meth:`Step.undo`.
    A forward retry counts against the step's ``max_retries`` and waits at least
    :meth:`Step.backoff` seconds; an undo retry counts against the saga's undo
    attempt bound.

    Attributes:
        reason: Why; reported when retries run out.
    """

    reason: object = None


@attrs.frozen
class Halt:
    """Returned from :meth:`Step.run`: pause the whole saga so it can be resumed later.

    The halting step is not completed; it runs again when the saga is resumed.

    Attributes:
        reason: Why the saga halted; reported in :class:`SagaHalted`.
    """

    reason: object = None


@attrs.frozen
class Continue:
    """Returned from :meth:`Step.compensate`: recover, using ``value`` as the step's result.

    Attributes:
        value: The step's result from now on.
    """

    value: object


@attrs.frozen
class StepContext:
    """What a step callback knows about the run it is part of.

    Attributes:
        saga: Name of the saga the step belongs to.
        step: Name of the step.
        correlation_id: The run's correlation id (stable across resumes).
        run_id: Identifier of this execution (changes on resume).
        path: Step names from the outermost saga down to this step.
        attempt: 1 for the first attempt of ``run``, 2 for the first retry, ...
            In ``undo``, the undo attempt number.
        max_retries: The step's retry bound.
        operation: ``"run"`` (in ``run``, ``compensate`` and ``backoff``) or
            ``"undo"``.
    """

    saga: str
    step: str
    correlation_id: str
    run_id: int
    path: tuple[str, ...]
    attempt: int
    max_retries: int
    operation: str = "run"

    @property
    def idempotency_key(self) -> str:
        """A key naming this step's effect in this saga, stable across attempts and crashes.

        ``"<correlation id>:<path>"`` for ``run`` (the same for every attempt,
        and for the attempts a recovery re-runs after a crash), with ``":undo"``
        appended for ``undo``. A step with an external effect passes it to the
        system it changes (or records it next to the effect) so that running
        the step twice has the effect once: forward steps run at least once
        when a crash interrupts them, and so does an undo interrupted by a crash.
        """
        # A nested run's correlation id is "<root>/<its parent steps>": strip them.
        root = self.correlation_id
        if len(self.path) > 1:
            root = root[: len(root) - len("/".join(self.path[:-1])) - 1]
        key = f"{root}:{'/'.join(self.path)}"
        return key if self.operation == "run" else f"{key}:{self.operation}"

    @property
    def retries_remaining(self) -> int:
        """How many retries are still allowed after this attempt."""
        return max(0, self.max_retries - (self.attempt - 1))


class Step:
    """Base class of saga steps; override :meth:`run` and any optional callback.

    Contract (the executor enforces it; anything else is an
    :class:`~thunderline.sagas.InvalidResultError` failure of the step):

    * :meth:`run` (required) is called when every dependency has completed.
      It returns the step's **result** (any value except the markers below),
      raises an exception (a **failure**), returns :class:`Retry` (try again),
      or returns :class:`Halt` (pause the saga; resumable).
    * :meth:`compensate` (optional) is called when *this* step's ``run`` failed
      (raised, timed out, or returned a value the contract does not allow). It
      returns :class:`Continue` ``(value)`` to recover
      with ``value`` as result, ``None`` to accept the failure (the saga rolls
      back), or :class:`Retry` to run again (counts against ``max_retries``). If
      it raises, the saga fails with
      :class:`~thunderline.sagas.CompensateFailedError`. When retries are
      exhausted the step fails with :class:`~thunderline.sagas.RetriesExceededError`
      without calling ``compensate`` again.
    * :meth:`undo` (optional) is called during rollback for a step that
      **completed** earlier, newest completion first, at most once successfully.
      It returns ``None`` when done. Raising or returning :class:`Retry` makes
      the executor call it again, up to the run's ``max_undo_attempts`` calls in
      total (default 5); after that the error is recorded and rollback
      **continues** with the other steps (the report then says
      ``INCOMPLETE``). Undo must be idempotent.
    * :meth:`backoff` (optional) returns the **minimum** delay in seconds before
      the next attempt after a retry (default ``0``). The actual delay is at
      least that, plus scheduling latency.

    Steps that never completed (failed, cancelled mid-flight, never started)
    are never undone. Define ``undo`` for steps whose effects must be rolled
    back; steps without it are skipped during rollback.
    """

    async def run(self, args: Mapping[str, Any], ctx: StepContext) -> Any:
        """Do the step's work; see the class docstring for the allowed returns."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement run()")

    async def compensate(
        self, error: BaseException, args: Mapping[str, Any], ctx: StepContext
    ) -> Continue | Retry | None:
        """React to this step's own failure; the default accepts it."""
        return None

    async def undo(self, value: Any, args: Mapping[str, Any], ctx: StepContext) -> Retry | None:
        """Roll back this step's earlier result ``value``; only called if overridden."""
        return None

    def backoff(self, reason: object, args: Mapping[str, Any], ctx: StepContext) -> float:
        """Minimum delay in seconds before the retry after attempt ``ctx.attempt``."""
        return 0.0

    @property
    def can_undo(self) -> bool:
        """Whether this step has an ``undo`` callback."""
        return type(self).undo is not Step.undo

    @property
    def can_compensate(self) -> bool:
        """Whether this step has a ``compensate`` callback."""
        return type(self).compensate is not Step.compensate


RunFn = Callable[..., Awaitable[Any]]
UndoFn = Callable[..., Awaitable[Any]]
CompensateFn = Callable[..., Awaitable[Any]]


class FunctionStep(Step):
    """A :class:`Step` made of plain async functions.

    ``run(**args)`` does the work; ``undo(value, **args)`` rolls it back;
    ``compensate(error, **args)`` handles the step's own failure; ``backoff`` is
    a constant delay in seconds or ``fn(reason, attempt) -> float``. The return
    contracts are those of :class:`Step`.

    Args:
        run: The forward function.
        undo: Optional rollback function.
        compensate: Optional failure handler.
        backoff: Minimum delay before a retry, or a function computing it.
    """

    def __init__(
        self,
        run: RunFn,
        *,
        undo: UndoFn | None = None,
        compensate: CompensateFn | None = None,
        backoff: float | Callable[[object, int], float] = 0.0,
    ) -> None:
        self._run = run
        self._undo = undo
        self._compensate = compensate
        self._backoff = backoff

    def __repr__(self) -> str:
        return f"FunctionStep({getattr(self._run, '__qualname__', self._run)!r})"

    async def run(self, args: Mapping[str, Any], ctx: StepContext) -> Any:
        """Call the run function with the arguments as keywords."""
        return await self._run(**args)

    async def compensate(
        self, error: BaseException, args: Mapping[str, Any], ctx: StepContext
    ) -> Continue | Retry | None:
        """Call the compensate function, if any, with the error and the arguments."""
        if self._compensate is None:
            return None
        result: Continue | Retry | None = await self._compensate(error, **args)
        return result

    async def undo(self, value: Any, args: Mapping[str, Any], ctx: StepContext) -> Retry | None:
        """Call the undo function, if any, with the result and the arguments."""
        if self._undo is None:
            return None
        result: Retry | None = await self._undo(value, **args)
        return result

    def backoff(self, reason: object, args: Mapping[str, Any], ctx: StepContext) -> float:
        """The configured constant delay, or the backoff function's answer."""
        if callable(self._backoff):
            return float(self._backoff(reason, ctx.attempt))
        return float(self._backoff)

    @property
    def can_undo(self) -> bool:
        """Whether an undo function was given."""
        return self._undo is not None

    @property
    def can_compensate(self) -> bool:
        """Whether a compensate function was given."""
        return self._compensate is not None
