"""``thunderline demo --nodes 2``: the reference application on two nodes in two OS processes.

End to end through the CLI (a real nats-server, node b a real child process, an
OTLP/HTTP receiver on loopback), bad ``--nodes`` values, and the loss of node b
by kill -9: node a's links and monitors fire ``noconnection`` within a second,
publishers that were not acknowledged get ``VaultUnreachableError``, and every
acknowledged event is in b's ledger after b restarts (zero lost).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from dist_helpers import BOUND, in_process, local_node, receive

import thunderline as tl
from otlp_receiver import OtlpReceiver
from thunderline import dist
from thunderline.cli._demo_nodes import RELAY, BackProcess, register_wire_types
from thunderline.domains import (
    AppConfig,
    Event,
    VaultUnreachableError,
    flow,
    front_spec,
    vault,
)

VAULT = ("thunderline.vault", "b")


def published(message: Any) -> bool:
    return isinstance(message, tuple) and message[:1] in (("acked",), ("failed",))


LINK = ("thunderline.link", "b")


# ------------------------------------------------------------------ helpers


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.stop()


def _environment() -> dict[str, str]:
    """This environment without OpenTelemetry or thunderline settings."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "THUNDERLINE_"))
    }


def _demo(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "thunderline.cli", "demo", *args],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=timeout,
        check=False,
    )


def _children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            # "pid (comm) state ppid ...": comm may hold spaces, so split after ")"
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


