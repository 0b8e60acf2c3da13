"""Span helpers: decorator and context manager, sync and async (T4, T6, T16)."""

from __future__ import annotations

import anyio
import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from telemetry_helpers import by_name

from thunderline.telemetry import (
    SpanScope,
    add_event,
    current_span_id,
    current_trace_id,
    set_attributes,
    set_status,
    span,
    statistics,
)

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


def test_context_manager_sync_nests_and_sets_attributes(exporter: InMemorySpanExporter) -> None:
    with span("outer", attributes={"a": 1}, kind=SpanKind.SERVER) as outer:
        assert outer.is_recording()
        with span("inner"):
            set_attributes({"b": "x"})
            add_event("step", {"n": 2})
            set_status("ok")
    spans = by_name(exporter.get_finished_spans())
    assert spans["inner"].parent is not None
    assert spans["inner"].parent.span_id == spans["outer"].context.span_id
    assert spans["outer"].parent is None
    assert spans["outer"].kind is SpanKind.SERVER
    assert spans["outer"].attributes == {"a": 1}
    assert spans["inner"].attributes == {"b": "x"}
    assert [(e.name, dict(e.attributes or {})) for e in spans["inner"].events] == [
        ("step", {"n": 2})
    ]
    assert spans["inner"].status.status_code is StatusCode.OK


async def test_context_manager_async(exporter: InMemorySpanExporter) -> None:
    async with span("outer"):
        await anyio.sleep(0)
        async with span("inner"):
            await anyio.sleep(0)
    spans = by_name(exporter.get_finished_spans())
    assert spans["inner"].parent is not None
    assert spans["inner"].parent.span_id == spans["outer"].context.span_id


def test_decorator_sync(exporter: InMemorySpanExporter) -> None:
    @span("double", attributes={"k": "v"})
    def double(x: int) -> int:
        """Doubles."""
        assert current_trace_id() is not None
        return 2 * x

    assert double.__name__ == "double"
    assert double.__doc__ == "Doubles."
    assert double(2) == 4
    assert double(3) == 6
    finished = exporter.get_finished_spans()
    assert [s.name for s in finished] == ["double", "double"]
    assert finished[0].context.trace_id != finished[1].context.trace_id


async def test_decorator_async(exporter: InMemorySpanExporter) -> None:
    @span("fetch")
    async def fetch(x: int) -> int:
        await anyio.sleep(0)
        return x + 1

    assert await fetch(1) == 2
    (finished,) = exporter.get_finished_spans()
    assert finished.name == "fetch"
    assert finished.end_time is not None


def test_exception_is_recorded_and_reraised(exporter: InMemorySpanExporter) -> None:
    @span("fails")
    def fails() -> None:
        raise Boom("card declined")

    with pytest.raises(Boom):
        fails()
    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.status.description == "Boom: card declined"
    assert finished.attributes is not None
    assert finished.attributes["error.type"] == "Boom"
    (event,) = finished.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.message"] == "card declined"


async def test_async_exception_is_recorded_and_reraised(exporter: InMemorySpanExporter) -> None:
    @span("fails")
    async def fails() -> None:
        await anyio.sleep(0)
        raise Boom("x")

    with pytest.raises(Boom):
        await fails()
    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.ERROR


def test_set_status_rejects_unknown_names(exporter: InMemorySpanExporter) -> None:
    with span("s"), pytest.raises(ValueError, match="'maybe'"):
        set_status("maybe")  # type: ignore[arg-type]
    with span("e"):
        set_status(StatusCode.ERROR, "broken")
    assert by_name(exporter.get_finished_spans())["e"].status.description == "broken"


def test_current_ids(exporter: InMemorySpanExporter) -> None:
    assert current_trace_id() is None
    assert current_span_id() is None
    with span("s"):
        trace_id, span_id = current_trace_id(), current_span_id()
    assert current_trace_id() is None
    (finished,) = exporter.get_finished_spans()
    assert trace_id == format(finished.context.trace_id, "032x")
    assert span_id == format(finished.context.span_id, "016x")
    assert trace_id is not None
    assert span_id is not None
    assert len(trace_id) == 32
    assert len(span_id) == 16
    assert trace_id == trace_id.lower()


def test_helpers_without_span_are_noops(exporter: InMemorySpanExporter) -> None:
    add_event("nothing")
    set_attributes({"a": 1})
    set_status("error", "x")
    assert exporter.get_finished_spans() == ()


