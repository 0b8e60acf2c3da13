"""Saga overhead per step: a 5-step DAG of no-op steps with two parallel branches.

``a`` -> (``b1`` -> ``b2``) and (``c1``), then ``d`` joins them. One operation
is one step; the raw column runs the same five no-op async functions as
plain awaited calls, in dependency order. ``saga_traced`` adds telemetry's
``SagaTracer`` (a span per saga and per step attempt, dropped by the
exporter). Target: at most 20 microseconds per step on asyncio, untraced.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

import anyio

from benchmarks._core import Contender, Target, Workload

ORDER = 60
STEPS = 5


def _saga() -> Any:
    from thunderline.sagas import Input, SagaBuilder, StepResult

    async def noop(x: int) -> int:
        return x

    async def join(left: int, right: int) -> int:
        return left + right

    b = SagaBuilder("bench", inputs=["x"])
    b.step("a", noop, args={"x": Input("x")})
    b.step("b1", noop, args={"x": StepResult("a")})
    b.step("b2", noop, args={"x": StepResult("b1")})
    b.step("c1", noop, args={"x": StepResult("a")})
    b.step("d", join, args={"left": StepResult("b2"), "right": StepResult("c1")})
    return b.build(returns="d")


def _saga_sample(traced: bool) -> Callable[[str, int], float]:
    def sample(backend: str, n: int) -> float:
        from thunderline.sagas import run_saga

        saga = _saga()
        instrument = None
        telemetry = None
        if traced:
            from thunderline import telemetry as telemetry_module

            telemetry = telemetry_module
            telemetry.configure(
                exporter=telemetry.DiscardExporter(), batch=False, install_global=False
            )
            instrument = telemetry.SagaTracer()
        runs = max(1, n // STEPS)

        async def body() -> float:
            start = perf_counter()
            for i in range(runs):
                await run_saga(saga, {"x": i}, instrument=instrument)
            return perf_counter() - start

        try:
            elapsed = anyio.run(body, backend=backend)
        finally:
            if telemetry is not None:
                telemetry.shutdown()
        return elapsed / (runs * STEPS)

    return sample


def _plain_sample(backend: str, n: int) -> float:
    async def noop(x: int) -> int:
        return x

    runs = max(1, n // STEPS)

    async def body() -> float:
        start = perf_counter()
        for i in range(runs):
            a = await noop(i)
            b1 = await noop(a)
            b2 = await noop(b1)
            c1 = await noop(a)
            await noop(b2 + c1)
        return perf_counter() - start

    return anyio.run(body, backend=backend) / (runs * STEPS)


WORKLOADS = [
    Workload(
        name="saga_step",
        title="one step of a 5-step DAG saga (two parallel branches), untraced",
        n=20_000,
        smoke_n=50,
        contenders=[
            Contender("thunderline", "run_saga, no-op steps", _saga_sample(traced=False)),
            Contender("raw", "the same functions awaited in order", _plain_sample),
        ],
        target=Target(max_value=20e-6, beat_peers=False),
    ),
    Workload(
        name="saga_step_traced",
        title="one step of the same saga with SagaTracer spans",
        n=10_000,
        smoke_n=50,
        contenders=[
            Contender("thunderline", "run_saga + SagaTracer", _saga_sample(traced=True)),
            Contender("raw", "the same functions awaited in order", _plain_sample),
        ],
        target=Target(beat_peers=False),
    ),
]
