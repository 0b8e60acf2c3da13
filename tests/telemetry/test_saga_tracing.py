"""Saga runs as nested spans (T1-T4, T16) and the trace-tree checker."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

import thunderline.runtime as tl
from thunderline import telemetry, testing
from thunderline.sagas import (
    Continue,
    Halt,
    Input,
    Retry,
    RollbackStatus,
    SagaBuilder,
    SagaFailed,
    SagaHalted,
    SagaSucceeded,
    StepResult,
    await_saga,
    resume_saga,
    run_saga,
    start_saga,
    start_saga_supervisor,
)
from thunderline.testing import SagaPlan, SagaRecorder, SagaWorld, build_saga, saga_plans

pytestmark = pytest.mark.anyio

LIMIT = 20


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def one(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = named(spans, name)
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def event_names(span: ReadableSpan) -> list[str]:
    return [e.name for e in span.events]


def diamond(log: list[str] | None = None) -> Any:
    """a -> (b, c) -> d; b and c run concurrently."""

    def step(name: str) -> Any:
        async def run(**args: Any) -> str:
            await anyio.sleep(0)
            with telemetry.span(f"work {name}"):
                pass
            return name

        return run

    b = SagaBuilder("diamond")
    b.step("a", step("a"))
    b.step("b", step("b"), args={"a": StepResult("a")})
    b.step("c", step("c"), args={"a": StepResult("a")})
    b.step("d", step("d"), args={"b": StepResult("b"), "c": StepResult("c")})
    return b.build(returns="d")


async def test_successful_saga_is_one_tree_under_the_current_span(
    anyio_backend: str, exporter: InMemorySpanExporter
) -> None:
    tracer = telemetry.SagaTracer()
    with anyio.fail_after(LIMIT):
        with telemetry.span("ingress"):
            outcome = await run_saga(diamond(), correlation_id="o-1", instrument=tracer)
    assert isinstance(outcome, SagaSucceeded)
    spans = exporter.get_finished_spans()
    ingress = one(spans, "ingress")
    execution = one(spans, "saga.execution")
    # T1: one trace id for everything, including the steps' own spans.
    assert {trace_id(s) for s in spans} == {trace_id(ingress)}
    assert parent_id(execution) == span_id(ingress)
    steps = [s for s in spans if s.name.startswith("saga.step ")]
    assert sorted(s.name for s in steps) == [f"saga.step {n}" for n in "abcd"]
    for step in steps:  # T3: step spans are children of the saga span
        assert parent_id(step) == span_id(execution)
        assert step.attributes is not None
        assert step.attributes["saga.name"] == "diamond"
        assert step.attributes["saga.correlation_id"] == "o-1"
        assert step.attributes["saga.attempt"] == 1
        assert step.attributes["saga.step.outcome"] == "ok"
        # the step's span is current while it runs: its work nests under it
        work = one(spans, f"work {step.attributes['saga.step']}")
        assert parent_id(work) == span_id(step)
    assert execution.attributes is not None
    assert execution.attributes["saga.outcome"] == "succeeded"
    assert execution.status.status_code is StatusCode.UNSET
    names = event_names(execution)
    assert names[0] == "saga.started"
    assert "saga.completed" in names
    # T2: every parent is collected, except the ingress root's.
    ids = {span_id(s) for s in spans}
    assert all(parent_id(s) in ids for s in spans if s is not ingress)
    assert parent_id(ingress) is None
    testing.check_trace_tree(spans)
    assert tracer.open_spans() == 0
    assert telemetry.current_trace_id() is None  # context restored (T6)


async def test_failed_step_is_error_even_when_rollback_succeeds(
    anyio_backend: str, exporter: InMemorySpanExporter
) -> None:
    undone: list[str] = []

    async def reserve() -> str:
        return "r"

    async def release(value: str) -> None:
        with telemetry.span("release stock"):
            undone.append(value)

    async def charge(reserved: str) -> str:
        raise ValueError("card declined")

    b = SagaBuilder("checkout")
    b.step("reserve", reserve, undo=release)
    b.step("charge", charge, args={"reserved": StepResult("reserve")})
    tracer = telemetry.SagaTracer()
    with anyio.fail_after(LIMIT):
        outcome = await run_saga(b.build(returns="charge"), instrument=tracer)
    assert isinstance(outcome, SagaFailed)
    assert outcome.rollback.status is RollbackStatus.ROLLED_BACK
    assert undone == ["r"]
    spans = exporter.get_finished_spans()
    execution = one(spans, "saga.execution")
    charge_span = one(spans, "saga.step charge")
    # T16: the failed step's span is ERROR with the exception recorded.
    assert charge_span.status.status_code is StatusCode.ERROR
    exception = next(e for e in charge_span.events if e.name == "exception")
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "ValueError"
    assert exception.attributes["exception.message"] == "card declined"
    assert one(spans, "saga.step reserve").status.status_code is StatusCode.UNSET
    # ... and the saga span records the outcome.
    assert execution.status.status_code is StatusCode.ERROR
    assert execution.attributes is not None
    assert execution.attributes["saga.outcome"] == "failed"
    assert execution.attributes["saga.failed_step"] == "charge"
    assert execution.attributes["saga.rollback.status"] == "rolled_back"
    names = event_names(execution)
    for event in ("saga.started", "saga.rollback_started", "saga.rolled_back"):
        assert event in names
    assert names.index("saga.rolled_back") < names.index("saga.failed")
    # T3: undo under saga.rollback under the saga span, after the failing step ended.
    rollback = one(spans, "saga.rollback")
    undo = one(spans, "saga.undo reserve")
    assert parent_id(rollback) == span_id(execution)
    assert parent_id(undo) == span_id(rollback)
    assert undo.start_time is not None
    assert charge_span.end_time is not None
    assert undo.start_time >= charge_span.end_time
    assert parent_id(one(spans, "release stock")) == span_id(undo)
    testing.check_trace_tree(spans)
    assert tracer.open_spans() == 0


async def test_retries_are_separate_attempt_spans_and_compensation_follows_its_attempt(
    anyio_backend: str, exporter: InMemorySpanExporter
) -> None:
    calls = {"flaky": 0, "fixable": 0}

    async def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            return Retry("not yet")  # type: ignore[return-value]
        return "ok"

    async def fixable() -> str:
        calls["fixable"] += 1
        raise KeyError("missing")

    async def compensate(error: BaseException) -> Continue:
        return Continue("fixed")

    b = SagaBuilder("retrying")
    b.step("flaky", flaky, max_retries=2)
    b.step("fixable", fixable, compensate=compensate)
    b.step("end", flaky, wait_for=["flaky", "fixable"], max_retries=0)
    tracer = telemetry.SagaTracer()
    recorder = SagaRecorder()
    with anyio.fail_after(LIMIT):
        outcome = await run_saga(
            b.build(returns="end"),
            instrument=telemetry.CompositeSagaInstrument(recorder, tracer),
        )
    assert isinstance(outcome, SagaSucceeded)
    spans = exporter.get_finished_spans()
    flaky_spans = sorted(named(spans, "saga.step flaky"), key=lambda s: s.start_time or 0)
    assert [s.attributes["saga.attempt"] for s in flaky_spans if s.attributes] == [1, 2, 3]
    assert [s.attributes["saga.step.outcome"] for s in flaky_spans if s.attributes] == [
        "retry",
        "retry",
        "ok",
    ]
    execution = one(spans, "saga.execution")
    assert event_names(execution).count("saga.retry_scheduled") == 2
    failed = one(spans, "saga.step fixable")
    compensation = one(spans, "saga.compensate fixable")
    assert failed.status.status_code is StatusCode.ERROR
    assert parent_id(compensation) == span_id(execution)
    assert compensation.start_time is not None
    assert failed.end_time is not None
    assert compensation.start_time >= failed.end_time
    assert compensation.status.status_code is StatusCode.UNSET
    testing.check_trace_tree(spans, recorder=recorder)


async def test_nested_saga_runs_under_its_parent_step_and_is_undone_under_the_rollback(
    anyio_backend: str, exporter: InMemorySpanExporter
) -> None:
    async def ok() -> str:
        return "ok"

    async def undo(value: str) -> None:
        return None

    async def boom(**args: Any) -> None:
        raise RuntimeError("boom")

    inner = SagaBuilder("inner")
    inner.step("i1", ok, undo=undo)
    inner.step("i2", ok, wait_for=["i1"], undo=undo)
    outer = SagaBuilder("outer")
    outer.step("first", ok, undo=undo)
    outer.step("nested", inner.build(returns="i2"), wait_for=["first"], args={})
    outer.step("last", boom, wait_for=["nested"])
    tracer = telemetry.SagaTracer()
    recorder = SagaRecorder()
    with anyio.fail_after(LIMIT):
        outcome = await run_saga(
            outer.build(returns="last"),
            instrument=telemetry.CompositeSagaInstrument(recorder, tracer),
        )
    assert isinstance(outcome, SagaFailed)
    spans = exporter.get_finished_spans()
    executions = named(spans, "saga.execution")
    outer_run = next(s for s in executions if s.attributes and s.attributes["saga.name"] == "outer")
    inner_run = next(s for s in executions if s.attributes and s.attributes["saga.name"] == "inner")
    nested_step = one(spans, "saga.step nested")
    assert parent_id(nested_step) == span_id(outer_run)
    assert parent_id(inner_run) == span_id(nested_step)
    assert inner_run.attributes is not None
    assert inner_run.attributes["saga.path"] == "nested"
    for name in ("saga.step i1", "saga.step i2"):
        assert parent_id(one(spans, name)) == span_id(inner_run)
    # The nested unit is undone (in its own reverse order) under the outer rollback.
    rollback = one(spans, "saga.rollback")
    assert parent_id(rollback) == span_id(outer_run)
    undos = sorted(
        (s for s in spans if s.name.startswith("saga.undo ")), key=lambda s: s.start_time or 0
    )
    assert [s.name for s in undos] == ["saga.undo i2", "saga.undo i1", "saga.undo first"]
    assert all(parent_id(s) == span_id(rollback) for s in undos)
    assert {trace_id(s) for s in spans} == {trace_id(outer_run)}
    testing.check_trace_tree(spans, recorder=recorder)
    assert tracer.open_spans() == 0


async def test_concurrent_steps_and_runs_parent_correctly(
    anyio_backend: str, exporter: InMemorySpanExporter
) -> None:
    both_in = anyio.Event()
    inside: list[str] = []

    def blocking(name: str) -> Any:
        async def run() -> str:
            inside.append(name)
            if len(inside) % 2 == 0:
                both_in.set()
            await both_in.wait()
            with telemetry.span(f"work {name}"):
                await anyio.sleep(0)
            return name

        return run

    def saga(label: str) -> Any:
        b = SagaBuilder(label)
        b.step("left", blocking(f"{label}.left"))
        b.step("right", blocking(f"{label}.right"))
        b.step("join", blocking(f"{label}.join"), wait_for=["left", "right"])
        return b.build(returns="join")

    tracer = telemetry.SagaTracer()
    results: dict[str, Any] = {}

    async def traced_run(label: str) -> None:
        with telemetry.span(f"ingress {label}"):
            results[label] = await run_saga(saga(label), instrument=tracer)

    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(traced_run, "x")
            tg.start_soon(traced_run, "y")
    assert all(isinstance(r, SagaSucceeded) for r in results.values())
    spans = exporter.get_finished_spans()
    for label in ("x", "y"):
        ingress = one(spans, f"ingress {label}")
        execution = next(
            s
            for s in named(spans, "saga.execution")
            if s.attributes and s.attributes["saga.name"] == label
        )
        assert parent_id(execution) == span_id(ingress)
        mine = [s for s in spans if trace_id(s) == trace_id(ingress)]
        assert len(mine) == 1 + 1 + 3 + 3  # ingress, saga, three steps, three work spans
        for step in ("left", "right", "join"):
            step_span = next(
                s
                for s in named(spans, f"saga.step {step}")
                if s.attributes and s.attributes["saga.name"] == label
            )
            assert parent_id(step_span) == span_id(execution)
            assert parent_id(one(spans, f"work {label}.{step}")) == span_id(step_span)
    left, right = (
        next(
            s
            for s in named(spans, f"saga.step {n}")
            if s.attributes and s.attributes["saga.name"] == "x"
        )
        for n in ("left", "right")
    )
    assert left.start_time is not None
    assert right.start_time is not None
    assert left.end_time is not None
    assert right.end_time is not None
    assert left.start_time < right.end_time  # they overlapped
    assert right.start_time < left.end_time
    testing.check_trace_tree(spans)
    assert tracer.open_spans() == 0


async def test_cancelled_run_ends_every_span_once(
    anyio_backend: str, exporter: InMemorySpanExporter
) -> None:
    entered = anyio.Event()

    async def quick() -> str:
        return "q"

    async def undo(value: str) -> None:
        return None

    async def forever() -> None:
        entered.set()
        await anyio.sleep_forever()

    b = SagaBuilder("stuck")
    b.step("quick", quick, undo=undo)
    b.step("forever", forever, wait_for=["quick"])
    tracer = telemetry.SagaTracer()
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: run_saga(b.build(returns="forever"), instrument=tracer))
            await entered.wait()
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    spans = exporter.get_finished_spans()
    execution = one(spans, "saga.execution")
    assert execution.attributes is not None
    assert execution.attributes["saga.outcome"] == "cancelled"
    forever_span = one(spans, "saga.step forever")
    assert forever_span.attributes is not None
    assert forever_span.attributes["saga.step.outcome"] == "cancelled"
    assert one(spans, "saga.undo quick").end_time is not None  # the shielded rollback ran
    assert tracer.open_spans() == 0
    assert len({span_id(s) for s in spans}) == len(spans)  # each span exported once (T4)
    testing.check_trace_tree(spans)
    assert telemetry.current_trace_id() is None


async def test_in_flight_attempt_cancelled_by_a_failure_is_marked_cancelled(
    anyio_backend: str, exporter: InMemorySpanExporter
) -> None:
    entered = anyio.Event()

    async def slow() -> None:
        entered.set()
        await anyio.sleep_forever()

    async def fail() -> None:
        await entered.wait()
        raise ValueError("fails while slow is in flight")

    b = SagaBuilder("cancelling")
    b.step("slow", slow)
    b.step("fail", fail)
    b.step("end", slow, wait_for=["slow", "fail"])
    tracer = telemetry.SagaTracer()
    with anyio.fail_after(LIMIT):
        outcome = await run_saga(b.build(returns="end"), in_flight="cancel", instrument=tracer)
    assert isinstance(outcome, SagaFailed)
    spans = exporter.get_finished_spans()
    step = one(spans, "saga.step slow")
    assert step.attributes is not None
    assert step.attributes["saga.step.outcome"] == "cancelled"
    assert step.status.status_code is StatusCode.UNSET  # cancelled, not failed
    assert one(spans, "saga.step fail").status.status_code is StatusCode.ERROR
    assert one(spans, "saga.execution").status.status_code is StatusCode.ERROR
    testing.check_trace_tree(spans)
    assert tracer.open_spans() == 0


async def test_resumed_run_links_to_the_halted_run(
    anyio_backend: str, exporter: InMemorySpanExporter
) -> None:
    halted = {"done": False}

    async def first() -> str:
        return "1"

    async def pause(x: str) -> str:
        if not halted["done"]:
            halted["done"] = True
            return Halt("wait for approval")  # type: ignore[return-value]
        return "2"

    b = SagaBuilder("approval")
    b.step("first", first)
    b.step("pause", pause, args={"x": StepResult("first")})
    tracer = telemetry.SagaTracer()
    with anyio.fail_after(LIMIT):
        outcome = await run_saga(b.build(returns="pause"), instrument=tracer)
        assert isinstance(outcome, SagaHalted)
        resumed = await resume_saga(outcome.state, instrument=tracer)
    assert isinstance(resumed, SagaSucceeded)
    spans = exporter.get_finished_spans()
    first_run, second_run = sorted(named(spans, "saga.execution"), key=lambda s: s.start_time or 0)
    assert first_run.attributes is not None
    assert second_run.attributes is not None
    assert first_run.attributes["saga.outcome"] == "halted"
    assert "saga.halted" in event_names(first_run)
    assert second_run.attributes["saga.resumed_from"] == first_run.attributes["saga.run_id"]
    assert [link.context.span_id for link in second_run.links] == [span_id(first_run)]
    assert len(named(spans, "saga.step first")) == 1  # not re-run
    testing.check_trace_tree(spans)


async def test_supervised_saga_nests_under_run_saga(
    anyio_backend: str, exporter: InMemorySpanExporter
) -> None:
    async def work() -> str:
        return "done"

    b = SagaBuilder("supervised")
    b.step("work", work)
    tracer = telemetry.SagaTracer()
    async with tl.open_node(instrument=telemetry.RuntimeInstrument()):
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor(instrument=tracer)
            with telemetry.span("request"):
                await start_saga(sup, b.build(returns="work"), correlation_id="c-9")
            outcome = await await_saga(sup, "c-9")
            assert isinstance(outcome, SagaSucceeded)
            # saga_unregistered is emitted after the waiters got their reply
            while tracer.open_spans():
                await anyio.sleep(0.001)
    spans = exporter.get_finished_spans()
    request = one(spans, "request")
    supervised = one(spans, "saga.run")
    execution = one(spans, "saga.execution")
    assert parent_id(supervised) == span_id(request)
    assert parent_id(execution) == span_id(supervised)
    assert parent_id(one(spans, "saga.step work")) == span_id(execution)
    assert event_names(supervised)[0] == "saga.registered"
    assert supervised.attributes is not None
    assert supervised.attributes["saga.correlation_id"] == "c-9"
    assert supervised.attributes["saga.outcome"] == "succeeded"
    assert {trace_id(s) for s in spans} == {trace_id(request)}
    testing.check_trace_tree(spans)


@pytest.mark.parametrize("instrumented", [True, False], ids=["instrument", "no-instrument"])
async def test_named_tracer_continues_the_trace_its_inputs_carry(
    anyio_backend: str, exporter: InMemorySpanExporter, instrumented: bool
) -> None:
    """An application's names, attributes and trace parent (from the run's inputs): the
    supervised run continues the inputs' trace with or without a runtime instrument."""

    async def work(meta: dict[str, str]) -> str:
        return "done"

    b = SagaBuilder("named", inputs=["meta"])
    b.step("work", work, args={"meta": Input("meta")})
    tracer = telemetry.SagaTracer(
        run_span="app.run_saga",
        execution_span="app.saga_execution",
        event_name=lambda name: f"app.{name}",
        attributes=lambda run: {"app.saga": run.saga.name.upper()},
        trace_parent=lambda run: run.inputs.get("meta"),
    )
    instrument = telemetry.RuntimeInstrument() if instrumented else None
    async with tl.open_node(instrument=instrument):
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor(instrument=tracer)
            with telemetry.continue_from(None), telemetry.span("origin"):
                meta = dict(telemetry.inject({}))
            # the seed's pair alone (no traceparent) is enough to continue the trace
            seed_meta = {"trace_id": meta["trace_id"], "span_id": meta["span_id"]}
            with telemetry.continue_from(None):
                await start_saga(
                    sup, b.build(returns="work"), {"meta": seed_meta}, correlation_id="n-1"
                )
            outcome = await await_saga(sup, "n-1")
            assert isinstance(outcome, SagaSucceeded)
            while tracer.open_spans():
                await anyio.sleep(0.001)
    spans = exporter.get_finished_spans()
    origin = one(spans, "origin")
    supervised = one(spans, "app.run_saga")
    execution = one(spans, "app.saga_execution")
    assert parent_id(supervised) == span_id(origin)
    assert parent_id(execution) == span_id(supervised)
    assert {trace_id(s) for s in spans} == {trace_id(origin)}
    assert event_names(supervised)[0] == "app.saga_registered"
    assert "app.saga_started" in event_names(execution)
    for span in (supervised, execution, one(spans, "saga.step work")):
        assert span.attributes is not None
        assert span.attributes["app.saga"] == "NAMED"
        assert span.attributes["saga.correlation_id"] == "n-1"
    testing.check_trace_tree(spans)


