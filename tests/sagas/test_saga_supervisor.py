"""The saga supervisor: start/lookup/list/await/cancel, duplicates, crashes, errors, events."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio
import pytest

import thunderline.runtime as tl
from thunderline.sagas import (
    Input,
    MissingInputError,
    Saga,
    SagaAlreadyRunningError,
    SagaArgumentError,
    SagaAwaitTimeoutError,
    SagaBuilder,
    SagaCancelledError,
    SagaCrashedError,
    SagaError,
    SagaFailed,
    SagaHandle,
    SagaInstrument,
    SagaPhase,
    SagaRunInfo,
    SagaSucceeded,
    SagaSupervisorStatistics,
    StepResult,
    StepStatus,
    UnknownSagaError,
    await_saga,
    cancel_saga,
    list_sagas,
    lookup,
    saga_supervisor_spec,
    start_saga,
    start_saga_supervisor,
    statistics,
)

pytestmark = pytest.mark.anyio

LIMIT = 20  # generous bound for a loaded machine; nothing here waits on time


class Gate:
    """Controls a gated saga: its last step waits for ``release``; ``log`` records run/undo."""

    def __init__(self, *, fail: bool = False) -> None:
        self.release = anyio.Event()
        self.entered = anyio.Event()
        self.fail = fail
        self.log: list[tuple[str, str]] = []


def gated_saga(steps: tuple[str, ...] = ("a", "b"), *, undo_last: bool = False) -> Saga:
    """A chain of steps; each but the last (unless ``undo_last``) has an undo; the last waits."""
    builder = SagaBuilder("gated", inputs=["gate"])
    previous: str | None = None
    for index, name in enumerate(steps):
        last = index == len(steps) - 1
        args: dict[str, Any] = {"gate": Input("gate")}
        if previous is not None:
            args["previous"] = StepResult(previous)
        builder.step(
            name,
            _run(name, last=last),
            args=args,
            undo=_undo(name) if (not last or undo_last) else None,
        )
        previous = name
    return builder.build(returns=steps[-1])


def _run(name: str, *, last: bool) -> Callable[..., Any]:
    async def run(gate: Gate, previous: object = None) -> str:
        gate.log.append(("run", name))
        if last:
            gate.entered.set()
            await gate.release.wait()
            if gate.fail:
                raise ValueError(f"{name} failed")
            return "done"
        return name

    return run


def _undo(name: str) -> Callable[..., Any]:
    async def undo(value: object, gate: Gate, previous: object = None) -> None:
        gate.log.append(("undo", name))

    return undo


async def wait_stats(sup: tl.Pid, ready: Callable[[SagaSupervisorStatistics], bool]) -> None:
    """Ask the supervisor until ``ready`` holds (each ask is a message round trip)."""
    while not ready(await statistics(sup)):
        await anyio.lowlevel.checkpoint()


class Events(SagaInstrument):
    """Records (event name, correlation id, attributes) of top-level runs."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Mapping[str, object]]] = []
        self.unregistered = anyio.Event()

    def event(self, run: SagaRunInfo, name: str, attributes: Mapping[str, object]) -> None:
        if run.parent is None:
            self.events.append((name, run.correlation_id, dict(attributes)))
        if name == "saga_unregistered":
            self.unregistered.set()

    def names(self, cid: str) -> list[str]:
        return [name for name, c, _ in self.events if c == cid]


async def test_start_lookup_list_and_await_success(anyio_backend: str) -> None:
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor(name="sagas")
            gate = Gate()
            handle = await start_saga(sup, gated_saga(), {"gate": gate}, correlation_id="o-1")
            assert handle == SagaHandle("o-1", handle.pid, "gated", handle.run_id, joined=False)
            await gate.entered.wait()
            info = await lookup("sagas", "o-1")
            assert info is not None
            assert (info.correlation_id, info.pid, info.saga) == ("o-1", handle.pid, "gated")
            assert info.phase is SagaPhase.RUNNING
            assert info.steps == {"a": StepStatus.COMPLETED, "b": StepStatus.RUNNING}
            assert [i.correlation_id for i in await list_sagas(sup)] == ["o-1"]
            assert (await statistics(sup)).running == 1
            gate.release.set()
            outcome = await await_saga(sup, "o-1")
            assert isinstance(outcome, SagaSucceeded)
            assert outcome.value == "done"
            assert await lookup(sup, "o-1") is None
            assert await list_sagas(sup) == []
            stats = await statistics(sup)
            assert (stats.running, stats.started, stats.succeeded) == (0, 1, 1)


