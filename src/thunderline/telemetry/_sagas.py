"""Saga runs as nested OpenTelemetry spans.

Example::

    >>> import anyio
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    ...     InMemorySpanExporter,
    ... )
    >>> from thunderline import telemetry
    >>> from thunderline.sagas import SagaBuilder, run_saga
    >>> exporter = InMemorySpanExporter()
    >>> _ = telemetry.configure(exporter=exporter, batch=False, install_global=False)
    >>> async def reserve():
    ...     return "r-1"
    >>> builder = SagaBuilder("checkout")
    >>> _ = builder.step("reserve", reserve)
    >>> saga = builder.build(returns="reserve")
    >>> tracer = telemetry.SagaTracer()
    >>> outcome = anyio.run(lambda: run_saga(saga, instrument=tracer))
    >>> spans = exporter.get_finished_spans()
    >>> sorted(s.name for s in spans)
    ['saga.execution', 'saga.step reserve']
    >>> [s.attributes["saga.outcome"] for s in spans if s.name == "saga.execution"]
    ['succeeded']
    >>> from thunderline.testing import check_trace_tree
    >>> check_trace_tree(spans)
    >>> telemetry.shutdown()
    True

The shape of one run (every span is started with an *explicit* parent, so
concurrent steps in separate tasks nest correctly)::

    saga.run                       only under a saga supervisor: from its
    │                              "saga_registered" to "saga_unregistered"
    └─ saga.execution              the run (child of the current span when the
       │                           run starts, or of saga.run)
       ├─ saga.step {step}         one span per attempt (saga.attempt = 1, 2...)
       │  └─ saga.execution        a nested saga, under its parent step's attempt
       ├─ saga.compensate {step}   after the failed attempt's span ended
       └─ saga.rollback            from "rollback_started" to its end
          └─ saga.undo {step}      one span per undo attempt

The names of the two outer spans and of the span events are parameters, so an
application can use its own (the reference application's Bolt names them
``bolt.run_saga`` and ``bolt.saga_execution``, with events ``bolt.saga_started``
and so on: :func:`thunderline.domains.bolt.saga_tracer`).

Attributes: ``saga.name``, ``saga.correlation_id``, ``saga.run_id`` on every
span, plus whatever the tracer's ``attributes`` function gives for the run;
``saga.step`` and ``saga.attempt`` on step, compensate and undo spans;
``saga.outcome`` on the execution span (``succeeded``, ``failed``,
``halted``, ``cancelled`` or ``crashed``) and ``saga.step.outcome`` on step
spans (``ok``, ``error``, ``retry``, ``halt``, ``cancelled``). A failed
attempt, compensate or undo records the exception with status ERROR; a failed
run is ERROR on its execution span even when the rollback succeeded. The
saga's events become span events, by default named ``saga.{event}`` without
the event's own ``saga_`` prefix (``saga.started``, ``saga.completed``,
``saga.failed``, ``saga.rolled_back``, ``saga.halted``, ``saga.registered``,
``saga.rollback_started``, ``saga.retry_scheduled``...).
Every span carries ``thunderline.saga.span`` (``run``, ``execution``,
``attempt``, ``compensate``, ``rollback``, ``undo``), which is what
:func:`thunderline.testing.check_trace_tree` reads.

The outermost span of a run (``saga.run`` under a supervisor, else the
execution span of a run that is not nested) is a child of the span current
when it starts, unless the tracer's ``trace_parent`` function returns W3C
trace metadata for the run (``traceparent``, or ``trace_id`` + ``span_id``, as
:func:`~thunderline.telemetry.continue_from` reads): then it continues that
trace, whichever process the hook runs in.

While ``run``, ``compensate`` or ``undo`` of a step executes, its span is the
current span, so spans and messages the step's code creates are its children.
"""

from __future__ import annotations

