"""Hypothesis properties over generated sagas, checked with thunderline.testing (S1-S16, S20)."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thunderline.sagas import (
    RollbackStatus,
    SagaBuilder,
    SagaFailed,
    SagaHalted,
    SagaRunInfo,
    SagaSucceeded,
    Value,
    resume_saga,
    run_saga,
)
from thunderline.testing import (
    InvariantViolation,
    RecordedEvent,
    SagaPlan,
    SagaRecorder,
    SagaWorld,
    build_saga,
    check_attempt_bounds,
    check_concurrency,
    check_dependencies,
    check_no_forward_after_failure,
    check_resume,
    check_rollback,
    check_saga_invariants,
    saga_plans,
)

pytestmark = pytest.mark.anyio

PROPERTY = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(plan=saga_plans(max_undo_attempts=3), limit=st.sampled_from([1, 2, 4]))
async def test_generated_sagas_keep_every_invariant(plan: SagaPlan, limit: int) -> None:
    world, rec = SagaWorld(), SagaRecorder()
    with anyio.fail_after(30):
        outcome = await run_saga(
            build_saga(plan, world), max_concurrency=limit, max_undo_attempts=3, instrument=rec
        )
    check_saga_invariants(rec, max_concurrency=limit, max_undo_attempts=3)
    if isinstance(outcome, SagaSucceeded):
        assert {s.name for s in plan.steps} <= world.effects
    else:
        assert isinstance(outcome, SagaFailed)
        if outcome.rollback.status is RollbackStatus.ROLLED_BACK:
            world.check_rolled_back(plan)
        else:
            assert outcome.rollback.failures


@PROPERTY
@given(plan=saga_plans(halts=True, failures=False, undo_failures=False))
async def test_halted_sagas_resume_without_rerunning(plan: SagaPlan) -> None:
    world, rec = SagaWorld(), SagaRecorder()
    with anyio.fail_after(30):
        outcome = await run_saga(build_saga(plan, world), instrument=rec)
        while isinstance(outcome, SagaHalted):
            outcome = await resume_saga(outcome.state, instrument=rec)
    assert isinstance(outcome, SagaSucceeded)
    check_saga_invariants(rec)
    check_resume(rec)
    assert all(world.attempts[s.name] == 1 + (s.halts and 1) for s in plan.steps)


@PROPERTY
@given(inner=saga_plans(max_steps=3), outer=saga_plans(max_steps=4), at=st.integers(0, 3))
async def test_nested_generated_sagas_keep_every_invariant(
    inner: SagaPlan, outer: SagaPlan, at: int
) -> None:
    world, rec = SagaWorld(), SagaRecorder()
    child = build_saga(inner, world)
    parent = build_saga(outer, SagaWorld())
    b = SagaBuilder("parent")
    for spec in parent.steps:
        b.step(spec.name, spec.impl, wait_for=spec.dependencies, max_retries=spec.max_retries)
        if spec.name == parent.steps[min(at, len(parent.steps) - 1)].name:
            b.step("nested", child, wait_for=[spec.name], args={})
    with anyio.fail_after(30):
        await run_saga(b.build(returns="nested"), max_concurrency=2, instrument=rec)
    check_saga_invariants(rec, max_concurrency=2)


# --- the checkers themselves must catch violations -----------------------------------


def fake_recording(kinds: list[tuple[str, str | None]], saga_steps: int = 2) -> SagaRecorder:
    async def noop(**kw: object) -> None:
        return None

    async def undo(value: object, **kw: object) -> None:
        return None

    b = SagaBuilder("fake")
    for i in range(saga_steps):
        b.step(f"s{i}", noop, wait_for=[f"s{i - 1}"] if i else [], undo=undo, max_retries=0)
    saga = b.build(returns=f"s{saga_steps - 1}")
    run = SagaRunInfo(saga=saga, run_id=10_000, correlation_id="fake")
    rec = SagaRecorder()
    rec.runs[run.run_id] = run
    attempts: dict[str, int] = {}
    for seq, (kind, step) in enumerate(kinds):
        attempt = None
        if step and kind in ("step_attempt_started", "undo_started"):
            attempts[kind + step] = attempts.get(kind + step, 0) + 1
        if step and kind in ("step_attempt_started", "step_attempt_finished"):
            attempt = attempts.get("step_attempt_started" + step, 1)
        if step and kind in ("undo_started", "undo_finished"):
            attempt = attempts.get("undo_started" + step, 1)
        outcome = "ok" if kind.endswith("_finished") else None
        rec.events.append(RecordedEvent(seq, float(seq), kind, run, step, attempt, outcome))
    rec.outcomes[run.run_id] = SagaFailed(
        error=ValueError("x"),
        step="s1",
        rollback=None,
        state=None,  # type: ignore[arg-type]
    )
    return rec


def test_checkers_catch_wrong_undo_order() -> None:
    rec = fake_recording(
        [
            ("step_completed", "s0"),
            ("step_completed", "s1"),
            ("undo_started", "s0"),
            ("undo_finished", "s0"),
            ("undo_started", "s1"),
            ("undo_finished", "s1"),
        ]
    )
    with pytest.raises(InvariantViolation, match="S2") as info:
        check_rollback(rec)
    assert "undo order ['s0', 's1'], expected ['s1', 's0']" in str(info.value)


def test_checkers_catch_missing_double_and_foreign_undo() -> None:
    rec = fake_recording([("step_completed", "s0"), ("step_completed", "s1")])
    with pytest.raises(InvariantViolation, match=r"S1 .*\['s0', 's1'\] were not undone"):
        check_rollback(rec)
    rec = fake_recording([("undo_started", "s0")])
    with pytest.raises(InvariantViolation, match="S4"):
        check_rollback(rec)
    rec = fake_recording(
        [("step_completed", "s0")] + [("undo_started", "s0"), ("undo_finished", "s0")] * 2,
        saga_steps=1,
    )
    with pytest.raises(InvariantViolation, match="undone successfully twice"):
        check_rollback(rec)


def test_checkers_catch_forward_violations() -> None:
    rec = fake_recording([("step_attempt_started", "s1")])
    with pytest.raises(InvariantViolation, match=r"S13 .*started before \['s0'\]"):
        check_dependencies(rec)
    rec = fake_recording([("failure_detected", "s0"), ("step_attempt_started", "s1")])
    with pytest.raises(InvariantViolation, match="S5"):
        check_no_forward_after_failure(rec)
    rec = fake_recording([("step_attempt_started", "s0"), ("step_attempt_started", "s0")])
    with pytest.raises(InvariantViolation, match=r"S9 .*2 attempts; bound 1"):
        check_attempt_bounds(rec)
    rec = fake_recording([("step_attempt_started", "s0"), ("step_attempt_started", "s1")])
    with pytest.raises(InvariantViolation, match=r"S14 .*2 attempts running at once, bound 1"):
        check_concurrency(rec, 1)
    error = InvariantViolation("S99 (x)", "detail")
    assert isinstance(error, AssertionError)
    assert (error.invariant, error.detail, str(error)) == (
        "S99 (x)",
        "detail",
        "S99 (x) violated: detail",
    )


async def test_value_arguments_reach_generated_style_steps() -> None:
    seen = []

    async def step(v: int) -> int:
        seen.append(v)
        return v

    saga = SagaBuilder("v").step("a", step, args={"v": Value(3)}).build(returns="a")
    assert (await run_saga(saga)).unwrap() == 3
    assert seen == [3]


async def test_default_instrument_is_used_and_restored() -> None:
    from thunderline.sagas import get_default_instrument, set_default_instrument

    rec = SagaRecorder()
    assert set_default_instrument(rec) is None
    try:
        saga = SagaBuilder("d").step("a", _noop).build(returns="a")
        await run_saga(saga)
    finally:
        assert set_default_instrument(None) is rec
    assert {e.kind for e in rec.events} >= {"saga_started", "step_completed", "saga_finished"}
    assert type(get_default_instrument()).__name__ == "SagaInstrument"


async def _noop() -> None:
    return None
