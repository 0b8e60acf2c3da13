"""Distribution over NATS: remote call, remote one-way throughput, node-down detection.

Baselines measured in the same run on the same private ``nats-server``:
raw nats-py request/reply (``nc.request``) and raw nats-py publish/subscribe,
against a peer process (``_dist_peer.py``) that also hosts the thunderline
side. The raw baseline is asyncio (nats-py has no trio); on trio thunderline
runs its client on a helper-thread loop, so the trio row shows the bridge's cost.

Node-down detection (``python -m benchmarks.distribution``; no raw baseline,
so not in the table): a victim node in its own OS process is killed (kill -9)
or stopped (SIGSTOP, default tick), and the time until a linked process here
gets ``Exit(victim, NOCONNECTION)`` is one sample.
"""

from __future__ import annotations

import asyncio
import atexit
import signal
import subprocess
import sys
from pathlib import Path
from time import perf_counter
from typing import Any

from benchmarks._core import Contender, Target, Workload

ORDER = 80

_state: dict[str, Any] = {}


def _server_url() -> str:
    if "url" not in _state:
        from thunderline.dist import NatsServer

        server = NatsServer()
        server.start()
        atexit.register(server.stop)
        _state["server"] = server
        _state["url"] = server.url + "/bench"
    return str(_state["url"])


def _peer() -> str:
    url = _server_url()
    if "peer" not in _state:
        peer = _spawn_node("benchmarks._dist_peer", url)
        atexit.register(peer.kill)
        _state["peer"] = peer
    return url


def _spawn_node(module: str, *args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        raise RuntimeError(f"{module} did not start: {line!r}")
    return process


# -------------------------------------------------------------- remote call


def tl_remote_call(backend: str, n: int) -> float:
    import thunderline as tl
    from thunderline import dist

    url = _peer()

    async def body(count: int) -> float:
        assert await dist.connect_node("peer", 30)
        await tl.call(("echo", "peer"), 0)
        start = perf_counter()
        for i in range(count):
            await tl.call(("echo", "peer"), i)
        return perf_counter() - start

    elapsed: float = tl.run(body, n, backend=backend, node="bench", cluster=url)
    return elapsed / n


def raw_request_reply(backend: str, n: int) -> float:
    import nats

    url = _peer().rsplit("/", 1)[0]

    async def body() -> float:
        nc = await nats.connect(url)
        await nc.request("bench.raw.echo", b"0", timeout=10)
        start = perf_counter()
        for i in range(n):
            await nc.request("bench.raw.echo", str(i).encode(), timeout=10)
        elapsed = perf_counter() - start
        await nc.close()
        return elapsed

    return asyncio.run(body()) / n


# ---------------------------------------------------------------- one-way


def tl_remote_one_way(backend: str, n: int) -> float:
    import thunderline as tl
    from thunderline import dist

    url = _peer()

    async def body(count: int) -> float:
        assert await dist.connect_node("peer", 30)
        me = tl.current_pid()
        start = perf_counter()
        for i in range(count):
            tl.send(("sink", "peer"), i)
        tl.send(("sink", "peer"), ("done", me, count))
        await tl.receive(timeout=120)
        return perf_counter() - start

    elapsed: float = tl.run(body, n, backend=backend, node="bench", cluster=url)
    return elapsed / n


def raw_publish(backend: str, n: int) -> float:
    import nats

    url = _peer().rsplit("/", 1)[0]

    async def body() -> float:
        nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
        start = perf_counter()
        for i in range(n):
            await nc.publish("bench.raw.sink", str(i).encode())
        await nc.request("bench.raw.done", str(n).encode(), timeout=120)
        elapsed = perf_counter() - start
        await nc.close()
        return elapsed

    return asyncio.run(body()) / n


# ---------------------------------------------------------- node-down latency


def _detection(backend: str, how: signal.Signals) -> float:
    import thunderline as tl

    url = _server_url() + "down"
    victim = _spawn_node("benchmarks._dist_peer", url)
    try:

        async def body() -> float:
            from thunderline import dist

            assert await dist.connect_node("peer", 30)
            tl.trap_exit(True)
            echo = await tl.call(("echo", "peer"), "pid")
            tl.link(echo)
            start = perf_counter()
            victim.send_signal(how)
            exit_message = await tl.receive(tl.Exit, timeout=60)
            assert exit_message.reason == tl.NOCONNECTION
            return perf_counter() - start

        elapsed: float = tl.run(body, backend=backend, node="watcher", cluster=url)
        return elapsed
    finally:
        victim.send_signal(signal.SIGCONT)
        victim.kill()
        victim.wait()
        if victim.stdout is not None:
            victim.stdout.close()


def down_kill9(backend: str, n: int) -> float:
    return _detection(backend, signal.SIGKILL)


def down_sigstop(backend: str, n: int) -> float:
    return _detection(backend, signal.SIGSTOP)


WORKLOADS = [
    Workload(
        name="remote_call",
        title="call() to a Server on another node (OS process) over NATS",
        n=2_000,
        smoke_n=20,
        contenders=[
            Contender("thunderline", "thunderline call to (name, node)", tl_remote_call),
            Contender("raw", "nats-py request/reply (asyncio)", raw_request_reply, None),
        ],
        target=Target(max_ratio=1.5, beat_peers=False),
    ),
    Workload(
        name="remote_one_way",
        title="one message to a process on another node (throughput)",
        n=50_000,
        smoke_n=200,
        contenders=[
            Contender("thunderline", "thunderline send to (name, node)", tl_remote_one_way),
            Contender("raw", "nats-py publish/subscribe (asyncio)", raw_publish, None),
        ],
        target=Target(max_ratio=2.0, beat_peers=False),
        note="target: at least 50% of raw nats-py throughput (per-message cost <= 2x raw)",
    ),
]

#: Node-down detection (no raw baseline, not in the table): python -m benchmarks.distribution
DETECTION = [
    Workload(
        name="down_kill9",
        title="node killed (kill -9) until a linked process gets NOCONNECTION",
        n=1,
        smoke_n=1,
        runs=3,
        contenders=[Contender("thunderline", "heartbeat + no-responders probe", down_kill9)],
        target=Target(max_value=1.0, beat_peers=False),
    ),
    Workload(
        name="down_sigstop",
        title="node hung (SIGSTOP) until a linked process gets NOCONNECTION (default tick)",
        n=1,
        smoke_n=1,
        runs=3,
        contenders=[Contender("thunderline", "heartbeat silence for tick (3 s)", down_sigstop)],
        target=Target(max_value=4.0, beat_peers=False),
    ),
]


if __name__ == "__main__":
    for workload in DETECTION:
        for backend in ("asyncio", "trio"):
            samples = [workload.contenders[0].fn(backend, 1) for _ in range(3)]
            print(f"{workload.name} {backend}: " + ", ".join(f"{v * 1000:.0f} ms" for v in samples))
