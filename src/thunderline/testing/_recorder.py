"""A saga instrument that records everything, for the invariant checkers.

::

    recorder = SagaRecorder()
    outcome = await run_saga(saga, inputs, instrument=recorder)
    check_saga_invariants(recorder)
"""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import attrs

from thunderline.sagas import (
    AttemptOutcome,
    SagaInstrument,
    SagaOutcome,
    SagaRunInfo,
    UndoOutcome,
)

__all__ = ["RecordedEvent", "SagaRecorder"]


@attrs.frozen(eq=False)
class RecordedEvent:
    """One observation.

    Attributes:
        seq: Position in the recording (strictly increasing).
        time: ``anyio.current_time()`` when it happened.
        kind: A hook name (``"saga_started"``, ``"saga_finished"``,
            ``"step_attempt_started"``, ``"step_attempt_finished"``,
            ``"compensate_started"``, ``"compensate_finished"``,
            ``"undo_started"``, ``"undo_finished"``) or an event name passed
            to :meth:`SagaInstrument.event` (``"step_completed"``,
            ``"failure_detected"``, ``"retry_scheduled"``, ...).
        run: The run it belongs to.
        step: The step name, if any.
        attempt: The attempt number, if any.
        outcome: For ``*_finished`` hooks: ``"ok"``, ``"error"``, ``"retry"``,
            ``"halt"`` or ``"cancelled"``; for ``saga_finished`` the outcome class
            name or ``"raised"``.
        error: The error, if any.
        attributes: Event attributes.
    """

    seq: int
    time: float
    kind: str
    run: SagaRunInfo
    step: str | None = None
    attempt: int | None = None
    outcome: str | None = None
    error: BaseException | None = None
    attributes: Mapping[str, object] = attrs.field(factory=dict)


class SagaRecorder(SagaInstrument):
    """Records every hook call of the runs it instruments (nested runs included).

    Pass it as ``instrument=`` to :func:`~thunderline.sagas.run_saga`; it can
    observe many runs. Then read :attr:`events` or call the checkers.
    """

    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []
        self.runs: dict[int, SagaRunInfo] = {}
        self.outcomes: dict[int, SagaOutcome | BaseException] = {}

    def clear(self) -> None:
        """Forget everything recorded so far."""
        self.events.clear()
        self.runs.clear()
        self.outcomes.clear()

    def _add(
        self,
        kind: str,
        run: SagaRunInfo,
        *,
        step: str | None = None,
        attempt: int | None = None,
        outcome: str | None = None,
        error: BaseException | None = None,
        attributes: Mapping[str, object] | None = None,
    ) -> None:
        self.events.append(
            RecordedEvent(
                len(self.events),
                anyio.current_time(),
                kind,
                run,
                step,
                attempt,
                outcome,
                error,
                dict(attributes or {}),
            )
        )

    def of_run(self, run_id: int) -> list[RecordedEvent]:
        """The events of one run, in order."""
        return [e for e in self.events if e.run.run_id == run_id]

    def saga_started(self, run: SagaRunInfo) -> None:
        """Record it."""
        self.runs[run.run_id] = run
        self._add("saga_started", run)

    def saga_finished(
        self, run: SagaRunInfo, outcome: SagaOutcome | None, error: BaseException | None
    ) -> None:
        """Record it."""
        if outcome is not None:
            self.outcomes[run.run_id] = outcome
        elif error is not None:
            self.outcomes[run.run_id] = error
        self._add(
            "saga_finished",
            run,
            outcome=type(outcome).__name__ if outcome is not None else "raised",
            error=error,
        )

    def step_attempt_started(self, run: SagaRunInfo, step: str, attempt: int) -> None:
        """Record it."""
        self._add("step_attempt_started", run, step=step, attempt=attempt)

    def step_attempt_finished(
        self,
        run: SagaRunInfo,
        step: str,
        attempt: int,
        outcome: AttemptOutcome,
        error: BaseException | None,
    ) -> None:
        """Record it."""
        self._add(
            "step_attempt_finished", run, step=step, attempt=attempt, outcome=outcome, error=error
        )

    def compensate_started(self, run: SagaRunInfo, step: str, attempt: int) -> None:
        """Record it."""
        self._add("compensate_started", run, step=step, attempt=attempt)

    def compensate_finished(
        self, run: SagaRunInfo, step: str, attempt: int, error: BaseException | None
    ) -> None:
        """Record it."""
        self._add("compensate_finished", run, step=step, attempt=attempt, error=error)

    def undo_started(self, run: SagaRunInfo, step: str, attempt: int) -> None:
        """Record it."""
        self._add("undo_started", run, step=step, attempt=attempt)

    def undo_finished(
        self,
        run: SagaRunInfo,
        step: str,
        attempt: int,
        outcome: UndoOutcome,
        error: BaseException | None,
    ) -> None:
        """Record it."""
        self._add("undo_finished", run, step=step, attempt=attempt, outcome=outcome, error=error)

    def event(self, run: SagaRunInfo, name: str, attributes: Mapping[str, object]) -> None:
        """Record it (``step`` and ``attempt`` attributes are lifted into the record)."""
        step = attributes.get("step")
        attempt = attributes.get("attempt")
        self._add(
            name,
            run,
            step=step if isinstance(step, str) else None,
            attempt=attempt if isinstance(attempt, int) else None,
            attributes=dict(attributes),
        )
