"""C-G* (gen_server): init results, call/cast/reply/stop outcomes, terminate rules."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import thunderline.runtime as tl
from process_helpers import agent, do, drain, in_process, wait_down

pytestmark = pytest.mark.anyio


class Echo(tl.Server[list[Any]]):
    """init(mode) picks the init result; requests are small tuples."""

    log: list[Any]

    def __init__(self) -> None:
        self.log = []

    async def init(self, mode: str = "ok") -> Any:
        if mode == "ok":
            return tl.Ok([])
        if mode == "continue":
            return tl.Ok([], continue_="first")
        if mode == "ignore":
            return tl.IGNORE
        if mode == "stop":
            return tl.Stop("no thanks")
        if mode == "error":
            return tl.InitError("bad config")
        raise ValueError("init crashed")

    async def handle_continue(self, continue_: Any, state: list[Any]) -> Any:
        return tl.NoReply([*state, continue_])

    async def handle_call(self, request: Any, from_: tl.From, state: list[Any]) -> Any:
        kind = request[0]
        if kind == "get":
            return tl.Reply(state, state)
        if kind == "sleep":
            await anyio.sleep(request[1])
            return tl.Reply("late", state)
        if kind == "crash":
            raise RuntimeError("handler crashed")
        if kind == "defer":
            tl.send(request[1], from_)
            return tl.NoReply(state)
        if kind == "stop_reply":
            return tl.Stop("done", state, reply="bye")
        if kind == "self":
            try:
                await tl.call(tl.current_pid(), ("get",))
            except tl.CallingSelfError as exc:
                return tl.Reply(exc, state)
        return "not a legal result"

    async def handle_cast(self, request: Any, state: list[Any]) -> Any:
        return tl.NoReply([*state, request])

    async def handle_info(self, message: Any, state: list[Any]) -> Any:
        return tl.NoReply([*state, ("info", message)])

    async def terminate(self, reason: Any, state: list[Any]) -> None:
        self.log.append(("terminate", reason))


async def test_c_g1_init_results(anyio_backend: str) -> None:
    async def main() -> list[Any]:
        out: list[Any] = [await tl.start(Echo, "ok"), await tl.start(Echo, "ignore")]
        for mode in ("stop", "error", "raise"):
            with pytest.raises(tl.InitFailedError) as info:
                await tl.start(Echo, mode)
            out.append(info.value.reason)
        server = await tl.start(Echo, "continue")
        assert server is not None
        out.append(await tl.call(server, ("get",)))
        return out

    async with tl.open_node():
        ok, ignored, stopped, errored, raised, continued = await in_process(main)
    assert isinstance(ok, tl.Pid)
    assert ignored is None
    assert stopped == "no thanks"
    assert errored == "bad config"
    assert isinstance(raised, tl.Crashed)
    assert isinstance(raised.exception, ValueError)
    assert continued == ["first"]  # handle_continue ran before the call


async def test_c_g1_start_link_stop_kills_the_linked_starter_afterwards(
    anyio_backend: str,
) -> None:
    async def starter() -> None:
        with pytest.raises(tl.InitFailedError):
            await tl.start_link(Echo, "stop")
        await tl.receive("never")

    async def main() -> tl.Down:
        _, ref = tl.spawn_monitor(starter)
        return await wait_down(ref)

    async with tl.open_node():
        assert (await in_process(main)).reason == "no thanks"


async def test_c_g2_call_to_dead_pid_or_unknown_name_is_noproc(anyio_backend: str) -> None:
    async def main() -> list[Any]:
        dead, ref = tl.spawn_monitor(agent)
        tl.exit(dead, tl.KILL)
        await wait_down(ref)
        errors = []
        for target in (dead, "nobody"):
            with pytest.raises(tl.CallNoProcError) as info:
                await tl.call(target, ("get",), timeout=1)
            errors.append(info.value)
        return errors

    async with tl.open_node():
        errors = await in_process(main)
    assert [e.reason for e in errors] == [tl.NOPROC, tl.NOPROC]
    assert errors[1].server == "nobody"
    assert errors[1].request == ("get",)


async def test_c_g3_timeout_drops_the_late_reply_and_server_survives(anyio_backend: str) -> None:
    async def main() -> tuple[Any, list[Any], Any]:
        server = await tl.start(Echo)
        assert server is not None
        with pytest.raises(tl.CallTimeoutError) as info:
            await tl.call(server, ("sleep", 0.2), timeout=0.05)
        after = await tl.call(server, ("get",), timeout=5)  # served after its late reply
        info_me = tl.process_info(tl.current_pid())
        assert info_me is not None
        assert info_me.monitors == ()  # the call's monitor is gone
        return info.value.reason, drain(), after

    async with tl.open_node():
        reason, leftovers, after = await in_process(main)
    assert reason == "timeout"
    assert leftovers == []
    assert after == []


async def test_c_g4_server_crash_during_call(anyio_backend: str) -> None:
    async def main() -> Any:
        server = await tl.start(Echo)
        assert server is not None
        with pytest.raises(tl.CallExitError) as info:
            await tl.call(server, ("crash",))
        return info.value.reason

    async with tl.open_node():
        reason = await in_process(main)
    assert isinstance(reason, tl.Crashed)
    assert str(reason.exception) == "handler crashed"


async def test_c_g5_deferred_reply_from_another_process(anyio_backend: str) -> None:
    async def replier() -> None:
        from_ = await tl.receive(tl.From)
        tl.reply(from_, "from elsewhere")

    async def main() -> Any:
        server = await tl.start(Echo)
        assert server is not None
        helper = tl.spawn(replier)
        return await tl.call(server, ("defer", helper), timeout=5)

    async with tl.open_node():
        assert await in_process(main) == "from elsewhere"


async def test_c_g6_stop_with_reply_runs_terminate_first(anyio_backend: str) -> None:
    echo = Echo()

    async def main() -> tuple[Any, list[Any]]:
        server = await tl.start(echo)
        assert server is not None
        seen_at_reply = list(echo.log)
        answer = await tl.call(server, ("stop_reply",))
        return answer, [seen_at_reply, list(echo.log)]

    async with tl.open_node():
        answer, (before, at_reply) = await in_process(main)
    assert answer == "bye"
    assert before == []
    assert at_reply == [("terminate", "done")]


async def test_c_g7_cast_to_nobody_returns(anyio_backend: str) -> None:
    async def main() -> None:
        tl.cast("nobody", "hello")
        dead, ref = tl.spawn_monitor(agent)
        tl.exit(dead, tl.KILL)
        await wait_down(ref)
        tl.cast(dead, "hello")

    async with tl.open_node():
        await in_process(main)


async def test_c_g8_continue_runs_before_the_next_queued_message(anyio_backend: str) -> None:
    async def main() -> Any:
        server = await tl.start(Echo, "continue")
        assert server is not None
        tl.cast(server, "cast")
        return await tl.call(server, ("get",))

    async with tl.open_node():
        assert await in_process(main) == ["first", "cast"]


async def test_c_g9_parent_shutdown_of_trapping_server_runs_terminate(anyio_backend: str) -> None:
    class Trapping(Echo):
        async def init(self, mode: str = "ok") -> Any:
            tl.trap_exit(True)
            return tl.Ok([])

    echo, brutal = Trapping(), Trapping()

    async def parent(server: Echo, reason: Any, ready: anyio.Event) -> None:
        child = await tl.start_link(server)
        assert child is not None
        tl.cast(child, "queued before the exit")
        ready.set()
        await tl.receive("never")

    async def main() -> None:
        for server, reason in ((echo, tl.SHUTDOWN), (brutal, tl.KILL)):
            ready = anyio.Event()
            p, ref = tl.spawn_monitor(parent, server, reason, ready)
            await ready.wait()
            child = tl.process_info(p)
            assert child is not None
            (server_pid,) = child.links
            server_ref = tl.monitor(server_pid)
            if reason == tl.KILL:
                tl.exit(server_pid, tl.KILL)
            else:
                tl.exit(p, reason)
                await wait_down(ref)
            await wait_down(server_ref)

    async with tl.open_node():
        await in_process(main)
    assert echo.log == [("terminate", tl.SHUTDOWN)]
    assert brutal.log == []


async def test_c_g10_non_trapping_server_dies_with_linked_peer_without_terminate(
    anyio_backend: str,
) -> None:
    echo = Echo()

    async def main() -> Any:
        server = await tl.start(echo)
        assert server is not None
        peer = tl.spawn(agent)
        await do(peer, lambda: tl.link(server))
        ref = tl.monitor(server)
        tl.exit(peer, "boom")
        return (await wait_down(ref)).reason

    async with tl.open_node():
        assert await in_process(main) == "boom"
    assert echo.log == []


async def test_c_g11_stop_outcomes(anyio_backend: str) -> None:
    echo = Echo()

    async def main() -> Any:
        server = await tl.start(echo)
        assert server is not None
        assert await tl.stop(server) is None
        with pytest.raises(tl.NoProcessError):
            await tl.stop(server)
        other = await tl.start(Echo)
        assert other is not None
        calling_self = await tl.call(other, ("self",))
        assert isinstance(calling_self, tl.CallingSelfError)
        assert calling_self.reason == "calling_self"
        return echo.log

    async with tl.open_node():
        assert await in_process(main) == [("terminate", tl.NORMAL)]


async def test_bad_return_value_stops_the_server(anyio_backend: str) -> None:
    async def main() -> Any:
        server = await tl.start(Echo)
        assert server is not None
        with pytest.raises(tl.CallExitError) as info:
            await tl.call(server, ("whatever",))
        return info.value.reason

    async with tl.open_node():
        reason = await in_process(main)
    assert isinstance(reason, tl.Crashed)
    assert isinstance(reason.exception, tl.BadReturnError)
    assert reason.exception.callback == "handle_call"
    assert reason.exception.value == "not a legal result"


async def test_unlinked_server_treats_its_own_exit_as_a_parent_exit(anyio_backend: str) -> None:
    echo = Echo()

    class SelfSignal(Echo):
        async def init(self, mode: str = "ok") -> Any:
            tl.trap_exit(True)
            return tl.Ok([])

        async def handle_cast(self, request: Any, state: list[Any]) -> Any:
            tl.exit(tl.current_pid(), "boom")  # trapping: queued as Exit(self, boom)
            return tl.NoReply(state)

    server_obj = SelfSignal()
    server_obj.log = echo.log

    async def main() -> Any:
        server = await tl.start(server_obj)
        assert server is not None
        ref = tl.monitor(server)
        tl.cast(server, "go")
        return (await wait_down(ref)).reason

    async with tl.open_node():
        assert await in_process(main) == "boom"
    assert echo.log == [("terminate", "boom")]
