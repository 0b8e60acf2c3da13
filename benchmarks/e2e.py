"""End-to-end events/s through the reference application, against the essential work alone.

One operation is one heartbeat event published through Gate, committed by
Flow in the ledger (Vault, group commit) before the publish returns, relayed
by Link to a subscriber, and processed by its saga (Bolt). A sample starts the
whole application (``application_spec``) on a fresh SQLite data directory,
lets 32 publisher processes publish ``n`` events (each in its own trace), and
times from the first publish until the last ``Emitted`` arrived and the saga
pipeline drained (every saga ended); start-up and shutdown are not timed.

Three tracing modes, one workload each: off (no instrument, spans no-ops),
sampled at 10 % and at 100 % (``parentbased_traceidratio``, the runtime's
``RuntimeInstrument`` and the ``SagaTracer``; spans go to a discarding
exporter through the batching processor, as ``thunderline demo`` does).

The ``raw`` column is the essential work measured in the same run:
:func:`benchmarks.bench_ledger_essential.measure_essential` (canonical JSON +
SHA-256 + ECDSA signature + insert, one transaction per batch) with batches
of 128 events, the most appends Vault can have pending at once under the
default Bolt pipeline (8 workers x batches of 16). Targets: untraced at most
2x the essential work, 100 % traced at most 4x (10 % sampled: 3x).

``e2e_peak_rss`` reports the peak resident set size of one whole run (the
operation is the run, not an event) in a fresh interpreter, against the peak
RSS of the essential work over the same number of events: backpressure keeps
the application's memory bounded (the buffers, not N, set it).
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _runners as r
from benchmarks._core import BACKENDS, Contender, Target, Workload

ORDER = 60

PUBLISHERS = 32
ESSENTIAL_BATCH = 128


async def _app_body(n: int, data_dir: Path, traced: bool) -> float:
    import anyio

    import thunderline.runtime as tl
    from thunderline import telemetry
    from thunderline.domains import AppConfig, application_spec, bolt, drain, gate, link

    config = AppConfig(data_dir=data_dir, saga_instrument=bolt.saga_tracer() if traced else None)
    supervisor = await application_spec(config).start()
    assert supervisor is not None
    link.subscribe()
    done = anyio.Event()

    async def publisher(count: int) -> None:
        for index in range(count):
            with telemetry.continue_from(None):  # each event starts its own trace
                await gate.publish("system.heartbeat", payload={"n": index})

    start = time.perf_counter()
    for index in range(PUBLISHERS):
        share = n // PUBLISHERS + (1 if index < n % PUBLISHERS else 0)
        if share:
            tl.spawn(publisher, share)
    reached: set[Any] = set()
    while len(reached) < n:
        emitted = await tl.receive(link.Emitted, timeout=120)
        reached.add(emitted.event.id)
    await drain("thunderline.flow.bolt")  # every event's saga ended
    elapsed = time.perf_counter() - start
    done.set()
    tl.unlink(supervisor)
    ref = tl.monitor(supervisor)
    tl.exit(supervisor, tl.SHUTDOWN)
    await tl.receive(lambda m: isinstance(m, tl.Down) and m.ref == ref, timeout=120)
    return elapsed


def _run_app(backend: str, n: int, ratio: float) -> float:
    """Seconds for ``n`` events through the app with tracing at ``ratio`` (0: off)."""
    import logging

    import thunderline.runtime as tl
    from thunderline import telemetry

    traced = ratio > 0
    telemetry.configure(
        enabled=traced,
        exporter=telemetry.DiscardExporter(),
        sampler="parentbased_traceidratio",
        sampler_ratio=ratio,
        install_global=False,
        environ={},
    )
    logging.disable(logging.CRITICAL)
    try:
        with tempfile.TemporaryDirectory(prefix="thunderline-e2e-") as scratch:
            elapsed: float = tl.run(
                _app_body,
                n,
                Path(scratch),
                traced,
                backend=backend,
                instrument=telemetry.RuntimeInstrument() if traced else None,
            )
    finally:
        logging.disable(logging.NOTSET)
        telemetry.shutdown()
    return elapsed


def app(ratio: float) -> Any:
    def sample(backend: str, n: int) -> float:
        return _run_app(backend, n, ratio) / n

    return sample


def essential(backend: str, n: int) -> float:
    """Per-event seconds of the essential ledger work (the backend does not matter)."""
    from benchmarks.bench_ledger_essential import measure_essential

    result = measure_essential(n, batch_size=min(ESSENTIAL_BATCH, n))
    return result.seconds / n


def _peak_rss() -> int:
    """This process's peak RSS in bytes.

    ``VmHWM`` (Linux) belongs to this process image; ``ru_maxrss`` is not used
    where VmHWM exists because Linux keeps it across ``execve``, so it would
    report the (bigger) benchmark runner that started this interpreter.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss(kind: str) -> Any:
    def sample(backend: str, n: int) -> float:
        return float(r.subprocess_json("benchmarks.e2e", kind, backend, str(n))["peak_rss"])

    return sample


def _tracing_mode(name: str, ratio: float, title: str, max_ratio: float) -> Workload:
    return Workload(
        name=name,
        title=title,
        n=300,
        smoke_n=40,
        runs=3,
        contenders=[
            Contender("thunderline", f"whole app, tracing {title.split(', ')[-1]}", app(ratio)),
            # backend-independent: measured once per run, shown on both rows
            Contender(
                "raw",
                f"essential work alone (batches of {ESSENTIAL_BATCH})",
                essential,
                backends=None,
            ),
        ],
        target=Target(max_ratio=max_ratio, beat_peers=False),
    )


WORKLOADS = [
    _tracing_mode("e2e_untraced", 0.0, "event Gate -> Link, tracing off", 2.0),
    _tracing_mode("e2e_sampled_10", 0.1, "event Gate -> Link, 10% sampled", 3.0),
    _tracing_mode("e2e_traced", 1.0, "event Gate -> Link, 100% sampled", 4.0),
    Workload(
        name="e2e_peak_rss",
        title="peak RSS of one run of n events (op = the run), tracing 100%",
        n=2_000,
        smoke_n=40,
        runs=1,
        unit="B",
        contenders=[
            Contender("thunderline", "whole app, fresh interpreter", rss("app")),
            Contender("raw", "essential work alone, fresh interpreter", rss("essential")),
        ],
        target=Target(max_ratio=3.0, beat_peers=False),
        note="absolute peak of the process, interpreter and imports included",
    ),
]


def main(argv: list[str]) -> int:
    """``python -m benchmarks.e2e app|essential BACKEND N``: print the run's peak RSS as JSON."""
    kind, backend, n = argv[0], argv[1], int(argv[2])
    if backend not in BACKENDS:
        raise SystemExit(f"unknown backend {backend!r}")
    if kind == "app":
        _run_app(backend, n, 1.0)
    elif kind == "essential":
        essential(backend, n)
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    print(json.dumps({"peak_rss": _peak_rss()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
