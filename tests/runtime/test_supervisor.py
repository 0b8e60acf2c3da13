"""Supervisors on real processes: one test per conformance case C-SV1..C-SV18 (and the
supervisor-related gen_server cases C-G9..C-G11) of docs/guarantees.md, plus reports,
responsiveness and escalation. Every test runs on asyncio and on trio.

Nothing here sleeps and hopes: a test that crashes a child monitors it and waits
for its ``Down`` (by then the supervisor has the ``Exit`` queued), and the next
supervisor call is served only after that ``Exit`` was handled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from thunderline.runtime import (
    BRUTAL_KILL,
    INFINITY,
    KILL,
    KILLED,
    NORMAL,
    SHUTDOWN,
    CallingSelfError,
    ChildAlreadyPresentError,
    ChildAlreadyStartedError,
    ChildNotFoundError,
    ChildRestartingError,
    ChildRunningError,
    ChildSpec,
    ChildSpecError,
    ChildStartError,
    Down,
    DynamicSupervisor,
    DynamicSupervisorError,
    Exit,
    FailedToStartChild,
    InitFailedError,
    MaxChildrenError,
    NoProcessError,
    NoReply,
    Ok,
    Pid,
    ProcessExit,
    Reply,
    Server,
    Shutdown,
    Stop,
    Supervisor,
    cast,
    count_children,
    current_pid,
    delete_child,
    exit,
    get_childspec,
    is_alive,
    link,
    monitor,
    open_node,
    receive,
    restart_child,
    spawn,
    spawn_link,
    start_child,
    start_link,
    start_supervisor,
    stop,
    supervisor_spec,
    terminate_child,
    trap_exit,
    unlink,
    which_children,
)

pytestmark = pytest.mark.anyio

BOUND = 20  # seconds: generous for a loaded 2-core machine; nothing here waits on a timer


# ------------------------------------------------------------------ helpers


class Log:
    """What the test children did, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.recording = True

    def add(self, *event: Any) -> None:
        if self.recording:
            self.events.append(event)

    def of(self, kind: str) -> list[Any]:
        return [e[1] for e in self.events if e[0] == kind]


async def in_process(fn: Callable[[], Awaitable[Any]], log: Log | None = None) -> Any:
    """Run ``fn`` as a thunderline process of a fresh node; return its result or raise.

    ``log`` stops recording when ``fn`` returns: leaving the node then stops
    whatever is still running, which is not part of the test.
    """
    outcome: dict[str, Any] = {}
    async with open_node():
        done = anyio.Event()

        async def body() -> None:
            trap_exit(True)  # the test process outlives the supervisors it links to
            try:
                outcome["value"] = await fn()
                if log is not None:
                    log.recording = False
            except BaseException as exc:
                outcome["error"] = exc
                raise
            finally:
                done.set()

        spawn(body)
        with anyio.fail_after(BOUND):
            await done.wait()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class Probe(Server[None]):
    """A server child that logs its start, the casts it handles and its terminate."""

    def __init__(self, log: Log, name: str, trap: bool = False) -> None:
        self.log = log
        self.name = name
        self.trap = trap

    async def init(self) -> Ok[None]:
        if self.trap:
            trap_exit(True)
        self.log.add("start", self.name)
        return Ok(None)

    async def handle_call(self, request: Any, from_: Any, state: None) -> Reply[None]:
        return Reply(request, state)

    async def handle_cast(self, request: Any, state: None) -> NoReply[None] | Stop[None]:
        if isinstance(request, tuple) and request[0] == "exit":
            return Stop(request[1])  # the child ends by itself with this reason
        self.log.add("cast", self.name, request)
        return NoReply(state)

    async def terminate(self, reason: Any, state: None) -> None:
        self.log.add("terminate", self.name, reason)


def probe(log: Log, name: str, *, trap: bool = False, **options: Any) -> ChildSpec:
    async def start() -> Pid | None:
        return await start_link(Probe(log, name, trap))

    return ChildSpec(id=name, start=start, **options)


