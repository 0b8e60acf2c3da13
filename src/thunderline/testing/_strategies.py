"""Hypothesis strategies that generate saga definitions with scripted step behaviours.

::

    @given(plan=saga_plans())
    async def test_my_executor_property(plan):
        world = SagaWorld()
        recorder = SagaRecorder()
        await run_saga(build_saga(plan, world), instrument=recorder)
        check_saga_invariants(recorder)
        world.check_rolled_back()        # after a complete rollback
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import attrs
from hypothesis import strategies as st

from thunderline.sagas import Halt, Retry, Saga, SagaBuilder, Step, StepContext, StepResult

__all__ = [
    "PlannedStep",
    "SagaPlan",
    "SagaWorld",
    "StepFailure",
    "build_saga",
    "saga_plans",
]


class StepFailure(Exception):
    """The failure a planned step raises (from ``run`` or ``undo``)."""

    def __init__(self, step: str, what: str, attempt: int) -> None:
        self.step = step
        self.what = what
        self.attempt = attempt
        super().__init__(f"planned {what} failure of step {step!r} (attempt {attempt})")


@attrs.frozen
class PlannedStep:
    """The scripted behaviour of one generated step.

    Attributes:
        name: Step name.
        deps: Names of earlier steps it depends on.
        fail_first: Attempts that fail (by returning ``Retry``) before it
            succeeds; more than ``max_retries`` means the step fails for good.
        fails: If true every attempt raises :class:`StepFailure` (no retry).
        halts: If true the first attempt (ever) returns :class:`Halt`.
        delay: Seconds each attempt sleeps (a "slow" step).
        backoff: Minimum delay before each retry.
        max_retries: The step's retry bound.
        has_undo: Whether the step defines ``undo``.
        undo_failures: How many undo calls raise before one succeeds
            (``>= max_undo_attempts`` means the undo fails for good).
        concurrent: The step's concurrency flag.
    """

    name: str
    deps: tuple[str, ...] = ()
    fail_first: int = 0
    fails: bool = False
    halts: bool = False
    delay: float = 0.0
    backoff: float = 0.0
    max_retries: int = 2
    has_undo: bool = True
    undo_failures: int = 0
    concurrent: bool = True


@attrs.frozen
class SagaPlan:
    """A generated saga: steps in an order compatible with their dependencies."""

    name: str
    steps: tuple[PlannedStep, ...]

    @property
    def returns(self) -> str:
        """The last step is the return step."""
        return self.steps[-1].name


class SagaWorld:
    """The "external state" planned steps act on.

    Each completed step adds its name to :attr:`effects`; its undo removes it.
    Counters record calls so tests can compare against the plan.
    """

    def __init__(self) -> None:
        self.effects: set[str] = set()
        self.attempts: dict[str, int] = {}
        self.undo_calls: dict[str, int] = {}
        self.halted: set[str] = set()

    def check_rolled_back(self, plan: SagaPlan) -> None:
        """Assert no effect of an undoable step remains (after a complete rollback)."""
        left = sorted(s.name for s in plan.steps if s.has_undo and s.name in self.effects)
        assert not left, f"effects left after rollback: {left}"


class _PlannedStepImpl(Step):
    def __init__(self, plan: PlannedStep, world: SagaWorld) -> None:
        self.plan = plan
        self.world = world

    async def run(self, args: Mapping[str, Any], ctx: StepContext) -> Any:
        plan, world = self.plan, self.world
        world.attempts[plan.name] = world.attempts.get(plan.name, 0) + 1
        if plan.delay:
            await anyio.sleep(plan.delay)
        else:
            await anyio.lowlevel.checkpoint()
        if plan.halts and plan.name not in world.halted:
            world.halted.add(plan.name)
            return Halt(f"planned halt of {plan.name}")
        if plan.fails:
            raise StepFailure(plan.name, "run", ctx.attempt)
        if ctx.attempt <= plan.fail_first:
            return Retry(f"planned retry {ctx.attempt}")
        world.effects.add(plan.name)
        return {"step": plan.name, "args": dict(args)}

    def backoff(self, reason: object, args: Mapping[str, Any], ctx: StepContext) -> float:
        return self.plan.backoff


class _UndoablePlannedStepImpl(_PlannedStepImpl):
    async def undo(self, value: Any, args: Mapping[str, Any], ctx: StepContext) -> Retry | None:
        plan, world = self.plan, self.world
        world.undo_calls[plan.name] = world.undo_calls.get(plan.name, 0) + 1
        await anyio.lowlevel.checkpoint()
        if ctx.attempt <= plan.undo_failures:
            raise StepFailure(plan.name, "undo", ctx.attempt)
        world.effects.discard(plan.name)
        return None


def build_saga(plan: SagaPlan, world: SagaWorld) -> Saga:
    """Turn a plan into a :class:`~thunderline.sagas.Saga` acting on ``world``.

    Dependencies become :class:`~thunderline.sagas.StepResult` arguments.
    """
    builder = SagaBuilder(plan.name)
    for step in plan.steps:
        impl = (_UndoablePlannedStepImpl if step.has_undo else _PlannedStepImpl)(step, world)
        builder.step(
            step.name,
            impl,
            args={f"from_{dep}": StepResult(dep, "step") for dep in step.deps},
            max_retries=step.max_retries,
            concurrent=step.concurrent,
        )
    return builder.build(returns=plan.returns)


@st.composite
def saga_plans(
    draw: st.DrawFn,
    *,
    min_steps: int = 1,
    max_steps: int = 6,
    failures: bool = True,
    halts: bool = False,
    slow: bool = True,
    undo_failures: bool = True,
    max_retries: int = 2,
    max_undo_attempts: int = 5,
) -> SagaPlan:
    """Generate a :class:`SagaPlan`: a random DAG with scripted behaviours.

    Args:
        min_steps: Fewest steps.
        max_steps: Most steps.
        failures: Whether steps may fail (for good, or n times then succeed).
        halts: Whether one step may halt the saga once.
        slow: Whether steps may sleep a few milliseconds.
        undo_failures: Whether undo may fail (sometimes for good).
        max_retries: Upper bound for generated ``max_retries``.
        max_undo_attempts: The undo bound the run will use (to generate undos
            that fail for good as well as ones that recover).
    """
    n = draw(st.integers(min_steps, max_steps))
    names = [f"s{i}" for i in range(n)]
    halt_at = draw(st.sampled_from([None, *names])) if halts else None
    steps = []
    for i, name in enumerate(names):
        deps: tuple[str, ...] = ()
        if i:
            deps = tuple(draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3)))
        retries = draw(st.integers(0, max_retries))
        kind = draw(st.sampled_from(["ok", "ok", "flaky", "fail"])) if failures else "ok"
        steps.append(
            PlannedStep(
                name=name,
                deps=deps,
                fail_first=draw(st.integers(1, retries + 1)) if kind == "flaky" else 0,
                fails=kind == "fail",
                halts=name == halt_at,
                delay=draw(st.sampled_from([0.0, 0.0, 0.001, 0.003])) if slow else 0.0,
                backoff=draw(st.sampled_from([0.0, 0.001, 0.002])),
                max_retries=retries,
                has_undo=draw(st.booleans() | st.just(True)),
                undo_failures=(
                    draw(st.sampled_from([0, 0, 1, max_undo_attempts])) if undo_failures else 0
                ),
                concurrent=draw(st.booleans() | st.just(True)),
            )
        )
    return SagaPlan(name=draw(st.sampled_from(["alpha", "beta", "gamma"])), steps=tuple(steps))
