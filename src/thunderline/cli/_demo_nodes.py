"""``thunderline demo --nodes 2``: the reference application on two nodes in two OS processes.

Node ``a`` (this process) runs Gate, Flow and Bolt (``domains.front_spec``); node
``b`` (a child process, ``python -m thunderline.cli._demo_nodes back ...``) runs Vault
and Link (``domains.back_spec``) with the ledger and Link's sink. They talk over
``thunderline.dist``, through a private ``nats-server`` on a free loopback port (or
the ``--cluster URL`` given). Flow commits through ``(VAULT, "b")``: an acknowledged
publish is committed in b's ledger.

Node ``a`` links to a relay process on ``b`` (it forwards Link's ``Emitted``
messages) and monitors ``(VAULT, "b")`` and ``(LINK, "b")``: when ``b`` is lost they
fire ``noconnection``, the demo reports what was acknowledged (committed on b) and
what was not (the publishers got ``VaultUnreachableError``), and exits 1.

The child and the NATS server are stopped on every path: normal end, errors,
Ctrl-C and SIGTERM (handled as Ctrl-C); the child also stops by itself when its
standard input closes, so it does not outlive a parent killed with SIGKILL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Final

import anyio
import attrs

import thunderline.runtime as tl
from thunderline import dist, telemetry
from thunderline.cli._main import CommandError
from thunderline.cli._style import Style, colour_enabled
from thunderline.domains import (
    AppConfig,
    Event,
    LedgerError,
    ShuttingDownError,
    VaultUnreachableError,
    back_spec,
    bolt,
    front_spec,
    gate,
    link,
    vault,
    wire_types,
)

__all__ = ["back_main", "register_wire_types", "run_demo_nodes"]

FRONT: Final = "a"
BACK: Final = "b"
#: The functions node b registers for node a.
RELAY: Final = "thunderline.demo.relay"
SPANS: Final = "thunderline.demo.spans"
VAULT_NAME: Final = "thunderline.vault"
LINK_NAME: Final = "thunderline.link"
PUBLISHERS: Final = 32
#: Seconds node b may take to start; seconds without progress before giving up.
START_TIMEOUT: Final = 60.0
PROGRESS_TIMEOUT: Final = 60.0
#: Seconds node b may take to stop (drain Link, close the ledger, flush spans).
STOP_TIMEOUT: Final = 60.0


def register_wire_types() -> None:
    """Register everything the two nodes exchange (both nodes call this)."""
    for wire in wire_types():
        dist.register_type(wire.cls, wire.name, fields=wire.fields, build=wire.build)
    dist.register_type(telemetry.CollectedSpan, "thunderline.telemetry.CollectedSpan")


def configure_telemetry(
    node: str,
    *,
    otlp_endpoint: str | None,
    sample_ratio: float | None,
    collector: telemetry.TraceCollector,
) -> bool:
    """Tracing for ``node`` as the one-node demo configures it, plus ``service.instance.id``.

    The settings come from :func:`thunderline.telemetry.resolve_config`
    (flags over ``OTEL_*`` over defaults, the same for both nodes, which share
    one environment); every trace is recorded for the printed tree and the
    sampler decides what is exported. Returns whether tracing is on.

    Raises:
        CommandError: an unusable endpoint or OpenTelemetry setting.
    """
    try:
        base = telemetry.resolve_config(endpoint=otlp_endpoint, sampler_ratio=sample_ratio)
        resource = {**dict(base.resource_attributes), "service.instance.id": node}
        traces = telemetry.configure(
            config=base,
            resource_attributes=resource,
            extra_processors=[collector],
            record_all=True,
            install_global=False,
        )
    except telemetry.TelemetryConfigError as exc:
        raise CommandError(str(exc)) from None
    return traces.enabled


class _OneLine(logging.Formatter):
    """``[node a] WARNING logger: first line of the message`` (no tracebacks on the terminal)."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        lines = record.getMessage().splitlines() or [""]
        text = lines[0] if len(lines[0]) <= 240 else lines[0][:240] + "..."
        return f"[node {self.node}] {record.levelname} {record.name}: {text}"


