"""``thunderline demo``: run the reference application and show one event's trace."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import attrs

import thunderline.runtime as tl
from thunderline import telemetry
from thunderline.cli._main import CommandError
from thunderline.cli._style import Style, colour_enabled
from thunderline.domains import (
    AppConfig,
    Event,
    LedgerError,
    SigningKeyError,
    application_spec,
    bolt,
    gate,
    link,
    open_ledger,
    vault,
)

PUBLISHERS = 32
#: Seconds the demo waits at exit for queued spans (a collector that hangs costs at most this).
SHUTDOWN_TIMEOUT = 3.0
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

DESCRIPTION = """\
Start the reference application (Gate -> Flow -> Bolt -> Vault -> Link) in
this process, publish N heartbeat events through Gate, wait until each one
reached Link, then print the first event's trace id and span tree (domain,
span, duration), how many events reached Link and how fast, and the ledger's
verification. The first event is published alone so its tree is complete and
unmixed; the rest are published by 32 concurrent publishers.

Telemetry is configured as for the library and 'thunderline run': the OTEL_*
variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_ENDPOINT, OTEL_TRACES_EXPORTER,
OTEL_SAMPLING_RATIO ...), overridden by --otlp-endpoint and --sample-ratio
when given. With no variable set, spans go over OTLP/HTTP to
http://localhost:4318 (the OpenTelemetry default); without a collector there
that costs one warning line. Every event's trace is recorded in this process,
so the tree is always printed; the sampler decides only which traces are
exported (with OTEL_SAMPLING_RATIO=0 none is, and the tree shows what was
recorded locally). OTEL_SDK_DISABLED=true turns tracing off: no tree.

The ledger is checked before anything is appended: a data directory that is
not usable, a ledger that is not a thunderline ledger, is damaged or fails
verification, or a signing key that is not the ledger's, stops the demo with
one line and nothing written. The verification count includes the ledger's
genesis record (seq 0), so one event gives "2 records verified".

