"""The executor: success, failure and rollback, retries, timeouts, halting, nesting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from thunderline.sagas import (
    ArgumentPathError,
    CompensateFailedError,
    Continue,
    Halt,
    Input,
    InvalidResultError,
    MissingInputError,
    NestedSagaFailedError,
    ResumeError,
    RetriesExceededError,
    Retry,
    RollbackStatus,
    Saga,
    SagaAbortedError,
    SagaAlreadyExecutedError,
    SagaBuilder,
    SagaFailed,
    SagaHalted,
    SagaHaltedError,
    SagaPhase,
    SagaRun,
    SagaSucceeded,
    SagaTimeoutError,
    Step,
    StepContext,
    StepResult,
    StepStatus,
    StepTimeoutError,
    UndoFailedError,
    Value,
    resume_saga,
    run_saga,
    undo_saga,
)
from thunderline.testing import SagaRecorder, check_saga_invariants, check_timeout

pytestmark = pytest.mark.anyio


class Ledger:
    """Steps log here: ("run", name), ("undo", name)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    def step(self, name: str, *, fail: bool = False, result: object = None) -> Any:
        async def run(**args: object) -> object:
            self.log.append(("run", name))
            await anyio.lowlevel.checkpoint()
            if fail:
                raise ValueError(f"{name} failed")
            return result if result is not None else name

        return run

    def undo(self, name: str, *, fail_times: int = 0) -> Any:
        calls = [0]

        async def undo(value: object, **args: object) -> None:
            calls[0] += 1
            self.log.append(("undo", name))
            if calls[0] <= fail_times:
                raise OSError(f"undo {name} #{calls[0]}")

        return undo


def chain(ledger: Ledger, n: int, *, fail_at: int | None = None) -> Saga:
    b = SagaBuilder("chain")
    for i in range(n):
        name = f"s{i}"
        b.step(
            name,
            ledger.step(name, fail=i == fail_at),
            args={"prev": StepResult(f"s{i - 1}")} if i else None,
            undo=ledger.undo(name),
        )
    return b.build(returns=f"s{n - 1}")


async def test_success_returns_the_return_step_result_and_undoes_nothing() -> None:
    ledger, rec = Ledger(), SagaRecorder()
    outcome = await run_saga(chain(ledger, 3), instrument=rec)
    assert isinstance(outcome, SagaSucceeded)
    assert outcome.unwrap() == "s2"
    assert outcome.state.completed_names == ("s0", "s1", "s2")
    assert [k for k, _ in ledger.log] == ["run"] * 3
    check_saga_invariants(rec)


async def test_failure_undoes_completed_steps_newest_first() -> None:
    ledger, rec = Ledger(), SagaRecorder()
    outcome = await run_saga(chain(ledger, 4, fail_at=3), instrument=rec)
    assert isinstance(outcome, SagaFailed)
    assert outcome.step == "s3"
    assert isinstance(outcome.error, ValueError)
    assert outcome.rollback.status is RollbackStatus.ROLLED_BACK
    assert outcome.rollback.undone == ("s2", "s1", "s0")
    assert ledger.log[-3:] == [("undo", "s2"), ("undo", "s1"), ("undo", "s0")]
    assert ("undo", "s3") not in ledger.log
    with pytest.raises(ValueError, match="s3 failed"):
        outcome.unwrap()
    check_saga_invariants(rec)


async def test_missing_and_unexpected_inputs() -> None:
    saga = SagaBuilder("s", inputs=["x"]).step("a", Ledger().step("a")).build(returns="a")
    with pytest.raises(MissingInputError) as info:
        await run_saga(saga, {"y": 1})
    assert (info.value.missing, info.value.unexpected) == (("x",), ("y",))
    assert "missing inputs 'x'; unexpected inputs 'y'" in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"timeout": -1}, "timeout"),
        ({"in_flight": "ignore"}, "in_flight"),
        ({"rollback_timeout": 0}, "rollback_timeout"),
        ({"max_undo_attempts": 0}, "max_undo_attempts"),
    ],
)
async def test_bad_options_are_rejected(options: dict[str, Any], message: str) -> None:
    saga = SagaBuilder("s").step("a", Ledger().step("a")).build(returns="a")
    with pytest.raises(ValueError, match=message):
        await run_saga(saga, **options)


