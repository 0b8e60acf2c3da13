"""Nodes in separate OS processes over a real NATS server: transparency and failures.

Node ``b`` runs in its own process (``node_main.py``); this test's node ``a``
acts from inside its processes. Faults are real: kill -9, SIGSTOP/SIGCONT.
"""

from __future__ import annotations

import signal
import socket
import time
from typing import Any

import anyio
import pytest
from dist_helpers import in_process, local_node, receive

import thunderline as tl
from thunderline import dist

pytestmark = pytest.mark.anyio


async def test_send_call_cast_and_ordering(cluster_url: str, start_node: Any) -> None:
    await start_node("b")
    async with local_node(cluster_url):

        async def body() -> None:
            assert await dist.connect_node("b", 20)
            assert dist.node() == "a"
            assert dist.nodes() == ["b"]
            me = tl.current_pid()
            tl.send(("echo", "b"), ("ping", me, b"\x00bytes"))
            assert await receive() == ("pong", b"\x00bytes")
            # per-pair ordering: one sender's messages arrive in the order sent
            tl.send(("echo", "b"), ("burst", me, 500))
            got = [(await receive())[1] for _ in range(500)]
            assert got == list(range(500))
            # gen_server call/cast by (name, node) and by pid
            assert await tl.call(("ctr", "b"), ("add", 2)) == 2
            tl.cast(("ctr", "b"), ("add", 100))
            assert await tl.call(("ctr", "b"), ("add", 1)) == 103
            echo = await dist.whereis_global("g_b")
            assert echo is not None
            assert dist.node_of(echo) == "b"
            tl.send(echo, ("ping", me, (1, [2.5, {"k": None}])))
            assert await receive() == ("pong", (1, [2.5, {"k": None}]))
            # unknown names never raise on send; a call says noproc
            tl.send(("nobody", "b"), "dropped")
            tl.send(("nobody", "nonode"), "dropped")
            with pytest.raises(tl.CallNoProcError):
                await tl.call(("nobody", "b"), ("add", 1), timeout=5)
            ref = tl.monitor(("nobody", "b"))
            assert await receive(tl.Down) == tl.Down(ref, ("nobody", "b"), tl.NOPROC)
            with pytest.raises(tl.CallTimeoutError, match="may or may not"):
                await tl.call(("ctr", "b"), ("sleep", 5, "late"), timeout=0.3)

        await in_process(body)


async def test_links_monitors_and_exit_signals(cluster_url: str, start_node: Any) -> None:
    await start_node("b")
    async with local_node(cluster_url):

        async def body() -> None:
            assert await dist.connect_node("b", 20)
            me = tl.current_pid()
            worker = await dist.spawn_remote("b", "worker", me, "w1", link=True)
            assert await receive() == ("worker_started", "w1", worker)
            ref = tl.monitor(worker)
            tl.send(worker, "crash")
            exit_msg = await receive(tl.Exit)
            assert exit_msg.pid == worker
            assert isinstance(exit_msg.reason, tl.Crashed)
            assert isinstance(exit_msg.reason.exception, dist.RemoteError)
            assert exit_msg.reason.exception.type_name == "ValueError"
            down = await receive(tl.Down)
            assert down.ref == ref
            assert down.reason.exception == exit_msg.reason.exception
            # a link to a dead remote pid never raises: Exit(noproc) arrives
            tl.link(worker)
            assert await receive(tl.Exit) == tl.Exit(worker, tl.NOPROC)
            # exit/2 across nodes follows the local table
            w2, mref = await dist.spawn_remote("b", "worker", me, "w2", monitor=True)
            assert (await receive())[0] == "worker_started"
            tl.exit(w2, tl.NORMAL)  # ignored by a non-trapping target
            tl.exit(w2, "stop")
            assert await receive(tl.Down) == tl.Down(mref, w2, "stop")
            with pytest.raises(dist.RemoteSpawnError, match="no function"):
                await dist.spawn_remote("b", "missing")

        await in_process(body, trap_exit=True)


