"""Trace context follows messages across processes (invariants T1, T2, T5, T6, T7, T14, T15)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import thunderline.runtime as tl
from thunderline import telemetry

pytestmark = pytest.mark.anyio


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def _echo_trace() -> None:
    """Reply to each (sender, tag) with the trace id current while handling it."""
    while True:
        sender, tag = await tl.receive(tuple)
        tl.send(sender, (tag, telemetry.current_trace_id()))


async def test_receiver_handles_message_in_senders_trace(
    anyio_backend: str, exporter: InMemorySpanExporter
) -> None:
    instrument = telemetry.RuntimeInstrument()
    results: list[Any] = []

    async def main() -> None:
        echo = tl.spawn(_echo_trace)
        with telemetry.span("ingress"):
            trace_id = telemetry.current_trace_id()
            tl.send(echo, (tl.current_pid(), "traced"))
        # Sent with no current span: echo must handle it with no trace, although
        # the message it handled just before was traced (T7: nothing leaks).
        tl.send(echo, (tl.current_pid(), "bare"))
        reply = await tl.receive(lambda m: m[0] == "traced", timeout=10)
        results.append((reply, trace_id))
        results.append(await tl.receive(lambda m: m[0] == "bare", timeout=10))

    async with tl.open_node(instrument=instrument) as node:
        done = anyio.Event()
        pid, _ = node.spawn(main, (), parent=None, link=False, monitor=False, trap_exit=False)
        node.processes[pid].exit_callbacks.append(lambda _p, _r: done.set())
        with anyio.fail_after(20):
            await done.wait()
    (reply, trace_id), bare = results
    assert trace_id is not None
    assert reply == ("traced", trace_id)
    assert bare == ("bare", None)


class _Relay(tl.Server[Any]):
    """Forwards a call to the next server (depth n chain), opening a span per hop."""

    async def init(self, next_name: str | None) -> tl.Ok[Any]:
        return tl.Ok(next_name)

    async def handle_call(self, request: Any, from_: tl.From, state: Any) -> tl.Reply[Any]:
        with telemetry.span(f"work {state or 'leaf'}"):
            if state is None:
                return tl.Reply(telemetry.current_trace_id(), state)
            return tl.Reply(await tl.call(state, request), state)


@pytest.mark.parametrize("depth", [1, 3])
async def test_call_chain_hop_spans_are_parented(
    anyio_backend: str, exporter: InMemorySpanExporter, depth: int
) -> None:
    instrument = telemetry.RuntimeInstrument(hop_spans=True)
    outcome: dict[str, Any] = {}

    async def main() -> None:
        names = [f"relay{i}" for i in range(depth)]
        for i in reversed(range(depth)):
            nxt = names[i + 1] if i + 1 < depth else None
            await tl.start_link(_Relay, nxt, name=names[i])
        with telemetry.span("client"):
            outcome["trace"] = telemetry.current_trace_id()
            outcome["leaf"] = await tl.call(names[0], "go")
        # The caller's context is unchanged by the call (T6).
        outcome["after"] = telemetry.current_trace_id()

    await _run_in_node(main, instrument)
    assert outcome["leaf"] == outcome["trace"]
    assert outcome["after"] is None
    spans = exporter.get_finished_spans()
    assert {format(s.context.trace_id, "032x") for s in spans} == {outcome["trace"]}
    by_id = {s.context.span_id: s for s in spans}
    # Every span's parent is another collected span, except the one root (T2).
    roots = [s for s in spans if s.parent is None]
    assert [r.name for r in roots] == ["client"]
    for s in spans:
        if s.parent is not None:
            assert s.parent.span_id in by_id, s.name
    # Each call hop: PRODUCER "call relayI" then CONSUMER "process relayI" as its child (T14).
    for i in range(depth):
        [producer] = _by_name(spans, f"call relay{i}")
        consumers = _by_name(spans, f"process relay{i}")
        assert producer.kind is SpanKind.PRODUCER
        [consumer] = [
            c for c in consumers if c.parent and c.parent.span_id == producer.context.span_id
        ]
        assert consumer.kind is SpanKind.CONSUMER
        for span_ in (producer, consumer):
            attributes = dict(span_.attributes or {})
            assert attributes["messaging.system"] == "thunderline"
            assert attributes["messaging.destination.name"] == f"relay{i}"
            assert attributes["messaging.message.id"]
            assert "messaging.operation.name" in attributes
        # the handler's own span runs inside the consumer span
        [work] = _by_name(spans, f"work relay{i + 1}" if i + 1 < depth else "work leaf")
        assert work.parent is not None
        assert by_id[work.parent.span_id].name == f"process relay{i}"


async def _run_in_node(main: Any, instrument: telemetry.RuntimeInstrument) -> None:
    async with tl.open_node(instrument=instrument) as node:
        done = anyio.Event()
        reasons: list[Any] = []
        pid, _ = node.spawn(main, (), parent=None, link=False, monitor=False, trap_exit=True)

        def finished(_pid: tl.Pid, reason: Any) -> None:
            reasons.append(reason)
            done.set()

        node.processes[pid].exit_callbacks.append(finished)
        with anyio.fail_after(30):
            await done.wait()
    assert reasons == [tl.NORMAL], reasons


class _Recorder(tl.Server[list[Any]]):
    async def init(self) -> tl.Ok[list[Any]]:
        return tl.Ok([])

    async def handle_cast(self, request: Any, state: list[Any]) -> tl.NoReply[list[Any]]:
        await anyio.lowlevel.checkpoint()
        state.append((request, telemetry.current_trace_id()))
        return tl.NoReply(state)

    async def handle_call(self, request: Any, from_: tl.From, state: list[Any]) -> tl.Reply[Any]:
        return tl.Reply(list(state), state)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(counts=st.lists(st.integers(min_value=1, max_value=4), min_size=2, max_size=5))
async def test_concurrent_traces_through_shared_server_never_mix(
    anyio_backend: str, exporter: InMemorySpanExporter, counts: list[int]
) -> None:
    """T5: each handled message sees exactly the trace of the event that sent it."""
    instrument = telemetry.RuntimeInstrument()
    seen: dict[str, Any] = {}

    async def producer(index: int, count: int, ready: anyio.Event) -> None:
        with telemetry.span(f"event {index}"):
            seen[f"trace{index}"] = telemetry.current_trace_id()
            for n in range(count):
                tl.cast("recorder", (index, n))
                await anyio.lowlevel.checkpoint()
        ready.set()

    async def main() -> None:
        await tl.start_link(_Recorder, name="recorder")
        readies = [anyio.Event() for _ in counts]
        for index, count in enumerate(counts):
            tl.spawn(producer, index, count, readies[index])
        for ready in readies:
            await ready.wait()
        seen["records"] = await tl.call("recorder", "dump")

    await _run_in_node(main, instrument)
    records = seen["records"]
    assert len(records) == sum(counts)
    for (index, _n), trace_id in records:
        assert trace_id == seen[f"trace{index}"]
    assert len({seen[f"trace{i}"] for i in range(len(counts))}) == len(counts)


async def test_restart_span_links_to_crash(
    anyio_backend: str, exporter: InMemorySpanExporter
) -> None:
    instrument = telemetry.RuntimeInstrument(hop_spans=True)

    class Fragile(tl.Server[None]):
        async def init(self) -> tl.Ok[None]:
            return tl.Ok(None)

        async def handle_cast(self, request: Any, state: None) -> tl.NoReply[None]:
            raise RuntimeError("fragile broke")

    async def start_fragile() -> tl.Pid | None:
        return await tl.start_link(Fragile, name="fragile")

    outcome: dict[str, Any] = {}

    async def main() -> None:
        sup = await tl.start_supervisor(
            [tl.ChildSpec(id="fragile", start=start_fragile)], intensity=5
        )
        [before] = await tl.which_children(sup)
        with telemetry.span("poke"):
            outcome["trace"] = telemetry.current_trace_id()
            tl.cast("fragile", "break")
        ref = tl.monitor(before.pid)
        await tl.receive(lambda m: isinstance(m, tl.Down) and m.ref == ref, timeout=10)
        for _ in range(100):
            [after] = await tl.which_children(sup)
            if after.pid is not None and after.pid != before.pid:
                break
            await anyio.lowlevel.checkpoint()
        outcome["restarted"] = after.pid != before.pid
        tl.unlink(sup)
        tl.exit(sup, tl.SHUTDOWN)

    await _run_in_node(main, instrument)
    assert outcome["restarted"]
    spans = exporter.get_finished_spans()
    [restart] = _by_name(spans, "restart fragile")
    [consumer] = _by_name(spans, "process fragile")
    assert restart.links
    assert restart.links[0].context.span_id == consumer.context.span_id
    assert format(restart.links[0].context.trace_id, "032x") == outcome["trace"]
    assert consumer.status.status_code.name == "ERROR"


async def test_message_id_is_real_when_the_senders_span_has_ended(
    anyio_backend: str, exporter: InMemorySpanExporter
) -> None:
    """T24: a process spawned inside a span that ended since sends a message: the consumer span's
    ``messaging.message.id`` is the producer's (never empty)."""
    instrument = telemetry.RuntimeInstrument(hop_spans=True)

    ended = anyio.Event()  # not a message: receiving one would replace the sender's context

    async def late_sender(target: tl.Pid) -> None:
        await ended.wait()
        tl.send(target, ("late", tl.current_pid()))

    async def main() -> None:
        with telemetry.span("spawner"):
            tl.spawn(late_sender, tl.current_pid())
        # "spawner" has ended; the sender still runs in its trace
        ended.set()
        with telemetry.continue_from(None):
            await tl.receive(lambda m: isinstance(m, tuple) and m[0] == "late", timeout=10)

    await _run_in_node(main, instrument)
    spans = exporter.get_finished_spans()
    [spawner] = _by_name(spans, "spawner")
    consumers = [
        s
        for s in spans
        if s.kind is SpanKind.CONSUMER and s.context.trace_id == spawner.context.trace_id
    ]
    assert consumers, [s.name for s in spans]
    producer_ids = {
        (s.attributes or {})["messaging.message.id"] for s in spans if s.kind is SpanKind.PRODUCER
    }
    for consumer in consumers:
        message_id = (consumer.attributes or {})["messaging.message.id"]
        assert message_id
        assert message_id in producer_ids
        assert consumer.parent is not None
        [producer] = [s for s in spans if s.context.span_id == consumer.parent.span_id]
        assert (producer.attributes or {})["messaging.message.id"] == message_id


def test_carrier_without_message_id_gives_no_message_id_attribute(
    exporter: InMemorySpanExporter,
) -> None:
    """T24: a carrier from elsewhere (no thunderline message id): the attribute is absent."""
    instrument = telemetry.RuntimeInstrument(hop_spans=True)
    with telemetry.span("remote sender"):
        carrier = telemetry.capture_carrier()
    assert carrier is not None
    assert "thunderline-message-id" not in carrier

    class _Pid:
        pass

    pid: Any = _Pid()
    token = instrument.message_received(pid, "worker", carrier)
    instrument.message_done(pid, token)
    [consumer] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert "messaging.message.id" not in (consumer.attributes or {})
    assert (consumer.attributes or {})["messaging.destination.name"] == "worker"