def failing_after(log: Log, name: str, ok_starts: int, **options: Any) -> ChildSpec:
    """A child whose first ``ok_starts`` starts succeed and every later start fails."""
    attempts = [0]

    async def start() -> Pid | None:
        attempts[0] += 1
        log.add("attempt", name)
        if attempts[0] > ok_starts:
            await anyio.lowlevel.checkpoint()  # a start takes a trip through the event loop
            raise InitFailedError(name, "init_error")
        return await start_link(Probe(log, name))

    return ChildSpec(id=name, start=start, **options)


async def wait_down(pid: Pid) -> Any:
    ref = monitor(pid)
    down = await receive(lambda m: type(m) is Down and m.ref == ref)
    return down.reason


async def crash(pid: Pid, reason: Any = "boom") -> Any:
    """End a :class:`Probe` child with ``reason`` and wait until it is dead.

    The child stops itself (``KILL`` comes from outside). When its ``Down``
    arrives here, the supervisor already has its ``Exit`` queued.
    """
    ref = monitor(pid)
    if reason is KILL:
        exit(pid, KILL)
    else:
        cast(pid, ("exit", reason))
    down = await receive(lambda m: type(m) is Down and m.ref == ref)
    return down.reason


async def children(sup: Pid) -> dict[Any, Pid | str | None]:
    return {
        row.id: ("restarting" if row.restarting else row.pid) for row in await which_children(sup)
    }


async def running(sup: Pid) -> dict[Any, Pid]:
    return {k: v for k, v in (await children(sup)).items() if isinstance(v, Pid)}


async def stop_supervisor(sup: Pid) -> Any:
    """What a parent supervisor does: ``exit(sup, SHUTDOWN)`` and wait for it to end."""
    ref = monitor(sup)
    exit(sup, SHUTDOWN)
    down = await receive(lambda m: type(m) is Down and m.ref == ref)
    return down.reason


def reports(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if getattr(r, "thunderline_report", None) == "supervisor_report"
    ]


# ---------------------------------------------------------------- C-G9..11


async def test_c_g9_trapping_server_terminates_after_queued_messages() -> None:
    log = Log()

    async def body() -> None:
        sup = await start_supervisor(
            [
                probe(log, "timeout", trap=True, shutdown=5),
                probe(log, "brutal", trap=True, shutdown=BRUTAL_KILL),
            ]
        )
        kids = await running(sup)
        for pid in kids.values():
            for n in range(3):
                cast(pid, n)
        await terminate_child(sup, "timeout")
        await terminate_child(sup, "brutal")

    await in_process(body, log)
    timeout_events = [e for e in log.events if e[1] == "timeout"]
    assert timeout_events == [
        ("start", "timeout"),
        ("cast", "timeout", 0),
        ("cast", "timeout", 1),
        ("cast", "timeout", 2),
        ("terminate", "timeout", SHUTDOWN),
    ]
    assert not [e for e in log.events if e[0] == "terminate" and e[1] == "brutal"]


async def test_c_g10_non_trapping_server_dies_with_linked_peer_without_terminate() -> None:
    log = Log()

    async def body() -> None:
        sup = await start_supervisor([probe(log, "s")], intensity=5)
        server = (await running(sup))["s"]
        ready = anyio.Event()

        async def peer() -> None:
            link(server)
            ready.set()
            raise ProcessExit("peer_crash")

        ref = monitor(server)
        spawn(peer)
        down = await receive(lambda m: type(m) is Down and m.ref == ref)
        assert down.reason == "peer_crash"
        assert ready.is_set()
        after = await running(sup)
        assert after["s"] != server  # restarted (permanent)

    await in_process(body, log)
    assert log.of("terminate") == []
    assert log.of("start") == ["s", "s"]


async def test_c_g11_stop_of_supervised_server() -> None:
    log = Log()

    async def body() -> None:
        sup = await start_supervisor([probe(log, "s")], intensity=5)
        server = (await running(sup))["s"]
        await stop(server)  # returns ok: normal exit, terminate ran
        assert not is_alive(server)
        restarted = (await running(sup))["s"]  # permanent: restarted even after normal
        assert restarted != server
        with pytest.raises(NoProcessError):
            await stop(server)
        with pytest.raises(CallingSelfError):
            await stop(current_pid())

    await in_process(body, log)
    assert ("terminate", "s", NORMAL) in log.events