async def test_trace_parent_without_a_context_keeps_the_current_span(
    anyio_backend: str, exporter: InMemorySpanExporter
) -> None:
    """Metadata without a valid trace context leaves the run under the current span."""
    b = SagaBuilder("plain")

    async def work() -> int:
        return 1

    b.step("work", work)
    tracer = telemetry.SagaTracer(trace_parent=lambda run: {"traceparent": "garbage"})
    with telemetry.span("caller"):
        await run_saga(b.build(returns="work"), instrument=tracer)
    spans = exporter.get_finished_spans()
    assert parent_id(one(spans, "saga.execution")) == span_id(one(spans, "caller"))
    assert "saga.started" in event_names(one(spans, "saga.execution"))


# --- property: the tree matches what the recorder saw ---------------------------------

PROPERTY = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(plan=saga_plans(max_undo_attempts=2), limit=st.sampled_from([1, 3]))
async def test_generated_sagas_have_the_recorded_tree(
    anyio_backend: str, exporter: InMemorySpanExporter, plan: SagaPlan, limit: int
) -> None:
    exporter.clear()
    recorder, tracer = SagaRecorder(), telemetry.SagaTracer()
    with anyio.fail_after(LIMIT):
        with telemetry.span("ingress"):
            outcome = await run_saga(
                build_saga(plan, SagaWorld()),
                max_concurrency=limit,
                max_undo_attempts=2,
                instrument=telemetry.CompositeSagaInstrument(recorder, tracer),
            )
    spans = exporter.get_finished_spans()
    testing.check_trace_tree(spans, recorder=recorder)
    assert tracer.open_spans() == 0
    assert len({trace_id(s) for s in spans}) == 1
    execution = one(spans, "saga.execution")
    assert (execution.status.status_code is StatusCode.ERROR) == isinstance(outcome, SagaFailed)
    failing = {s.name for s in plan.steps if s.fails}
    error_steps = {
        s.name.removeprefix("saga.step ")
        for s in spans
        if s.name.startswith("saga.step ") and s.status.status_code is StatusCode.ERROR
    }
    assert error_steps <= failing


