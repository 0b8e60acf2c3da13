"""Recovery from every crash point of the journal (Hypothesis; S1, S2, S16, S17).

A generated saga runs to its end with a journal. A crash after any number k
of journal writes leaves exactly the first k records (each write is its own
committed transaction), so each prefix is a crash point. Recovering from it:

* compensate (the policy, or a run already rolling back): every step whose
  completion stands in the prefix (completed, not yet undone) is undone exactly
  once, newest completion first; nothing else is undone and nothing runs forward;
* resume: no step standing completed in the prefix runs again, and the run
  ends as the uninterrupted one did.
"""

from __future__ import annotations

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thunderline.sagas import (
    JournalRecord,
    RollbackStatus,
    SagaFailed,
    SagaInterruptedError,
    SagaJournal,
    SagaRun,
    SagaSucceeded,
    open_journal,
)
from thunderline.sagas._recovery import recovery_state
from thunderline.testing import SagaPlan, SagaRecorder, SagaWorld, build_saga, saga_plans

pytestmark = pytest.mark.anyio

PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _copy(journal: SagaJournal, records: list[JournalRecord]) -> None:
    for r in records:
        journal._record(
            r.correlation_id, r.kind, r.path, r.attempt, r.status, r.value, r.has_value, r.detail
        )


@PROPERTY
@given(
    plan=saga_plans(halts=False, undo_failures=False, slow=False),
    policy=st.sampled_from(["compensate", "resume"]),
    data=st.data(),
)
async def test_recovery_from_any_journal_prefix(
    plan: SagaPlan, policy: str, data: st.DataObject
) -> None:
    saga = attrs.evolve(build_saga(plan, SagaWorld()), recovery=policy)
    with open_journal(":memory:") as journal:
        run = SagaRun(saga, {}, correlation_id="c")
        run._journal = journal.begin(saga, {}, "c")
        with anyio.fail_after(30):
            original = await run.execute()
        records = journal.records("c")
    k = data.draw(st.integers(0, len(records)), label="crash after k journal writes")
    prefix = records[:k]

    standing: list[str] = []  # completion order
    rolling_back = False
    for r in prefix:
        if r.kind in ("attempt_finished", "completed") and r.status == "ok":
            standing.append(r.path)
        elif r.kind == "undo_finished" and r.status == "ok":
            standing.remove(r.path)
        elif r.kind == "failure":
            rolling_back = True

    world, rec = SagaWorld(), SagaRecorder()
    world.effects = set(standing)
    again = attrs.evolve(build_saga(plan, world), recovery=policy)
    with open_journal(":memory:") as journal:
        journal.begin(again, {}, "c")
        _copy(journal, prefix)
        run_row = journal.run("c")
        assert run_row is not None
        state, compensate = recovery_state(again, run_row, journal.records("c"), journal.codec)
        assert compensate == (policy == "compensate" or rolling_back)
        recovered = SagaRun(state=state, correlation_id="c", instrument=rec)
        recovered._journal = journal.recover("c")
        if compensate:
            recovered._fail_at_start = SagaInterruptedError("c", saga.name)
        with anyio.fail_after(30):
            outcome = await recovered.execute()
        row = journal.run("c")
        assert row is not None
        assert row.outcome == {SagaSucceeded: "succeeded", SagaFailed: "failed"}[type(outcome)]

    undoable = {s.name for s in plan.steps if s.has_undo}
    undo_order = [e.step for e in rec.events if e.kind == "undo_finished" and e.outcome == "ok"]
    if compensate:
        assert isinstance(outcome, SagaFailed)
        assert isinstance(outcome.error, SagaInterruptedError)
        assert outcome.rollback.status is RollbackStatus.ROLLED_BACK
        assert undo_order == [p for p in reversed(standing) if p in undoable]
        assert not any(world.attempts.values())
        assert not (world.effects & undoable)
    else:
        assert type(outcome) is type(original)
        assert all(world.attempts.get(name, 0) == 0 for name in standing)
        if isinstance(outcome, SagaSucceeded):
            assert {s.name for s in plan.steps} <= world.effects
        else:
            assert all(world.undo_calls.get(name, 0) <= 1 for name in undoable)
