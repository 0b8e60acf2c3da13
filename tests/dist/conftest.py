"""Fixtures for the distribution tests: a private NATS server and nodes in OS processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from thunderline import dist

NODE_MAIN = Path(__file__).with_name("node_main.py")

#: Upper bound for any single wait (never reached when all is well).
BOUND = 20.0


@pytest.fixture(scope="session")
def nats_server() -> Iterator[dist.NatsServer]:
    """One private nats-server with JetStream on a free loopback port for the test run."""
    with dist.NatsServer() as server:
        yield server


@pytest.fixture
def cluster_url(nats_server: dist.NatsServer) -> str:
    """A fresh cluster (its own subject prefix and KV buckets) on the test run's server."""
    return f"{nats_server.url}/t{uuid.uuid4().hex[:10]}"


class NodeProcess:
    """A node in its own OS process (``node_main.py``)."""

    def __init__(
        self, url: str, name: str, backend: str, tick: float = 3.0, lease: float | None = None
    ) -> None:
        self.url = url
        self.name = name
        self.backend = backend
        self.tick = tick
        self.lease = lease
        self.process: subprocess.Popen[str] | None = None

    async def start(self) -> NodeProcess:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(NODE_MAIN),
                self.url,
                self.name,
                self.backend,
                str(self.tick),
                *([] if self.lease is None else [str(self.lease)]),
            ],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        stdout = self.process.stdout
        assert stdout is not None
        with anyio.fail_after(BOUND):
            line = await anyio.to_thread.run_sync(stdout.readline)
        assert line.strip() == "ready", f"node {self.name} did not start: {line!r}"
        return self

    def kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)


@pytest.fixture
async def start_node(cluster_url: str, anyio_backend: str) -> AsyncIterator[object]:
    """``await start_node("b")``: a node process in the test's cluster (killed at teardown)."""
    started: list[NodeProcess] = []

    async def start(name: str, tick: float = 3.0, lease: float | None = None) -> NodeProcess:
        node = NodeProcess(cluster_url, name, anyio_backend, tick, lease)
        started.append(node)
        return await node.start()

    yield start
    for node in started:
        with contextlib.suppress(Exception):
            node.signal(18)  # SIGCONT, in case a test left it stopped
        node.kill()