async def test_arguments_resolve_inputs_results_paths_and_literals() -> None:
    seen: dict[str, object] = {}

    async def first(x: int) -> dict[str, list[int]]:
        return {"items": [x, x + 1]}

    async def second(item: int, lit: str, x: int) -> str:
        seen.update(item=item, lit=lit, x=x)
        return "done"

    b = SagaBuilder("s", inputs=["x"])
    b.step("first", first, args={"x": Input("x")})
    b.step(
        "second",
        second,
        args={"item": StepResult("first", "items", 1), "lit": Value("hi"), "x": Input("x")},
    )
    outcome = await run_saga(b.build(returns="second"), {"x": 5})
    assert outcome.unwrap() == "done"
    assert seen == {"item": 6, "lit": "hi", "x": 5}


async def test_bad_sub_path_fails_the_step_with_argument_path_error() -> None:
    ledger = Ledger()
    b = SagaBuilder("s")
    b.step("a", ledger.step("a", result={"k": 1}), undo=ledger.undo("a"))
    b.step("b", ledger.step("b"), args={"v": StepResult("a", "missing")})
    outcome = await run_saga(b.build(returns="b"))
    assert isinstance(outcome, SagaFailed)
    assert isinstance(outcome.error, ArgumentPathError)
    assert (outcome.error.step, outcome.error.argument, outcome.error.failed_at) == (
        "b",
        "v",
        "missing",
    )
    assert outcome.rollback.undone == ("a",)


class Scripted(Step):
    """A class step whose run returns (or raises) the scripted values in order."""

    def __init__(self, *script: object, compensate: list[object] | None = None) -> None:
        self.script = list(script)
        self.comp = compensate
        self.attempts: list[int] = []

    async def run(self, args: Mapping[str, Any], ctx: StepContext) -> Any:
        self.attempts.append(ctx.attempt)
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def backoff(self, reason: object, args: Mapping[str, Any], ctx: StepContext) -> float:
        return 0.01


class ScriptedComp(Scripted):
    """Scripted, plus a compensate returning (or raising) its own script."""

    async def compensate(
        self, error: BaseException, args: Mapping[str, Any], ctx: StepContext
    ) -> Continue | Retry | None:
        assert self.comp is not None
        item = self.comp.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[return-value]


def one_step(step: Step, **options: Any) -> Saga:
    return SagaBuilder("one").step("x", step, **options).build(returns="x")


async def test_retry_then_success_respects_backoff() -> None:
    step, rec = Scripted(Retry("busy"), Retry("busy"), "ok"), SagaRecorder()
    outcome = await run_saga(one_step(step, max_retries=2), instrument=rec)
    assert outcome.unwrap() == "ok"
    assert step.attempts == [1, 2, 3]
    check_saga_invariants(rec)
    ends = [e.time for e in rec.events if e.kind == "step_attempt_finished"]
    starts = [e.time for e in rec.events if e.kind == "step_attempt_started"]
    assert starts[1] - ends[0] >= 0.01
    assert starts[2] - ends[1] >= 0.01


async def test_retries_are_finite_and_exhaustion_reports_the_last_reason() -> None:
    step = Scripted(*[Retry(f"r{i}") for i in range(10)])
    outcome = await run_saga(one_step(step, max_retries=2))
    assert isinstance(outcome, SagaFailed)
    assert isinstance(outcome.error, RetriesExceededError)
    assert (outcome.error.step, outcome.error.attempts, outcome.error.reason) == ("x", 3, "r2")
    assert step.attempts == [1, 2, 3]


async def test_an_error_without_compensate_fails_at_once() -> None:
    step = Scripted(KeyError("k"), "never")
    outcome = await run_saga(one_step(step))
    assert isinstance(outcome, SagaFailed)
    assert isinstance(outcome.error, KeyError)
    assert step.attempts == [1]


async def test_compensate_can_recover_retry_accept_or_fail() -> None:
    step = ScriptedComp(ValueError("a"), ValueError("b"), compensate=[Retry(), Continue("saved")])
    assert (await run_saga(one_step(step))).unwrap() == "saved"
    assert step.attempts == [1, 2]

    step = ScriptedComp(ValueError("a"), compensate=[None])
    outcome = await run_saga(one_step(step))
    assert isinstance(outcome, SagaFailed)
    assert isinstance(outcome.error, ValueError)

    cause = RuntimeError("compensate broke")
    step = ScriptedComp(ValueError("a"), compensate=[cause])
    outcome = await run_saga(one_step(step))
    assert isinstance(outcome, SagaFailed)
    assert isinstance(outcome.error, CompensateFailedError)
    assert outcome.error.cause is cause
    assert "step 'x': compensate raised" in str(outcome.error)

    step = ScriptedComp(ValueError("a"), compensate=["bogus"])
    outcome = await run_saga(one_step(step))
    assert isinstance(outcome, SagaFailed)
    assert isinstance(outcome.error, InvalidResultError)
    assert outcome.error.callback == "compensate"