# ----------------------------------------------------------------- C-SV1..8


async def test_c_sv1_start_in_list_order_stop_in_reverse() -> None:
    log = Log()

    async def body() -> None:
        sup = await start_supervisor([probe(log, n, trap=True) for n in "abc"])
        assert [row.id for row in await which_children(sup)] == ["c", "b", "a"]
        assert await stop_supervisor(sup) == SHUTDOWN

    await in_process(body, log)
    assert log.of("start") == ["a", "b", "c"]
    assert log.of("terminate") == ["c", "b", "a"]


async def test_c_sv2_one_for_one_restarts_only_the_crashed_child() -> None:
    log = Log()

    async def body() -> None:
        sup = await start_supervisor([probe(log, n) for n in "abc"], intensity=5)
        before = await running(sup)
        assert await crash(before["b"]) == "boom"
        after = await running(sup)
        assert after["a"] == before["a"]
        assert after["c"] == before["c"]
        assert after["b"] != before["b"]

    await in_process(body, log)
    assert log.of("start") == ["a", "b", "c", "b"]


async def test_c_sv3_one_for_all_stops_others_newest_first_then_starts_all_in_order() -> None:
    log = Log()

    async def body() -> None:
        sup = await start_supervisor(
            [probe(log, n, trap=True) for n in "abc"], strategy="one_for_all", intensity=5
        )
        before = await running(sup)
        await crash(before["b"], KILL)
        after = await running(sup)
        assert all(after[n] != before[n] for n in "abc")

    await in_process(body, log)
    assert log.events[3:] == [
        ("terminate", "c", SHUTDOWN),
        ("terminate", "a", SHUTDOWN),
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
    ]


async def test_c_sv4_rest_for_one_restarts_the_crashed_child_and_younger_ones() -> None:
    log = Log()

    async def body() -> None:
        sup = await start_supervisor(
            [probe(log, n, trap=True) for n in "abc"], strategy="rest_for_one", intensity=5
        )
        before = await running(sup)
        await crash(before["b"], KILL)
        after = await running(sup)
        assert after["a"] == before["a"]
        assert after["b"] != before["b"]
        assert after["c"] != before["c"]

    await in_process(body, log)
    assert log.events[3:] == [("terminate", "c", SHUTDOWN), ("start", "b"), ("start", "c")]


@pytest.mark.parametrize(
    ("restart", "reason", "restarted", "kept"),
    [
        ("permanent", NORMAL, True, True),
        ("permanent", "boom", True, True),
        ("transient", NORMAL, False, True),
        ("transient", SHUTDOWN, False, True),
        ("transient", Shutdown("x"), False, True),
        ("transient", KILL, True, True),
        ("transient", "boom", True, True),
        ("temporary", NORMAL, False, False),
        ("temporary", "boom", False, False),
        ("temporary", KILL, False, False),
    ],
)
async def test_c_sv5_restart_types(restart: str, reason: Any, restarted: bool, kept: bool) -> None:
    log = Log()

    async def body() -> None:
        sup = await start_supervisor([probe(log, "w", restart=restart)], intensity=5)
        pid = (await running(sup))["w"]

        await crash(pid, reason)
        now = await children(sup)
        if not kept:
            assert now == {}
        elif restarted:
            assert isinstance(now["w"], Pid)
            assert now["w"] != pid
        else:
            assert now == {"w": None}

    await in_process(body, log)
    assert log.of("start") == (["w", "w"] if restarted else ["w"])


async def test_c_sv6_temporary_sibling_under_one_for_all_is_not_restarted() -> None:
    log = Log()

    async def body() -> None:
        sup = await start_supervisor(
            [probe(log, "p"), probe(log, "t", restart="temporary", trap=True)],
            strategy="one_for_all",
            intensity=5,
        )
        before = await running(sup)
        await crash(before["p"])
        after = await children(sup)
        assert list(after) == ["p"]
        assert after["p"] != before["p"]

    await in_process(body, log)
    assert ("terminate", "t", SHUTDOWN) in log.events
    assert log.of("start") == ["p", "t", "p"]


