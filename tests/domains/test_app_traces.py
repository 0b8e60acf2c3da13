"""The original's integration scenarios: one trace from Gate to Link (T1, T2, T5, T12).

Each test starts the whole application (Vault, Link, sagas, Bolt, Flow,
Gate) in a fresh node with a fresh data directory and the runtime's
``RuntimeInstrument``, publishes through Gate, waits for Link's ``Emitted``
and for the saga's spans to end, then checks the finished spans.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import anyio
import pytest
from app_helpers import (
    EVENT_TIMEOUT,
    SpanLog,
    app_config,
    await_emitted,
    memory_tracing,
    parent_id,
    publish_fresh,
    run_app,
    span_id,
    trace_id,
)
from opentelemetry.sdk.trace import ReadableSpan

import thunderline.runtime as tl
from thunderline import telemetry, testing
from thunderline.domains import Event, gate

pytestmark = pytest.mark.anyio

DOMAIN_SPANS = {
    "gate": "gate.publish",
    "flow": "flow.publish_event",
    "bolt": "bolt.run_saga",
    "vault": "vault.append",
    "link": "link.transport_emit",
}


def _of_trace(spans: list[ReadableSpan], trace: str) -> list[ReadableSpan]:
    return [s for s in spans if trace_id(s) == trace]


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _event_names(span: ReadableSpan) -> list[str]:
    return [e.name for e in span.events]


def _assert_one_rooted_tree(spans: list[ReadableSpan], root: ReadableSpan) -> None:
    """T2: every parent is a collected span of the trace; ``root`` is the only local root."""
    ids = {span_id(s) for s in spans}
    dangling = [(s.name, parent_id(s)) for s in spans if s is not root and parent_id(s) not in ids]
    assert not dangling, dangling
    assert parent_id(root) is None or parent_id(root) not in ids


async def _wait_sagas_done(log: SpanLog, count: int) -> None:
    # bolt.run_saga ends with the saga's run, the last work of an event's trace
    # (Flow committed it and Link delivered it before the saga's notify step ended).
    with anyio.fail_after(EVENT_TIMEOUT):
        await log.wait_named("bolt.run_saga", count)


async def test_one_event_has_spans_of_all_five_domains_in_one_tree(
    anyio_backend: str, tmp_path: Path
) -> None:
    """T1 + T2: one event yields spans from all five domains, one trace id, one root."""
    with memory_tracing() as log:
        event: list[Event] = []

        async def body() -> None:
            event.append(await publish_fresh(payload={"beat": 1}))
            await await_emitted({str(event[0].id)})
            await _wait_sagas_done(log, 1)

        await run_app(app_config(tmp_path), body)
        spans = list(log.spans)

    trace = event[0].meta["trace_id"]
    assert event[0].meta["traceparent"].split("-")[1] == trace
    mine = _of_trace(spans, trace)
    domains = {s.attributes.get("thunderline.domain") for s in mine if s.attributes}
    assert {"gate", "flow", "bolt", "link"} <= domains
    for domain, name in DOMAIN_SPANS.items():
        assert any(s.name == name for s in mine), (domain, name, [s.name for s in mine])
    # Every span the app produced belongs to this one event's trace (T1) ...
    app_spans = [s for s in spans if s.name.split(".")[0] in {*DOMAIN_SPANS, "saga"}]
    assert {trace_id(s) for s in app_spans} == {trace}
    # ... and forms one tree rooted at gate.publish (T2).
    root = _one(mine, "gate.publish")
    assert root.parent is None
    _assert_one_rooted_tree(mine, root)
    testing.check_trace_tree(mine)


async def test_gate_to_flow_propagation(anyio_backend: str, tmp_path: Path) -> None:
    """T1/T12: Flow's span continues Gate's trace from the event's meta, with its attributes."""
    with memory_tracing() as log:
        published: list[Event] = []

        async def body() -> None:
            published.append(await publish_fresh(payload={"beat": 2}, priority="high"))
            await await_emitted({str(published[0].id)})
            await _wait_sagas_done(log, 1)

        await run_app(app_config(tmp_path), body)
        spans = list(log.spans)

    event = published[0]
    gate_span = _one(spans, "gate.publish")
    flow_span = _one(spans, "flow.publish_event")
    assert event.meta["parent_domain"] == "gate"
    assert event.meta["span_id"] == span_id(gate_span)
    assert int(event.meta["traceparent"][-2:], 16) & 1  # sampled flag carried (T12)
    assert trace_id(flow_span) == trace_id(gate_span) == event.meta["trace_id"]
    assert parent_id(flow_span) == span_id(gate_span)
    assert gate_span.attributes is not None
    assert flow_span.attributes is not None
    assert gate_span.attributes["thunderline.domain"] == "gate"
    assert gate_span.attributes["thunderline.component"] == "thunder_bridge"
    assert gate_span.attributes["event.name"] == "system.heartbeat"
    assert "gate.event_published" in _event_names(gate_span)
    expected = {
        "event.id": str(event.id),
        "event.name": "system.heartbeat",
        "event.type": "heartbeat",
        "event.source": "gate",
        "event.priority": "high",
    }
    assert {k: flow_span.attributes.get(k) for k in expected} == expected
    names = _event_names(flow_span)
    assert names.index("flow.event_validated") < names.index("flow.event_published")
    assert "flow.event_dropped" not in names