async def test_duplicate_start_is_rejected_naming_the_id(anyio_backend: str) -> None:
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor()
            gate = Gate()
            handle = await start_saga(sup, gated_saga(), {"gate": gate}, correlation_id="dup")
            await gate.entered.wait()
            with pytest.raises(SagaAlreadyRunningError) as caught:
                await start_saga(sup, gated_saga(), {"gate": Gate()}, correlation_id="dup")
            assert caught.value.correlation_id == "dup"
            assert caught.value.pid == handle.pid
            assert "'dup'" in str(caught.value)
            assert isinstance(caught.value, SagaError)
            assert len(await list_sagas(sup)) == 1
            gate.release.set()
            assert isinstance(await await_saga(sup, "dup"), SagaSucceeded)
            assert gate.log.count(("run", "a")) == 1
            assert (await statistics(sup)).rejected == 1


async def test_duplicate_start_can_join_the_running_saga(anyio_backend: str) -> None:
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor()
            gate = Gate()
            first = await start_saga(sup, gated_saga(), {"gate": gate}, correlation_id="j")
            await gate.entered.wait()
            other = Gate()
            joined = await start_saga(
                sup, gated_saga(), {"gate": other}, correlation_id="j", on_duplicate="join"
            )
            assert joined.joined
            assert (joined.pid, joined.run_id) == (first.pid, first.run_id)
            gate.release.set()
            assert isinstance(await await_saga(sup, "j"), SagaSucceeded)
            assert other.log == []  # the joined start ran nothing
            assert gate.log.count(("run", "a")) == 1
            # Once ended, the id is free again: a new run under it.
            again = Gate()
            again.release.set()
            second = await start_saga(sup, gated_saga(), {"gate": again}, correlation_id="j")
            assert second.run_id != first.run_id
            assert not second.joined
            assert isinstance(await await_saga(sup, "j"), SagaSucceeded)
            assert (await statistics(sup)).joined == 1


async def test_cancel_rolls_back_completed_steps_in_reverse_order(anyio_backend: str) -> None:
    events = Events()
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor(instrument=events)
            gate = Gate()
            await start_saga(
                sup,
                gated_saga(("a", "b", "c")),
                {"gate": gate},
                correlation_id="c-1",
                in_flight="cancel",
            )
            await gate.entered.wait()
            outcome = await cancel_saga(sup, "c-1")
            assert isinstance(outcome, SagaFailed)
            assert isinstance(outcome.error, SagaCancelledError)
            assert outcome.error.correlation_id == "c-1"
            assert outcome.step is None
            assert outcome.rollback.undone == ("b", "a")
            assert gate.log == [
                ("run", "a"),
                ("run", "b"),
                ("run", "c"),
                ("undo", "b"),
                ("undo", "a"),
            ]
            assert await lookup(sup, "c-1") is None
            assert await await_saga(sup, "c-1") is outcome  # cached
            with pytest.raises(UnknownSagaError):
                await cancel_saga(sup, "c-1")  # no longer running
            stats = await statistics(sup)
            assert (stats.cancelled, stats.failed) == (1, 1)
    assert "saga_rolled_back" in events.names("c-1")