async def test_c_sv7_intensity_exceeded_stops_everything_and_escalates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="thunderline.supervisor")
    log = Log()

    async def body() -> None:
        trap_exit(True)
        sup = await start_supervisor([probe(log, n, trap=True) for n in "abc"])
        await crash((await running(sup))["b"])
        sup_ref = monitor(sup)
        await crash((await running(sup))["b"])
        down = await receive(lambda m: type(m) is Down and m.ref == sup_ref)
        assert down.reason == SHUTDOWN
        message = await receive(lambda m: type(m) is Exit and m.pid == sup)
        assert message.reason == SHUTDOWN

    await in_process(body, log)
    assert [e[1] for e in log.events if e[0] == "terminate" and e[2] == SHUTDOWN] == ["c", "a"]
    contexts = [(r.context, r.child_id) for r in reports(caplog)]  # type: ignore[attr-defined]
    assert contexts[-1] == ("shutdown", "b")
    assert reports(caplog)[-1].reason == "reached_max_restart_intensity"  # type: ignore[attr-defined]


# C-SV8 (whole-second buckets on a virtual clock) is in test_supervisor_clock.py.


async def test_c_sv9_intensity_zero_first_crash_stops_the_supervisor() -> None:
    log = Log()

    async def body() -> None:
        sup = await start_supervisor([probe(log, "a"), probe(log, "b")], intensity=0)
        ref = monitor(sup)
        await crash((await running(sup))["a"])
        down = await receive(lambda m: type(m) is Down and m.ref == ref)
        assert down.reason == SHUTDOWN

    await in_process(body, log)
    assert log.of("start") == ["a", "b"]


# --------------------------------------------------------------- C-SV10..13


async def test_c_sv10_child_ignoring_shutdown_is_killed_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body() -> None:
        async def stubborn() -> None:
            while True:
                await receive()  # traps exits and ignores them

        async def start() -> Pid | None:
            return spawn_link(stubborn, trap_exit=True)

        sup = await start_supervisor([ChildSpec(id="h", start=start, shutdown=0.05)])
        pid = (await running(sup))["h"]
        reason_waiter = monitor(pid)
        await terminate_child(sup, "h")
        down = await receive(lambda m: type(m) is Down and m.ref == reason_waiter)
        assert down.reason == KILLED

    await in_process(body)
    [record] = reports(caplog)
    assert record.context == "shutdown_error"  # type: ignore[attr-defined]
    assert record.reason == KILLED  # type: ignore[attr-defined]
    assert record.levelno == logging.ERROR


async def test_c_sv11_brutal_kill_skips_terminate() -> None:
    log = Log()

    async def body() -> None:
        sup = await start_supervisor([probe(log, "b", trap=True, shutdown=BRUTAL_KILL)])
        pid = (await running(sup))["b"]
        ref = monitor(pid)
        await terminate_child(sup, "b")
        down = await receive(lambda m: type(m) is Down and m.ref == ref)
        assert down.reason == KILLED

    await in_process(body, log)
    assert log.of("terminate") == []


async def test_c_sv12_nested_supervisor_with_infinity_stops_its_subtree_first() -> None:
    log = Log()

    async def body() -> None:
        inner = supervisor_spec("inner", [probe(log, "x", trap=True), probe(log, "y", trap=True)])
        assert inner.shutdown == INFINITY
        sup = await start_supervisor([probe(log, "first", trap=True), inner])
        await stop_supervisor(sup)

    await in_process(body, log)
    assert log.of("terminate") == ["y", "x", "first"]