async def test_run_returning_continue_is_an_invalid_result() -> None:
    outcome = await run_saga(one_step(Scripted(Continue(1))))
    assert isinstance(outcome, SagaFailed)
    assert isinstance(outcome.error, InvalidResultError)
    assert "step 'x': run must return" in str(outcome.error)


async def test_step_timeout_fails_the_attempt() -> None:
    async def slow() -> None:
        await anyio.sleep_forever()

    saga = SagaBuilder("s").step("slow", slow, timeout=0.01, max_retries=0).build(returns="slow")
    outcome = await run_saga(saga)
    assert isinstance(outcome, SagaFailed)
    assert isinstance(outcome.error, StepTimeoutError)
    assert isinstance(outcome.error, TimeoutError)
    assert outcome.error.step == "slow"


async def test_saga_timeout_cancels_running_steps_and_rolls_back() -> None:
    ledger, rec = Ledger(), SagaRecorder()

    async def slow(a: object) -> None:
        await anyio.sleep_forever()

    b = SagaBuilder("s")
    b.step("a", ledger.step("a"), undo=ledger.undo("a"))
    b.step("slow", slow, args={"a": StepResult("a")}, undo=ledger.undo("slow"))
    with anyio.fail_after(10):
        outcome = await run_saga(b.build(returns="slow"), timeout=0.05, instrument=rec)
    assert isinstance(outcome, SagaFailed)
    assert isinstance(outcome.error, SagaTimeoutError)
    assert outcome.error.running == ("slow",)
    assert outcome.step is None
    assert outcome.rollback.undone == ("a",)
    check_saga_invariants(rec)
    check_timeout(rec, 0.05, slack=5.0)


def two_branches(ledger: Ledger, release: anyio.Event, started: anyio.Event) -> Saga:
    async def slow() -> str:
        started.set()
        await release.wait()
        ledger.log.append(("run", "slow"))
        return "slow"

    async def failing() -> None:
        await started.wait()
        raise ValueError("boom")

    b = SagaBuilder("s")
    b.step("slow", slow, undo=ledger.undo("slow"))
    b.step("failing", failing)
    b.step("after", ledger.step("after"), wait_for=["slow"])
    return b.build(returns="after")


async def test_in_flight_await_policy_awaits_then_undoes_the_late_completion() -> None:
    ledger, rec = Ledger(), SagaRecorder()
    release, started = anyio.Event(), anyio.Event()
    run = SagaRun(two_branches(ledger, release, started), instrument=rec)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run.execute)
        with anyio.fail_after(10):
            while run.statistics().steps["failing"] is not StepStatus.FAILED:
                await anyio.sleep(0)
        assert run.statistics().steps["slow"] is StepStatus.RUNNING
        release.set()
    assert ledger.log == [("run", "slow"), ("undo", "slow")]
    assert run.statistics().phase is SagaPhase.FINISHED
    assert run.statistics().steps["slow"] is StepStatus.UNDONE
    assert run.statistics().steps["after"] is StepStatus.PENDING
    check_saga_invariants(rec)


async def test_in_flight_cancel_policy_cancels_and_does_not_undo() -> None:
    ledger, rec = Ledger(), SagaRecorder()
    release, started = anyio.Event(), anyio.Event()
    with anyio.fail_after(10):
        outcome = await run_saga(
            two_branches(ledger, release, started), in_flight="cancel", instrument=rec
        )
    assert isinstance(outcome, SagaFailed)
    assert ledger.log == []
    assert outcome.rollback.undone == ()
    outcomes = [e.outcome for e in rec.events if e.kind == "step_attempt_finished"]
    assert sorted(o or "" for o in outcomes) == ["cancelled", "error"]
    check_saga_invariants(rec)


async def test_undo_errors_are_retried_collected_and_rollback_continues() -> None:
    ledger, rec = Ledger(), SagaRecorder()
    b = SagaBuilder("s")
    b.step("a", ledger.step("a"), undo=ledger.undo("a"))
    b.step("b", ledger.step("b"), wait_for=["a"], undo=ledger.undo("b", fail_times=99))
    b.step("c", ledger.step("c"), wait_for=["b"], undo=ledger.undo("c", fail_times=2))
    b.step("d", ledger.step("d", fail=True), wait_for=["c"])
    outcome = await run_saga(b.build(returns="d"), instrument=rec, max_undo_attempts=4)
    assert isinstance(outcome, SagaFailed)
    report = outcome.rollback
    assert report.status is RollbackStatus.INCOMPLETE
    assert report.undone == ("c", "a")
    (failure,) = report.failures
    assert isinstance(failure, UndoFailedError)
    assert failure.step == "b"
    assert failure.attempts == 4
    assert [str(e) for e in failure.errors] == [f"undo b #{i}" for i in range(1, 5)]
    assert ledger.log.count(("undo", "c")) == 3
    check_saga_invariants(rec, max_undo_attempts=4)