# ------------------------------------------------------------------ end to end


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_two_node_demo_exports_complete_traces_from_both_nodes(
    backend: str, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    events = 3
    result = _demo(
        "--nodes",
        "2",
        "--events",
        str(events),
        "--backend",
        backend,
        "--otlp-endpoint",
        receiver.endpoint,
        "--data",
        str(tmp_path / "data"),
    )
    assert result.returncode == 0, result.stderr
    assert f"{events}/{events} events reached Link on node b" in result.stdout
    assert f"ok: {events + 1} records verified" in result.stdout
    # The printed tree names each span's node: Gate/Flow/Bolt on a, Vault/Link on b.
    tree = result.stdout
    assert "[gate@a] gate.publish" in tree
    assert "[flow@a] flow.publish_event" in tree
    assert "[bolt@a] bolt.handle_event" in tree
    assert "[vault@b] vault.append" in tree
    assert "[link@b] link.transport_emit" in tree

    def event_traces() -> dict[str, list[tuple[dict[str, str], Any]]]:
        return {
            trace_id: spans
            for trace_id, spans in receiver.traces().items()
            if any(item.name == "gate.publish" for _, item in spans)
        }

    def complete() -> bool:
        traces = event_traces()
        return len(traces) == events and all(
            {"vault.append", "link.transport_emit", "bolt.saga_execution"}
            <= {item.name for _, item in spans}
            for spans in traces.values()
        )

    # Both processes flushed their spans before exiting; the wait is only a bound.
    assert receiver.wait_for(complete, BOUND), sorted(
        (t, sorted(item.name for _, item in s)) for t, s in event_traces().items()
    )
    for trace_id, spans in receiver.traces().items():  # the events' and any other
        ids = {item.span_id for _, item in spans}
        dangling = [
            item.name for _, item in spans if item.parent_span_id and item.parent_span_id not in ids
        ]
        assert dangling == [], f"trace {trace_id}: spans with a parent not exported: {dangling}"
    for trace_id, spans in event_traces().items():
        ids = {item.span_id for _, item in spans}
        dangling = [
            item.name for _, item in spans if item.parent_span_id and item.parent_span_id not in ids
        ]
        assert dangling == [], f"trace {trace_id}: spans with a parent not exported: {dangling}"
        roots = [item.name for _, item in spans if not item.parent_span_id]
        assert roots == ["gate.publish"], roots
        by_node: dict[str, set[str]] = {}
        for resource, item in spans:
            by_node.setdefault(resource.get("service.instance.id", "?"), set()).add(item.name)
            assert resource.get("service.name") == "thunderline"
        assert set(by_node) == {"a", "b"}, by_node
        assert {"gate.publish", "flow.publish_event", "bolt.handle_event"} <= by_node["a"]
        assert {"vault.append", "link.transport_emit"} <= by_node["b"]
        assert not by_node["a"] & {"vault.append", "link.transport_emit"}


def test_two_node_demo_through_a_given_cluster(cluster_url: str, tmp_path: Path) -> None:
    """``--cluster URL``: the nodes meet on that server (no private one is started)."""
    result = _demo(
        *("--nodes", "2", "--events", "20", "--cluster", cluster_url, "--json"),
        *("--data", str(tmp_path / "data")),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["acknowledged"] == summary["reached_link"] == 20
    assert summary["ledger_records"] == 21
    assert summary["first_trace_nodes"] == ["a", "b"]
    assert summary["node_b_status"] == 0


def test_unreachable_cluster_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once closed
    result = _demo("--nodes", "2", "--cluster", f"nats://u:secret@127.0.0.1:{port}/x", timeout=60)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"cannot reach the NATS server at 127.0.0.1:{port}" in lines[0]
    assert "secret" not in lines[0]


def test_node_b_failing_to_start_is_one_error_and_exit_1(tmp_path: Path) -> None:
    """A server without JetStream: node b cannot join, exits 1 before ``ready``; the demo says
    so in one line, exits 1 and leaves no process behind."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = Path(sys.executable).parent / "nats-server"
    server = subprocess.Popen(
        [str(binary), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.05)
        data = tmp_path / "data"
        result = _demo(
            *("--nodes", "2", "--cluster", f"nats://127.0.0.1:{port}/nojs"),
            *("--data", str(data)),
            timeout=120,
        )
    finally:
        server.terminate()
        server.wait()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("thunderline demo: error: node b exited with status 1"), lines
    assert any("JetStream" in line for line in lines[:-1]), lines
    left = [pid for pid in _all_pids() if str(data) in _cmdline(pid)]
    assert left == [], [_cmdline(pid) for pid in left]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--nodes", "0"], "--nodes must be 1 or 2, got '0'"),
        (["--nodes", "3"], "--nodes must be 1 or 2, got '3'"),
        (["--nodes", "-2"], "--nodes must be 1 or 2, got '-2'"),
        (["--nodes", "two"], "--nodes must be 1 or 2, got 'two'"),
        (["--nodes", ""], "--nodes must be 1 or 2, got ''"),
        (["--cluster", "nats://127.0.0.1:4222"], "--cluster needs --nodes 2"),
        (["--nodes", "2", "--cluster", "http://x"], "--cluster takes a nats:// URL"),
        # found by the fault campaign: node b died with a traceback for these
        (["--nodes", "2", "--cluster", "nats://127.0.0.1:4222/Bad.Name"], "cluster name"),
        (["--nodes", "2", "--cluster", "nats://127.0.0.1:4222/-x"], "cluster name"),
        (["--nodes", "2", "--cluster", "nats://127.0.0.1:99999/x"], "--cluster"),
    ],
)
def test_bad_nodes_options_give_one_line_and_exit_2(
    options: list[str], message: str, tmp_path: Path
) -> None:
    result = _demo(*options, "--data", str(tmp_path / "data"), timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("thunderline demo: error: ")
    assert message in lines[0]
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


# ------------------------------------------------------------------ losing node b


class _Output:
    """A pipe read by a thread into a growing text."""

    def __init__(self, stream: Any) -> None:
        self.text = ""
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: Any) -> None:
        for chunk in iter(lambda: os.read(stream.fileno(), 4096), b""):
            with self.lock:
                self.text += chunk.decode(errors="replace")

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self.text):
                    return True
            time.sleep(0.02)
        return False


@pytest.mark.parametrize("fault", ["kill -9 b", "SIGINT", "SIGTERM", "kill -9 demo"])
def test_demo_stops_node_b_and_nats_server_on_every_path(fault: str, tmp_path: Path) -> None:
    """kill -9 of node b -> one clear error, exit 1; Ctrl-C / SIGTERM -> exit 130; no orphans."""
    demo = subprocess.Popen(
        [
            *(
                sys.executable,
                "-m",
                "thunderline.cli",
                "demo",
                "--nodes",
                "2",
                "--events",
                "100000",
            ),
            *("--progress", "--sample-ratio", "0", "--data", str(tmp_path / "data")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_environment(),
    )
    children: list[int] = []
    try:
        err = _Output(demo.stderr)
        # Progress means node b is up and events are flowing through it.
        assert err.wait_for(lambda text: "events" in text, BOUND * 3), err.text
        children = _children(demo.pid)
        back = [pid for pid in children if "_demo_nodes" in _cmdline(pid)]
        server = [pid for pid in children if "nats-server" in _cmdline(pid)]
        assert len(back) == 1, [_cmdline(pid) for pid in children]
        assert len(server) == 1, [_cmdline(pid) for pid in children]
        if fault == "kill -9 b":
            os.kill(back[0], signal.SIGKILL)
        elif fault == "kill -9 demo":
            demo.kill()
            demo.wait()
            # Node b sees its standard input close and stops by itself; the private
            # nats-server gets SIGTERM from the kernel (parent-death signal).
            deadline = time.monotonic() + BOUND * 3
            while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _alive(back[0]), "node b outlived the demo"
            assert not _alive(server[0]), "the private nats-server outlived the demo"
            return
        else:
            demo.send_signal(signal.SIGINT if fault == "SIGINT" else signal.SIGTERM)
        status = demo.wait(BOUND * 6)
        err.thread.join(BOUND)
        if fault == "kill -9 b":
            assert status == 1, err.text
            assert "node b lost: links and monitors report NOCONNECTION" in err.text, err.text
            error = [
                line
                for line in err.text.splitlines()
                if line.startswith("thunderline demo: error:")
            ]
            assert len(error) == 1, err.text
            assert "was lost" in error[0]
            assert "acknowledged (committed in b's ledger)" in error[0]
        else:
            assert status == 130, err.text
            # one line with what was acknowledged (found by the fault campaign: it said
            # only "interrupted"); every acknowledged event is in b's ledger
            error = [line for line in err.text.splitlines() if "thunderline demo: " in line]
            assert len(error) == 1, err.text
            match = re.search(r"interrupted: (\d+) events acknowledged", error[0])
            assert match is not None, err.text
            ledger = str(tmp_path / "data" / "ledger.db")
            verified = subprocess.run(
                [sys.executable, "-m", "thunderline.cli", "ledger", "verify", ledger],
                capture_output=True,
                text=True,
                env=_environment(),
                timeout=BOUND * 3,
                check=False,
            )
            assert verified.returncode == 0, verified.stderr
            records = re.search(r"ok: (\d+) records", verified.stdout)
            assert records is not None, verified.stdout
            assert int(records.group(1)) - 1 >= int(match.group(1))
            assert "Traceback" not in err.text, err.text
        for pid in children:
            assert not _alive(pid), f"left behind: {pid} {_cmdline(pid)}"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for stream in (demo.stdout, demo.stderr):
            if stream is not None:
                stream.close()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _back(url: str, data: Path, backend: str) -> BackProcess:
    return BackProcess(
        [
            *(sys.executable, "-m", "thunderline.cli._demo_nodes", "back", "--cluster", url),
            *("--data", str(data), "--backend", backend, "--sample-ratio", "0"),
        ]
    )


@pytest.mark.anyio
async def test_kill_9_of_node_b_noconnection_within_a_second_and_zero_acknowledged_lost(
    cluster_url: str, anyio_backend: str, tmp_path: Path
) -> None:
    """Node a in this process (Gate, Flow, Bolt), node b (Vault, Link) a real process.

    Publishers publish until b is killed; each publish either returns (acknowledged)
    or raises ``VaultUnreachableError``. After b restarts on the same data, its
    ledger holds every acknowledged event, none of the events never sent to it, and
    publishing the failed events again records each exactly once.
    """
    register_wire_types()
    data = tmp_path / "b"
    back = _back(cluster_url, data, anyio_backend)
    await anyio.to_thread.run_sync(back.start)
    try:
        async with local_node(cluster_url, "a"):

            async def body() -> dict[str, Any]:
                assert await dist.connect_node("b", timeout=BOUND)
                supervisor = await front_spec(AppConfig(data_dir=tmp_path / "a"), "b").start()
                relay = await dist.spawn_remote("b", RELAY, tl.current_pid(), link=True)
                refs = {tl.monitor(VAULT): VAULT, tl.monitor(LINK): LINK}
                me = tl.current_pid()

                async def publisher(k: int) -> None:
                    for i in range(100_000):
                        event = Event.new(
                            name="system.heartbeat",
                            type="heartbeat",
                            source="gate",
                            payload={"publisher": k, "i": i},
                        )
                        try:
                            await flow.publish(event)
                        except Exception as exc:  # noqa: BLE001 - the test checks which
                            tl.send(me, ("failed", event, exc))
                            return
                        tl.send(me, ("acked", event))

                publishers = 8
                for k in range(publishers):
                    tl.spawn(publisher, k)
                acked: list[Event] = []
                failed: list[tuple[Event, Exception]] = []
                while len(acked) < 60:
                    message = await receive(published)
                    assert message[0] == "acked", message
                    acked.append(message[1])
                assert back.pid is not None
                os.kill(back.pid, signal.SIGKILL)
                killed = anyio.current_time()
                signals = [await receive(tl.Exit, tl.Down) for _ in range(3)]
                noticed = anyio.current_time() - killed
                assert tl.Exit(relay, tl.NOCONNECTION) in signals, signals
                for ref, target in refs.items():
                    assert tl.Down(ref, target, tl.NOCONNECTION) in signals, signals
                while len(failed) < publishers:
                    message = await receive(published)
                    if message[0] == "acked":
                        acked.append(message[1])
                    else:
                        failed.append((message[1], message[2]))
                tl.unlink(supervisor)  # it outlives this process (stopped after the restart)
                return {
                    "supervisor": supervisor,
                    "acked": acked,
                    "failed": failed,
                    "noticed": noticed,
                }

            run = await in_process(body, trap_exit=True)
            assert run["noticed"] < 1.0, f"kill -9 noticed after {run['noticed']:.3f} s"
            for event, error in run["failed"]:
                assert isinstance(error, VaultUnreachableError), error
                assert error.event_id == str(event.id)
            await anyio.to_thread.run_sync(back.stop)

            # Node b again, on the same data: the ledger and Link's sink survive.
            back = _back(cluster_url, data, anyio_backend)
            await anyio.to_thread.run_sync(back.start)

            async def after_restart() -> tuple[set[str], set[str], int, bool]:
                assert await dist.connect_node("b", timeout=BOUND)
                before = {r.event_id for r in await vault.read(1, vault=VAULT)}
                for event, _ in run["failed"]:
                    await flow.publish(event)  # idempotent by id
                records = await vault.read(1, vault=VAULT)
                report = await vault.verify(vault=VAULT)
                await tl.stop(run["supervisor"], tl.SHUTDOWN, timeout=BOUND)
                return before, {r.event_id for r in records}, len(records), report.ok

            before, after, count, ok = await in_process(after_restart)
        acked_ids = {str(event.id) for event in run["acked"]}
        assert acked_ids <= before, f"lost: {sorted(acked_ids - before)}"  # zero lost
        never_sent = {str(e.id) for e, error in run["failed"] if not error.maybe_committed}
        assert not never_sent & before
        failed_ids = {str(event.id) for event, _ in run["failed"]}
        assert after == acked_ids | failed_ids
        assert count == len(after)  # each event exactly once
        assert ok
        assert await anyio.to_thread.run_sync(back.stop) == 0
        # Link (on b) relayed every committed record to its sink, in ledger order, once.
        lines = [json.loads(line) for line in (data / "link.jsonl").read_text().splitlines()]
        assert [line["seq"] for line in lines] == list(range(1, count + 1))
        assert {line["event"]["id"] for line in lines} == after
    finally:
        await anyio.to_thread.run_sync(back.stop)