@contextlib.contextmanager
def _logging_to_stderr(node: str) -> Iterator[None]:
    """Warnings and errors of the node as one line each on stderr, for the demo's run."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_OneLine(node))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def _unwrap(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """``exc``, or the first exception of those kinds inside an exception group."""
    if isinstance(exc, kinds):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _unwrap(inner, kinds)
            if found is not None:
                return found
    return None


_STARTUP_ERRORS: Final = (tl.InitFailedError, dist.ClusterConnectError, OSError)


# ------------------------------------------------------------------------ node b


async def _relay(owner: tl.Pid) -> None:
    """Forward every ``link.Emitted`` to ``owner`` (on node a, linked to it)."""
    link.subscribe()
    while True:
        tl.send(owner, await tl.receive(link.Emitted))


async def _back(config: AppConfig, collector: telemetry.TraceCollector) -> int:
    async def spans(owner: tl.Pid, trace_id: str) -> None:
        tl.send(owner, (SPANS, trace_id, collector.spans(trace_id)))

    dist.register_function(RELAY, _relay)
    dist.register_function(SPANS, spans)
    supervisor = await back_spec(config).start()
    assert supervisor is not None
    print("ready", flush=True)
    # Runs until node a asks it to stop, or its parent is gone (stdin closes).
    await anyio.to_thread.run_sync(sys.stdin.buffer.readline, abandon_on_cancel=True)
    tl.unlink(supervisor)
    ref = tl.monitor(supervisor)
    tl.exit(supervisor, tl.SHUTDOWN)  # Link delivers what is committed, Vault closes the ledger
    await tl.receive(lambda m: isinstance(m, tl.Down) and m.ref == ref, timeout=STOP_TIMEOUT)
    return 0


def back_main(argv: list[str]) -> int:
    """Node b: ``python -m thunderline.cli._demo_nodes back --cluster URL --data DIR ...``."""
    parser = argparse.ArgumentParser(prog="thunderline demo (node b)")
    parser.add_argument("role", choices=("back",))
    parser.add_argument("--node", default=BACK)
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--ledger")
    parser.add_argument("--ledger-schema", default="thunderline_ledger")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--loop", choices=("default", "uvloop"), default="default")
    parser.add_argument("--otlp-endpoint")
    parser.add_argument("--sample-ratio", type=float)
    args = parser.parse_args(argv)
    register_wire_types()
    collector = telemetry.TraceCollector(max_traces=16)
    try:
        tracing = configure_telemetry(
            args.node,
            otlp_endpoint=args.otlp_endpoint,
            sample_ratio=args.sample_ratio,
            collector=collector,
        )
        config = AppConfig(
            data_dir=Path(args.data), ledger=args.ledger, ledger_schema=args.ledger_schema
        )
        os.umask(0o077)
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _logging_to_stderr(args.node):
            status: int = tl.run(
                _back,
                config,
                collector,
                backend=args.backend,
                instrument=telemetry.RuntimeInstrument() if tracing else None,
                setup=dist.distribution(args.node, args.cluster),
                uvloop=args.loop == "uvloop",
            )
        return status
    except CommandError as exc:
        print(f"thunderline demo: node {args.node}: {exc}", file=sys.stderr)
        return 2
    except BaseException as exc:  # also inside the exception group of a task group
        found = _unwrap(exc, _STARTUP_ERRORS)
        if found is None:
            if _unwrap(exc, (KeyboardInterrupt,)) is not None:
                return 130
            raise
        print(f"thunderline demo: node {args.node}: cannot start: {found}", file=sys.stderr)
        return 1
    finally:
        telemetry.shutdown()


class BackProcess:
    """Node b as a child process: started, waited for, stopped (never left behind)."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start node b and wait for its ``ready`` line.

        Raises:
            CommandError: it exited or stayed silent (status 1).
        """
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches only the demo, which stops b in order
        )
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise CommandError(f"node {BACK} did not start within {timeout:.0f} s", status=1)
            ready, _, _ = select.select([stdout], [], [], min(left, 0.5))
            if ready:
                line = stdout.readline()
                if line.strip() == b"ready":
                    self.ready = True
                    return
                if not line:
                    status = self.process.wait()
                    raise CommandError(
                        f"node {BACK} exited with status {status} before it was ready", status=1
                    )

    def kill(self) -> None:
        """Kill node b at once (SIGKILL) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Ask node b to stop (close its stdin), wait, kill it if it does not; its status.

        A node b that never said ``ready`` is killed at once.
        """
        process = self.process
        if process is None:
            return None
        if not self.ready:
            self.kill()  # it does not read its stdin yet: nothing to drain
        try:
            if process.poll() is None and process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            try:
                return process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                return None
        finally:
            if process.poll() is None:  # interrupted while waiting
                process.kill()
                process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()


# ------------------------------------------------------------------------ node a


@attrs.define
class _Run:
    total: int
    acked: list[Event] = attrs.field(factory=list)
    failed: dict[str, int] = attrs.field(factory=dict)
    reached: set[str] = attrs.field(factory=set)
    publishers: int = 0
    lost: str | None = None
    lost_after: float | None = None
    progress: Any = None  # the demo's progress bar; counts acknowledged events


async def _publisher(owner: tl.Pid, first: int, count: int) -> None:
    """Publish ``count`` heartbeats (each its own trace); report each outcome to ``owner``.

    Stops at the first failure: after a lost node the rest are not published.
    """
    for index in range(first, first + count):
        try:
            with telemetry.continue_from(None):
                event = await gate.publish("system.heartbeat", payload={"n": index})
        except (VaultUnreachableError, ShuttingDownError, LedgerError, tl.CallError) as exc:
            tl.send(owner, ("failed", type(exc).__name__))
            break
        tl.send(owner, ("acked", event))
    tl.send(owner, ("publisher_done",))


def _handle(message: Any, run: _Run, relay: tl.Pid, watched: set[tl.Ref], started: float) -> None:
    if isinstance(message, link.Emitted):
        run.reached.add(str(message.event.id))
    elif isinstance(message, tuple) and message[:1] == ("acked",):
        run.acked.append(message[1])
        if run.progress is not None:
            run.progress.acknowledged += 1
    elif isinstance(message, tuple) and message[:1] == ("failed",):
        run.failed[message[1]] = run.failed.get(message[1], 0) + 1
    elif message == ("publisher_done",):
        run.publishers -= 1
    elif run.lost is None and (
        (isinstance(message, tl.Exit) and message.pid == relay)
        or (isinstance(message, tl.Down) and message.ref in watched)
    ):
        run.lost = repr(message.reason)
        run.lost_after = time.perf_counter() - started
        print(
            f"thunderline demo: node {BACK} lost: links and monitors report {message.reason!r}",
            file=sys.stderr,
            flush=True,
        )


async def _front(total: int, config: AppConfig, progress: Any, tracing: bool) -> dict[str, Any]:
    if not await dist.connect_node(BACK, timeout=START_TIMEOUT):
        return {"error": f"node {BACK} did not connect within {START_TIMEOUT:.0f} s"}
    tl.trap_exit(True)
    saga_instrument = bolt.saga_tracer() if tracing else None
    supervisor = await front_spec(
        attrs.evolve(config, saga_instrument=saga_instrument), BACK
    ).start()
    assert supervisor is not None
    relay = await dist.spawn_remote(BACK, RELAY, tl.current_pid(), link=True)
    watched = {tl.monitor((VAULT_NAME, BACK)), tl.monitor((LINK_NAME, BACK))}
    run = _Run(total, progress=progress)
    me = tl.current_pid()
    started = time.perf_counter()

    async def wait_until(done: Any) -> None:
        """Handle messages until ``done()``; ``ReceiveTimeout`` after a while without any."""
        while not done():
            message = await tl.receive(timeout=PROGRESS_TIMEOUT)
            _handle(message, run, relay, watched, started)
            progress.update(len(run.reached))

    # The first event alone, so its trace is complete and unmixed; then the rest.
    run.publishers = 1
    tl.spawn(_publisher, me, 0, 1)
    result: dict[str, Any] = {}
    try:
        await wait_until(
            lambda: run.lost is not None or (run.publishers == 0 and (run.failed or run.reached))
        )
        remaining = total - 1
        if run.lost is None and not run.failed and remaining > 0:
            for index in range(min(PUBLISHERS, remaining)):
                first_index = _offset(index, remaining)
                share = _offset(index + 1, remaining) - first_index
                run.publishers += 1
                tl.spawn(_publisher, me, 1 + first_index, share)
        await wait_until(
            lambda: (
                run.publishers == 0
                and (run.lost is not None or run.failed or len(run.reached) >= len(run.acked))
            )
        )
    except tl.ReceiveTimeout:
        result["error"] = f"no progress for {PROGRESS_TIMEOUT:.0f} s"
    elapsed = time.perf_counter() - started
    first = run.acked[0] if run.acked else None
    first_trace = first.meta.get("trace_id") if first is not None else None
    b_spans: list[telemetry.CollectedSpan] = []
    report = None
    if run.lost is None and "error" not in result:
        with telemetry.continue_from(None):  # not part of any event's trace
            report = await vault.verify(vault=(VAULT_NAME, BACK))
            if first_trace:
                await dist.spawn_remote(BACK, SPANS, me, first_trace)
                reply = await tl.receive(
                    lambda m: isinstance(m, tuple) and m[:2] == (SPANS, first_trace),
                    timeout=PROGRESS_TIMEOUT,
                )
                b_spans = list(reply[2])
        tl.unlink(relay)
        tl.exit(relay, tl.SHUTDOWN)
    tl.unlink(supervisor)
    ref = tl.monitor(supervisor)
    tl.exit(supervisor, tl.SHUTDOWN)  # drains: every saga of the events ends first
    await tl.receive(lambda m: isinstance(m, tl.Down) and m.ref == ref, timeout=120)
    result.update(
        {
            "events": total,
            "acknowledged": len(run.acked),
            "failed": dict(run.failed),
            "failed_total": sum(run.failed.values()),
            "not_published": total - len(run.acked) - sum(run.failed.values()),
            "reached_link": len(run.reached),
            "seconds": elapsed,
            "events_per_second": len(run.reached) / elapsed if elapsed > 0 else None,
            "ledger_ok": report.ok if report is not None else False,
            "ledger": str(report) if report is not None else None,
            "ledger_records": report.records if report is not None else None,
            "first_event": str(first.id) if first is not None else None,
            "first_trace_id": first_trace,
            "b_spans": b_spans,
            "trace_ids": [event.meta.get("trace_id") for event in run.acked],
            "lost": run.lost,
            "lost_after": run.lost_after,
        }
    )
    return result


def _offset(index: int, remaining: int) -> int:
    """The first event number (after the first event) of publisher ``index``."""
    base, extra = divmod(remaining, PUBLISHERS)
    return index * base + min(index, extra)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the demo as Ctrl-C does (so node b and the server are stopped)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _back_command(args: argparse.Namespace, url: str, config: AppConfig) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "thunderline.cli._demo_nodes",
        "back",
        "--node",
        BACK,
        "--cluster",
        url,
        "--data",
        str(config.data_dir),
        "--ledger-schema",
        config.ledger_schema,
        "--backend",
        args.backend,
        "--loop",
        args.loop,
    ]
    if args.sample_ratio is not None:
        command += ["--sample-ratio", repr(args.sample_ratio)]
    if config.ledger is not None:
        command += ["--ledger", config.ledger]
    if args.otlp_endpoint:
        command += ["--otlp-endpoint", args.otlp_endpoint]
    return command


def _check_reachable(url: str, timeout: float = 5.0) -> None:
    """Fail with one line when the first server of ``url`` does not accept connections.

    Raises:
        CommandError: nothing listens there (status 1).
    """
    parsed = urllib.parse.urlsplit(url.split(",", 1)[0])
    host = parsed.hostname or "127.0.0.1"
    try:
        port = parsed.port or 4222
    except ValueError as exc:
        raise CommandError(f"--cluster: {exc}") from None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        message = f"--cluster: cannot reach the NATS server at {host}:{port}: {exc}"
        raise CommandError(message, status=1) from None


def run_demo_nodes(args: argparse.Namespace) -> int:
    """``demo --nodes N [--cluster URL]``: N = 2 runs the two-node demo (1 the usual one)."""
    from thunderline.cli import _demo

    try:
        count = int(args.nodes)
    except ValueError:
        count = 0
    if count not in (1, 2):
        raise CommandError(f"--nodes must be 1 or 2, got {args.nodes!r}")
    if count == 1:
        if args.cluster is not None:
            raise CommandError("--cluster needs --nodes 2 (one node runs in this process alone)")
        args.nodes = "1"
        return _demo.run_demo(args)
    if args.events < 1:
        raise CommandError(f"--events must be >= 1, got {args.events}")
    if args.sample_ratio is not None and not 0.0 <= args.sample_ratio <= 1.0:
        raise CommandError(f"--sample-ratio must be within [0, 1], got {args.sample_ratio}")
    if args.cluster is not None and not args.cluster.startswith(("nats://", "tls://")):
        raise CommandError(f"--cluster takes a nats:// URL, got {args.cluster!r}")
    if args.cluster is not None:
        try:  # the cluster's name and URL, checked here rather than by node b at its start
            dist.distribution(FRONT, args.cluster)
        except dist.DistributionError as exc:
            raise CommandError(f"--cluster: {exc}") from None
        _check_reachable(args.cluster)
    register_wire_types()
    collector = telemetry.TraceCollector(max_traces=1)
    tracing = configure_telemetry(
        FRONT,
        otlp_endpoint=args.otlp_endpoint,
        sample_ratio=args.sample_ratio,
        collector=collector,
    )
    try:
        ledger = args.ledger or os.environ.get("THUNDERLINE_LEDGER") or None
        if ledger is not None and "://" in ledger and not ledger.startswith(_demo.POSTGRES_SCHEMES):
            raise CommandError(
                f"--ledger takes a SQLite file or a postgresql:// URL, got {ledger!r}"
            )
        schema = args.ledger_schema or os.environ.get("THUNDERLINE_LEDGER_SCHEMA") or None
        os.umask(0o077)
        data_dir = _demo._data_dir(args.data)
        config = AppConfig(data_dir=data_dir, ledger=ledger)
        if schema is not None:
            config = attrs.evolve(config, ledger_schema=schema)
        _demo._check_ledger(config)
        progress = _demo._Progress(args.events, args.progress or sys.stderr.isatty())
        with (
            sigterm_as_interrupt(),
            _logging_to_stderr(FRONT),
            contextlib.ExitStack() as stack,
        ):
            if args.cluster is not None:
                url = args.cluster
            else:
                try:
                    server = stack.enter_context(dist.NatsServer())
                except dist.ClusterConnectError as exc:
                    raise CommandError(f"cannot start nats-server: {exc}", status=1) from None
                url = f"{server.url}/demo"
            back = BackProcess(_back_command(args, url, config))
            stack.callback(back.stop)
            back.start()
            try:
                summary: dict[str, Any] = tl.run(
                    _front,
                    args.events,
                    config,
                    progress,
                    tracing,
                    backend=args.backend,
                    instrument=telemetry.RuntimeInstrument() if tracing else None,
                    setup=dist.distribution(FRONT, url),
                    uvloop=args.loop == "uvloop",
                )
            except tl.LoopUnavailableError as exc:
                raise CommandError(f"--loop {args.loop}: {exc}") from None
            except BaseException as exc:  # also inside the exception group of a task group
                found = _unwrap(exc, (tl.ThunderlineError,))
                if found is None:
                    if _unwrap(exc, (KeyboardInterrupt,)) is not None:
                        raise CommandError(progress.interrupted(), status=130) from None
                    raise
                raise CommandError(f"node {FRONT} failed: {found}", status=1) from None
            back_status = back.stop()
    finally:
        telemetry.shutdown()
    return _report(args, summary, collector, back_status, data_dir)


def _report(
    args: argparse.Namespace,
    summary: dict[str, Any],
    collector: telemetry.TraceCollector,
    back_status: int | None,
    data_dir: Path,
) -> int:
    if "error" in summary and "events" not in summary:
        raise CommandError(summary["error"], status=1)
    first_trace = summary["first_trace_id"]
    spans = collector.spans(first_trace) if first_trace else []
    nodes = {span.span_id: FRONT for span in spans}
    b_spans: list[telemetry.CollectedSpan] = summary.pop("b_spans")
    nodes.update({span.span_id: BACK for span in b_spans})
    spans = spans + b_spans
    summary["first_trace_spans"] = len(spans)
    summary["first_trace_nodes"] = sorted(set(nodes.values()))
    summary["data_dir"] = str(data_dir)
    summary["nodes"] = 2
    summary["node_b_status"] = back_status
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(
            f"thunderline demo: {args.events} event(s) on {args.backend}, nodes a (Gate, Flow, "
            f"Bolt) and b (Vault, Link), data in {data_dir}"
        )
        if first_trace:
            print(f"trace id of the first event: {first_trace}")
            from thunderline.cli._demo import _tree

            for line in _tree(spans, Style(colour_enabled(sys.stdout)), nodes):
                print("  " + line)
        else:
            print("tracing off: no trace")
        print(
            f"{summary['reached_link']}/{summary['events']} events reached Link on node b in "
            f"{summary['seconds']:.3f} s ({summary['events_per_second'] or 0:.0f} events/s)"
        )
        if summary["ledger"] is not None:
            print(f"ledger (node b): {summary['ledger']}")
    if summary["lost"] is not None or "error" in summary or summary["failed"]:
        failed = ", ".join(f"{n} with {name}" for name, n in sorted(summary["failed"].items()))
        what = (
            f"node {BACK} was lost ({summary['lost']}, {summary['lost_after']:.2f} s into the run)"
            if summary["lost"] is not None
            else summary.get("error", "publishing failed")
        )
        raise CommandError(
            f"{what}: {summary['acknowledged']} events acknowledged (committed in b's "
            f"ledger), {summary['failed_total']} failed ({failed or 'none'}; not acknowledged), "
            f"{summary['not_published']} not published",
            status=1,
        )
    if back_status != 0:
        raise CommandError(f"node {BACK} exited with status {back_status}", status=1)
    ok = (
        summary["reached_link"] == args.events
        and summary["acknowledged"] == args.events
        and summary["ledger_ok"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(back_main(sys.argv[1:]))