async def test_outside_cancellation_still_finishes_the_rollback() -> None:
    ledger, rec = Ledger(), SagaRecorder()
    started = anyio.Event()

    async def blocked(a: object) -> None:
        started.set()
        await anyio.sleep_forever()

    b = SagaBuilder("s")
    b.step("a", ledger.step("a"), undo=ledger.undo("a"))
    b.step("blocked", blocked, args={"a": StepResult("a")})
    saga = b.build(returns="blocked")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: run_saga(saga, instrument=rec))
            await started.wait()
            tg.cancel_scope.cancel()
    assert ledger.log == [("run", "a"), ("undo", "a")]
    finished = [e for e in rec.events if e.kind == "saga_finished"]
    assert finished[0].outcome == "raised"
    check_saga_invariants(rec)


async def test_rollback_is_bounded() -> None:
    async def stuck_undo(value: object) -> None:
        await anyio.sleep_forever()

    ledger = Ledger()
    b = SagaBuilder("s")
    b.step("a", ledger.step("a"), undo=ledger.undo("a"))
    b.step("b", ledger.step("b"), wait_for=["a"], undo=stuck_undo)
    b.step("c", ledger.step("c", fail=True), wait_for=["b"])
    with anyio.fail_after(10):
        outcome = await run_saga(b.build(returns="c"), rollback_timeout=0.05)
    assert isinstance(outcome, SagaFailed)
    assert outcome.rollback.status is RollbackStatus.INCOMPLETE
    assert outcome.rollback.not_undone == ("b", "a")


class HaltOnce(Step):
    def __init__(self) -> None:
        self.calls = 0

    async def run(self, args: Mapping[str, Any], ctx: StepContext) -> Any:
        self.calls += 1
        return Halt("waiting for approval") if self.calls == 1 else "approved"


async def test_halt_then_resume_never_reruns_completed_steps() -> None:
    ledger, rec = Ledger(), SagaRecorder()
    b = SagaBuilder("s")
    b.step("a", ledger.step("a"), undo=ledger.undo("a"))
    b.step("approve", HaltOnce(), wait_for=["a"])
    b.step("b", ledger.step("b"), wait_for=["approve"])
    saga = b.build(returns="b")
    outcome = await run_saga(saga, instrument=rec, correlation_id="order-1")
    assert isinstance(outcome, SagaHalted)
    assert (outcome.step, outcome.reason) == ("approve", "waiting for approval")
    assert outcome.state.completed_names == ("a",)
    with pytest.raises(SagaHaltedError, match="halted at step 'approve'"):
        outcome.unwrap()
    resumed = await resume_saga(outcome.state, instrument=rec)
    assert resumed.unwrap() == "b"
    assert resumed.state.correlation_id == "order-1"
    assert ledger.log == [("run", "a"), ("run", "b")]
    check_saga_invariants(rec)
    with pytest.raises(ResumeError, match="cannot be resumed"):
        await resume_saga(resumed.state)


async def test_undo_saga_rolls_back_a_successful_run_later() -> None:
    ledger = Ledger()
    outcome = await run_saga(chain(ledger, 3))
    assert isinstance(outcome, SagaSucceeded)
    report = await undo_saga(outcome.state)
    assert report.status is RollbackStatus.ROLLED_BACK
    assert report.undone == ("s2", "s1", "s0")


def nested_pair(ledger: Ledger, *, inner_fails: bool = False, outer_fails: bool = False) -> Saga:
    ib = SagaBuilder("inner", inputs=["v"])
    ib.step("i1", ledger.step("i1"), args={"v": Input("v")}, undo=ledger.undo("i1"))
    ib.step("i2", ledger.step("i2", fail=inner_fails), wait_for=["i1"], undo=ledger.undo("i2"))
    inner = ib.build(returns="i2")
    ob = SagaBuilder("outer")
    ob.step("o1", ledger.step("o1"), undo=ledger.undo("o1"))
    ob.step("nest", inner, args={"v": StepResult("o1")})
    ob.step("o2", ledger.step("o2"), wait_for=["nest"], undo=ledger.undo("o2"))
    ob.step("o3", ledger.step("o3", fail=outer_fails), wait_for=["o2"])
    return ob.build(returns="o3")