import contextvars
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from thunderline.sagas import (
    AttemptOutcome,
    RollbackStatus,
    SagaFailed,
    SagaHalted,
    SagaInstrument,
    SagaOutcome,
    SagaRunInfo,
    SagaSucceeded,
    UndoOutcome,
)
from thunderline.telemetry._context import _GUARD
from thunderline.telemetry._propagation import extract
from thunderline.telemetry._state import STATE
from thunderline.telemetry._stats import COUNTERS

__all__ = ["SagaTracer"]

SUPERVISED_SPAN: Final = "saga.run"
EXECUTION_SPAN: Final = "saga.execution"
ROLLBACK_SPAN: Final = "saga.rollback"
KIND_KEY: Final = "thunderline.saga.span"
_ENDED_RUNS_KEPT: Final = 1024

_ATTRIBUTE_NAMES: Final = {
    "step": "saga.step",
    "attempt": "saga.attempt",
    "delay": "saga.retry.delay",
    "reason": "saga.reason",
    "pid": "thunderline.pid",
    "supervisor": "thunderline.supervisor",
    "ended": "saga.ended",
    "cancelled": "saga.cancelled",
}


class _Handle:
    """A started span and, if it was made current, the tokens to undo that."""

    __slots__ = ("guard_token", "otel_token", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.otel_token: contextvars.Token[Context] | None = None
        self.guard_token: contextvars.Token[object] | None = None

    def attach(self) -> None:
        self.otel_token = otel_context.attach(trace.set_span_in_context(self.span))
        self.guard_token = _GUARD.set(self)

    def detach(self) -> None:
        guard, otel = self.guard_token, self.otel_token
        self.guard_token = self.otel_token = None
        if guard is None or otel is None:
            return
        try:
            _GUARD.reset(guard)
        except (ValueError, RuntimeError):
            # Finished from another contextvars.Context (a broken hook contract):
            # that Context is not ours to restore; the span is still ended.
            COUNTERS.add("context_mismatches")
            return
        otel_context.detach(otel)


class _Run:
    __slots__ = ("attributes", "context", "execution", "info", "rollback")

    def __init__(
        self, info: SagaRunInfo, execution: Span, attributes: dict[str, AttributeValue]
    ) -> None:
        self.info = info
        self.execution = execution
        self.rollback: Span | None = None
        # Computed once per run: the run attributes every step span starts
        # with (copied, never mutated) and the context parenting step spans.
        self.attributes = attributes
        self.context = trace.set_span_in_context(execution)


def _error_attributes(error: BaseException) -> dict[str, AttributeValue]:
    return {"error.type": type(error).__qualname__, "error.message": str(error)}


def _attribute_value(value: object) -> AttributeValue:
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _event_attributes(attributes: Mapping[str, object]) -> dict[str, AttributeValue]:
    if not attributes:
        return {}
    if len(attributes) == 1:
        step = attributes.get("step")
        if type(step) is str:  # "step_completed", the most frequent event
            return {"saga.step": step}
    converted: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if key == "error" and isinstance(value, BaseException):
            converted.update(_error_attributes(value))
            continue
        converted[_ATTRIBUTE_NAMES.get(key, f"saga.{key}")] = _attribute_value(value)
    return converted


def default_event_name(name: str) -> str:
    """The default span event name of a saga event: ``saga_started`` -> ``saga.started``."""
    return "saga." + name.removeprefix("saga_")


def _fail(span: Span, error: BaseException, *, escaped: bool = True) -> None:
    if span.is_recording():
        span.record_exception(error, escaped=escaped)
        span.set_attribute("error.type", type(error).__qualname__)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


class SagaTracer(SagaInstrument):
    """A :class:`~thunderline.sagas.SagaInstrument` that records saga runs as spans.

    Pass it as ``run_saga(..., instrument=SagaTracer())``, to a saga
    supervisor, or install it with
    :func:`thunderline.sagas.set_default_instrument`. One tracer can observe
    any number of concurrent runs: span handles are kept per
    ``(run_id, step, attempt)``. Spans come from the tracer installed by
    :func:`thunderline.telemetry.configure` (looked up when each span starts)
    unless ``tracer`` is given. See the module docstring for the tree.

    Args:
        tracer: The OpenTelemetry tracer to use instead of thunderline's.
        current_steps: Make each step's ``run``/``compensate``/``undo`` span
            current while its code runs (default True), so work done by the
            step nests under it.
        run_span: The name of the span around a supervised run.
        execution_span: The name of a run's execution span.
        event_name: Maps a saga event (``saga_started``...) to its span event
            name (default: ``saga.`` and the event without its own ``saga_``
            prefix: ``saga.started``, ``saga.rollback_started``...).
        attributes: Extra attributes for every span of a run, from its
            :class:`~thunderline.sagas.SagaRunInfo` (called once per span).
        trace_parent: Trace metadata (``traceparent``, or ``trace_id`` and
            ``span_id``) the run's outermost span continues, from its
            :class:`~thunderline.sagas.SagaRunInfo` (e.g. from its inputs);
            None, or metadata without a valid context, keeps the current span
            as the parent.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        *,
        tracer: trace.Tracer | None = None,
        current_steps: bool = True,
        run_span: str = SUPERVISED_SPAN,
        execution_span: str = EXECUTION_SPAN,
        event_name: Callable[[str], str] = default_event_name,
        attributes: Callable[[SagaRunInfo], Mapping[str, AttributeValue]] | None = None,
        trace_parent: Callable[[SagaRunInfo], Mapping[str, Any] | None] | None = None,
    ) -> None:
        self._tracer = tracer
        self._current_steps = current_steps
        self.run_span = run_span
        self.execution_span = execution_span
        self._event_name = event_name
        self._extra = attributes
        self._trace_parent = trace_parent
        self._runs: dict[int, _Run] = {}
        self._supervised: dict[int, Span] = {}
        self._attempts: dict[tuple[int, str, int], _Handle] = {}
        self._latest_attempt: dict[tuple[int, str], int] = {}
        self._compensations: dict[tuple[int, str, int], _Handle] = {}
        self._undos: dict[tuple[int, str, int], _Handle] = {}
        self._ended: OrderedDict[int, SpanContext] = OrderedDict()

    # ------------------------------------------------------------- helpers

    @property
    def tracer(self) -> trace.Tracer:
        """The tracer spans are started with."""
        return self._tracer if self._tracer is not None else STATE.tracer

    def open_spans(self) -> int:
        """Count the spans started and not yet ended (0 once every run finished).

        Returns:
            The number of open spans.
        """
        return (
            len(self._runs)
            + sum(1 for r in self._runs.values() if r.rollback is not None)
            + len(self._supervised)
            + len(self._attempts)
            + len(self._compensations)
            + len(self._undos)
        )

    def end_open_spans(self) -> int:
        """End every span still open (e.g. at shutdown, if a run never finished).

        The spans get ``saga.abandoned = True``; contexts made current by
        unfinished hooks are not restored (they belong to other tasks).

        Returns:
            How many spans were ended.
        """
        ended = 0
        for handles in (self._undos, self._compensations, self._attempts):
            for handle in handles.values():
                handle.span.set_attribute("saga.abandoned", True)
                handle.span.end()
                ended += 1
            handles.clear()
        self._latest_attempt.clear()
        for run in list(self._runs.values()):
            ended += self._close_run(run, abandoned=True)
        self._runs.clear()
        for span in self._supervised.values():
            span.set_attribute("saga.abandoned", True)
            span.end()
            ended += 1
        self._supervised.clear()
        return ended

    def _run_attributes(self, run: SagaRunInfo) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {}
        if self._extra is not None:
            attributes.update(self._extra(run))
        attributes["saga.name"] = run.saga.name
        attributes["saga.correlation_id"] = run.correlation_id
        attributes["saga.run_id"] = run.run_id
        return attributes

    def _outer_context(self, run: SagaRunInfo) -> Context | None:
        """The context the run's outermost span starts in: from ``trace_parent``, else current."""
        if self._trace_parent is None:
            return None
        meta = self._trace_parent(run)
        if not meta:
            return None
        context = extract(meta)
        if not trace.get_current_span(context).get_span_context().is_valid:
            return None
        return context

    def _start(
        self,
        name: str,
        kind: str,
        parent: Span | None,
        attributes: dict[str, AttributeValue],
        links: list[Link] | None = None,
        context: Context | None = None,
    ) -> Span:
        attributes[KIND_KEY] = kind
        if parent is not None:
            context = trace.set_span_in_context(parent)
        return self.tracer.start_span(name, context=context, attributes=attributes, links=links)

    def _owner(self, run: SagaRunInfo) -> Span | None:
        """The open span undo work of ``run`` goes under: its (or an ancestor's) rollback."""
        info: SagaRunInfo | None = run
        while info is not None:
            open_run = self._runs.get(info.run_id)
            if open_run is not None:
                return open_run.rollback or open_run.execution
            info = info.parent
        return None

    def _close_run(self, run: _Run, *, abandoned: bool) -> int:
        ended = 0
        if run.rollback is not None:
            if abandoned:
                run.rollback.set_attribute("saga.abandoned", True)
            run.rollback.end()
            run.rollback = None
            ended += 1
        if abandoned:
            run.execution.set_attribute("saga.abandoned", True)
        run.execution.end()
        self._ended[run.info.run_id] = run.execution.get_span_context()
        while len(self._ended) > _ENDED_RUNS_KEPT:
            self._ended.popitem(last=False)
        return ended + 1

    def _finish_handle(self, handle: _Handle) -> None:
        handle.detach()
        handle.span.end()

    # ---------------------------------------------------------------- runs

    def saga_started(self, run: SagaRunInfo) -> None:
        """Start the run's execution span."""
        parent: Span | None = self._supervised.get(run.run_id)
        attributes = self._run_attributes(run)
        if run.parent is not None and run.parent_step is not None:
            attributes["saga.parent_run_id"] = run.parent.run_id
            attributes["saga.parent_step"] = run.parent_step
            attributes["saga.path"] = "/".join(run.path)
            attempt = self._latest_attempt.get((run.parent.run_id, run.parent_step))
            handle = (
                self._attempts.get((run.parent.run_id, run.parent_step, attempt))
                if attempt is not None
                else None
            )
            if handle is not None:
                parent = handle.span
        links: list[Link] | None = None
        if run.resumed_from is not None:
            attributes["saga.resumed_from"] = run.resumed_from
            attributes["saga.resumed_steps"] = sorted(run.resumed)
            halted = self._ended.get(run.resumed_from)
            if halted is not None:
                links = [Link(halted, {"saga.link": "resumed_from"})]
        context = self._outer_context(run) if parent is None and run.parent is None else None
        execution = self._start(
            self.execution_span, "execution", parent, attributes, links, context
        )
        previous = self._runs.pop(run.run_id, None)
        if previous is not None:  # started twice: never leave the first one open
            self._close_run(previous, abandoned=True)
        self._runs[run.run_id] = _Run(run, execution, self._run_attributes(run))

    def saga_finished(
        self, run: SagaRunInfo, outcome: SagaOutcome | None, error: BaseException | None
    ) -> None:
        """Record the outcome on the execution span and end it (and anything left open)."""
        open_run = self._runs.pop(run.run_id, None)
        if open_run is None:
            return
        span = open_run.execution
        if isinstance(outcome, SagaSucceeded):
            span.set_attribute("saga.outcome", "succeeded")
        elif isinstance(outcome, SagaFailed):
            span.set_attributes(
                {
                    "saga.outcome": "failed",
                    "saga.rollback.status": outcome.rollback.status.value,
                    "error.type": type(outcome.error).__qualname__,
                }
            )
            if outcome.step is not None:
                span.set_attribute("saga.failed_step", outcome.step)
            span.set_status(
                Status(StatusCode.ERROR, f"{type(outcome.error).__name__}: {outcome.error}")
            )
        elif isinstance(outcome, SagaHalted):
            span.set_attributes({"saga.outcome": "halted", "saga.halted_step": outcome.step})
        elif isinstance(error, Exception):
            span.set_attribute("saga.outcome", "crashed")
            _fail(span, error)
        elif error is not None:
            span.set_attribute("saga.outcome", "cancelled")
            span.set_attribute("saga.interrupted_by", type(error).__qualname__)
        self._close_run(open_run, abandoned=False)

    # -------------------------------------------------------------- attempts

    def step_attempt_started(self, run: SagaRunInfo, step: str, attempt: int) -> None:
        """Start ``saga.step {step}`` under the run's execution span."""
        open_run = self._runs.get(run.run_id)
        if open_run is not None:
            attributes = open_run.attributes.copy()
            attributes["saga.step"] = step
            attributes["saga.attempt"] = attempt
            attributes[KIND_KEY] = "attempt"
            span = self.tracer.start_span(
                f"saga.step {step}", context=open_run.context, attributes=attributes
            )
        else:
            attributes = self._run_attributes(run)
            attributes["saga.step"] = step
            attributes["saga.attempt"] = attempt
            span = self._start(f"saga.step {step}", "attempt", None, attributes)
        key = (run.run_id, step, attempt)
        self._replace(self._attempts, key)
        handle = _Handle(span)
        self._attempts[key] = handle
        self._latest_attempt[(run.run_id, step)] = attempt
        if self._current_steps:
            handle.attach()

    def step_attempt_finished(
        self,
        run: SagaRunInfo,
        step: str,
        attempt: int,
        outcome: AttemptOutcome,
        error: BaseException | None,
    ) -> None:
        """Record the attempt's outcome (ERROR with the exception on failure) and end it."""
        handle = self._attempts.pop((run.run_id, step, attempt), None)
        if self._latest_attempt.get((run.run_id, step)) == attempt:
            del self._latest_attempt[(run.run_id, step)]
        if handle is None:
            return
        handle.span.set_attribute("saga.step.outcome", outcome)
        if error is not None:
            _fail(handle.span, error)
        self._finish_handle(handle)

    @staticmethod
    def _replace(handles: dict[tuple[int, str, int], _Handle], key: tuple[int, str, int]) -> None:
        previous = handles.pop(key, None)
        if previous is not None:  # started twice: never leave the first one open
            previous.span.set_attribute("saga.abandoned", True)
            previous.span.end()

    # ---------------------------------------------------------- compensation

    def compensate_started(self, run: SagaRunInfo, step: str, attempt: int) -> None:
        """Start ``saga.compensate {step}`` under the run's execution span."""
        open_run = self._runs.get(run.run_id)
        attributes = self._run_attributes(run)
        attributes["saga.step"] = step
        attributes["saga.attempt"] = attempt
        span = self._start(
            f"saga.compensate {step}",
            "compensate",
            open_run.execution if open_run is not None else None,
            attributes,
        )
        key = (run.run_id, step, attempt)
        self._replace(self._compensations, key)
        handle = _Handle(span)
        self._compensations[key] = handle
        if self._current_steps:
            handle.attach()

    def compensate_finished(
        self, run: SagaRunInfo, step: str, attempt: int, error: BaseException | None
    ) -> None:
        """End the compensate span (ERROR with the exception if it raised)."""
        handle = self._compensations.pop((run.run_id, step, attempt), None)
        if handle is None:
            return
        if error is not None:
            _fail(handle.span, error)
        self._finish_handle(handle)

    # ------------------------------------------------------------------ undo

    def undo_started(self, run: SagaRunInfo, step: str, attempt: int) -> None:
        """Start ``saga.undo {step}`` under the open rollback (or execution) span."""
        attributes = self._run_attributes(run)
        attributes["saga.step"] = step
        attributes["saga.attempt"] = attempt
        if run.path:
            attributes["saga.path"] = "/".join((*run.path, step))
        span = self._start(f"saga.undo {step}", "undo", self._owner(run), attributes)
        key = (run.run_id, step, attempt)
        self._replace(self._undos, key)
        handle = _Handle(span)
        self._undos[key] = handle
        if self._current_steps:
            handle.attach()

    def undo_finished(
        self,
        run: SagaRunInfo,
        step: str,
        attempt: int,
        outcome: UndoOutcome,
        error: BaseException | None,
    ) -> None:
        """Record the undo attempt's outcome and end its span."""
        handle = self._undos.pop((run.run_id, step, attempt), None)
        if handle is None:
            return
        handle.span.set_attribute("saga.undo.outcome", outcome)
        if error is not None:
            _fail(handle.span, error)
        self._finish_handle(handle)

    # ---------------------------------------------------------------- events

    def event(self, run: SagaRunInfo, name: str, attributes: Mapping[str, object]) -> None:
        """Add the event to the run's span; open or close supervisor and rollback spans."""
        event_name = self._event_name(name)
        event_attributes = _event_attributes(attributes)
        if name == "saga_registered":
            self._registered(run, event_name, event_attributes)
            return
        supervised = self._supervised.get(run.run_id)
        if name in ("saga_unregistered", "saga_crashed"):
            if supervised is None:
                return
            supervised.add_event(event_name, event_attributes)
            if name == "saga_crashed":
                supervised.set_status(Status(StatusCode.ERROR, f"saga crashed: {attributes}"))
            else:
                del self._supervised[run.run_id]
                supervised.set_attribute("saga.outcome", str(attributes.get("ended", "unknown")))
                if attributes.get("ended") in ("failed", "crashed"):
                    supervised.set_status(Status(StatusCode.ERROR, f"saga {attributes['ended']}"))
                open_run = self._runs.pop(run.run_id, None)
                if open_run is not None:  # its process ended without finishing the run
                    self._close_run(open_run, abandoned=True)
                supervised.end()
            return
        open_run = self._runs.get(run.run_id)
        if open_run is None:
            if supervised is not None:
                supervised.add_event(event_name, event_attributes)
            return
        open_run.execution.add_event(event_name, event_attributes)
        if name == "rollback_started":
            if open_run.rollback is not None:
                open_run.rollback.end()
            open_run.rollback = self._start(
                ROLLBACK_SPAN, "rollback", open_run.execution, self._run_attributes(run)
            )
        elif name in ("saga_rolled_back", "rollback_incomplete") and open_run.rollback is not None:
            status = (
                RollbackStatus.ROLLED_BACK
                if name == "saga_rolled_back"
                else RollbackStatus.INCOMPLETE
            )
            open_run.rollback.set_attribute("saga.rollback.status", status.value)
            if status is RollbackStatus.INCOMPLETE:
                open_run.rollback.set_status(Status(StatusCode.ERROR, "rollback incomplete"))
            open_run.rollback.end()
            open_run.rollback = None

    def _registered(
        self, run: SagaRunInfo, event_name: str, attributes: dict[str, AttributeValue]
    ) -> None:
        previous = self._supervised.pop(run.run_id, None)
        if previous is not None:
            previous.set_attribute("saga.abandoned", True)
            previous.end()
        span = self._start(
            self.run_span, "run", None, self._run_attributes(run), None, self._outer_context(run)
        )
        span.add_event(event_name, attributes)
        self._supervised[run.run_id] = span
