"""Sagas: dependency-ordered steps with retries, compensation, undo and halting.

::

    from thunderline.sagas import Input, SagaBuilder, StepResult, run_saga

    b = SagaBuilder("checkout", inputs=["sku"])
    b.step("reserve", reserve, args={"sku": Input("sku")}, undo=release)
    b.step("charge", charge, args={"item": StepResult("reserve")}, max_retries=2)
    outcome = await run_saga(b.build(returns="charge"), {"sku": "A1"})

See :class:`Step` for the step contract and :mod:`thunderline.sagas._executor`
for the executor's algorithm.
"""

from __future__ import annotations

from thunderline._exports import publish

from ._errors import (
    ArgumentPathError,
    CompensateFailedError,
    DependencyCycleError,
    DuplicateStepError,
    InvalidResultError,
    InvalidStepError,
    MissingInputError,
    NestedSagaFailedError,
    ResumeError,
    RetriesExceededError,
    SagaAbortedError,
    SagaAlreadyExecutedError,
    SagaDefinitionError,
    SagaError,
    SagaHaltedError,
    SagaTimeoutError,
    StepTimeoutError,
    UndoFailedError,
    UnknownDependencyError,
    UnknownInputError,
    UnknownReturnStepError,
)
from ._executor import (
    SagaPhase,
    SagaRun,
    SagaRunStatistics,
    StepStatus,
    resume_saga,
    run_saga,
    undo_saga,
)
from ._instrument import (
    AttemptOutcome,
    SagaInstrument,
    SagaRunInfo,
    UndoOutcome,
    get_default_instrument,
    set_default_instrument,
)
from ._registry import SagaAlreadyRunningError, SagaInfo, UnknownSagaError
from ._result import (
    CompletedStep,
    RollbackReport,
    RollbackStatus,
    SagaFailed,
    SagaHalted,
    SagaOutcome,
    SagaState,
    SagaSucceeded,
)
from ._saga import ArgumentSource, Input, Saga, SagaBuilder, StepResult, StepSpec, Value
from ._step import Continue, FunctionStep, Halt, Retry, Step, StepContext
from ._supervisor import (
    SagaArgumentError,
    SagaAwaitTimeoutError,
    SagaCancelledError,
    SagaCrashedError,
    SagaHandle,
    SagaSupervisorStatistics,
    await_saga,
    cancel_saga,
    list_sagas,
    lookup,
    saga_supervisor_spec,
    start_saga,
    start_saga_supervisor,
    statistics,
)

__all__ = [
    "ArgumentPathError",
    "ArgumentSource",
    "AttemptOutcome",
    "CompensateFailedError",
    "CompletedStep",
    "Continue",
    "DependencyCycleError",
    "DuplicateStepError",
    "FunctionStep",
    "Halt",
    "Input",
    "InvalidResultError",
    "InvalidStepError",
    "MissingInputError",
    "NestedSagaFailedError",
    "ResumeError",
    "RetriesExceededError",
    "Retry",
    "RollbackReport",
    "RollbackStatus",
    "Saga",
    "SagaAbortedError",
    "SagaAlreadyExecutedError",
    "SagaAlreadyRunningError",
    "SagaArgumentError",
    "SagaAwaitTimeoutError",
    "SagaBuilder",
    "SagaCancelledError",
    "SagaCrashedError",
    "SagaDefinitionError",
    "SagaError",
    "SagaFailed",
    "SagaHalted",
    "SagaHaltedError",
    "SagaHandle",
    "SagaInfo",
    "SagaInstrument",
    "SagaOutcome",
    "SagaPhase",
    "SagaRun",
    "SagaRunInfo",
    "SagaRunStatistics",
    "SagaState",
    "SagaSucceeded",
    "SagaSupervisorStatistics",
    "SagaTimeoutError",
    "Step",
    "StepContext",
    "StepResult",
    "StepSpec",
    "StepStatus",
    "StepTimeoutError",
    "UndoFailedError",
    "UndoOutcome",
    "UnknownDependencyError",
    "UnknownInputError",
    "UnknownReturnStepError",
    "UnknownSagaError",
    "Value",
    "await_saga",
    "cancel_saga",
    "get_default_instrument",
    "list_sagas",
    "lookup",
    "resume_saga",
    "run_saga",
    "saga_supervisor_spec",
    "set_default_instrument",
    "start_saga",
    "start_saga_supervisor",
    "statistics",
    "undo_saga",
]

publish(globals(), __name__, __all__)
