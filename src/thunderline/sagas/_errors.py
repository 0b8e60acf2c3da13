"""The saga error hierarchy.

Every class derives from :class:`SagaError` (itself a
:class:`~thunderline.runtime._errors.ThunderlineError`) and from the nearest
builtin, and builds its message from typed attributes naming the saga, step or
value at fault::

    >>> err = DuplicateStepError("checkout", "charge")
    >>> str(err)
    "saga 'checkout': duplicate step name 'charge'"
"""

from __future__ import annotations

from collections.abc import Sequence

from thunderline.runtime import ThunderlineError

__all__ = [
    "ArgumentPathError",
    "CompensateFailedError",
    "DependencyCycleError",
    "DuplicateStepError",
    "InvalidResultError",
    "InvalidStepError",
    "MissingInputError",
    "NestedSagaFailedError",
    "ResumeError",
    "RetriesExceededError",
    "SagaAbortedError",
    "SagaAlreadyExecutedError",
    "SagaDefinitionError",
    "SagaError",
    "SagaHaltedError",
    "SagaTimeoutError",
    "StepTimeoutError",
    "UndoFailedError",
    "UnknownDependencyError",
    "UnknownInputError",
    "UnknownReturnStepError",
]


class SagaError(ThunderlineError):
    """Base class of every error raised or reported by :mod:`thunderline.sagas`."""


class SagaDefinitionError(SagaError, ValueError):
    """A saga definition is invalid; raised when the :class:`Saga` is built.

    Attributes:
        saga: Name of the saga being defined.
    """

    def __init__(self, saga: str, detail: str) -> None:
        self.saga = saga
        super().__init__(f"saga {saga!r}: {detail}")


class DuplicateStepError(SagaDefinitionError):
    """Two steps of one saga have the same name.

    Attributes:
        step: The duplicated step name.
    """

    def __init__(self, saga: str, step: str) -> None:
        self.step = step
        super().__init__(saga, f"duplicate step name {step!r}")


class UnknownDependencyError(SagaDefinitionError, LookupError):
    """A step's argument (or ``wait_for``) refers to a step the saga does not have.

    Attributes:
        step: The step declaring the dependency.
        dependency: The missing step name.
        known: The step names the saga does have.
    """

    def __init__(self, saga: str, step: str, dependency: str, known: Sequence[str]) -> None:
        self.step = step
        self.dependency = dependency
        self.known = tuple(known)
        super().__init__(
            saga,
            f"step {step!r} depends on unknown step {dependency!r}; "
            f"known steps: {', '.join(map(repr, self.known)) or '(none)'}",
        )


class UnknownInputError(SagaDefinitionError, LookupError):
    """A step's argument refers to a saga input that is not declared.

    Attributes:
        step: The step declaring the argument.
        input: The undeclared input name.
        known: The declared input names.
    """

    def __init__(self, saga: str, step: str, input: str, known: Sequence[str]) -> None:
        self.step = step
        self.input = input
        self.known = tuple(known)
        super().__init__(
            saga,
            f"step {step!r} uses undeclared input {input!r}; "
            f"declared inputs: {', '.join(map(repr, self.known)) or '(none)'}",
        )


class UnknownReturnStepError(SagaDefinitionError, LookupError):
    """The step named as the saga's result does not exist.

    Attributes:
        step: The requested return step.
        known: The step names the saga does have.
    """

    def __init__(self, saga: str, step: str, known: Sequence[str]) -> None:
        self.step = step
        self.known = tuple(known)
        super().__init__(
            saga,
            f"return step {step!r} is not a step of this saga; "
            f"known steps: {', '.join(map(repr, self.known)) or '(none)'}",
        )