@PROPERTY
@given(inner=saga_plans(max_steps=3), outer=saga_plans(max_steps=3), at=st.integers(0, 2))
async def test_generated_nested_sagas_have_the_recorded_tree(
    anyio_backend: str, exporter: InMemorySpanExporter, inner: SagaPlan, outer: SagaPlan, at: int
) -> None:
    exporter.clear()
    child = build_saga(inner, SagaWorld())
    parent = build_saga(outer, SagaWorld())
    b = SagaBuilder("parent")
    for spec in parent.steps:
        b.step(spec.name, spec.impl, wait_for=spec.dependencies, max_retries=spec.max_retries)
        if spec.name == parent.steps[min(at, len(parent.steps) - 1)].name:
            b.step("nested", child, wait_for=[spec.name], args={})
    recorder, tracer = SagaRecorder(), telemetry.SagaTracer()
    with anyio.fail_after(LIMIT):
        await run_saga(
            b.build(returns="nested"),
            max_concurrency=2,
            instrument=telemetry.CompositeSagaInstrument(recorder, tracer),
        )
    testing.check_trace_tree(exporter.get_finished_spans(), recorder=recorder)
    assert tracer.open_spans() == 0


# --- the checker catches broken trees ------------------------------------------------


def _fake_tree(*, attempt_status: StatusCode, compensate_early: bool) -> list[ReadableSpan]:
    """Spans shaped by hand: a run with one failed attempt and its compensation."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    otel = provider.get_tracer("fake")
    from opentelemetry import trace

    base = {"saga.name": "fake", "saga.correlation_id": "f", "saga.run_id": 1}
    run = otel.start_span(
        "saga.execution", attributes={**base, "thunderline.saga.span": "execution"}
    )
    ctx = trace.set_span_in_context(run)
    step = {**base, "saga.step": "s", "saga.attempt": 1}
    attempt = otel.start_span(
        "saga.step s",
        context=ctx,
        attributes={**step, "thunderline.saga.span": "attempt", "saga.step.outcome": "error"},
    )
    attempt.record_exception(ValueError("x"))
    attempt.set_status(Status(attempt_status))
    if compensate_early:
        comp = otel.start_span(
            "saga.compensate s",
            context=ctx,
            attributes={**step, "thunderline.saga.span": "compensate"},
        )
        attempt.end()
    else:
        attempt.end()
        comp = otel.start_span(
            "saga.compensate s",
            context=ctx,
            attributes={**step, "thunderline.saga.span": "compensate"},
        )
    comp.end()
    run.end()
    return list(memory.get_finished_spans())


def test_checker_accepts_a_well_formed_tree() -> None:
    testing.check_trace_tree(_fake_tree(attempt_status=StatusCode.ERROR, compensate_early=False))


def test_checker_rejects_a_failed_attempt_without_error_status() -> None:
    spans = _fake_tree(attempt_status=StatusCode.UNSET, compensate_early=False)
    with pytest.raises(testing.TraceTreeViolation) as caught:
        testing.check_trace_tree(spans)
    assert caught.value.invariant.startswith("T16")
    assert "saga.step s" in caught.value.detail


def test_checker_rejects_compensation_before_its_attempt_ended() -> None:
    spans = _fake_tree(attempt_status=StatusCode.ERROR, compensate_early=True)
    with pytest.raises(testing.TraceTreeViolation) as caught:
        testing.check_trace_tree(spans)
    assert caught.value.invariant.startswith("T3")


async def test_checker_rejects_dangling_parents_and_recorder_mismatch(
    anyio_backend: str, exporter: InMemorySpanExporter
) -> None:
    recorder, tracer = SagaRecorder(), telemetry.SagaTracer()
    with anyio.fail_after(LIMIT):
        await run_saga(diamond(), instrument=telemetry.CompositeSagaInstrument(recorder, tracer))
    spans = list(exporter.get_finished_spans())
    testing.check_trace_tree(spans, recorder=recorder)
    without_run = [s for s in spans if s.name != "saga.execution"]
    with pytest.raises(testing.TraceTreeViolation) as caught:
        testing.check_trace_tree(without_run)
    assert caught.value.invariant.startswith("T2")
    without_step = [s for s in spans if s.name != "saga.step d"]
    with pytest.raises(testing.TraceTreeViolation) as caught:
        testing.check_trace_tree(without_step, recorder=recorder)
    assert caught.value.invariant == "recorder attempts"
    with pytest.raises(testing.TraceTreeViolation):
        testing.check_trace_tree(spans, recorder=SagaRecorder())


def test_end_open_spans_closes_what_a_broken_caller_left_open(
    exporter: InMemorySpanExporter,
) -> None:
    from thunderline.sagas import SagaRunInfo

    async def noop() -> None:
        return None

    b = SagaBuilder("abandoned")
    b.step("s", noop)
    run = SagaRunInfo(saga=b.build(returns="s"), run_id=-1, correlation_id="a")
    tracer = telemetry.SagaTracer(current_steps=False)
    tracer.event(run, "saga_registered", {"pid": "<0.1>"})
    tracer.saga_started(run)
    tracer.step_attempt_started(run, "s", 1)
    assert tracer.open_spans() == 3
    assert tracer.end_open_spans() == 3
    assert tracer.open_spans() == 0
    spans = exporter.get_finished_spans()
    assert len(spans) == 3
    assert all(s.attributes and s.attributes["saga.abandoned"] is True for s in spans)
    tracer.step_attempt_finished(run, "s", 1, "ok", None)  # late hooks are ignored
    tracer.saga_finished(run, None, None)
    assert len(exporter.get_finished_spans()) == 3