async def test_c_sv13_child_that_unlinked_itself_is_still_shut_down() -> None:
    async def body() -> None:
        unlinked = anyio.Event()

        async def naughty(sup: Pid) -> None:
            unlink(sup)
            unlinked.set()
            while True:
                await receive()

        async def start() -> Pid | None:
            return spawn_link(naughty, current_pid())

        sup = await start_supervisor([ChildSpec(id="n", start=start, shutdown=INFINITY)])
        pid = (await running(sup))["n"]
        await unlinked.wait()
        await terminate_child(sup, "n")
        assert not is_alive(pid)
        assert await children(sup) == {"n": None}

    await in_process(body)


# --------------------------------------------------------------- C-SV14..15


async def test_c_sv14_failed_child_start_aborts_the_supervisor_start() -> None:
    log = Log()

    async def body() -> None:
        with pytest.raises(InitFailedError) as info:
            await start_supervisor(
                [probe(log, "a", trap=True), probe(log, "b", trap=True), failing_after(log, "c", 0)]
            )
        assert info.value.reason == Shutdown(FailedToStartChild("c", "init_error"))

    await in_process(body, log)
    assert log.of("terminate") == ["b", "a"]
    assert [e for e in log.events if e[0] == "terminate"] == [
        ("terminate", "b", SHUTDOWN),
        ("terminate", "a", SHUTDOWN),
    ]


async def test_c_sv15_failed_restart_is_retried_and_charged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="thunderline.supervisor")
    log = Log()

    async def body() -> None:
        sup = await start_supervisor([failing_after(log, "f", 1), probe(log, "other")], intensity=3)
        sup_ref = monitor(sup)
        await crash((await running(sup))["f"])
        state = await children(sup)  # served between two retries
        assert state["f"] == "restarting"
        assert isinstance(state["other"], Pid)
        down = await receive(lambda m: type(m) is Down and m.ref == sup_ref)
        assert down.reason == SHUTDOWN

    await in_process(body, log)
    # one good start, then one failed start per restart until the 4th restart exceeds 3
    assert log.of("attempt") == ["f"] * 4
    contexts = [r.context for r in reports(caplog)]  # type: ignore[attr-defined]
    assert contexts == ["child_terminated"] + ["start_error"] * 3 + ["shutdown"]


async def test_supervisor_with_child_failing_to_start_stays_responsive_and_stops() -> None:
    log = Log()

    async def body() -> None:
        trap_exit(True)
        sup = await start_supervisor([failing_after(log, "f", 1)], intensity=10**9, period=3600)
        await crash((await running(sup))["f"])
        for _ in range(3):  # served between retries, while the child keeps failing
            assert await children(sup) == {"f": "restarting"}
        attempts = len(log.of("attempt"))
        assert await stop_supervisor(sup) == SHUTDOWN
        assert len(log.of("attempt")) >= attempts

    await in_process(body, log)


# ------------------------------------------------------------------ C-SV16


