"""Invariant checkers for saga runs recorded by a :class:`SagaRecorder`.

Each checker raises :class:`InvariantViolation` naming the invariant (S1..S20 of
``docs/guarantees.md``), the saga, the run and the step at fault::

    recorder = SagaRecorder()
    await run_saga(saga, inputs, instrument=recorder, max_concurrency=4)
    check_saga_invariants(recorder, max_concurrency=4)

Runs are grouped in *lineages*: a halted run and the runs resuming it
(:attr:`SagaRunInfo.resumed_from`) form one lineage; rollback and
resume invariants hold per lineage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from thunderline.runtime import ThunderlineError
from thunderline.sagas import (
    Saga,
    SagaFailed,
    SagaHalted,
    SagaRunInfo,
    SagaSucceeded,
    SagaTimeoutError,
    Step,
)

from ._recorder import RecordedEvent, SagaRecorder

__all__ = [
    "InvariantViolation",
    "check_attempt_bounds",
    "check_backoff",
    "check_concurrency",
    "check_dependencies",
    "check_nested",
    "check_no_forward_after_failure",
    "check_nothing_after_finish",
    "check_resume",
    "check_rollback",
    "check_saga_invariants",
    "check_timeout",
    "check_undo_attempts",
]

_FORWARD = frozenset(
    {
        "step_attempt_started",
        "step_attempt_finished",
        "step_completed",
        "compensate_started",
        "compensate_finished",
    }
)


class InvariantViolation(ThunderlineError, AssertionError):
    """A recorded run broke a saga invariant.

    Attributes:
        invariant: The invariant's id (``"S2"``...) and short name.
        detail: What was observed, naming the saga, run and step.
    """

    def __init__(self, invariant: str, detail: str) -> None:
        self.invariant = invariant
        self.detail = detail
        super().__init__(f"{invariant} violated: {detail}")


def _where(run: SagaRunInfo, step: str | None = None) -> str:
    path = "/".join(run.path) or "<top>"
    where = f"saga {run.saga.name!r} (run {run.run_id}, path {path})"
    return f"{where} step {step!r}" if step is not None else where


def _lineages(recorder: SagaRecorder) -> list[list[SagaRunInfo]]:
    """Chains of runs linked by ``resumed_from``, in start order."""
    heads: dict[int, list[SagaRunInfo]] = {}
    of_run: dict[int, list[SagaRunInfo]] = {}
    for run in recorder.runs.values():
        if run.resumed_from is not None and run.resumed_from in of_run:
            chain = of_run[run.resumed_from]
            chain.append(run)
        else:
            chain = [run]
            heads[run.run_id] = chain
        of_run[run.run_id] = chain
    return list(heads.values())


def _is_leaf_undoable(saga: Saga, step: str) -> bool:
    impl = saga.step(step).impl
    return isinstance(impl, Step) and impl.can_undo


def _is_nested(saga: Saga, step: str) -> bool:
    return isinstance(saga.step(step).impl, Saga)


def _ancestors(saga: Saga, step: str) -> set[str]:
    seen: set[str] = set()
    todo = list(saga.step(step).dependencies)
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(saga.step(dep).dependencies)
    return seen


class _Index:
    """Precomputed views of a recording used by several checkers."""

    def __init__(self, recorder: SagaRecorder) -> None:
        self.recorder = recorder
        self.lineages = _lineages(recorder)
        self.lineage_of: dict[int, list[SagaRunInfo]] = {}
        for lineage in self.lineages:
            for run in lineage:
                self.lineage_of[run.run_id] = lineage
        self.by_run: dict[int, list[RecordedEvent]] = defaultdict(list)
        for event in recorder.events:
            self.by_run[event.run.run_id].append(event)

    def events(self, lineage: Iterable[SagaRunInfo]) -> list[RecordedEvent]:
        out: list[RecordedEvent] = []
        for run in lineage:
            out.extend(self.by_run[run.run_id])
        out.sort(key=lambda e: e.seq)
        return out

    def final(self, lineage: list[SagaRunInfo]) -> object:
        return self.recorder.outcomes.get(lineage[-1].run_id)

    def must_roll_back(self, lineage: list[SagaRunInfo]) -> bool:
        final = self.final(lineage)
        if isinstance(final, SagaFailed | BaseException):
            return True
        first = lineage[0]
        if isinstance(final, SagaSucceeded) and first.parent is not None:
            parent = self.lineage_of.get(first.parent.run_id)
            return parent is not None and self.must_roll_back(parent)
        return False

    def incomplete(self, lineage: list[SagaRunInfo]) -> bool:
        """Whether this lineage's rollback (or an enclosing one) was reported incomplete."""
        if any(e.kind == "rollback_incomplete" for e in self.events(lineage)):
            return True
        first = lineage[0]
        if first.parent is not None:
            parent = self.lineage_of.get(first.parent.run_id)
            return parent is not None and self.incomplete(parent)
        return False


