"""A process that runs journaled sagas until done, to be killed (SIGKILL) by test_crash_recovery.

Usage: ``python crash_worker.py DIR PHASE BACKEND SAGAS SEED [JOURNAL SCHEMA]``

It starts a saga supervisor on ``DIR/sagas.db`` (or the ``postgresql://``
URL ``JOURNAL``, in ``SCHEMA``), recovering what a killed
predecessor left), prints ``READY``, then starts sagas ``s0`` .. ``s<SAGAS-1>``
(a start refused because the id already ran is skipped; one refused because
it is being recovered is awaited), awaits each and prints ``DONE``.

Steps record what they do in ``DIR/effects`` (one ``write`` per line, so a
kill never tears a line), outside the journal under test::

    run <phase> <cid> <key>         a forward attempt ran (its effect)
    undo-call <phase> <cid> <key>   an undo was called
    undo <phase> <cid> <key>        the undo's effect (idempotent by key: once)
    outcome <phase> <cid> <kind>    await_saga returned (after the journal has it)
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

import anyio

import thunderline.runtime as tl
from thunderline.sagas import (
    Input,
    Saga,
    SagaAlreadyRanError,
    SagaAlreadyRunningError,
    SagaBuilder,
    SagaFailed,
    SagaSucceeded,
    Step,
    StepContext,
    StepResult,
    await_saga,
    open_journal,
    start_saga,
    start_saga_supervisor,
)

DIR = Path(sys.argv[1])
PHASE = int(sys.argv[2])
BACKEND = sys.argv[3]
SAGAS = int(sys.argv[4])
RNG = random.Random(int(sys.argv[5]) * 1000 + PHASE)
JOURNAL = sys.argv[6] if len(sys.argv) > 6 else str(DIR / "sagas.db")
SCHEMA = sys.argv[7] if len(sys.argv) > 7 else "thunderline_sagas"
EFFECTS = os.open(DIR / "effects", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def record(kind: str, cid: str, what: str) -> None:
    os.write(EFFECTS, f"{kind} {PHASE} {cid} {what}\n".encode())


def undone_before(key: str) -> bool:
    text = (DIR / "effects").read_text()
    return any(
        line.split(" ")[0] == "undo" and line.split(" ")[3] == key for line in text.splitlines()
    )


def root(ctx: StepContext) -> str:
    return ctx.idempotency_key.split(":", 1)[0]


class Effect(Step):
    """Records its run, sleeps a little (a window for the kill), fails if told to."""

    def __init__(self, name: str, *, fails: bool = False) -> None:
        self.name = name
        self.fails = fails

    async def run(self, args: Any, ctx: StepContext) -> Any:
        await anyio.sleep(RNG.uniform(0, 0.02))
        record("run", root(ctx), ctx.idempotency_key)
        i = int(args["i"])
        if self.fails and (i // 3) % 2 == 0:  # half of the sagas of each definition fail
            raise ValueError(f"{self.name} fails for saga {i}")
        return {"i": i, "step": self.name}

    async def undo(self, value: Any, args: Any, ctx: StepContext) -> None:
        record("undo-call", root(ctx), ctx.idempotency_key)
        await anyio.sleep(RNG.uniform(0, 0.01))
        if not undone_before(ctx.idempotency_key):
            record("undo", root(ctx), ctx.idempotency_key)


def chain() -> Saga:
    b = SagaBuilder("chain", inputs=["i"])
    b.step("a", Effect("a"), args={"i": Input("i")})
    b.step("b", Effect("b"), args={"i": StepResult("a", "i")})
    b.step("c", Effect("c"), args={"i": StepResult("b", "i")})
    b.step("d", Effect("d", fails=True), args={"i": StepResult("c", "i")})
    return b.build(returns="d")


def dag() -> Saga:
    b = SagaBuilder("dag", inputs=["i"], recovery="resume")
    b.step("a", Effect("a"), args={"i": Input("i")})
    b.step("b", Effect("b"), args={"i": StepResult("a", "i")})
    b.step("c", Effect("c"), args={"i": StepResult("a", "i")})
    b.step("d", Effect("d", fails=True), args={"i": StepResult("b", "i")}, wait_for=["c"])
    return b.build(returns="d")


def nested() -> Saga:
    child = SagaBuilder("child", inputs=["i"])
    child.step("c1", Effect("c1"), args={"i": Input("i")})
    child.step("c2", Effect("c2"), args={"i": StepResult("c1", "i")})
    b = SagaBuilder("nested", inputs=["i"])
    b.step("o1", Effect("o1"), args={"i": Input("i")})
    b.step("inner", child.build(returns="c2"), args={"i": StepResult("o1", "i")})
    b.step("o2", Effect("o2", fails=True), args={"i": StepResult("inner", "i")})
    return b.build(returns="o2")


DEFINITIONS = [chain(), dag(), nested()]


async def one(sup: tl.Pid, i: int) -> None:
    cid = f"s{i}"
    saga = DEFINITIONS[i % len(DEFINITIONS)]
    try:
        await start_saga(sup, saga, {"i": i}, correlation_id=cid, max_undo_attempts=5)
    except SagaAlreadyRanError:
        return  # ended before this start-up
    except SagaAlreadyRunningError:
        pass  # being recovered: await it
    outcome = await await_saga(sup, cid)
    kind = (
        "succeeded"
        if isinstance(outcome, SagaSucceeded)
        else f"failed/{outcome.rollback.status.value}"
        if isinstance(outcome, SagaFailed)
        else "halted"
    )
    record("outcome", cid, kind)


async def main() -> None:
    async with tl.open_node():
        journal = open_journal(JOURNAL, schema=SCHEMA)
        sup = await start_saga_supervisor(journal=journal, definitions=DEFINITIONS)
        print("READY", flush=True)
        async with anyio.create_task_group() as tg:
            for i in range(SAGAS):
                tg.start_soon(one, sup, i)
                await anyio.sleep(RNG.uniform(0, 0.005))
    print("DONE", flush=True)


if __name__ == "__main__":
    anyio.run(main, backend=BACKEND)