async def test_c_sv16_dynamic_api_outcomes() -> None:
    log = Log()

    async def body() -> None:
        sup = await start_supervisor([probe(log, "a")])
        pid_a = (await running(sup))["a"]
        # start_child
        pid_b = await start_child(sup, probe(log, "b"))
        assert isinstance(pid_b, Pid)
        with pytest.raises(ChildAlreadyStartedError) as started:
            await start_child(sup, probe(log, "b"))
        assert started.value.pid == pid_b

        async def ignore() -> Pid | None:
            return None

        assert await start_child(sup, ChildSpec(id="i", start=ignore)) is None
        assert await start_child(sup, ChildSpec(id="t", start=ignore, restart="temporary")) is None
        with pytest.raises(ChildAlreadyPresentError):
            await start_child(sup, probe(log, "i"))
        with pytest.raises(ChildStartError) as failed:
            await start_child(sup, failing_after(log, "e", 0))
        assert failed.value.reason == "init_error"
        assert [row.id for row in await which_children(sup)] == ["i", "b", "a"]
        # terminate_child
        await terminate_child(sup, "b")
        assert (await children(sup))["b"] is None
        with pytest.raises(ChildNotFoundError):
            await terminate_child(sup, "nope")
        # restart_child
        with pytest.raises(ChildRunningError):
            await restart_child(sup, "a")
        with pytest.raises(ChildNotFoundError):
            await restart_child(sup, "nope")
        new_b = await restart_child(sup, "b")
        assert isinstance(new_b, Pid)
        assert new_b != pid_b
        assert await restart_child(sup, "i") is None
        # delete_child
        with pytest.raises(ChildRunningError):
            await delete_child(sup, "a")
        with pytest.raises(ChildNotFoundError):
            await delete_child(sup, "nope")
        await delete_child(sup, "i")
        # get_childspec / count_children
        assert (await get_childspec(sup, "a")).id == "a"
        with pytest.raises(ChildNotFoundError):
            await get_childspec(sup, "i")
        counts = await count_children(sup)
        assert (counts.specs, counts.active, counts.workers, counts.supervisors) == (2, 2, 2, 0)
        assert (await running(sup))["a"] == pid_a
        # an invalid spec is an error reply, not a crash
        with pytest.raises(ChildSpecError):
            await start_child(sup, probe(log, "s", restart="transient", significant=True))
        assert is_alive(sup)
        # {error, restarting} from restart_child and delete_child
        sup = await start_supervisor([failing_after(log, "r", 1)], intensity=10**9, period=3600)
        await crash((await running(sup))["r"])
        with pytest.raises(ChildRestartingError):
            await restart_child(sup, "r")
        with pytest.raises(ChildRestartingError):
            await delete_child(sup, "r")
        await terminate_child(sup, "r")  # ends the retries: the child is just stopped
        assert await children(sup) == {"r": None}
        await stop_supervisor(sup)

    await in_process(body, log)


# ------------------------------------------------------------------ C-SV17


async def test_c_sv17_dynamic_supervisor() -> None:
    all_signalled = anyio.Event()
    signalled: list[Pid] = []
    extras: list[tuple[Any, ...]] = []

    async def worker() -> None:
        while True:
            message = await receive()
            if type(message) is Exit:
                signalled.append(message.pid)
                if len(signalled) == 3:
                    all_signalled.set()
                # Exits only once every sibling got the signal: a one-by-one
                # shutdown would have to kill us after the timeout.
                await all_signalled.wait()
                raise ProcessExit(message.reason)

    async def start(*args: Any) -> Pid | None:
        extras.append(args)
        return spawn_link(worker, trap_exit=True)

    async def body() -> None:
        template = ChildSpec(id="w", start=start, args=("base",), shutdown=2)
        sup = await start_link(DynamicSupervisor(template, max_children=3))
        assert sup is not None
        pids = [await start_child(sup, n) for n in range(3)]
        assert extras == [("base", 0), ("base", 1), ("base", 2)]
        with pytest.raises(MaxChildrenError):
            await start_child(sup, 3)
        with pytest.raises(DynamicSupervisorError):
            await terminate_child(sup, "w")
        with pytest.raises(DynamicSupervisorError):
            await restart_child(sup, "w")
        with pytest.raises(DynamicSupervisorError):
            await delete_child(sup, "w")
        refs = {monitor(pid): pid for pid in pids if pid is not None}
        assert await stop_supervisor(sup) == SHUTDOWN
        reasons = set()
        while refs:
            down = await receive(lambda m: type(m) is Down and m.ref in refs)
            refs.pop(down.ref)
            reasons.add(down.reason)
        assert reasons == {SHUTDOWN}

    await in_process(body)


# ------------------------------------------------------------------ C-SV18


