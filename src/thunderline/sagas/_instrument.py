"""Instrumentation hooks: how telemetry (or a test recorder) observes saga runs.

Subclass :class:`SagaInstrument` and override the hooks you need; the base
class's hooks do nothing, and a run whose instrument is the base class itself
(the default) skips the hook calls of its forward path altogether. Pass it
as ``run_saga(..., instrument=...)`` or install a process-wide default with
:func:`set_default_instrument`::

    class Printer(SagaInstrument):
        def step_attempt_finished(self, run, step, attempt, outcome, error):
            print(run.saga.name, step, attempt, outcome)

Ordering guarantees, so an implementation can keep explicit span handles per
``(run.run_id, step, attempt)`` and attach/detach context:

* Each ``*_started`` hook is followed by exactly one matching ``*_finished``
  hook, called **from the same task**, with nothing else of that task in
  between except the step's own code. ``saga_started``/``saga_finished`` enclose
  every other hook of the run, including rollback.
* A step attempt's hooks are called while it holds its concurrency slot
  (nested saga steps hold none: only their own steps do).
* Hooks must not raise or block; an exception from a hook propagates and
  crashes the run (it is a bug in the instrument).
* Nested saga runs report ``run.parent`` and ``run.parent_step``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

if TYPE_CHECKING:
    from ._result import SagaOutcome
    from ._saga import Saga

__all__ = [
    "AttemptOutcome",
    "SagaInstrument",
    "SagaRunInfo",
    "UndoOutcome",
    "get_default_instrument",
    "set_default_instrument",
]

AttemptOutcome = Literal["ok", "error", "retry", "halt", "cancelled"]
"""How one attempt of ``run`` ended: a result, an exception, a :class:`Retry`,
a :class:`Halt`, or cancellation (saga timeout, ``in_flight="cancel"``, or
outside cancellation)."""


UndoOutcome = Literal["ok", "error", "retry", "cancelled"]
"""How one undo attempt ended: done, raised, asked for :class:`Retry`, or was
cancelled because the rollback's time bound ran out."""


@attrs.frozen(eq=False)
class SagaRunInfo:
    """Identity of one execution of a saga, as passed to every hook.

    Attributes:
        saga: The definition being run.
        run_id: Unique per execution in this process (a resume is a new execution).
        correlation_id: Identifies the saga across resumes (given by the caller
            or generated).
        parent: The enclosing run when this is a nested saga.
        parent_step: The parent's step running this nested saga.
        resumed: Steps already completed (from a halted state) when this run began.
        resumed_from: ``run_id`` of the halted run this one continues, if any.
        inputs: The run's inputs (read-only; e.g. for an instrument that takes
            a trace context from them). Empty for a standalone rollback.
    """

    saga: Saga = attrs.field(repr=lambda s: repr(s.name))
    run_id: int
    correlation_id: str
    parent: SagaRunInfo | None = attrs.field(default=None, repr=False)
    parent_step: str | None = None
    resumed: frozenset[str] = frozenset()
    resumed_from: int | None = None
    inputs: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def path(self) -> tuple[str, ...]:
        """Step names from the outermost run down to this nested run (empty at top level)."""
        if self.parent is None or self.parent_step is None:
            return ()
        return (*self.parent.path, self.parent_step)


class SagaInstrument:
    """Base class of saga instruments; every hook is a no-op until overridden.

    Event names passed to :meth:`event`: ``"saga_started"``,
    ``"saga_completed"``, ``"saga_failed"``, ``"saga_halted"``,
    ``"rollback_started"``, ``"saga_rolled_back"``, ``"rollback_incomplete"``,
    ``"failure_detected"`` (attributes ``step`` and ``error``: from this moment
    no new forward attempt starts), ``"step_completed"`` (``step``),
    ``"retry_scheduled"`` (``step``, ``attempt``, ``delay``).
    """

    def saga_started(self, run: SagaRunInfo) -> None:
        """A run (top-level or nested, fresh or resumed) begins."""

    def saga_finished(
        self, run: SagaRunInfo, outcome: SagaOutcome | None, error: BaseException | None
    ) -> None:
        """The run ends with ``outcome``, or with ``error`` (cancellation or a crash)."""

    def step_attempt_started(self, run: SagaRunInfo, step: str, attempt: int) -> None:
        """Attempt number ``attempt`` (1-based) of ``run`` begins."""

    def step_attempt_finished(
        self,
        run: SagaRunInfo,
        step: str,
        attempt: int,
        outcome: AttemptOutcome,
        error: BaseException | None,
    ) -> None:
        """That attempt ended; ``error`` is set when ``outcome`` is ``"error"``."""

    def compensate_started(self, run: SagaRunInfo, step: str, attempt: int) -> None:
        """``compensate`` begins for the failure of attempt ``attempt``."""

    def compensate_finished(
        self, run: SagaRunInfo, step: str, attempt: int, error: BaseException | None
    ) -> None:
        """``compensate`` ended; ``error`` is what it raised, if anything."""

    def undo_started(self, run: SagaRunInfo, step: str, attempt: int) -> None:
        """Undo attempt ``attempt`` (1-based) of a completed step begins."""

    def undo_finished(
        self,
        run: SagaRunInfo,
        step: str,
        attempt: int,
        outcome: UndoOutcome,
        error: BaseException | None,
    ) -> None:
        """That undo attempt ended; ``error`` is set when ``outcome`` is ``"error"``."""

    def event(self, run: SagaRunInfo, name: str, attributes: Mapping[str, object]) -> None:
        """A point-in-time event (see the class docstring for names)."""


_NULL = SagaInstrument()
_default: list[SagaInstrument] = [_NULL]


def set_default_instrument(instrument: SagaInstrument | None) -> SagaInstrument | None:
    """Install the instrument used by runs that do not pass one.

    Args:
        instrument: The new default, or ``None`` for the no-op instrument.

    Returns:
        The previous default (``None`` if it was the no-op one).
    """
    previous = _default[0]
    _default[0] = instrument if instrument is not None else _NULL
    return None if previous is _NULL else previous


def get_default_instrument() -> SagaInstrument:
    """The instrument used by runs that do not pass one (a no-op by default)."""
    return _default[0]
