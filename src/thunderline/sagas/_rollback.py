"""Rollback: undo a state's completed steps, newest first, shielded and bounded.

Algorithm (:func:`rollback_state`)::

    in a cancel scope shielded from outside cancellation, with deadline
    now + rollback_timeout:
        for each completed step, in reverse completion order:
            nested saga step -> undo its child state the same way (a unit, in
                                the child's own reverse order)
            step without undo -> skip
            otherwise         -> call undo until one call returns None, at most
                                 max_undo_attempts calls (raising or returning
                                 Retry is a failed call); give up -> collect an
                                 UndoFailedError and go on with the next step
    steps never reached because the deadline passed -> not_undone
    status = ROLLED_BACK if nothing failed and nothing was left, else INCOMPLETE

Reverse completion order also undoes every dependent before its dependencies
(S2, S3). Each undo call is journaled before and after (when the run has a
journal), so a recovery after a crash undoes only what is not journaled as
undone (exactly once per journaled completion, S1 and S17).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from ._errors import InvalidResultError, UndoFailedError
from ._instrument import SagaInstrument, SagaRunInfo
from ._result import RollbackReport, RollbackStatus, SagaState
from ._status import StepStatus
from ._step import Retry, Step, StepContext

if TYPE_CHECKING:
    from ._journal import RunJournal

__all__ = ["merge_reports", "prefixed", "rollback_state"]


def prefixed(prefix: str, failure: UndoFailedError) -> UndoFailedError:
    """``failure`` with its step path under ``prefix`` (a nested saga step)."""
    return UndoFailedError(f"{prefix}/{failure.step}", failure.attempts, failure.errors)


def merge_reports(parts: list[tuple[str | None, RollbackReport]]) -> RollbackReport:
    """One report of several rollbacks (``prefix`` None: paths kept as they are)."""
    undone: list[str] = []
    failures: list[UndoFailedError] = []
    not_undone: list[str] = []
    for prefix, report in parts:
        if prefix is None:
            undone.extend(report.undone)
            failures.extend(report.failures)
            not_undone.extend(report.not_undone)
        else:
            undone.extend(f"{prefix}/{p}" for p in report.undone)
            failures.extend(prefixed(prefix, f) for f in report.failures)
            not_undone.extend(f"{prefix}/{p}" for p in report.not_undone)
    status = (
        RollbackStatus.ROLLED_BACK if not failures and not not_undone else RollbackStatus.INCOMPLETE
    )
    return RollbackReport(
        status=status, undone=tuple(undone), failures=tuple(failures), not_undone=tuple(not_undone)
    )


async def rollback_state(
    state: SagaState,
    info: SagaRunInfo,
    *,
    instrument: SagaInstrument,
    rollback_timeout: float,
    max_undo_attempts: int,
    journal: RunJournal | None = None,
    undo_attempts: dict[str, int] | None = None,
    statuses: dict[str, StepStatus] | None = None,
) -> RollbackReport:
    """Undo ``state``'s completed steps, newest first, shielded and bounded."""
    undone: list[str] = []
    failures: list[UndoFailedError] = []
    undoer = _Undoer(instrument, max_undo_attempts, journal, undone, failures)
    with anyio.CancelScope(shield=True, deadline=anyio.current_time() + rollback_timeout) as scope:
        await undoer.undo_state(state, info, (), undo_attempts or {}, statuses)
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


class _Undoer:
    """One rollback's bookkeeping: what was undone, what failed."""

    def __init__(
        self,
        instrument: SagaInstrument,
        max_undo_attempts: int,
        journal: RunJournal | None,
        undone: list[str],
        failures: list[UndoFailedError],
    ) -> None:
        self.instrument = instrument
        self.max_undo_attempts = max_undo_attempts
        self.journal = journal
        self.undone = undone
        self.failures = failures

    async def undo_state(
        self,
        state: SagaState,
        info: SagaRunInfo,
        prefix: tuple[str, ...],
        undo_attempts: dict[str, int],
        statuses: dict[str, StepStatus] | None,
    ) -> None:
        for completed in reversed(state.completed):
            if completed.child is not None:
                before = len(self.failures)
                child_info = completed.child.run or SagaRunInfo(
                    saga=completed.child.saga,
                    run_id=info.run_id,
                    correlation_id=completed.child.correlation_id,
                    parent=info,
                    parent_step=completed.name,
                )
                await self.undo_state(
                    completed.child, child_info, (*prefix, completed.name), {}, None
                )
                if statuses is not None:
                    statuses[completed.name] = (
                        StepStatus.UNDONE
                        if len(self.failures) == before
                        else StepStatus.UNDO_FAILED
                    )
                continue
            impl = state.saga.step(completed.name).impl
            assert isinstance(impl, Step)
            if not impl.can_undo:
                continue
            ok = False
            try:
                ok = await self._undo_step(
                    state,
                    info,
                    prefix,
                    completed.name,
                    completed.value,
                    completed.arguments,
                    impl,
                    undo_attempts,
                )
            finally:
                if statuses is not None:
                    statuses[completed.name] = StepStatus.UNDONE if ok else StepStatus.UNDO_FAILED

    async def _undo_step(
        self,
        state: SagaState,
        info: SagaRunInfo,
        prefix: tuple[str, ...],
        name: str,
        value: object,
        arguments: object,
        impl: Step,
        undo_attempts: dict[str, int],
    ) -> bool:
        """Call one step's undo until it succeeds or the attempts run out; True if undone."""
        instrument = self.instrument
        journal = self.journal
        path = "/".join((*prefix, name))
        journal_path = "/".join((*info.path, name))
        errors: list[object] = []
        for attempt in range(1, self.max_undo_attempts + 1):
            undo_attempts[name] = attempt
            ctx = StepContext(
                saga=state.saga.name,
                step=name,
                correlation_id=info.correlation_id,
                run_id=info.run_id,
                path=(*info.path, name),
                attempt=attempt,
                max_retries=self.max_undo_attempts - 1,
                operation="undo",
            )
            if journal is not None:
                journal.undo_started(journal_path, attempt)
            instrument.undo_started(info, name, attempt)
            try:
                result = await impl.undo(value, arguments, ctx)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - collected in the rollback report
                self._finished(info, name, journal_path, attempt, "error", exc)
                errors.append(exc)
                continue
            except BaseException:
                self._finished(info, name, journal_path, attempt, "cancelled", None)
                raise
            if result is None:
                self._finished(info, name, journal_path, attempt, "ok", None)
                if journal is not None:
                    await journal.sync()  # an undo journaled as done is never called again
                self.undone.append(path)
                return True
            if isinstance(result, Retry):
                self._finished(info, name, journal_path, attempt, "retry", None)
                errors.append(result.reason)
                continue
            invalid = InvalidResultError(name, "undo", "None or Retry(...)", result)
            self._finished(info, name, journal_path, attempt, "error", invalid)
            errors.append(invalid)
        self.failures.append(UndoFailedError(path, self.max_undo_attempts, errors))
        return False

    def _finished(
        self,
        info: SagaRunInfo,
        name: str,
        journal_path: str,
        attempt: int,
        outcome: str,
        error: BaseException | None,
    ) -> None:
        if self.journal is not None:
            self.journal.undo_finished(journal_path, attempt, outcome, error)
        self.instrument.undo_finished(info, name, attempt, outcome, error)  # type: ignore[arg-type]