async def test_nested_span_hierarchy(anyio_backend: str, tmp_path: Path) -> None:
    """T2/T3: gate.publish > flow.publish_event; Flow's commit (vault.append, actor flow) and
    Link's delivery (link.transport_emit) in the event's trace under gate.publish; the saga
    bolt.run_saga > bolt.saga_execution > saga.step persist, then saga.step notify."""
    with memory_tracing() as log:

        async def body() -> None:
            event = await publish_fresh()
            await await_emitted({str(event.id)})
            await _wait_sagas_done(log, 1)

        await run_app(app_config(tmp_path), body)
        spans = list(log.spans)

    by_id = {span_id(s): s for s in spans}

    def ancestors(span: ReadableSpan) -> list[str]:
        chain = []
        while (parent := parent_id(span)) is not None and parent in by_id:
            span = by_id[parent]
            chain.append(span.name)
        return chain

    appends = {
        (s.attributes or {}).get("vault.actor"): s for s in spans if s.name == "vault.append"
    }
    assert sorted(appends) == ["bolt", "flow"], appends
    vault_span = appends["flow"]
    link_span = _one(spans, "link.transport_emit")
    persist = _one(spans, "saga.step persist")
    notify = _one(spans, "saga.step notify")
    execution = _one(spans, "bolt.saga_execution")
    run_saga = _one(spans, "bolt.run_saga")
    gate_span = _one(spans, "gate.publish")
    assert parent_id(vault_span) == span_id(gate_span)
    assert parent_id(link_span) == span_id(gate_span)
    assert parent_id(persist) == parent_id(notify) == span_id(execution)
    assert parent_id(execution) == span_id(run_saga)
    chain = ancestors(persist)
    assert chain[:2] == ["bolt.saga_execution", "bolt.run_saga"]
    assert chain[-1] == "gate.publish"
    assert ancestors(notify)[-1] == "gate.publish"
    # the saga runs after the commit
    assert vault_span.end_time is not None
    assert run_saga.start_time is not None
    assert vault_span.end_time <= run_saga.start_time
    # the step that persists ended before the one that notifies started
    assert persist.end_time is not None
    assert notify.start_time is not None
    assert persist.end_time <= notify.start_time
    # the persist step's own append (answered from the records just committed) is its child
    assert parent_id(appends["bolt"]) == span_id(persist)
    assert (appends["bolt"].attributes or {})["vault.seq"] == vault_span.attributes["vault.seq"]
    assert vault_span.attributes is not None
    assert vault_span.attributes["vault.resource"] == "ledger"
    assert vault_span.attributes["vault.action"] == "append"
    assert vault_span.attributes["vault.actor"] == "flow"
    assert link_span.attributes is not None
    assert link_span.attributes["transport.event"] == "system.heartbeat"
    assert "link.telemetry_emitted" in _event_names(link_span)
    assert {"bolt.saga_registered", "bolt.saga_started", "bolt.saga_completed"} <= {
        name for s in spans for name in _event_names(s)
    }