def check_rollback(recorder: SagaRecorder) -> None:
    """S1, S2, S3, S4, S7: rollback completeness and order.

    * S1: when a run fails (or is cancelled), every completed step with ``undo``
      is undone exactly once (at most once if the rollback was reported
      incomplete); a completed nested saga is checked the same way when its
      parent rolls back.
    * S2/S3: steps are first undone in reverse completion order, and a step's
      undo finishes before the undo of anything it depends on starts.
    * S4: no step that did not complete is undone.
    * S7: a run that succeeded called no undo before it finished.

    Raises:
        InvariantViolation: naming the invariant, saga, run and step.
    """
    index = _Index(recorder)
    for lineage in index.lineages:
        saga = lineage[0].saga
        events = index.events(lineage)
        completed = [e.step for e in events if e.kind == "step_completed" and e.step]
        completed_set = set(completed)
        undo_ok: dict[str, int] = defaultdict(int)
        first_undo: dict[str, RecordedEvent] = {}
        last_undo_end: dict[str, RecordedEvent] = {}
        for e in events:
            if e.kind == "undo_started" and e.step is not None:
                if e.step not in completed_set:
                    raise InvariantViolation(
                        "S4 (only completed steps are undone)",
                        f"{_where(e.run, e.step)} was undone but never completed "
                        f"(completed: {completed})",
                    )
                first_undo.setdefault(e.step, e)
            elif e.kind == "undo_finished" and e.step is not None:
                last_undo_end[e.step] = e
                if e.outcome == "ok":
                    undo_ok[e.step] += 1
                    if undo_ok[e.step] > 1:
                        raise InvariantViolation(
                            "S1 (each completed step undone exactly once)",
                            f"{_where(e.run, e.step)} was undone successfully twice",
                        )
        final = index.final(lineage)
        if isinstance(final, SagaSucceeded):
            finished = next(
                (e for e in events if e.kind == "saga_finished" and e.run is lineage[-1]), None
            )
            early = [e for e in first_undo.values() if finished and e.seq < finished.seq]
            if early:
                raise InvariantViolation(
                    "S7 (success calls no undo)",
                    f"{_where(early[0].run, early[0].step)} was undone during a successful run",
                )
        if not index.must_roll_back(lineage):
            if isinstance(final, SagaHalted) and first_undo:
                step = next(iter(first_undo))
                raise InvariantViolation(
                    "S16 (halting rolls nothing back)",
                    f"{_where(lineage[-1], step)} was undone although the run halted",
                )
            continue
        undoable = [s for s in completed if _is_leaf_undoable(saga, s)]
        if not index.incomplete(lineage):
            missing = [s for s in undoable if undo_ok[s] != 1]
            if missing:
                raise InvariantViolation(
                    "S1 (each completed step undone exactly once)",
                    f"{_where(lineage[-1])}: completed steps {missing} were not undone "
                    f"(completed in order: {completed})",
                )
        expected = [s for s in reversed(undoable) if s in first_undo]
        actual = sorted(first_undo, key=lambda s: first_undo[s].seq)
        if actual != expected:
            raise InvariantViolation(
                "S2 (undo in reverse completion order)",
                f"{_where(lineage[-1])}: completion order {completed}, undo order {actual}, "
                f"expected {expected}",
            )
        for later in first_undo:
            for dep in _ancestors(saga, later):
                if dep in first_undo and last_undo_end[later].seq > first_undo[dep].seq:
                    raise InvariantViolation(
                        "S3 (dependents undone before their dependencies)",
                        f"{_where(lineage[-1], dep)} undo started before the undo of "
                        f"its dependent {later!r} finished",
                    )