async def test_kill_9_fires_noconnection_within_a_second(cluster_url: str, start_node: Any) -> None:
    b = await start_node("b")
    async with local_node(cluster_url):

        async def body() -> float:
            assert await dist.connect_node("b", 20)
            echo = await dist.whereis_global("g_b")
            assert echo is not None
            tl.link(echo)
            ref = tl.monitor(("ctr", "b"))
            dist.monitor_node("b")
            dist.monitor_nodes(True)
            started = time.monotonic()
            b.kill()
            assert await receive(tl.Exit) == tl.Exit(echo, tl.NOCONNECTION)
            elapsed = time.monotonic() - started
            assert await receive(tl.Down) == tl.Down(ref, ("ctr", "b"), tl.NOCONNECTION)
            assert await receive(dist.NodeDown) == dist.NodeDown("b", "connection_closed")
            assert await receive(dist.NodeDown) == dist.NodeDown("b", "connection_closed")
            assert dist.nodes() == []
            # after the node is gone: send drops, monitor and call say noconnection
            tl.send(echo, "dropped")
            ref2 = tl.monitor(echo)
            assert await receive(tl.Down) == tl.Down(ref2, echo, tl.NOCONNECTION)
            with pytest.raises(tl.CallNodeDownError, match="may or may not"):
                await tl.call(("ctr", "b"), ("add", 1))
            # its global name is released
            assert await dist.whereis_global("g_b") is None
            return elapsed

        elapsed = await in_process(body, trap_exit=True)
        assert elapsed < 1.0, f"kill -9 noticed after {elapsed:.3f} s"


async def test_non_trapping_partner_dies_with_noconnection(
    cluster_url: str, start_node: Any
) -> None:
    b = await start_node("b")
    async with local_node(cluster_url):

        async def partner(owner: tl.Pid) -> None:
            echo = await dist.whereis_global("g_b")
            assert echo is not None
            tl.link(echo)
            tl.send(owner, "linked")
            while True:
                await tl.receive()

        async def body() -> None:
            assert await dist.connect_node("b", 20)
            _pid, _ref = tl.spawn_monitor(partner, tl.current_pid())
            assert await receive() == "linked"
            b.kill()
            assert (await receive(tl.Down)).reason == tl.NOCONNECTION

        await in_process(body)


async def test_hung_node_is_declared_down_then_rejoins(cluster_url: str, start_node: Any) -> None:
    b = await start_node("b")
    async with local_node(cluster_url, tick=1.0):

        async def body() -> None:
            assert await dist.connect_node("b", 20)
            echo = await dist.whereis_global("g_b")
            assert echo is not None
            ref = tl.monitor(echo)
            dist.monitor_nodes(True)
            b.signal(signal.SIGSTOP)
            assert await receive(tl.Down) == tl.Down(ref, echo, tl.NOCONNECTION)
            assert await receive(dist.NodeDown) == dist.NodeDown("b", "net_tick_timeout")
            b.signal(signal.SIGCONT)
            assert await receive(dist.NodeUp) == dist.NodeUp("b")
            # the pid is still valid after the reconnection
            tl.send(echo, ("ping", tl.current_pid(), 7))
            assert await receive(tuple) == ("pong", 7)

        await in_process(body)


async def test_restarted_node_is_a_new_incarnation(cluster_url: str, start_node: Any) -> None:
    b = await start_node("b")
    async with local_node(cluster_url):

        async def body() -> None:
            assert await dist.connect_node("b", 20)
            old = await dist.whereis_global("g_b")
            assert old is not None
            dist.monitor_nodes(True)
            b.kill()
            assert (await receive(dist.NodeDown)).node == "b"
            await start_node("b")
            assert await receive(dist.NodeUp) == dist.NodeUp("b")
            new = await dist.whereis_global("g_b")
            assert new is not None
            assert new != old
            ref = tl.monitor(old)
            assert await receive(tl.Down) == tl.Down(ref, old, tl.NOPROC)
            tl.send(old, ("ping", tl.current_pid(), 1))  # dropped
            tl.send(new, ("ping", tl.current_pid(), 2))
            assert await receive(tuple) == ("pong", 2)

        await in_process(body)


async def test_nats_server_restart(start_node: Any, anyio_backend: str) -> None:
    with dist.NatsServer() as server:
        url = server.url + "/restart"
        # The inner node is the current one: body runs on "a".
        async with local_node(url, "b") as db, local_node(url, "a"):
            b_node = db.node

            async def body() -> None:
                assert await dist.connect_node("b", 20)
                dist.monitor_nodes(True)
                server.kill()
                assert await receive(dist.NodeDown) == dist.NodeDown("b", "connection_lost")
                server.start()
                assert await receive(dist.NodeUp) == dist.NodeUp("b")

            await in_process(body)
            assert b_node.dist is db


async def test_an_unreachable_cluster_fails_the_start_with_a_clear_error(
    anyio_backend: str,
) -> None:
    """Nothing listens on the port: the node gives up after ``connect_timeout`` seconds
    with ClusterConnectError instead of retrying forever (nats-py's unlimited reconnects)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # fail_after is a bound for a regression (retrying forever), not a timing claim.
    with anyio.fail_after(60):
        async with tl.open_node() as node:
            with pytest.raises(dist.ClusterConnectError, match=f"127.0.0.1:{port}"):
                async with dist.open_distribution(
                    node, "a", f"nats://127.0.0.1:{port}", connect_timeout=1
                ):
                    pass  # pragma: no cover - never connected