async def test_cancel_awaits_in_flight_steps_by_default(anyio_backend: str) -> None:
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor()
            gate = Gate()
            await start_saga(sup, gated_saga(undo_last=True), {"gate": gate}, correlation_id="aw")
            await gate.entered.wait()
            result: list[object] = []
            async with anyio.create_task_group() as tg:

                async def cancel() -> None:
                    result.append(await cancel_saga(sup, "aw"))

                tg.start_soon(cancel)
                await wait_stats(sup, lambda s: s.cancelled == 1)
                info = await lookup(sup, "aw")
                assert info is not None
                assert info.steps["b"] is StepStatus.RUNNING
                gate.release.set()  # the in-flight attempt finishes, then is undone
            [outcome] = result
            assert isinstance(outcome, SagaFailed)
            assert isinstance(outcome.error, SagaCancelledError)
            assert outcome.rollback.undone == ("b", "a")


async def test_kill_removes_entry_and_fails_awaiters(anyio_backend: str) -> None:
    events = Events()
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor(instrument=events)
            gate = Gate()
            handle = await start_saga(sup, gated_saga(), {"gate": gate}, correlation_id="k")
            await gate.entered.wait()
            errors: list[SagaCrashedError] = []
            async with anyio.create_task_group() as tg:

                async def waiter() -> None:
                    with pytest.raises(SagaCrashedError) as caught:
                        await await_saga(sup, "k")
                    errors.append(caught.value)

                tg.start_soon(waiter)
                tg.start_soon(waiter)
                await wait_stats(sup, lambda s: s.awaiting == 2)
                tl.exit(handle.pid, tl.KILL)
            assert [e.reason for e in errors] == [tl.KILLED, tl.KILLED]
            assert errors[0].correlation_id == "k"
            assert "'k'" in str(errors[0])
            assert await lookup(sup, "k") is None
            assert await list_sagas(sup) == []
            with pytest.raises(SagaCrashedError) as late:
                await await_saga(sup, "k")  # after the end: the cached crash
            assert late.value.reason == tl.KILLED
            assert (await statistics(sup)).crashed == 1
            # The executor still rolled back what had completed before the process ended.
            assert ("undo", "a") in gate.log
    names = events.names("k")
    assert names.index("saga_crashed") < names.index("saga_unregistered")
    [unregistered] = [a for n, c, a in events.events if n == "saga_unregistered"]
    assert unregistered["ended"] == "crashed"
    assert unregistered["reason"] == tl.KILLED


async def test_crash_with_any_reason_is_reported(anyio_backend: str) -> None:
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor()
            gate = Gate()
            handle = await start_saga(sup, gated_saga(), {"gate": gate}, correlation_id="b")
            await gate.entered.wait()
            tl.exit(handle.pid, "boom")
            with pytest.raises(SagaCrashedError) as caught:
                await await_saga(sup, "b")
            assert caught.value.reason == "boom"
            assert await lookup(sup, "b") is None


async def test_failed_saga_is_unregistered_with_its_outcome(anyio_backend: str) -> None:
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor()
            gate = Gate(fail=True)
            await start_saga(sup, gated_saga(), {"gate": gate}, correlation_id="f")
            gate.release.set()
            outcome = await await_saga(sup, "f")
            assert isinstance(outcome, SagaFailed)
            assert outcome.step == "b"
            assert outcome.rollback.undone == ("a",)
            assert await lookup(sup, "f") is None


async def test_await_after_completion_uses_a_bounded_cache(anyio_backend: str) -> None:
    events = Events()
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor(max_recent=2, instrument=events)
            for cid in ("r1", "r2", "r3"):
                gate = Gate()
                gate.release.set()
                events.unregistered = anyio.Event()
                await start_saga(sup, gated_saga(), {"gate": gate}, correlation_id=cid)
                await events.unregistered.wait()  # ended before anyone awaited it
            with pytest.raises(UnknownSagaError) as caught:
                await await_saga(sup, "r1")  # evicted: oldest first
            assert caught.value.correlation_id == "r1"
            for cid in ("r2", "r3"):
                outcome = await await_saga(sup, cid)
                assert isinstance(outcome, SagaSucceeded)
                assert outcome.state.correlation_id == cid
            stats = await statistics(sup)
            assert (stats.recent, stats.max_recent) == (2, 2)


