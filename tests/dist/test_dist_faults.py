"""Joining a cluster with bad input or a server that cannot host one: one specific error, fast.

Found by a fault campaign against ``thunderline.run(main, node=..., cluster=...)``:
a server without JetStream surfaced as a bare ``ExceptionGroup``, a URL that is
not a NATS URL was retried for ``connect_timeout`` seconds, an empty node name
silently ran the node as ``main``, and ``dist.distribution`` accepted a bad
cluster name that only failed once the node was started (in the two-node demo,
with a traceback from node ``b``).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from dist_helpers import in_process, local_node

import thunderline as tl
from thunderline import dist
from thunderline.dist._server import find_nats_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def server_without_jetstream() -> Iterator[str]:
    """A plain nats-server (no ``-js``) on a free loopback port; its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [find_nats_server(), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # wait until it accepts connections (bounded; never reached when all is well)
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail("nats-server exited at start")
                anyio_sleep_sync(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def anyio_sleep_sync(seconds: float) -> None:
    import time

    time.sleep(seconds)


async def test_a_server_without_jetstream_fails_with_cluster_connect_error(
    server_without_jetstream: str, anyio_backend: str
) -> None:
    with anyio.fail_after(60):
        async with tl.open_node() as node:
            with pytest.raises(dist.ClusterConnectError, match="JetStream"):
                async with dist.open_distribution(node, "a", server_without_jetstream + "/t"):
                    pass  # pragma: no cover - never joined


def test_run_with_a_server_without_jetstream_raises_cluster_connect_error(
    server_without_jetstream: str,
) -> None:
    async def main() -> str:  # pragma: no cover - never started
        return "ran"

    for backend in ("asyncio", "trio"):
        with pytest.raises(dist.ClusterConnectError, match="JetStream"):
            tl.run(main, node="a", cluster=server_without_jetstream + "/t", backend=backend)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:4222", "garbage", "nats://", "nats://127.0.0.1:notaport"]
)
def test_a_url_that_is_not_a_nats_url_is_refused_before_connecting(url: str) -> None:
    with pytest.raises(dist.ClusterConnectError, match="NATS URL"):
        dist.distribution("a", url)


@pytest.mark.parametrize("url", ["nats://127.0.0.1:4222/Bad.Name", "nats://127.0.0.1:4222/-x"])
def test_a_bad_cluster_name_is_refused_before_the_node_starts(url: str) -> None:
    with pytest.raises(dist.InvalidNodeNameError, match="cluster name"):
        dist.distribution("a", url)


def test_run_refuses_an_empty_node_name() -> None:
    async def main() -> str:  # pragma: no cover - never started
        return "ran"

    with pytest.raises(dist.InvalidNodeNameError, match="node name ''"):
        tl.run(main, node="", cluster="nats://127.0.0.1:4222/t")


async def test_a_second_node_with_a_taken_name_is_refused(
    cluster_url: str, start_node: Any, anyio_backend: str
) -> None:
    """Two live nodes named ``b`` would both receive what is meant for one of them (found by
    the fault campaign: the second one started silently); the second is refused, as epmd
    refuses a taken name, and the first goes on."""
    await start_node("b")
    with anyio.fail_after(60):
        async with tl.open_node() as node:
            with pytest.raises(dist.ClusterConnectError, match="'b' is already in use"):
                async with dist.open_distribution(node, "b", cluster_url):
                    pass  # pragma: no cover - never joined
        async with local_node(cluster_url, "a"):

            async def body() -> None:
                assert await dist.connect_node("b", 20)
                assert dist.nodes() == ["b"]

            await in_process(body)


async def test_a_name_is_free_again_once_its_node_is_killed(
    cluster_url: str, start_node: Any, anyio_backend: str
) -> None:
    b = await start_node("b")
    b.kill()
    with anyio.fail_after(60):
        async with local_node(cluster_url, "b") as joined:
            assert joined.name == "b"


async def test_a_call_in_flight_when_its_node_is_killed_fails_with_call_node_down(
    cluster_url: str, start_node: Any, anyio_backend: str
) -> None:
    """kill -9 of the callee's node while the call waits: CallNodeDownError (may or may not
    have been handled), not a timeout, and well before the call's own timeout."""
    b = await start_node("b")
    async with local_node(cluster_url):

        async def body() -> None:
            assert await dist.connect_node("b", 20)
            started = anyio.Event()
            outcome: dict[str, BaseException] = {}

            async def caller() -> None:
                started.set()
                try:
                    await tl.call(("ctr", "b"), ("sleep", 600, "late"), timeout=300)
                except tl.ThunderlineError as exc:
                    outcome["error"] = exc

            async with anyio.create_task_group() as group:
                group.start_soon(caller)
                await started.wait()
                await anyio.sleep(0.3)  # the request is on its way; its fate does not matter
                b.kill()
            error = outcome["error"]
            assert isinstance(error, tl.CallNodeDownError), repr(error)
            assert "may or may not" in str(error)

        with anyio.fail_after(60):  # far below the call's 300 s timeout
            await in_process(body)
