"""A checker for the trace tree of saga runs: the spans ``telemetry.SagaTracer`` makes.

A test oracle, so it lives with the other checkers; it reads finished spans
through their public attributes only (:class:`FinishedSpan`, which
OpenTelemetry's ``ReadableSpan`` satisfies), so it imports no OpenTelemetry.
Spans are recognised by the ``thunderline.saga.span`` attribute
(:data:`thunderline.telemetry.SAGA_SPAN_ATTRIBUTE`) the tracer sets, whatever
names the application gave them. It accepts a :class:`SagaRecorder` that saw
the same runs, to compare the tree with what the runs did::

    spans = exporter.get_finished_spans()
    check_trace_tree(spans, recorder=recorder)   # raises TraceTreeViolation
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Final, Protocol

from thunderline.runtime import ThunderlineError
from thunderline.telemetry import SAGA_SPAN_ATTRIBUTE

from ._recorder import SagaRecorder

__all__ = ["FinishedSpan", "TraceTreeViolation", "check_trace_tree"]

KIND_KEY: Final = SAGA_SPAN_ATTRIBUTE


class FinishedSpan(Protocol):
    """What the checker reads of a finished span (OpenTelemetry's ``ReadableSpan`` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def attributes(self) -> Any: ...

    @property
    def context(self) -> Any: ...

    @property
    def parent(self) -> Any: ...

    @property
    def start_time(self) -> int | None: ...

    @property
    def end_time(self) -> int | None: ...

    @property
    def status(self) -> Any: ...

    @property
    def events(self) -> Any: ...


def _status(span: FinishedSpan) -> str:
    return str(span.status.status_code.name)


class TraceTreeViolation(ThunderlineError, AssertionError):
    """The spans of saga runs do not have the shape :class:`SagaTracer` promises.

    Args:
        invariant: The invariant at fault (``"T1"``, ``"T2"``, ``"T3"``,
            ``"T4"``, ``"T16"``, or ``"recorder"`` for a disagreement with
            a :class:`~thunderline.testing.SagaRecorder`) and a short name.
        detail: What was observed, naming the saga, run and span.

    Attributes:
        invariant: The invariant at fault.
        detail: What was observed.

    .. versionadded:: 0.1
    """

    def __init__(self, invariant: str, detail: str) -> None:
        self.invariant = invariant
        self.detail = detail
        super().__init__(f"{invariant} violated: {detail}")


def _kind(span: FinishedSpan) -> str | None:
    value = (span.attributes or {}).get(KIND_KEY)
    return value if isinstance(value, str) else None


def _attr(span: FinishedSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


def _describe(span: FinishedSpan) -> str:
    return (
        f"span {span.name!r} (saga {_attr(span, 'saga.name')!r}, "
        f"run {_attr(span, 'saga.run_id')}, attempt {_attr(span, 'saga.attempt')})"
    )


def check_trace_tree(
    spans: Iterable[FinishedSpan], *, recorder: SagaRecorder | None = None
) -> None:
    """Check the spans :class:`SagaTracer` produced for saga runs.

    Spans other than the tracer's (those without ``thunderline.saga.span``)
    may be mixed in: they are allowed as the parents of outermost saga spans
    and are otherwise ignored. Checked:

    * T4: every span ended, children end no later than their parent, and no
      two spans exist for one (run, step, attempt).
    * T2: every step, compensate, rollback and undo span has a collected
      parent; only outermost run / execution spans
      spans may have a parent outside the collection.
    * T1: each tree of saga spans has one trace id.
    * T3: attempt and compensate spans are children of their run's execution
      span (a nested run's execution span is a child of its parent step's
      attempt span); a compensate span starts after its attempt's span
      ended; rollback spans are children of the execution span; undo spans
      are under a rollback or execution span of the run or an ancestor run,
      and start after every attempt span of their run ended; attempt
      numbers per (run, step) are 1, 2, ... n.
    * T16: an attempt with outcome ``error`` is ERROR with an ``exception``
      event; a failed run's execution span is ERROR.

    With ``recorder`` (a :class:`thunderline.testing.SagaRecorder` that saw
    the same runs) also: one execution span per recorded run, one attempt,
    compensate and undo span per recorded ``*_started`` hook with the
    recorded outcome, and ``saga.outcome`` matching the recorded outcome.

    Args:
        spans: Finished spans, e.g. ``InMemorySpanExporter.get_finished_spans()``.
        recorder: Optionally, the recorder that observed the runs.

    Raises:
        TraceTreeViolation: naming the invariant, saga, run and span at fault.

    .. versionadded:: 0.1
    """
    spans = list(spans)
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    saga_spans = [s for s in spans if _kind(s) is not None]
    executions: dict[int, FinishedSpan] = {}
    attempts: dict[tuple[int, str, int], FinishedSpan] = {}
    per_step: dict[tuple[int, str], list[int]] = defaultdict(list)
    by_run: dict[int, list[FinishedSpan]] = defaultdict(list)

    def parent_of(span: FinishedSpan) -> FinishedSpan | None:
        return by_id.get(span.parent.span_id) if span.parent is not None else None

    for span in saga_spans:
        kind = _kind(span)
        run_id = _attr(span, "saga.run_id")
        if span.end_time is None or span.start_time is None:
            raise TraceTreeViolation("T4 every span ended", f"{_describe(span)} was not ended")
        parent = parent_of(span)
        if parent is not None and _kind(parent) is not None:
            if parent.end_time is not None and span.end_time > parent.end_time:
                raise TraceTreeViolation(
                    "T4 children end first",
                    f"{_describe(span)} ended after its parent {_describe(parent)}",
                )
            if parent.context.trace_id != span.context.trace_id:
                raise TraceTreeViolation(
                    "T1 one trace id", f"{_describe(span)} has another trace than its parent"
                )
        if kind not in ("run", "execution", "undo") and (parent is None or _kind(parent) is None):
            raise TraceTreeViolation(
                "T2 no dangling parents",
                f"{_describe(span)} has no collected saga span as its parent",
            )
        if kind == "execution":
            if run_id in executions:
                raise TraceTreeViolation(
                    "T4 one span per run", f"two execution spans for run {run_id}"
                )
            executions[run_id] = span
        elif kind == "attempt":
            key = (run_id, _attr(span, "saga.step"), _attr(span, "saga.attempt"))
            if key in attempts:
                raise TraceTreeViolation("T4 one span per attempt", f"two spans for {key}")
            attempts[key] = span
            per_step[key[:2]].append(key[2])
        by_run[run_id].append(span)

    for span in saga_spans:
        kind = _kind(span)
        run_id = _attr(span, "saga.run_id")
        parent = parent_of(span)
        parent_kind = _kind(parent) if parent is not None else None
        if kind == "execution":
            parent_run = _attr(span, "saga.parent_run_id")
            if parent_run is not None:
                step = _attr(span, "saga.parent_step")
                if (
                    parent is None
                    or parent_kind != "attempt"
                    or _attr(parent, "saga.run_id") != parent_run
                    or _attr(parent, "saga.step") != step
                ):
                    raise TraceTreeViolation(
                        "T3 nested run under its step",
                        f"{_describe(span)} is not a child of step {step!r} of run {parent_run}",
                    )
            if _attr(span, "saga.outcome") == "failed" and _status(span) != "ERROR":
                raise TraceTreeViolation("T16 failed run is ERROR", f"{_describe(span)} is not")
        elif kind in ("attempt", "compensate", "rollback") and (
            parent is None or parent_kind != "execution" or _attr(parent, "saga.run_id") != run_id
        ):
            raise TraceTreeViolation(
                "T3 under the saga span",
                f"{_describe(span)} is not a child of run {run_id}'s execution span",
            )
        if (
            kind == "attempt"
            and _attr(span, "saga.step.outcome") == "error"
            and (_status(span) != "ERROR" or not any(e.name == "exception" for e in span.events))
        ):
            raise TraceTreeViolation(
                "T16 failed attempt is ERROR with the exception",
                f"{_describe(span)} has status {_status(span)} or no exception event",
            )
        if kind == "compensate":
            failed = attempts.get((run_id, _attr(span, "saga.step"), _attr(span, "saga.attempt")))
            if failed is None:
                raise TraceTreeViolation(
                    "T3 compensation after its attempt",
                    f"{_describe(span)} has no attempt span",
                )
            assert failed.end_time is not None
            assert span.start_time is not None
            if span.start_time < failed.end_time:
                raise TraceTreeViolation(
                    "T3 compensation after its attempt",
                    f"{_describe(span)} started before its attempt's span ended",
                )
        if kind == "undo":
            # A parentless undo is allowed only for ``undo_saga`` of a run not in the trace.
            if parent_kind not in ("rollback", "execution") and (
                parent_kind is not None or run_id in executions
            ):
                raise TraceTreeViolation(
                    "T3 undo under the rollback",
                    f"{_describe(span)} is not under a rollback or execution span",
                )
            assert span.start_time is not None
            late = [
                a
                for a in by_run[run_id]
                if _kind(a) == "attempt" and a.end_time is not None and a.end_time > span.start_time
            ]
            if late:
                raise TraceTreeViolation(
                    "T3 undo after the forward phase",
                    f"{_describe(span)} started before {_describe(late[0])} ended",
                )
    for (run_id, step), numbers in per_step.items():
        if sorted(numbers) != list(range(1, len(numbers) + 1)):
            raise TraceTreeViolation(
                "T3 attempt numbers",
                f"run {run_id} step {step!r} has attempt spans {sorted(numbers)}",
            )
    if recorder is not None:
        _check_against_recorder(saga_spans, executions, attempts, recorder)


_OUTCOME_NAMES: Final = {
    "SagaSucceeded": "succeeded",
    "SagaFailed": "failed",
    "SagaHalted": "halted",
}


def _check_against_recorder(
    saga_spans: list[FinishedSpan],
    executions: dict[int, FinishedSpan],
    attempts: dict[tuple[int, str, int], FinishedSpan],
    recorder: SagaRecorder,
) -> None:
    recorded_runs = set(recorder.runs)
    if recorded_runs != set(executions):
        raise TraceTreeViolation(
            "recorder runs",
            f"recorded runs {sorted(recorded_runs)} but execution spans for {sorted(executions)}",
        )
    counts: dict[str, dict[tuple[int, str, int], FinishedSpan]] = {
        "compensate": {},
        "undo": {},
    }
    for span in saga_spans:
        kind = _kind(span)
        if kind in counts:
            key = (
                _attr(span, "saga.run_id"),
                _attr(span, "saga.step"),
                _attr(span, "saga.attempt"),
            )
            counts[kind][key] = span
    seen: dict[str, set[tuple[int, str, int]]] = {
        "attempt": set(),
        "compensate": set(),
        "undo": set(),
    }
    for event in recorder.events:
        if event.step is None or event.attempt is None:
            continue
        key = (event.run.run_id, event.step, event.attempt)
        if event.kind == "step_attempt_finished":
            found = attempts.get(key)
            if found is None or _attr(found, "saga.step.outcome") != event.outcome:
                raise TraceTreeViolation(
                    "recorder attempts",
                    f"attempt {key} ended {event.outcome!r}; its span: "
                    f"{None if found is None else _attr(found, 'saga.step.outcome')!r}",
                )
            seen["attempt"].add(key)
        elif event.kind in ("compensate_finished", "undo_finished"):
            kind = event.kind.removesuffix("_finished")
            found = counts[kind].get(key)
            if found is None:
                raise TraceTreeViolation(f"recorder {kind}", f"no {kind} span for {key}")
            if kind == "undo" and _attr(found, "saga.undo.outcome") != event.outcome:
                raise TraceTreeViolation(
                    "recorder undo", f"undo {key} ended {event.outcome!r} but its span did not"
                )
            seen[kind].add(key)
    for kind, keys in (("attempt", set(attempts)), *((k, set(v)) for k, v in counts.items())):
        extra = keys - seen[kind]
        if extra:
            raise TraceTreeViolation(
                f"recorder {kind}", f"spans without a recorded {kind}: {sorted(extra)}"
            )
    for run_id, outcome in recorder.outcomes.items():
        expected = _OUTCOME_NAMES.get(type(outcome).__name__)
        if expected is None:
            expected = "crashed" if isinstance(outcome, Exception) else "cancelled"
        actual = _attr(executions[run_id], "saga.outcome")
        if actual != expected:
            raise TraceTreeViolation(
                "recorder outcome", f"run {run_id} ended {expected!r}; its span says {actual!r}"
            )