async def test_json_round_trip_keeps_the_trace(anyio_backend: str, tmp_path: Path) -> None:
    """T8/T12: an event serialized to JSON and back, published with its meta, stays in its trace."""
    with memory_tracing() as log:
        events: list[Event] = []

        async def body() -> None:
            first = await publish_fresh(payload={"hop": 1})
            restored = Event.from_json(first.to_json())
            assert restored == first
            assert restored.meta["traceparent"] == first.meta["traceparent"]
            second = await publish_fresh(payload={"hop": 2}, meta=dict(restored.meta))
            events.extend([first, second])
            await await_emitted({str(first.id), str(second.id)})
            await _wait_sagas_done(log, 2)

        await run_app(app_config(tmp_path), body)
        spans = list(log.spans)

    first, second = events
    assert second.meta["trace_id"] == first.meta["trace_id"]
    gate_spans = sorted((s for s in spans if s.name == "gate.publish"), key=lambda s: s.start_time)
    assert len(gate_spans) == 2
    # the second gate.publish is a child of the first one, whose context the JSON carried
    assert parent_id(gate_spans[1]) == span_id(gate_spans[0]) == first.meta["span_id"]
    assert second.meta["span_id"] == span_id(gate_spans[1])
    trace = first.meta["trace_id"]
    mine = _of_trace(spans, trace)
    assert len(mine) == len(spans)
    _assert_one_rooted_tree(mine, gate_spans[0])


async def test_concurrent_traces_stay_isolated(anyio_backend: str, tmp_path: Path) -> None:
    """T5: N concurrent publishers; every span of each event's trace belongs to that event."""
    n = 12
    with memory_tracing() as log:
        events: list[Event] = []

        async def publisher(index: int) -> None:
            events.append(await publish_fresh(payload={"publisher": index}))

        async def body() -> None:
            refs = {tl.spawn_monitor(publisher, i)[1] for i in range(n)}
            while refs:
                down = await tl.receive(tl.Down, timeout=EVENT_TIMEOUT)
                assert down.reason == tl.NORMAL, down.reason
                refs.discard(down.ref)
            await await_emitted({str(e.id) for e in events})
            await _wait_sagas_done(log, n)

        await run_app(app_config(tmp_path), body)
        spans = list(log.spans)

    assert len(events) == n
    trace_of = {str(e.id): e.meta["trace_id"] for e in events}
    assert len(set(trace_of.values())) == n, "each event starts its own trace"
    by_trace: dict[str, list[ReadableSpan]] = collections.defaultdict(list)
    for span in spans:
        by_trace[trace_id(span)].append(span)
    assert set(by_trace) == set(trace_of.values())
    for event_id, trace in trace_of.items():
        mine = by_trace[trace]
        tagged: set[Any] = {
            s.attributes["event.id"] for s in mine if s.attributes and "event.id" in s.attributes
        }
        strays = [
            (s.name, s.attributes["event.id"])
            for s in mine
            if s.attributes and s.attributes.get("event.id", event_id) != event_id
        ]
        assert tagged == {event_id}, (event_id, strays)
        correlation = {
            s.attributes["saga.correlation_id"]
            for s in mine
            if s.attributes and "saga.correlation_id" in s.attributes
        }
        assert correlation == {event_id}
        # vault.append twice: Flow's commit and the saga's persist step
        assert sorted(s.name for s in mine if s.name in DOMAIN_SPANS.values()) == sorted(
            [*DOMAIN_SPANS.values(), "vault.append"]
        )
        root = _one(mine, "gate.publish")
        _assert_one_rooted_tree(mine, root)


async def test_publisher_trace_is_continued(anyio_backend: str, tmp_path: Path) -> None:
    """T1: an event published inside the caller's span joins the caller's trace."""
    with memory_tracing() as log:
        outer: list[str | None] = []
        events: list[Event] = []

        async def body() -> None:
            with telemetry.continue_from(None), telemetry.span("client request"):
                outer.append(telemetry.current_trace_id())
                events.append(await gate.publish("system.heartbeat"))
            await await_emitted({str(events[0].id)})
            await _wait_sagas_done(log, 1)

        await run_app(app_config(tmp_path), body)
        spans = list(log.spans)

    assert outer[0] is not None
    assert events[0].meta["trace_id"] == outer[0]
    client = _one(spans, "client request")
    assert parent_id(_one(spans, "gate.publish")) == span_id(client)
    _assert_one_rooted_tree(_of_trace(spans, outer[0]), client)
