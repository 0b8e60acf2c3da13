"""Nested sagas under ``in_flight="cancel"`` (issue 14, item 5).

1. Once the parent detected its failure, a running child saga starts no new
   step (S5 across nesting).
2. A cancelled child's rollback is part of the parent's outcome: its undone
   steps in ``undone``, its undo failures in ``failures`` (S8, S20).
"""

from __future__ import annotations

import anyio
import pytest

from thunderline.sagas import RollbackStatus, SagaBuilder, SagaFailed, run_saga
from thunderline.testing import SagaRecorder, check_saga_invariants

pytestmark = pytest.mark.anyio


def _parent(
    log: list[str],
    child_started: anyio.Event,
    *,
    undo_fails: bool,
    second_waits: bool,
    first: bool = True,
) -> object:
    async def c1() -> str:
        log.append("run c1")
        child_started.set()
        await anyio.sleep(3600)  # cancelled by the parent's failure
        return "c1"

    async def c0() -> str:
        log.append("run c0")
        return "c0"

    async def c2() -> str:
        log.append("run c2")
        return "c2"

    async def undo(value: object) -> None:
        log.append(f"undo {value}")
        if undo_fails:
            raise OSError(f"undo {value} failed")

    child = SagaBuilder("child")
    if first:
        child.step("c0", c0, undo=undo)
    before = ["c0"] if first else []
    child.step("c1", c1, undo=undo, wait_for=before)
    # Independent of c1: ready at the same time, so it starts while c1 sleeps
    # unless the child stops in time.
    child.step("c2", c2, undo=undo, wait_for=before if not second_waits else ["c1"])
    inner = child.build(returns="c2")

    async def boom() -> None:
        await child_started.wait()
        raise ValueError("boom")

    # boom first: it waits while the child starts c1, then fails while c1
    # sleeps and c2 is about to start.
    parent = SagaBuilder("parent")
    parent.step("boom", boom)
    parent.step("nested", inner)
    return parent.build(returns="boom")


async def test_a_running_child_starts_no_step_after_the_parent_failed() -> None:
    rec = SagaRecorder()
    log: list[str] = []
    saga = _parent(log, anyio.Event(), undo_fails=False, second_waits=False, first=False)
    with anyio.fail_after(30):
        outcome = await run_saga(saga, in_flight="cancel", instrument=rec)  # type: ignore[arg-type]
    assert isinstance(outcome, SagaFailed)
    detected = [e.seq for e in rec.events if e.kind == "failure_detected" and e.run.parent is None]
    assert detected, "the parent reports failure_detected"
    first = detected[0]
    late = [e for e in rec.events if e.kind == "step_attempt_started" and e.seq > first]
    assert late == [], f"attempts started after the parent's failure_detected: {late}"
    check_saga_invariants(rec)


async def test_a_cancelled_childs_undo_failures_are_in_the_parents_outcome() -> None:
    rec = SagaRecorder()
    log: list[str] = []
    saga = _parent(log, anyio.Event(), undo_fails=True, second_waits=True)
    with anyio.fail_after(30):
        outcome = await run_saga(  # type: ignore[arg-type]
            saga, in_flight="cancel", instrument=rec, max_undo_attempts=5
        )
    assert isinstance(outcome, SagaFailed)
    assert log.count("undo c0") == 5
    report = outcome.rollback
    assert report.status is RollbackStatus.INCOMPLETE
    assert [f.step for f in report.failures] == ["nested/c0"]
    assert report.failures[0].attempts == 5


async def test_a_cancelled_childs_successful_undos_are_in_the_parents_outcome() -> None:
    rec = SagaRecorder()
    log: list[str] = []
    saga = _parent(log, anyio.Event(), undo_fails=False, second_waits=True)
    with anyio.fail_after(30):
        outcome = await run_saga(saga, in_flight="cancel", instrument=rec)  # type: ignore[arg-type]
    assert isinstance(outcome, SagaFailed)
    assert log.count("undo c0") == 1
    assert outcome.rollback.status is RollbackStatus.ROLLED_BACK
    assert outcome.rollback.undone == ("nested/c0",)
    assert outcome.rollback.failures == ()
    check_saga_invariants(rec)
