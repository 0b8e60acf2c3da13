"""Tracing overhead on a request/reply round trip between two processes.

Every contender runs the same round trip as ``messaging.round_trip``; they
differ in tracing:

* ``tracing_idle``: the runtime's ``RuntimeInstrument`` installed and an SDK
  configured, but no span is current (traffic outside any trace), against the
  untraced round trip.
* ``tracing_propagation``: inside an active, sampled span, every message
  carries the W3C context and the receiver handles it in that context
  (``RuntimeInstrument()``), against the untraced round trip. Target: at most
  10% more.
* ``tracing_hop_spans``: the same with ``hop_spans=True`` (a PRODUCER and a
  CONSUMER span per hop, four spans per round trip), against the untraced
  round trip that creates the same four spans by hand with the bare SDK.
  Target: at most 1.3x.

Spans go to a ``SimpleSpanProcessor`` with an exporter that drops them, so
the figures are the instrumentation cost, not export I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

from benchmarks._core import Contender, Target, Workload

ORDER = 50


def _configure() -> Any:
    from thunderline import telemetry

    telemetry.configure(
        exporter=telemetry.DiscardExporter(),
        batch=False,
        install_global=False,
        sampler="always_on",
    )
    return telemetry


def _sample(mode: str) -> Callable[[str, int], float]:
    """``mode``: off | idle | propagate | hops | manual (untraced + the same spans by hand)."""

    def sample(backend: str, n: int) -> float:
        from thunderline.runtime import current_pid, receive, run, send, spawn

        telemetry = _configure() if mode != "off" else None
        instrument = None
        if mode == "manual":  # untraced messages: not configure()'s default runtime hook
            from thunderline.lowlevel import set_default_instrument

            set_default_instrument(None)
        if mode in ("idle", "propagate"):
            assert telemetry is not None
            instrument = telemetry.RuntimeInstrument()
        elif mode == "hops":
            assert telemetry is not None
            instrument = telemetry.RuntimeInstrument(hop_spans=True)

        async def body(n: int) -> float:
            me = current_pid()
            tracer = None
            if mode == "manual":
                from opentelemetry.trace import SpanKind

                from thunderline.telemetry._state import STATE

                tracer = STATE.tracer

            async def echo() -> None:
                while True:
                    sender, message = await receive()
                    if tracer is not None:
                        tracer.start_span("process echo", kind=SpanKind.CONSUMER).end()
                        tracer.start_span("send main", kind=SpanKind.PRODUCER).end()
                    send(sender, message)

            pid = spawn(echo)
            start = perf_counter()
            if mode in ("propagate", "hops", "manual"):
                assert telemetry is not None
                with telemetry.span("bench"):
                    for i in range(n):
                        if tracer is not None:
                            tracer.start_span("send echo", kind=SpanKind.PRODUCER).end()
                        send(pid, (me, i))
                        await receive()
                        if tracer is not None:
                            tracer.start_span("process main", kind=SpanKind.CONSUMER).end()
            else:
                for i in range(n):
                    send(pid, (me, i))
                    await receive()
            return perf_counter() - start

        try:
            elapsed: float = run(body, n, backend=backend, instrument=instrument)
        finally:
            if telemetry is not None:
                telemetry.shutdown()
        return elapsed / n

    return sample


WORKLOADS = [
    Workload(
        name="tracing_idle",
        title="round trip, RuntimeInstrument installed, no current span",
        n=20_000,
        smoke_n=200,
        contenders=[
            Contender("thunderline", "instrument on, no span", _sample("idle")),
            Contender("raw", "tracing off", _sample("off")),
        ],
        target=Target(max_ratio=1.1, beat_peers=False),
    ),
    Workload(
        name="tracing_propagation",
        title="round trip inside a sampled span, context propagated (no hop spans)",
        n=20_000,
        smoke_n=200,
        contenders=[
            Contender("thunderline", "propagation only", _sample("propagate")),
            Contender("raw", "tracing off", _sample("off")),
        ],
        target=Target(max_ratio=1.1, beat_peers=False),
    ),
    Workload(
        name="tracing_hop_spans",
        title="round trip with hop spans (4 spans), vs the same spans by hand with the SDK",
        n=10_000,
        smoke_n=100,
        contenders=[
            Contender("thunderline", "hop_spans=True", _sample("hops")),
            Contender("raw", "untraced + 4 bare SDK spans", _sample("manual")),
        ],
        target=Target(max_ratio=1.3, beat_peers=False),
    ),
]