def check_dependencies(recorder: SagaRecorder) -> None:
    """S13: no attempt of a step starts before all its dependencies completed.

    Raises:
        InvariantViolation: naming the step and the missing dependencies.
    """
    index = _Index(recorder)
    for lineage in index.lineages:
        done: set[str] = set(lineage[0].resumed)
        for e in index.events(lineage):
            if e.kind == "step_completed" and e.step:
                done.add(e.step)
            elif e.kind == "step_attempt_started" and e.step:
                missing = [d for d in e.run.saga.step(e.step).dependencies if d not in done]
                if missing:
                    raise InvariantViolation(
                        "S13 (no step before its dependencies)",
                        f"{_where(e.run, e.step)} attempt {e.attempt} started before "
                        f"{missing} completed",
                    )


def check_no_forward_after_failure(recorder: SagaRecorder) -> None:
    """S5: once a run detected a failure, no new attempt of its steps starts.

    Raises:
        InvariantViolation: naming the step that started late.
    """
    for run_id in recorder.runs:
        failed_at: RecordedEvent | None = None
        for e in recorder.of_run(run_id):
            if e.kind == "failure_detected" and failed_at is None:
                failed_at = e
            elif e.kind == "step_attempt_started" and failed_at is not None:
                raise InvariantViolation(
                    "S5 (no forward step after failure)",
                    f"{_where(e.run, e.step)} attempt {e.attempt} started after the failure "
                    f"of step {failed_at.step!r}",
                )


def check_nothing_after_finish(recorder: SagaRecorder) -> None:
    """S6: no forward activity of a run is recorded after the run reported its result.

    Raises:
        InvariantViolation: naming the late step.
    """
    for run_id in recorder.runs:
        finished = False
        for e in recorder.of_run(run_id):
            if e.kind == "saga_finished":
                finished = True
            elif finished and e.kind in _FORWARD:
                raise InvariantViolation(
                    "S6 (nothing completes after the result)",
                    f"{_where(e.run, e.step)}: {e.kind} after the run finished",
                )


def check_attempt_bounds(recorder: SagaRecorder) -> None:
    """S9: each step runs at most ``1 + max_retries`` attempts per run.

    Raises:
        InvariantViolation: naming the step and its attempt count.
    """
    for run_id, run in recorder.runs.items():
        counts: dict[str, int] = defaultdict(int)
        for e in recorder.of_run(run_id):
            if e.kind == "step_attempt_started" and e.step:
                counts[e.step] += 1
                bound = 1 + run.saga.step(e.step).max_retries
                if counts[e.step] > bound:
                    raise InvariantViolation(
                        "S9 (at most 1 + max_retries attempts)",
                        f"{_where(run, e.step)} started {counts[e.step]} attempts; bound {bound}",
                    )


