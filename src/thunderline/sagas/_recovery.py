"""Recovery: rebuild an unfinished run from its journal, to compensate or resume it.

Algorithm (:func:`recovery_state`), for one run without an outcome::

    replay its records in journal order:
        attempt_finished ok / completed at path P -> P stands completed (with its
                                                     value, if journaled)
        undo_finished ok at P                      -> P no longer stands
        failure                                    -> the run was rolling back (a
                                                     nested saga's own rollback is not)
    compensate := the definition's policy is "compensate", or the run was
                  rolling back (a failed run is never resumed forward)
    build the state tree, each saga level from its steps:
        arguments are resolved again from the journaled inputs and results
        (a value that was not journaled is UNJOURNALED)
        compensate: every step standing completed, ordered by its completion
            record; a nested saga step as a unit whose child holds its own
            standing steps (also when the nested step itself never completed:
            its child's completed steps must be undone too)
        resume: every step standing completed *with* its value; a nested saga
            step that did not complete (or whose value was not journaled)
            becomes a halted child, resumed from its own standing steps; every
            other step runs (again): steps that started and did not complete
            run again, with the same StepContext.idempotency_key

The supervisor then runs the state as a :class:`SagaRun` writing to the same
journal: compensate = a run failed at once with :class:`SagaInterruptedError`
(its rollback undoes the standing steps newest first, each undo journaled);
resume = a resumed run. Either way the outcome is journaled as for any run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from ._errors import ArgumentPathError, SagaError
from ._executor import _resolve_arguments
from ._journal import JournalCodec, JournaledRun, JournalRecord
from ._result import CompletedStep, SagaState
from ._saga import Saga

__all__ = ["UNJOURNALED", "SagaInterruptedError", "recovery_state"]


class _Unjournaled:
    """The type of :data:`UNJOURNALED`."""

    _instance: _Unjournaled | None = None

    def __new__(cls) -> _Unjournaled:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNJOURNALED"

    def __reduce__(self) -> str:
        return "UNJOURNALED"


UNJOURNALED: Final = _Unjournaled()
"""Stands for a value a recovery cannot give back: a step result the journal's
codec could not encode (``undo`` receives it as its value, or inside its
arguments, when a crashed run is compensated)."""


class SagaInterruptedError(SagaError):
    """The error of the :class:`SagaFailed` of a run compensated by a recovery.

    The run's process ended without an outcome (killed, crashed, the machine
    went down); at the next start-up its saga supervisor undid its completed
    steps.

    Attributes:
        correlation_id: The run's correlation id.
        saga: The saga's name.
    """

    def __init__(self, correlation_id: str, saga: str) -> None:
        self.correlation_id = correlation_id
        self.saga = saga
        super().__init__(
            f"saga {saga!r} run {correlation_id!r} was interrupted (its process ended without "
            "an outcome) and compensated on recovery"
        )


@attrs.frozen
class _Done:
    seq: int
    value: Any
    has_value: bool


def recovery_state(
    saga: Saga, run: JournaledRun, records: list[JournalRecord], codec: JournalCodec
) -> tuple[SagaState, bool]:
    """The state to recover ``run`` from, and whether to compensate (else resume)."""
    done: dict[str, _Done] = {}
    rolling_back = False
    for record in records:
        kind = record.kind
        if (kind == "attempt_finished" and record.status == "ok") or kind == "completed":
            value = codec.decode(record.value) if record.has_value and record.value else None
            if record.has_value and record.value is not None:
                done[record.path] = _Done(record.seq, value, True)
            else:
                done[record.path] = _Done(record.seq, UNJOURNALED, False)
        elif kind == "undo_finished" and record.status == "ok":
            done.pop(record.path, None)
        elif kind == "failure":  # written when the run's own rollback began
            rolling_back = True
    compensate = saga.recovery == "compensate" or rolling_back
    inputs = codec.decode(run.inputs)
    if not isinstance(inputs, dict):
        raise SagaError(f"saga journal: run {run.correlation_id!r} has inputs {inputs!r}")
    state, _ = _build(saga, (), inputs, run.correlation_id, done, compensate)
    return state, compensate


def _build(
    saga: Saga,
    prefix: tuple[str, ...],
    inputs: Mapping[str, Any],
    correlation_id: str,
    done: Mapping[str, _Done],
    compensate: bool,
) -> tuple[SagaState, int]:
    """The state of one saga level, and the last completion seq within it (-1: none)."""
    results: dict[str, Any] = {}
    for spec in saga.steps:
        found = done.get("/".join((*prefix, spec.name)))
        if found is not None:
            results[spec.name] = found.value
    plan = saga._plan
    entries: list[tuple[int, CompletedStep]] = []
    halted: dict[str, SagaState] = {}
    last = -1
    for spec in saga.steps:
        name = spec.name
        found = done.get("/".join((*prefix, name)))
        try:
            args: Mapping[str, Any] = _resolve_arguments(
                spec, plan.arguments_of[name], inputs, _Lenient(results)
            )
        except ArgumentPathError:
            args = {arg: UNJOURNALED for arg, _ in spec.arguments}
        if isinstance(spec.impl, Saga):
            child, child_last = _build(
                spec.impl, (*prefix, name), args, f"{correlation_id}/{name}", done, compensate
            )
            last = max(last, child_last)
            if found is not None and (compensate or found.has_value):
                entries.append((found.seq, CompletedStep(name, found.value, args, child)))
                last = max(last, found.seq)
            elif child.completed:
                if compensate:
                    entries.append((child_last, CompletedStep(name, UNJOURNALED, args, child)))
                else:
                    halted[name] = child
            continue
        if found is None or not (compensate or found.has_value):
            continue  # resume: runs (again)
        entries.append((found.seq, CompletedStep(name, found.value, args)))
        last = max(last, found.seq)
    entries.sort(key=lambda entry: entry[0])
    state = SagaState(
        saga=saga,
        inputs=dict(inputs),
        correlation_id=correlation_id,
        completed=tuple(entry[1] for entry in entries),
        halted_children=halted,
        resumable=True,
    )
    return state, last


class _Lenient(dict[str, Any]):
    """Results where a step that never completed reads as UNJOURNALED."""

    def __missing__(self, key: str) -> Any:
        return UNJOURNALED
