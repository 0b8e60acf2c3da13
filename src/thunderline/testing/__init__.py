"""Testing helpers: a recorder, invariant checkers and Hypothesis strategies for sagas.

::

    from thunderline.testing import SagaRecorder, check_saga_invariants

    recorder = SagaRecorder()
    await run_saga(my_saga, inputs, instrument=recorder, max_concurrency=4)
    check_saga_invariants(recorder, max_concurrency=4)

Not yet here: a trace-tree-shape checker (every step span under the saga
span, one trace id); it belongs with the telemetry layer's in-memory exporter.
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

__all__ = [
    "InvariantViolation",
    "PlannedStep",
    "RecordedEvent",
    "SagaPlan",
    "SagaRecorder",
    "SagaWorld",
    "StepFailure",
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
    "check_undo_attempts",
    "saga_plans",
]

publish(globals(), __name__, __all__)