async def test_c_sv18_auto_shutdown() -> None:
    log = Log()

    async def body() -> None:
        # any_significant: a significant child ending by itself stops the supervisor
        sup = await start_supervisor(
            [probe(log, "s", restart="transient", significant=True), probe(log, "p")],
            auto_shutdown="any_significant",
        )
        ref = monitor(sup)
        await crash((await running(sup))["s"], SHUTDOWN)
        assert (await receive(lambda m: type(m) is Down and m.ref == ref)).reason == SHUTDOWN

        # all_significant: only when the last active significant child ends
        sup = await start_supervisor(
            [
                probe(log, "s1", restart="temporary", significant=True),
                probe(log, "s2", restart="transient", significant=True),
            ],
            auto_shutdown="all_significant",
        )
        ref = monitor(sup)
        await crash((await running(sup))["s1"], "boom")
        assert is_alive(sup)
        assert list(await children(sup)) == ["s2"]
        await crash((await running(sup))["s2"], NORMAL)
        assert (await receive(lambda m: type(m) is Down and m.ref == ref)).reason == SHUTDOWN

        # terminate_child and sibling-driven restarts do not trigger it
        sup = await start_supervisor(
            [probe(log, "p"), probe(log, "s", restart="transient", significant=True)],
            strategy="one_for_all",
            auto_shutdown="any_significant",
            intensity=5,
        )
        await crash((await running(sup))["p"])
        assert set(await running(sup)) == {"p", "s"}
        await terminate_child(sup, "s")
        assert is_alive(sup)
        await stop_supervisor(sup)

    await in_process(body, log)
    with pytest.raises(ChildSpecError) as never:
        Supervisor([probe(log, "s", restart="transient", significant=True)])
    assert never.value.field == "significant"
    assert never.value.received == "True with auto_shutdown=never"
    # OTP's check_childspec order: auto_shutdown=never is reported first ...
    with pytest.raises(ChildSpecError) as both:
        Supervisor([probe(log, "s", restart="permanent", significant=True)])
    assert both.value.received == "True with auto_shutdown=never"
    # ... and a permanent significant child is refused by an auto_shutdown supervisor.
    with pytest.raises(ChildSpecError) as permanent:
        Supervisor(
            [probe(log, "s", restart="permanent", significant=True)],
            auto_shutdown="any_significant",
        )
    assert permanent.value.received == "True with restart=permanent"


# ---------------------------------------------------- reports and escalation


async def test_reports_are_structured_and_quiet_reasons_are_not_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="thunderline.supervisor")
    log = Log()

    async def body() -> None:
        sup = await start_supervisor([probe(log, "w")], intensity=5, name="reporting")
        await crash((await running(sup))["w"], NORMAL)  # permanent: reported, quietly
        await crash((await running(sup))["w"], Shutdown("drain"))
        await crash((await running(sup))["w"], "boom")

    await in_process(body, log)
    records = reports(caplog)
    assert [r.reason for r in records] == [NORMAL, Shutdown("drain"), "boom"]  # type: ignore[attr-defined]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO, logging.ERROR]
    for record in records:
        assert record.name == "thunderline.supervisor"
        assert record.context == "child_terminated"  # type: ignore[attr-defined]
        assert record.supervisor == "reporting"  # type: ignore[attr-defined]
        assert record.child_id == "w"  # type: ignore[attr-defined]
        offender = record.offender  # type: ignore[attr-defined]
        assert offender["id"] == "w"
        assert offender["restart"] == "permanent"
        assert offender["type"] == "worker"


async def test_escalation_through_nested_supervisors() -> None:
    log = Log()

    async def body() -> None:
        inner = supervisor_spec("inner", [probe(log, "leaf")], intensity=0)
        top = await start_supervisor([probe(log, "sibling"), inner], intensity=1)
        top_ref = monitor(top)
        inner_pid = (await running(top))["inner"]
        inner_ref = monitor(inner_pid)
        leaf = (await running(inner_pid))["leaf"]
        # The leaf's crash exceeds the inner supervisor's intensity 0: it exits
        # shutdown, and the top supervisor restarts it (one restart: within 1).
        await crash(leaf)
        down = await receive(lambda m: type(m) is Down and m.ref == inner_ref)
        assert down.reason == SHUTDOWN
        new_inner = (await running(top))["inner"]
        assert new_inner != inner_pid
        # Again: the second restart of the top supervisor exceeds its intensity.
        await crash((await running(new_inner))["leaf"])
        down = await receive(lambda m: type(m) is Down and m.ref == top_ref)
        assert down.reason == SHUTDOWN

    await in_process(body, log)
    assert log.of("start") == ["sibling", "leaf", "leaf"]
    assert ("terminate", "sibling", SHUTDOWN) not in log.events  # not trapping: killed, no hook