class DependencyCycleError(SagaDefinitionError):
    """The steps' dependencies form a cycle.

    Attributes:
        cycle: The step names along the cycle; the first name is repeated at the end.
    """

    def __init__(self, saga: str, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        super().__init__(saga, f"dependency cycle: {' -> '.join(self.cycle)}")


class InvalidStepError(SagaDefinitionError, TypeError):
    """A step's implementation or options have the wrong shape.

    Attributes:
        step: The step at fault.
        expected: What was accepted.
        received: ``repr`` of what was given.
    """

    def __init__(self, saga: str, step: str, expected: str, received: object) -> None:
        self.step = step
        self.expected = expected
        self.received = received
        super().__init__(saga, f"step {step!r}: expected {expected}, got {received!r}")


class MissingInputError(SagaError, LookupError):
    """A run was started without every declared input, or with unknown ones.

    Attributes:
        saga: Name of the saga.
        missing: Declared inputs that were not given.
        unexpected: Given inputs that are not declared.
    """

    def __init__(self, saga: str, missing: Sequence[str], unexpected: Sequence[str]) -> None:
        self.saga = saga
        self.missing = tuple(missing)
        self.unexpected = tuple(unexpected)
        parts = []
        if self.missing:
            parts.append(f"missing inputs {', '.join(map(repr, self.missing))}")
        if self.unexpected:
            parts.append(f"unexpected inputs {', '.join(map(repr, self.unexpected))}")
        super().__init__(f"saga {saga!r}: {'; '.join(parts)}")


class ResumeError(SagaError, ValueError):
    """A state cannot be resumed (it is not a halted state).

    Attributes:
        saga: Name of the saga.
        reason: Why the state cannot be resumed.
    """

    def __init__(self, saga: str, reason: str) -> None:
        self.saga = saga
        self.reason = reason
        super().__init__(f"saga {saga!r} cannot be resumed: {reason}")


class ArgumentPathError(SagaError, LookupError):
    """A sub-path into another step's result does not resolve.

    Attributes:
        step: The step whose argument failed to resolve.
        argument: The argument name.
        source: The step whose result was indexed.
        path: The full sub-path.
        failed_at: The path element that could not be resolved.
    """

    def __init__(
        self,
        step: str,
        argument: str,
        source: str,
        path: Sequence[object],
        failed_at: object,
    ) -> None:
        self.step = step
        self.argument = argument
        self.source = source
        self.path = tuple(path)
        self.failed_at = failed_at
        super().__init__(
            f"step {step!r} argument {argument!r}: result of {source!r} has no "
            f"{failed_at!r} (path {list(self.path)!r})"
        )


class InvalidResultError(SagaError, TypeError):
    """A step callback returned a value its contract does not allow.

    Attributes:
        step: The step at fault.
        callback: ``"run"``, ``"compensate"`` or ``"undo"``.
        expected: The accepted shapes.
        received: The value returned.
    """

    def __init__(self, step: str, callback: str, expected: str, received: object) -> None:
        self.step = step
        self.callback = callback
        self.expected = expected
        self.received = received
        super().__init__(f"step {step!r}: {callback} must return {expected}; got {received!r}")


class RetriesExceededError(SagaError):
    """A step asked for more attempts than its ``max_retries`` allows.

    Attributes:
        step: The step at fault.
        attempts: How many attempts ran.
        reason: The reason given by the last failed attempt (an exception or
            the value passed to :class:`Retry`).
    """

    def __init__(self, step: str, attempts: int, reason: object) -> None:
        self.step = step
        self.attempts = attempts
        self.reason = reason
        super().__init__(
            f"step {step!r} failed after {attempts} attempt(s); last reason: {reason!r}"
        )


class StepTimeoutError(SagaError, TimeoutError):
    """One attempt of a step ran longer than the step's ``timeout``.

    Attributes:
        step: The step at fault.
        timeout: The per-attempt bound in seconds.
    """

    def __init__(self, step: str, timeout: float) -> None:
        self.step = step
        self.timeout = timeout
        super().__init__(f"step {step!r} attempt exceeded its timeout of {timeout}s")


class SagaTimeoutError(SagaError, TimeoutError):
    """The forward phase of a saga run exceeded the run's ``timeout``.

    Attributes:
        saga: Name of the saga.
        timeout: The bound in seconds.
        running: Steps that were cancelled because they were still running.
    """

    def __init__(self, saga: str, timeout: float, running: Sequence[str]) -> None:
        self.saga = saga
        self.timeout = timeout
        self.running = tuple(running)
        super().__init__(
            f"saga {saga!r} exceeded its timeout of {timeout}s; "
            f"cancelled running steps: {list(self.running)!r}"
        )


class CompensateFailedError(SagaError):
    """A step's ``compensate`` raised while handling the step's own failure.

    Attributes:
        step: The step at fault.
        error: The original failure ``compensate`` was handling.
        cause: What ``compensate`` raised.
    """

    def __init__(self, step: str, error: BaseException, cause: BaseException) -> None:
        self.step = step
        self.error = error
        self.cause = cause
        super().__init__(f"step {step!r}: compensate raised {cause!r} while handling {error!r}")


class UndoFailedError(SagaError):
    """A completed step could not be undone within its allowed undo attempts.

    Attributes:
        step: Path of the step (``"outer/inner"`` for steps of nested sagas).
        attempts: How many times ``undo`` was called.
        errors: Every error raised (or retry reason returned) by those calls, in order.
    """

    def __init__(self, step: str, attempts: int, errors: Sequence[object]) -> None:
        self.step = step
        self.attempts = attempts
        self.errors = tuple(errors)
        last = self.errors[-1] if self.errors else None
        super().__init__(
            f"undo of step {step!r} failed after {attempts} attempt(s); last error: {last!r}"
        )


class NestedSagaFailedError(SagaError):
    """A nested saga used as a step failed (and rolled back its own steps).

    Attributes:
        step: The parent's step that runs the nested saga.
        saga: Name of the nested saga.
        error: The nested saga's error.
        failed_step: The nested saga's step that failed, if any.
        rollback: The nested saga's own :class:`RollbackReport`.
    """

    def __init__(
        self,
        step: str,
        saga: str,
        error: BaseException,
        failed_step: str | None,
        rollback: object = None,
    ) -> None:
        self.step = step
        self.saga = saga
        self.error = error
        self.failed_step = failed_step
        self.rollback = rollback
        super().__init__(
            f"step {step!r}: nested saga {saga!r} failed at step {failed_step!r}: {error!r}"
        )


class SagaHaltedError(SagaError):
    """Raised by :meth:`SagaHalted.unwrap`: the run halted and has no value yet.

    Attributes:
        saga: Name of the saga.
        step: The halting step.
        reason: The ``Halt`` reason.
    """

    def __init__(self, saga: str, step: str, reason: object) -> None:
        self.saga = saga
        self.step = step
        self.reason = reason
        super().__init__(f"saga {saga!r} halted at step {step!r}: {reason!r}")


class SagaAbortedError(SagaError):
    """A nested saga was stopped because its parent run failed; it rolled back its own steps.

    Attributes:
        saga: Name of the nested saga.
        parent_step: The parent's step that was running it.
    """

    def __init__(self, saga: str, parent_step: str | None) -> None:
        self.saga = saga
        self.parent_step = parent_step
        super().__init__(f"nested saga {saga!r} (step {parent_step!r}) aborted: its parent failed")


class SagaAlreadyExecutedError(SagaError, RuntimeError):
    """``execute()`` was called a second time on one saga run (a run executes once).

    Attributes:
        correlation_id: The run's correlation id.
    """

    def __init__(self, correlation_id: str) -> None:
        self.correlation_id = correlation_id
        super().__init__(f"saga run {correlation_id!r} was already executed")