With --nodes 2, Gate, Flow and Bolt run on node a in this process and Vault
and Link on node b in a second process, connected through a private
nats-server on a free loopback port (or --cluster URL); each event is one
trace across both, and the tree shows each span's node ([domain@node]). If
node b is lost, the demo says how many events were acknowledged (committed in
b's ledger) and how many failed, and exits 1.

Exit status: 0 when every event reached Link and the ledger verifies, 1
otherwise, 2 for bad options or an unusable data directory or ledger.
"""


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run the reference application and print one event's trace",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=1, help="heartbeat events (default 1)")
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="the event loop the runtime runs on (default asyncio)",
    )
    parser.add_argument(
        "--loop",
        choices=("default", "uvloop"),
        default="default",
        help="asyncio event loop: uvloop needs pip install 'thunderline[uvloop]'",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="data directory: signing key, SQLite ledger, Link's output "
        "(default: a new temporary directory)",
    )
    parser.add_argument(
        "--ledger",
        metavar="PATH|URL",
        help="the ledger: a SQLite file or a postgresql:// URL "
        "($THUNDERLINE_LEDGER; default: ledger.db in the data directory)",
    )
    parser.add_argument(
        "--ledger-schema",
        metavar="NAME",
        help="PostgreSQL schema of the ledger ($THUNDERLINE_LEDGER_SCHEMA; "
        "default thunderline_ledger)",
    )
    parser.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="export spans to this OTLP/HTTP base URL (default: OTEL_EXPORTER_OTLP_TRACES_"
        "ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_ENDPOINT, else http://localhost:4318)",
    )
    parser.add_argument(
        "--nodes",
        default="1",
        metavar="N",
        help="1: everything in this process (default); 2: Gate, Flow, Bolt on node a here, "
        "Vault and Link on node b in a second process, over NATS",
    )
    parser.add_argument(
        "--cluster",
        metavar="URL",
        help="with --nodes 2: the NATS server to connect through "
        "(default: a private nats-server on a free loopback port)",
    )
    parser.add_argument(
        "--sample-ratio",
        type=float,
        default=None,
        metavar="R",
        help="fraction of event traces exported, 0 to 1 (default: OTEL_TRACES_SAMPLER_ARG / "
        "OTEL_SAMPLING_RATIO, else every trace); the tree is printed either way",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    parser.add_argument(
        "--progress", action="store_true", help="show a progress bar even when not a terminal"
    )
    parser.set_defaults(handler=run_demo)


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled and total >= 100
        self._shown = -1
        #: events whose publish returned (committed in the ledger), for an interrupted run
        self.acknowledged = 0
        self.stopping = False  # interrupted: the application is being stopped

    def interrupted(self) -> str:
        """The one line for a run interrupted by Ctrl-C or SIGTERM (ends the progress bar)."""
        if self.enabled and 0 <= self._shown < 100:
            print(file=sys.stderr)
        return (
            f"interrupted: {self.acknowledged} events acknowledged (committed in the ledger), "
            f"{self.total - self.acknowledged} not acknowledged"
        )

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        percent = done * 100 // self.total
        if percent == self._shown:
            return
        self._shown = percent
        bar = "#" * (percent // 4) + "." * (25 - percent // 4)
        print(f"\r[{bar}] {percent:3d}% {done}/{self.total} events", end="", file=sys.stderr)
        if done == self.total:
            print(file=sys.stderr)


async def _publisher(
    count: int, done: anyio.Event, events: list[Event], progress: _Progress
) -> None:
    # Each event starts its own trace: not the one this process was spawned in.
    try:
        for index in range(count):
            with telemetry.continue_from(None):
                events.append(await gate.publish("system.heartbeat", payload={"n": index}))
            progress.acknowledged += 1
    except tl.ThunderlineError:  # the demo is stopping (interrupted): Flow refuses new events
        if not progress.stopping:
            raise
    finally:
        done.set()


@attrs.frozen
class _Interrupted:
    """Sent to the demo's main process on the first Ctrl-C or SIGTERM."""

    signal: str


async def _watch_signals(owner: tl.Pid, progress: _Progress) -> None:
    """First SIGINT/SIGTERM: tell ``owner`` (an orderly stop); a second one: die by SIGINT."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            tl.send(owner, _Interrupted(signal.Signals(signum).name))
            break
        async for _ in signals:
            print(
                "thunderline demo: interrupted again: exiting at once after "
                f"{progress.acknowledged} events acknowledged (Link relays the rest of the "
                "ledger at its next start)",
                file=sys.stderr,
                flush=True,
            )
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)


async def _stop(supervisor: tl.Pid) -> None:
    """Stop the application in order (Flow drains, Link delivers) and wait for it."""
    tl.unlink(supervisor)
    ref = tl.monitor(supervisor)
    tl.exit(supervisor, tl.SHUTDOWN)
    await tl.receive(lambda m: isinstance(m, tl.Down) and m.ref == ref, timeout=120)


async def _demo(
    total: int, config: AppConfig, progress: _Progress, tracing: bool
) -> dict[str, Any]:
    supervisor = await application_spec(
        attrs.evolve(config, saga_instrument=bolt.saga_tracer() if tracing else None)
    ).start()
    assert supervisor is not None
    link.subscribe()
    tl.spawn(_watch_signals, tl.current_pid(), progress)
    started = time.perf_counter()
    first = await gate.publish("system.heartbeat", payload={"n": 0, "first": True})
    progress.acknowledged += 1
    reached = {str(first.id)}
    await tl.receive(lambda m: isinstance(m, link.Emitted) and m.event.id == first.id, timeout=60)
    progress.update(1)
    events: list[Event] = [first]
    remaining = total - 1
    dones: list[anyio.Event] = []
    for index in range(min(PUBLISHERS, remaining)):
        share = remaining // PUBLISHERS + (1 if index < remaining % PUBLISHERS else 0)
        done = anyio.Event()
        dones.append(done)
        tl.spawn(_publisher, share, done, events, progress)
    while len(reached) < total:
        message = await tl.receive(lambda m: isinstance(m, link.Emitted | _Interrupted), timeout=60)
        if isinstance(message, _Interrupted):
            # an orderly stop: Flow refuses new events, commits and processes what it
            # accepted, Link delivers every committed record; then say what was acknowledged
            progress.stopping = True
            await _stop(supervisor)
            for done in dones:
                await done.wait()
            return {"interrupted": message.signal}
        reached.add(str(message.event.id))
        progress.update(len(reached))
    for done in dones:
        await done.wait()
    elapsed = time.perf_counter() - started
    with telemetry.continue_from(None):  # not part of any event's trace
        report = await vault.verify()
    tl.unlink(supervisor)
    ref = tl.monitor(supervisor)
    tl.exit(supervisor, tl.SHUTDOWN)  # drains: every saga of the events ends first
    await tl.receive(lambda m: isinstance(m, tl.Down) and m.ref == ref, timeout=120)
    return {
        "events": total,
        "reached_link": len(reached),
        "seconds": elapsed,
        "events_per_second": total / elapsed if elapsed > 0 else None,
        "ledger_ok": report.ok,
        "ledger": str(report),
        "ledger_records": report.records,
        "first_event": str(first.id),
        "trace_ids": [event.meta.get("trace_id") for event in events],
    }


def _domain(span: telemetry.CollectedSpan) -> str:
    domain = span.attributes.get("thunderline.domain")
    if isinstance(domain, str):
        return domain
    prefix = span.name.split(".", 1)[0].split(" ", 1)[0]
    return {"saga": "bolt", "process": "runtime", "call": "runtime", "cast": "runtime"}.get(
        prefix, prefix
    )


_DOMAIN_COLOURS = {
    "gate": "green",
    "flow": "blue",
    "bolt": "magenta",
    "vault": "yellow",
    "link": "cyan",
}


def _tree(
    spans: list[telemetry.CollectedSpan],
    style: Style | None = None,
    nodes: dict[str, str] | None = None,
) -> list[str]:
    """The span tree, children by start time, aligned on a shared duration column.

    With ``nodes`` (span id -> node name) each span shows as ``[domain@node]``.
    """
    style = style or Style(False)
    by_parent: dict[str | None, list[telemetry.CollectedSpan]] = {}
    ids = {span.span_id for span in spans}
    for span in spans:
        parent = span.parent_id if span.parent_id in ids else None
        by_parent.setdefault(parent, []).append(span)
    for children in by_parent.values():
        children.sort(key=lambda s: s.start)
    lines: list[str] = []

    rows: list[tuple[str, str, str, telemetry.CollectedSpan]] = []

    def walk(span: telemetry.CollectedSpan, prefix: str, last: bool, root: bool) -> None:
        branch = "" if root else ("└─ " if last else "├─ ")
        where = f"@{nodes.get(span.span_id, '?')}" if nodes is not None else ""
        rows.append((prefix + branch, f"[{_domain(span)}{where}]", span.name, span))
        children = by_parent.get(span.span_id, [])
        extension = "" if root else ("   " if last else "│  ")
        for index, child in enumerate(children):
            walk(child, prefix + extension, index == len(children) - 1, False)

    roots = by_parent.get(None, [])
    for root in roots:
        walk(root, "", True, True)
    width = max((len(a) + len(b) + 1 + len(c) for a, b, c, _ in rows), default=0)
    for branch, domain, name, span in rows:
        pad = " " * (width - len(branch) - len(domain) - 1 - len(name))
        colour = _DOMAIN_COLOURS.get(_domain(span), "dim")
        status = style("  ERROR", "red", "bold") if span.status == "ERROR" else ""
        lines.append(
            f"{style(branch, 'dim')}{style(domain, colour)} {name}{pad}  "
            f"{span.duration_ms:8.2f} ms{status}"
        )
    return lines


def _data_dir(option: str | None) -> Path:
    """The demo's data directory (0700): ``--data`` or a new temporary one."""
    if option is None:
        return Path(tempfile.mkdtemp(prefix="thunderline-demo-"))
    if "://" in option:
        raise CommandError(
            f"--data takes a directory, got {option!r}; give a database URL with --ledger"
        )
    path = Path(option).expanduser()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise CommandError(f"--data {option}: exists and is not a directory") from None
    except OSError as exc:
        raise CommandError(f"--data {option}: cannot create it: {exc.strerror or exc}") from None
    if not path.is_dir():
        raise CommandError(f"--data {option}: exists and is not a directory")
    return path


def _check_ledger(config: AppConfig) -> None:
    """Open the ledger as Vault will and verify it, so a bad one stops the demo before it writes.

    Raises:
        CommandError: the ledger cannot be opened for appending (not a ledger,
            damaged, another key ...) or its chain fails verification.
    """
    location = config.ledger or str(config.data_dir / "ledger.db")
    try:
        with open_ledger(location, data_dir=config.data_dir, schema=config.ledger_schema) as led:
            report = led.verify()
    except (LedgerError, SigningKeyError) as exc:
        raise CommandError(str(exc)) from None
    if not report.ok:
        raise CommandError(
            f"ledger {location} fails verification, refusing to append to it: {report}"
        )


def _export_line(config: telemetry.TelemetryConfig) -> str:
    """Where the demo's traces go, for its output: ``OTLP/HTTP <url>, sampler ...``."""
    if not config.enabled:
        return "tracing off (OTEL_SDK_DISABLED=true)"
    targets = [
        f"OTLP/HTTP {config.traces_endpoint}" if name == "otlp" else "console"
        for name in config.traces_exporter
    ]
    if not targets:
        return "recorded here, not exported (OTEL_TRACES_EXPORTER=none)"
    ratio = "" if config.sampler_ratio is None else f" {config.sampler_ratio:g}"
    return f"exported to {' and '.join(targets)}, sampler {config.sampler}{ratio}"


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; exit 0 when every event reached Link and the ledger verifies."""
    if args.nodes != "1" or args.cluster is not None:
        from thunderline.cli._demo_nodes import run_demo_nodes

        return run_demo_nodes(args)
    if args.events < 1:
        raise CommandError(f"--events must be >= 1, got {args.events}")
    if args.sample_ratio is not None and not 0.0 <= args.sample_ratio <= 1.0:
        raise CommandError(f"--sample-ratio must be within [0, 1], got {args.sample_ratio}")
    collector = telemetry.TraceCollector(max_traces=1)
    try:
        traces = telemetry.configure(
            endpoint=args.otlp_endpoint,
            sampler_ratio=args.sample_ratio,
            extra_processors=[collector],
            record_all=True,  # the tree is printed whatever the sampler exports
            install_global=False,
        )
    except telemetry.TelemetryConfigError as exc:
        raise CommandError(str(exc)) from None
    tracing = traces.enabled
    ledger = args.ledger or os.environ.get("THUNDERLINE_LEDGER") or None
    if ledger is not None and "://" in ledger and not ledger.startswith(POSTGRES_SCHEMES):
        raise CommandError(f"--ledger takes a SQLite file or a postgresql:// URL, got {ledger!r}")
    schema = args.ledger_schema or os.environ.get("THUNDERLINE_LEDGER_SCHEMA") or None
    os.umask(0o077)  # the key, the ledger and Link's output are the user's alone
    data_dir = _data_dir(args.data)
    config = AppConfig(data_dir=data_dir, ledger=ledger)
    if schema is not None:
        config = attrs.evolve(config, ledger_schema=schema)
    _check_ledger(config)
    progress = _Progress(args.events, args.progress or sys.stderr.isatty())
    instrument = telemetry.RuntimeInstrument() if tracing else None
    from thunderline.cli._demo_nodes import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # before and after the run; inside it: _watch_signals
            summary = tl.run(
                _demo,
                args.events,
                config,
                progress,
                tracing,
                backend=args.backend,
                instrument=instrument,
                uvloop=args.loop == "uvloop",
            )
    except tl.LoopUnavailableError as exc:
        raise CommandError(f"--loop {args.loop}: {exc}") from None
    except KeyboardInterrupt:
        raise CommandError(progress.interrupted(), status=130) from None
    finally:
        telemetry.shutdown(SHUTDOWN_TIMEOUT)
    if "interrupted" in summary:
        raise CommandError(progress.interrupted(), status=130)
    first_trace = summary["trace_ids"][0]
    spans = collector.spans(first_trace) if first_trace else []
    summary["first_trace_id"] = first_trace
    summary["first_trace_spans"] = len(spans)
    summary["data_dir"] = str(data_dir)
    summary["export"] = _export_line(traces)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(f"thunderline demo: {args.events} event(s) on {args.backend}, data in {data_dir}")
        print(f"traces: {summary['export']}")
        if first_trace:
            print(f"trace id of the first event: {first_trace}")
            for line in _tree(spans, Style(colour_enabled(sys.stdout))):
                print("  " + line)
        else:
            print("tracing off: no trace")
        print(
            f"{summary['reached_link']}/{summary['events']} events reached Link in "
            f"{summary['seconds']:.3f} s ({summary['events_per_second']:.0f} events/s)"
        )
        records = summary["ledger_records"]
        ledger_line = summary["ledger"]
        if summary["ledger_ok"]:
            ledger_line = ledger_line.replace(
                f"{records} records verified",
                f"{records} records verified (the genesis record and {records - 1} "
                f"event{'s' if records != 2 else ''})",
                1,
            )
        print(f"ledger: {ledger_line}")
    ok = summary["reached_link"] == args.events and summary["ledger_ok"]
    return 0 if ok else 1