# T4: every started span is ended exactly once, and ends the span it started.


async def test_one_scope_object_reused_by_concurrent_tasks(
    exporter: InMemorySpanExporter,
) -> None:
    shared = span("shared")
    assert isinstance(shared, SpanScope)
    seen: dict[str, str | None] = {}
    release = anyio.Event()
    entered = 0

    async def worker(label: str) -> None:
        nonlocal entered
        async with shared:
            seen[label] = current_span_id()
            entered += 1
            if entered == 3:
                release.set()
            await release.wait()
            async with span(f"child-{label}"):
                await anyio.sleep(0)
            assert current_span_id() == seen[label]

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for label in "abc":
                tg.start_soon(worker, label)
    finished = exporter.get_finished_spans()
    shared_spans = [s for s in finished if s.name == "shared"]
    assert len(shared_spans) == 3
    assert len({s.context.span_id for s in shared_spans}) == 3
    for label in "abc":
        (child,) = [s for s in finished if s.name == f"child-{label}"]
        assert child.parent is not None
        assert format(child.parent.span_id, "016x") == seen[label]
    assert all(s.end_time is not None for s in finished)


def test_nested_reentry_of_one_scope(exporter: InMemorySpanExporter) -> None:
    again = span("again")
    with again as first, again as second:
        assert second.parent is not None
        assert second.parent.span_id == first.get_span_context().span_id
    finished = exporter.get_finished_spans()
    assert len(finished) == 2
    assert finished[0].context.span_id == second.get_span_context().span_id
    assert finished[1].context.span_id == first.get_span_context().span_id


# T6: context balance on normal return, exception and cancellation.


async def test_context_balanced_on_return_exception_and_cancel(
    exporter: InMemorySpanExporter,
) -> None:
    before = otel_context.get_current()

    @span("ok")
    async def ok() -> None:
        await anyio.sleep(0)

    @span("bad")
    async def bad() -> None:
        await anyio.sleep(0)
        raise Boom

    @span("cancelled")
    async def cancelled() -> None:
        await anyio.sleep_forever()

    await ok()
    assert otel_context.get_current() is before
    with pytest.raises(Boom):
        await bad()
    assert otel_context.get_current() is before
    with anyio.move_on_after(0.01) as scope:
        await cancelled()
    assert scope.cancelled_caught
    assert otel_context.get_current() is before

    async with anyio.create_task_group() as tg:
        started = anyio.Event()

        async def victim() -> None:
            async with span("victim"):
                started.set()
                await anyio.sleep_forever()

        tg.start_soon(victim)
        await started.wait()
        tg.cancel_scope.cancel()
    assert otel_context.get_current() is before

    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"ok", "bad", "cancelled", "victim"}
    assert spans["bad"].status.status_code is StatusCode.ERROR
    assert spans["cancelled"].status.status_code is StatusCode.UNSET
    assert spans["victim"].status.status_code is StatusCode.UNSET
    assert all(s.end_time is not None for s in spans.values())


def test_sync_context_balanced_after_inner_leak(exporter: InMemorySpanExporter) -> None:
    before = otel_context.get_current()
    with span("outer"):
        # Code inside attaches without detaching; leaving the span repairs it.
        otel_context.attach(otel_context.set_value("leak", 1))
    assert otel_context.get_current() is before


async def test_async_generator_closed_by_another_task(exporter: InMemorySpanExporter) -> None:
    """The asyncgen pitfall: exit in another Context is counted, never logged."""

    async def numbers():  # type: ignore[no-untyped-def]
        async with span("generator"):
            yield 1
            yield 2

    before = otel_context.get_current()
    mismatches = statistics().context_mismatches
    agen = numbers()

    async def advance() -> None:
        assert await agen.__anext__() == 1
        # The span stays attached in this task's Context: the generator never
        # comes back here to restore it (that is the pitfall).
        assert current_span_id() is not None

    async def close() -> None:
        await agen.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(advance)
    async with anyio.create_task_group() as tg:
        tg.start_soon(close)
    (finished,) = exporter.get_finished_spans()
    assert finished.name == "generator"
    assert finished.end_time is not None
    assert statistics().context_mismatches == mismatches + 1
    assert otel_context.get_current() is before