def check_backoff(recorder: SagaRecorder, *, tolerance: float = 1e-9) -> None:
    """S10: the next attempt starts at least the scheduled backoff after the previous ended.

    Raises:
        InvariantViolation: naming the step, the delay asked and the delay seen.
    """
    for run_id in recorder.runs:
        ended: dict[tuple[str, int], float] = {}
        scheduled: dict[tuple[str, int], float] = {}
        for e in recorder.of_run(run_id):
            if not e.step or e.attempt is None:
                continue
            if e.kind == "step_attempt_finished":
                ended[(e.step, e.attempt)] = e.time
            elif e.kind == "retry_scheduled":
                delay = e.attributes.get("delay")
                scheduled[(e.step, e.attempt)] = float(delay) if isinstance(delay, float) else 0.0
            elif e.kind == "step_attempt_started" and e.attempt > 1:
                key = (e.step, e.attempt - 1)
                if key in scheduled and key in ended:
                    waited = e.time - ended[key]
                    if waited + tolerance < scheduled[key]:
                        raise InvariantViolation(
                            "S10 (backoff respected)",
                            f"{_where(e.run, e.step)} attempt {e.attempt} started {waited:.6f}s "
                            f"after attempt {e.attempt - 1}; backoff asked {scheduled[key]}s",
                        )


def check_undo_attempts(recorder: SagaRecorder, *, max_undo_attempts: int = 5) -> None:
    """S11: each step's undo is called at most ``max_undo_attempts`` times, numbered 1, 2, ...

    Raises:
        InvariantViolation: naming the step.
    """
    for run_id in recorder.runs:
        counts: dict[str, int] = defaultdict(int)
        for e in recorder.of_run(run_id):
            if e.kind == "undo_started" and e.step:
                counts[e.step] += 1
                if e.attempt != counts[e.step] or counts[e.step] > max_undo_attempts:
                    raise InvariantViolation(
                        "S11 (undo retries bounded)",
                        f"{_where(e.run, e.step)} undo attempt #{counts[e.step]} "
                        f"(numbered {e.attempt}); bound {max_undo_attempts}",
                    )


def check_concurrency(recorder: SagaRecorder, max_concurrency: int) -> None:
    """S14: at no point do more than ``max_concurrency`` step attempts run at once.

    Counts attempts of every recorded run (so runs sharing one limiter are
    checked together); nested saga steps hold no slot and are not counted.

    Raises:
        InvariantViolation: naming the steps running at the peak.
    """
    running: dict[tuple[int, str], RecordedEvent] = {}
    for e in recorder.events:
        if not e.step or e.kind not in ("step_attempt_started", "step_attempt_finished"):
            continue
        if _is_nested(e.run.saga, e.step):
            continue
        key = (e.run.run_id, e.step)
        if e.kind == "step_attempt_started":
            running[key] = e
            if len(running) > max_concurrency:
                names = sorted("/".join((*r.run.path, r.step or "")) for r in running.values())
                raise InvariantViolation(
                    "S14 (concurrency bound)",
                    f"{len(running)} attempts running at once, bound {max_concurrency}: {names}",
                )
        else:
            running.pop(key, None)


def check_resume(recorder: SagaRecorder) -> None:
    """S16: across a halted run and its resumptions, no completed step runs again.

    Each step completes at most once per lineage, no attempt of a step starts
    after it completed, and a resumed run starts from exactly the steps the
    earlier runs completed.

    Raises:
        InvariantViolation: naming the re-run step.
    """
    index = _Index(recorder)
    for lineage in index.lineages:
        done: set[str] = set()
        previous: SagaRunInfo | None = None
        for run in lineage:
            if previous is not None and run.resumed != frozenset(done):
                raise InvariantViolation(
                    "S16 (resume starts from the halted state)",
                    f"{_where(run)} resumed with {sorted(run.resumed)} but earlier runs "
                    f"completed {sorted(done)}",
                )
            for e in index.by_run[run.run_id]:
                if e.kind in ("step_attempt_started", "step_completed") and e.step in done:
                    raise InvariantViolation(
                        "S16 (completed steps never re-run)",
                        f"{_where(e.run, e.step)}: {e.kind} after the step already completed",
                    )
                if e.kind == "step_completed" and e.step:
                    done.add(e.step)
            previous = run