async def test_completed_nested_saga_is_undone_as_a_unit_in_its_own_order() -> None:
    ledger, rec = Ledger(), SagaRecorder()
    outcome = await run_saga(nested_pair(ledger, outer_fails=True), instrument=rec)
    assert isinstance(outcome, SagaFailed)
    assert outcome.rollback.undone == ("o2", "nest/i2", "nest/i1", "o1")
    undos = [n for k, n in ledger.log if k == "undo"]
    assert undos == ["o2", "i2", "i1", "o1"]
    check_saga_invariants(rec)


async def test_failing_nested_saga_rolls_back_before_the_parent() -> None:
    ledger, rec = Ledger(), SagaRecorder()
    outcome = await run_saga(nested_pair(ledger, inner_fails=True), instrument=rec)
    assert isinstance(outcome, SagaFailed)
    assert outcome.step == "nest"
    assert isinstance(outcome.error, NestedSagaFailedError)
    assert outcome.error.failed_step == "i2"
    assert outcome.rollback.undone == ("nest/i1", "o1")
    assert [n for k, n in ledger.log if k == "undo"] == ["i1", "o1"]
    check_saga_invariants(rec)


async def test_nested_sagas_share_the_budget_without_deadlock() -> None:
    ledger, rec = Ledger(), SagaRecorder()
    ib = SagaBuilder("inner")
    for i in range(3):
        ib.step(f"i{i}", ledger.step(f"i{i}"))
    inner = ib.build(returns="i0")
    ob = SagaBuilder("outer")
    for i in range(3):
        ob.step(f"n{i}", inner)
    ob.step("last", ledger.step("last"), wait_for=["n0", "n1", "n2"])
    with anyio.fail_after(10):
        outcome = await run_saga(ob.build(returns="last"), max_concurrency=1, instrument=rec)
    assert outcome.unwrap() == "last"
    check_saga_invariants(rec, max_concurrency=1)


async def test_parent_failure_aborts_a_running_nested_saga() -> None:
    ledger, rec = Ledger(), SagaRecorder()
    gate = anyio.Event()

    async def waits() -> str:
        gate.set()
        await anyio.sleep(0.01)
        return "w"

    ib = SagaBuilder("inner")
    ib.step("w", waits, undo=ledger.undo("w"))
    ib.step("never", ledger.step("never"), wait_for=["w"])
    ob = SagaBuilder("outer")
    ob.step("nest", ib.build(returns="never"))

    async def boom() -> None:
        await gate.wait()
        raise ValueError("boom")

    ob.step("boom", boom)
    with anyio.fail_after(10):
        outcome = await run_saga(ob.build(returns="boom"), instrument=rec)
    assert isinstance(outcome, SagaFailed)
    assert outcome.step == "boom"
    assert ledger.log == [("undo", "w")]
    inner_outcomes = [o for r, o in rec.outcomes.items() if rec.runs[r].parent is not None]
    assert isinstance(inner_outcomes[0], SagaFailed)
    assert isinstance(inner_outcomes[0].error, SagaAbortedError)
    check_saga_invariants(rec)


async def test_exclusive_step_runs_alone() -> None:
    rec = SagaRecorder()
    b = SagaBuilder("s")
    for i in range(4):
        b.step(f"s{i}", Ledger().step(f"s{i}"), concurrent=i != 1)
    outcome = await run_saga(b.build(returns="s0"), instrument=rec)
    assert outcome.unwrap() == "s0"
    running: set[str] = set()
    for e in rec.events:
        if e.kind == "step_attempt_started" and e.step:
            running.add(e.step)
            assert "s1" not in running or running == {"s1"}
        elif e.kind == "step_attempt_finished" and e.step:
            running.discard(e.step)


async def test_statistics_and_single_use() -> None:
    run = SagaRun(chain(Ledger(), 2), correlation_id="c-1")
    stats = run.statistics()
    assert stats.phase is SagaPhase.CREATED
    assert stats.steps == {"s0": StepStatus.PENDING, "s1": StepStatus.PENDING}
    assert stats.correlation_id == "c-1"
    await run.execute()
    stats = run.statistics()
    assert (stats.phase, stats.completed, stats.running) == (SagaPhase.FINISHED, 2, 0)
    assert stats.attempts == {"s0": 1, "s1": 1}
    with pytest.raises(SagaAlreadyExecutedError, match="already executed") as info:
        await run.execute()
    assert info.value.correlation_id == "c-1"