async def test_await_timeout_leaves_the_saga_running(anyio_backend: str) -> None:
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor()
            gate = Gate()
            await start_saga(sup, gated_saga(), {"gate": gate}, correlation_id="t")
            await gate.entered.wait()
            with pytest.raises(SagaAwaitTimeoutError) as caught:
                await await_saga(sup, "t", timeout=0.01)
            assert (caught.value.correlation_id, caught.value.timeout) == ("t", 0.01)
            assert isinstance(caught.value, TimeoutError)
            assert (await statistics(sup)).awaiting == 0
            assert await lookup(sup, "t") is not None
            gate.release.set()
            assert isinstance(await await_saga(sup, "t"), SagaSucceeded)


async def test_sagas_share_one_step_budget(anyio_backend: str) -> None:
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor(max_concurrency=1)
            first, second = Gate(), Gate()
            await start_saga(sup, gated_saga(("b",)), {"gate": first}, correlation_id="s1")
            await first.entered.wait()
            await start_saga(sup, gated_saga(("b",)), {"gate": second}, correlation_id="s2")
            info = await lookup(sup, "s2")
            assert info is not None
            assert info.steps == {"b": StepStatus.WAITING}  # no slot while s1 holds it
            stats = await statistics(sup)
            assert (stats.slots_in_use, stats.max_concurrency) == (1, 1)
            first.release.set()
            assert isinstance(await await_saga(sup, "s1"), SagaSucceeded)
            await second.entered.wait()
            second.release.set()
            assert isinstance(await await_saga(sup, "s2"), SagaSucceeded)


async def test_max_children_bounds_running_sagas(anyio_backend: str) -> None:
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor(max_children=1)
            gate = Gate()
            await start_saga(sup, gated_saga(), {"gate": gate}, correlation_id="m1")
            with pytest.raises(tl.MaxChildrenError):
                await start_saga(sup, gated_saga(), {"gate": Gate()}, correlation_id="m2")
            assert [i.correlation_id for i in await list_sagas(sup)] == ["m1"]
            assert await lookup(sup, "m2") is None
            gate.release.set()
            await await_saga(sup, "m1")


async def test_bad_arguments_are_rejected_by_name(anyio_backend: str) -> None:
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor()
            saga = gated_saga()
            assert await lookup(sup, "nope") is None
            for operation in (await_saga, cancel_saga):
                with pytest.raises(UnknownSagaError) as unknown:
                    await operation(sup, "nope")
                assert unknown.value.correlation_id == "nope"
                assert "'nope'" in str(unknown.value)
            with pytest.raises(SagaArgumentError) as not_saga:
                await start_saga(sup, "gated", {}, correlation_id="x")  # type: ignore[arg-type]
            assert isinstance(not_saga.value, TypeError)
            assert (not_saga.value.argument, not_saga.value.received) == ("saga", "gated")
            with pytest.raises(SagaArgumentError) as bad_mode:
                await start_saga(
                    sup,
                    saga,
                    {"gate": Gate()},
                    correlation_id="x",
                    on_duplicate="merge",  # type: ignore[arg-type]
                )
            assert isinstance(bad_mode.value, ValueError)
            assert str(bad_mode.value) == (
                "start_saga: on_duplicate accepts 'reject' or 'join'; received 'merge'"
            )
            for cid in ("", 7):
                with pytest.raises(SagaArgumentError, match="correlation_id"):
                    await start_saga(sup, saga, {"gate": Gate()}, correlation_id=cid)  # type: ignore[arg-type]
            with pytest.raises(SagaArgumentError, match="timeout"):
                await await_saga(sup, "x", timeout=-1)
            with pytest.raises(SagaArgumentError, match="supervisor"):
                await lookup(3, "x")  # type: ignore[arg-type]
            with pytest.raises(MissingInputError):
                await start_saga(sup, saga, {}, correlation_id="x")
            with pytest.raises(ValueError, match="rollback_timeout"):
                await start_saga(
                    sup, saga, {"gate": Gate()}, correlation_id="x", rollback_timeout=0
                )
            assert await list_sagas(sup) == []
            assert (await statistics(sup)).started == 0
            for options in ({"max_concurrency": 0}, {"max_children": -1}, {"max_recent": None}):
                with pytest.raises(SagaArgumentError, match=next(iter(options))):
                    await start_saga_supervisor(**options)  # type: ignore[arg-type]
            with pytest.raises(SagaArgumentError, match="instrument"):
                saga_supervisor_spec(instrument=object())  # type: ignore[arg-type]


