"""Testing helpers: a recorder, invariant checkers and Hypothesis strategies for sagas.

::

    from thunderline.testing import SagaRecorder, check_saga_invariants

    recorder = SagaRecorder()
    await run_saga(my_saga, inputs, instrument=recorder, max_concurrency=4)
    check_saga_invariants(recorder, max_concurrency=4)

:func:`check_trace_tree` checks the spans ``telemetry.SagaTracer`` made for
the same runs (every step span under its saga span, one trace id, failed steps
marked ERROR), optionally against the recorder.
"""

from __future__ import annotations

from thunderline._exports import publish

from ._invariants import (
    InvariantViolation,
    check_attempt_bounds,
    check_backoff,
    check_concurrency,
    check_dependencies,
    check_nested,
    check_no_forward_after_failure,
    check_nothing_after_finish,
    check_resume,
    check_rollback,
    check_saga_invariants,
    check_timeout,
    check_undo_attempts,
)
from ._recorder import RecordedEvent, SagaRecorder
from ._strategies import (
    PlannedStep,
    SagaPlan,
    SagaWorld,
    StepFailure,
    build_saga,
    saga_plans,
)
from ._traces import FinishedSpan, TraceTreeViolation, check_trace_tree

__all__ = [
    "FinishedSpan",
    "InvariantViolation",
    "PlannedStep",
    "RecordedEvent",
    "SagaPlan",
    "SagaRecorder",
    "SagaWorld",
    "StepFailure",
    "TraceTreeViolation",
    "build_saga",
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
    "check_trace_tree",
    "check_undo_attempts",
    "saga_plans",
]

publish(globals(), __name__, __all__)