def check_nested(recorder: SagaRecorder) -> None:
    """S20: nested sagas roll back as units, before the parent goes on.

    * A failed nested run finished (its own rollback included) before its
      parent's rollback started.
    * A completed nested run undone by its parent is undone in one contiguous
      block (no other undo of the parent interleaves), in its own reverse
      completion order (the latter via :func:`check_rollback`).

    Raises:
        InvariantViolation: naming the nested saga and the parent step.
    """
    index = _Index(recorder)
    undo_events = [e for e in recorder.events if e.kind in ("undo_started", "undo_finished")]

    def within(run: SagaRunInfo, ancestor_ids: set[int]) -> bool:
        node: SagaRunInfo | None = run
        while node is not None:
            if node.run_id in ancestor_ids:
                return True
            node = node.parent
        return False

    for lineage in index.lineages:
        first = lineage[0]
        if first.parent is None:
            continue
        parent_lineage = index.lineage_of.get(first.parent.run_id, [first.parent])
        events = index.events(lineage)
        finished = [e for e in events if e.kind == "saga_finished"]
        final = index.final(lineage)
        if isinstance(final, SagaFailed) and finished:
            for e in index.events(parent_lineage):
                if e.kind == "rollback_started" and e.seq < finished[-1].seq:
                    raise InvariantViolation(
                        "S20 (nested saga rolls back before its parent)",
                        f"{_where(first)}: parent rollback started before the nested run "
                        f"finished its own rollback",
                    )
        ids = {r.run_id for r in lineage}
        own = [e for e in undo_events if within(e.run, ids)]
        if own:
            lo, hi = own[0].seq, own[-1].seq
            for e in undo_events:
                if lo < e.seq < hi and not within(e.run, ids):
                    raise InvariantViolation(
                        "S20 (nested saga undone as a unit)",
                        f"{_where(first)}: undo of {_where(e.run, e.step)} interleaved with "
                        f"the nested saga's undo",
                    )


def check_timeout(recorder: SagaRecorder, timeout: float, *, slack: float) -> None:
    """S19: every top-level run's forward phase ended within ``timeout + slack``.

    The forward phase ends when the rollback starts or the run finishes. A run
    reported as timed out must also have taken at least ``timeout``.

    Raises:
        InvariantViolation: naming the run and its duration.
    """
    for run_id, run in recorder.runs.items():
        if run.parent is not None:
            continue
        events = recorder.of_run(run_id)
        start = next(e.time for e in events if e.kind == "saga_started")
        end_event = next(
            (e for e in events if e.kind in ("rollback_started", "saga_finished")), None
        )
        if end_event is None:
            raise InvariantViolation("S19 (timeouts end the run)", f"{_where(run)} never ended")
        took = end_event.time - start
        if took > timeout + slack:
            raise InvariantViolation(
                "S19 (timeouts end the run)",
                f"{_where(run)} forward phase took {took:.3f}s; timeout {timeout}s + {slack}s",
            )
        outcome = recorder.outcomes.get(run_id)
        if (
            isinstance(outcome, SagaFailed)
            and isinstance(outcome.error, SagaTimeoutError)
            and took < timeout
        ):
            raise InvariantViolation(
                "S19 (timeouts end the run)",
                f"{_where(run)} reported a timeout after only {took:.3f}s of {timeout}s",
            )


def check_saga_invariants(
    recorder: SagaRecorder,
    *,
    max_concurrency: int | None = None,
    max_undo_attempts: int = 5,
) -> None:
    """Run every checker that needs no extra knowledge (S1-S7, S9-S11, S13, S14, S16, S20).

    Args:
        recorder: The recording.
        max_concurrency: If given, also check S14 against it.
        max_undo_attempts: The bound the runs used.

    Raises:
        InvariantViolation: from the first checker that fails.
    """
    check_dependencies(recorder)
    check_no_forward_after_failure(recorder)
    check_nothing_after_finish(recorder)
    check_attempt_bounds(recorder)
    check_backoff(recorder)
    check_undo_attempts(recorder, max_undo_attempts=max_undo_attempts)
    check_rollback(recorder)
    check_resume(recorder)
    check_nested(recorder)
    if max_concurrency is not None:
        check_concurrency(recorder, max_concurrency)