async def test_instrument_events_bracket_the_run(anyio_backend: str) -> None:
    events = Events()
    async with tl.open_node():
        with anyio.fail_after(LIMIT):
            sup = await start_saga_supervisor(name="bolt", instrument=events)
            gate = Gate()
            gate.release.set()
            handle = await start_saga(sup, gated_saga(), {"gate": gate}, correlation_id="e")
            await await_saga(sup, "e")
    names = events.names("e")
    assert names[0] == "saga_registered"
    assert names[1] == "saga_started"
    assert names[-2:] == ["saga_completed", "saga_unregistered"]
    registered = events.events[0][2]
    assert registered == {"pid": handle.pid, "supervisor": "bolt"}
    last = events.events[-1][2]
    assert last == {
        "pid": handle.pid,
        "supervisor": "bolt",
        "ended": "succeeded",
        "cancelled": False,
    }


async def test_nested_in_an_application_shutdown_rolls_back_and_answers(
    anyio_backend: str,
) -> None:
    gate = Gate()
    seen: list[object] = []
    done = anyio.Event()

    async def waiter() -> None:
        try:
            await await_saga("app.sagas", "n")
        except SagaCrashedError as exc:
            seen.append(exc)

    async def application() -> None:
        tl.trap_exit(True)  # survive the application supervisor's SHUTDOWN through the link
        app = await tl.start_supervisor([saga_supervisor_spec(name="app.sagas")])
        [child] = await tl.which_children(app)
        assert child.type is tl.ChildType.SUPERVISOR
        await start_saga("app.sagas", gated_saga(), {"gate": gate}, correlation_id="n")
        await gate.entered.wait()
        _, ref = tl.spawn_monitor(waiter)
        await wait_stats(child.pid, lambda s: s.awaiting == 1)  # type: ignore[arg-type]
        await tl.stop(app, tl.SHUTDOWN)
        await tl.receive(lambda m: isinstance(m, tl.Down) and m.ref == ref)
        done.set()

    async with tl.open_node():
        tl.spawn(application)
        with anyio.fail_after(LIMIT):
            await done.wait()
    [error] = seen
    assert isinstance(error, SagaCrashedError)
    assert error.reason == tl.SHUTDOWN
    assert gate.log[-1] == ("undo", "a")


def test_error_classes_carry_their_attributes() -> None:
    crashed = SagaCrashedError("o-9", "boom")
    assert (crashed.correlation_id, crashed.reason) == ("o-9", "boom")
    assert str(crashed) == "saga 'o-9' ended without an outcome: its process exited with 'boom'"
    cancelled = SagaCancelledError("o-9")
    assert str(cancelled) == "saga 'o-9' was cancelled"
    timeout = SagaAwaitTimeoutError("o-9", 1.5)
    assert str(timeout) == "saga 'o-9' gave no outcome within 1.5 s"
    argument = SagaArgumentError("lookup", "correlation_id", "a non-empty str", "")
    assert (argument.function, argument.argument, argument.accepted, argument.received) == (
        "lookup",
        "correlation_id",
        "a non-empty str",
        "",
    )
    assert str(argument) == "lookup: correlation_id accepts a non-empty str; received ''"
    unknown = UnknownSagaError("o-9")
    assert isinstance(unknown, LookupError)
    assert str(unknown) == "no saga with correlation id 'o-9' is running"
    for error in (crashed, cancelled, timeout, argument, unknown):
        assert isinstance(error, SagaError)
        assert isinstance(error, tl.ThunderlineError)
