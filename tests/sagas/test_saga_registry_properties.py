"""S21 and S22 with Hypothesis: random start/cancel/crash/complete sequences."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thunderline.runtime as tl
from thunderline.sagas import (
    Input,
    Saga,
    SagaAlreadyRunningError,
    SagaBuilder,
    SagaCancelledError,
    SagaCrashedError,
    SagaFailed,
    SagaInstrument,
    SagaOutcome,
    SagaPhase,
    SagaRunInfo,
    SagaSucceeded,
    StepResult,
    StepStatus,
    UnknownSagaError,
    await_saga,
    cancel_saga,
    list_sagas,
    lookup,
    start_saga,
    start_saga_supervisor,
    statistics,
)

pytestmark = pytest.mark.anyio

PROPERTY = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
LIMIT = 10  # per example; a normal example takes milliseconds
IDS = ("o-1", "o-2", "o-3")
KINDS = ("start", "join", "complete", "fail", "cancel", "kill", "crash", "lookup", "await")


class Gate:
    def __init__(self) -> None:
        self.release = anyio.Event()
        self.entered = anyio.Event()
        self.fail = False
        self.log: list[tuple[str, str]] = []


async def _a(gate: Gate) -> str:
    gate.log.append(("run", "a"))
    return "a"


async def _undo_a(value: object, gate: Gate) -> None:
    gate.log.append(("undo", "a"))


async def _b(gate: Gate, a: object) -> str:
    gate.log.append(("run", "b"))
    gate.entered.set()
    await gate.release.wait()
    if gate.fail:
        raise ValueError("b failed")
    return "done"


def _saga() -> Saga:
    builder = SagaBuilder("gated", inputs=["gate"])
    builder.step("a", _a, args={"gate": Input("gate")}, undo=_undo_a)
    builder.step("b", _b, args={"gate": Input("gate"), "a": StepResult("a")})
    return builder.build(returns="b")


SAGA = _saga()


async def _check_registry(sup: tl.Pid, running: Mapping[str, tl.Pid]) -> None:
    """S21: present exactly when running; S22: nothing listed is terminal."""
    infos = await list_sagas(sup)
    assert [(i.correlation_id, i.pid) for i in infos] == list(running.items())
    for info in infos:
        assert tl.is_alive(info.pid)
        assert info.phase is SagaPhase.RUNNING
        assert info.steps == {"a": StepStatus.COMPLETED, "b": StepStatus.RUNNING}
    for cid in IDS:
        info = await lookup(sup, cid)
        assert (info.pid if info is not None else None) == running.get(cid)
    assert (await statistics(sup)).running == len(running)


@PROPERTY
@given(ops=st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(IDS)), max_size=14))
async def test_s21_registry_matches_a_model_after_every_operation(
    ops: list[tuple[str, str]],
) -> None:
    running: dict[str, tl.Pid] = {}
    gates: dict[str, Gate] = {}
    ended: dict[str, str] = {}
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            # One step slot per id: every running saga holds one while its gate is closed.
            sup = await start_saga_supervisor(max_concurrency=len(IDS))
            for kind, cid in ops:
                await _apply(sup, kind, cid, running, gates, ended)
                await _check_registry(sup, running)
            for cid in list(running):
                await _apply(sup, "complete", cid, running, gates, ended)
            await _check_registry(sup, {})
            stats = await statistics(sup)
            assert stats.started == stats.succeeded + stats.failed + stats.crashed


async def _apply(
    sup: tl.Pid,
    kind: str,
    cid: str,
    running: dict[str, tl.Pid],
    gates: dict[str, Gate],
    ended: dict[str, str],
) -> None:
    if kind in ("start", "join"):
        gate = Gate()
        mode: Any = "join" if kind == "join" else "reject"
        if cid in running:
            if kind == "start":
                with pytest.raises(SagaAlreadyRunningError) as caught:
                    await start_saga(sup, SAGA, {"gate": gate}, correlation_id=cid)
                assert (caught.value.correlation_id, caught.value.pid) == (cid, running[cid])
            else:
                handle = await start_saga(
                    sup, SAGA, {"gate": gate}, correlation_id=cid, on_duplicate=mode
                )
                assert (handle.pid, handle.joined) == (running[cid], True)
            assert gate.log == []
            assert gates[cid].log.count(("run", "a")) == 1
            return
        handle = await start_saga(
            sup, SAGA, {"gate": gate}, correlation_id=cid, on_duplicate=mode, in_flight="cancel"
        )
        assert not handle.joined
        await gate.entered.wait()
        running[cid], gates[cid] = handle.pid, gate
        return
    if kind == "lookup":
        return  # checked after every operation anyway
    if cid not in running:
        if kind in ("kill", "crash"):
            return
        if kind == "cancel" or cid not in ended:
            with pytest.raises(UnknownSagaError):
                await (cancel_saga if kind == "cancel" else await_saga)(sup, cid)
            return
        try:
            outcome: SagaOutcome | None = await await_saga(sup, cid)
        except SagaCrashedError:
            outcome = None
        assert _kind(outcome) == ended[cid]
        return
    gate, pid = gates[cid], running[cid]
    if kind == "await":
        return  # it would wait forever: the gate is closed
    if kind in ("complete", "fail"):
        gate.fail = kind == "fail"
        gate.release.set()
        outcome = await await_saga(sup, cid)
    elif kind == "cancel":
        outcome = await cancel_saga(sup, cid)
        assert isinstance(outcome, SagaFailed)
        assert isinstance(outcome.error, SagaCancelledError)
    else:
        tl.exit(pid, tl.KILL if kind == "kill" else "boom")
        with pytest.raises(SagaCrashedError) as caught:
            await await_saga(sup, cid)
        assert caught.value.reason == (tl.KILLED if kind == "kill" else "boom")
        outcome = None
    del running[cid]
    ended[cid] = _kind(outcome)
    assert await lookup(sup, cid) is None
    if kind != "complete":  # every way of failing rolls back the completed step exactly once
        assert gate.log.count(("undo", "a")) == 1
    assert gate.log.count(("run", "a")) == 1


def _kind(outcome: SagaOutcome | None) -> str:
    if outcome is None:
        return "crashed"
    return "succeeded" if isinstance(outcome, SagaSucceeded) else "failed"


class Timeline(SagaInstrument):
    """One global order of saga starts/ends and of lookup invocations."""

    def __init__(self) -> None:
        self.log: list[tuple[str, object]] = []

    def saga_started(self, run: SagaRunInfo) -> None:
        self.log.append(("started", (run.correlation_id, run.run_id)))

    def saga_finished(self, run: SagaRunInfo, outcome: object, error: object) -> None:
        self.log.append(("finished", (run.correlation_id, run.run_id)))

    def event(self, run: SagaRunInfo, name: str, attributes: Mapping[str, object]) -> None:
        if name in ("saga_registered", "saga_unregistered"):
            self.log.append((name, run.run_id))


@PROPERTY
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(("start", "join", "complete", "cancel", "kill")), st.sampled_from(IDS)
        ),
        min_size=1,
        max_size=12,
    )
)
async def test_s22_concurrent_operations_never_show_an_ended_saga(
    ops: list[tuple[str, str]],
) -> None:
    timeline = Timeline()
    gates = {cid: Gate() for cid in IDS}
    bad: list[str] = []
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor(instrument=timeline)

            async def operate(kind: str, cid: str) -> None:
                try:
                    if kind in ("start", "join"):
                        await start_saga(
                            sup,
                            SAGA,
                            {"gate": gates[cid]},
                            correlation_id=cid,
                            on_duplicate="join" if kind == "join" else "reject",
                            in_flight="cancel",
                        )
                    elif kind == "complete":
                        gates[cid].release.set()
                    elif kind == "cancel":
                        await cancel_saga(sup, cid)
                    else:
                        info = await lookup(sup, cid)
                        if info is not None:
                            tl.exit(info.pid, tl.KILL)
                except (SagaAlreadyRunningError, UnknownSagaError, SagaCrashedError):
                    pass

            stop = anyio.Event()

            async def watch() -> None:
                while not stop.is_set():
                    for cid in IDS:
                        invoked = len(timeline.log)
                        info = await lookup(sup, cid)
                        if info is None:
                            continue
                        if info.phase is SagaPhase.FINISHED:
                            bad.append(f"{cid}: listed with phase FINISHED")
                        key = (cid, info.run_id)
                        if ("finished", key) in timeline.log[:invoked]:
                            bad.append(f"{cid}: run {info.run_id} ended before the lookup began")

            async with anyio.create_task_group() as watchers:
                watchers.start_soon(watch)
                async with anyio.create_task_group() as tg:
                    for kind, cid in ops:
                        tg.start_soon(operate, kind, cid)
                for gate in gates.values():
                    gate.release.set()
                for cid in IDS:
                    try:
                        await await_saga(sup, cid)
                    except (UnknownSagaError, SagaCrashedError):
                        pass
                stop.set()
            assert await list_sagas(sup) == []
    assert bad == []
    registered = [r for name, r in timeline.log if name == "saga_registered"]
    unregistered = [r for name, r in timeline.log if name == "saga_unregistered"]
    assert sorted(registered) == sorted(unregistered)  # type: ignore[type-var]
    assert len(set(registered)) == len(registered)
    # Never two runs of one correlation id at once (S21).
    active: dict[str, int] = {}
    for name, key in timeline.log:
        if name in ("started", "finished"):
            cid, run_id = key  # type: ignore[misc]
            if name == "started":
                assert cid not in active, f"{cid} ran twice at once"
                active[cid] = run_id
            else:
                assert active.pop(cid) == run_id
