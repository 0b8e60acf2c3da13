"""Typed results of a saga run, the resumable state, and the rollback report.

::

    outcome = await run_saga(saga, {"sku": "A1"})
    match outcome:
        case SagaSucceeded(value=value):
            ...
        case SagaFailed(error=error, step=step, rollback=report):
            assert report.status is RollbackStatus.ROLLED_BACK
        case SagaHalted(state=state):
            outcome = await resume_saga(state)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from ._errors import SagaHaltedError, UndoFailedError
from ._instrument import SagaRunInfo
from ._saga import Saga

__all__ = [
    "CompletedStep",
    "RollbackReport",
    "RollbackStatus",
    "SagaFailed",
    "SagaHalted",
    "SagaOutcome",
    "SagaState",
    "SagaSucceeded",
]


@attrs.frozen(eq=False)
class CompletedStep:
    """A step that completed, as kept for rollback and resume.

    Attributes:
        name: The step name.
        value: Its result.
        arguments: The resolved arguments it ran with (passed again to ``undo``).
        child: For a nested saga step, the nested run's final state (undone as a unit).
    """

    name: str
    value: Any
    arguments: Mapping[str, Any]
    child: SagaState | None = None


@attrs.frozen(eq=False)
class SagaState:
    """The run state of one saga: what completed, in which order. Immutable snapshot.

    A halted run's state can be passed to :func:`resume_saga`; completed steps
    are never run again.

    Attributes:
        saga: The definition.
        inputs: The run's inputs.
        correlation_id: Stable across resumes.
        completed: Completed steps in completion order.
        halted_children: For nested saga steps that halted, their own state.
        run: The execution that produced this state (used to report undo of a
            nested unit under the run that completed it).
        resumable: True only for the state of a :class:`SagaHalted` result.
    """

    saga: Saga = attrs.field(repr=lambda s: repr(s.name))
    inputs: Mapping[str, Any]
    correlation_id: str
    completed: tuple[CompletedStep, ...] = ()
    halted_children: Mapping[str, SagaState] = attrs.field(factory=dict)
    run: SagaRunInfo | None = attrs.field(default=None, repr=False)
    resumable: bool = False

    @property
    def completed_names(self) -> tuple[str, ...]:
        """Names of the completed steps, in completion order."""
        return tuple(c.name for c in self.completed)

    @property
    def results(self) -> dict[str, Any]:
        """Completed step name to result."""
        return {c.name: c.value for c in self.completed}


class RollbackStatus(enum.Enum):
    """Whether a rollback undid everything it had to."""

    ROLLED_BACK = "rolled_back"
    """Every completed step with ``undo`` was undone (or there was nothing to undo)."""
    INCOMPLETE = "incomplete"
    """At least one undo failed for good or was never run (rollback bound hit)."""


@attrs.frozen
class RollbackReport:
    """What a rollback did.

    Attributes:
        status: :class:`RollbackStatus`.
        undone: Paths (``"step"`` or ``"nested/step"``) of the steps undone, in order.
        failures: One :class:`UndoFailedError` per step whose undo gave up, with
            every error of every attempt attached.
        not_undone: Paths of steps that needed undo but were never tried
            because the rollback's time bound ran out.
    """

    status: RollbackStatus
    undone: tuple[str, ...] = ()
    failures: tuple[UndoFailedError, ...] = ()
    not_undone: tuple[str, ...] = ()


@attrs.frozen(eq=False)
class SagaSucceeded:
    """Every step needed completed; ``value`` is the return step's result.

    Attributes:
        value: The saga's result.
        state: The final state (e.g. to roll the whole run back with :func:`undo_saga`).
    """

    value: Any
    state: SagaState

    def unwrap(self) -> Any:
        """Return :attr:`value`."""
        return self.value


@attrs.frozen(eq=False)
class SagaFailed:
    """A step failed for good (or the saga timed out) and the saga rolled back.

    Attributes:
        error: Why the saga failed.
        step: The failing step's name, or ``None`` for a saga-level timeout.
        rollback: What the rollback did.
        state: The state when rollback began.
    """

    error: BaseException
    step: str | None
    rollback: RollbackReport
    state: SagaState

    def unwrap(self) -> Any:
        """Raise :attr:`error`."""
        raise self.error


@attrs.frozen(eq=False)
class SagaHalted:
    """A step returned :class:`Halt`; pass :attr:`state` to :func:`resume_saga` to continue.

    Attributes:
        reason: The ``Halt`` reason.
        step: The halting step (for a nested halt, the parent's step).
        state: The resumable state.
    """

    reason: object
    step: str
    state: SagaState

    def unwrap(self) -> Any:
        """Raise :class:`~thunderline.sagas.SagaHaltedError` (a halted run has no value)."""
        raise SagaHaltedError(self.state.saga.name, self.step, self.reason)


SagaOutcome = SagaSucceeded | SagaFailed | SagaHalted
