"""Telemetry as the seed specifies it (T21, T22, T23), with and without a runtime instrument.

One row of the issue's table per test (or group of asserts): every domain's
span names, ``thunderline.domain`` / ``thunderline.component`` and the seed's
attributes and events; ``gate.event_published`` only after a successful
publish; ERROR with ``flow.event_dropped`` on whichever layer refused an
event; the seed's own check (``Event.new(... meta={"pipeline": "general"})``
published straight to Flow) as one trace Flow -> Vault -> Link; and one trace
per event whether or not the runtime carries trace context in messages
(``traced=False`` runs the node without ``RuntimeInstrument``).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anyio
import attrs
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
from opentelemetry.trace import StatusCode

from thunderline import telemetry, testing
from thunderline.domains import (
    DuplicateEventError,
    Event,
    EventValidationError,
    flow,
    vault,
)

pytestmark = pytest.mark.anyio

TRACED = pytest.mark.parametrize("traced", [True, False], ids=["instrument", "no-instrument"])

#: The seed's thunderline.domain / thunderline.component of each domain's spans.
SEED = {
    "gate": {"thunderline.domain": "gate", "thunderline.component": "thunder_bridge"},
    "flow": {"thunderline.domain": "flow", "thunderline.component": "event_bus"},
    "bolt": {"thunderline.domain": "bolt", "thunderline.component": "sagas_supervisor"},
    "vault": {"thunderline.domain": "vault"},
    "link": {"thunderline.domain": "link", "thunderline.component": "transport_telemetry"},
}


def _domain_of(span: ReadableSpan) -> str | None:
    """The domain a span belongs to by its name (saga steps run in Bolt)."""
    prefix = span.name.split(".")[0]
    if prefix == "saga":
        return "bolt"
    return prefix if prefix in SEED else None


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _events(span: ReadableSpan) -> list[str]:
    return [e.name for e in span.events]


def _named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = _named(spans, name)
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _assert_one_tree(spans: list[ReadableSpan]) -> ReadableSpan:
    """One trace id, one root, every parent collected; returns the root."""
    assert len({trace_id(s) for s in spans}) == 1, sorted((s.name, trace_id(s)) for s in spans)
    ids = {span_id(s) for s in spans}
    roots = [s for s in spans if parent_id(s) not in ids]
    assert len(roots) == 1, [(s.name, parent_id(s)) for s in roots]
    return roots[0]


def _assert_seed_attributes(spans: list[ReadableSpan], event: Event) -> set[str]:
    """Every domain span carries its domain's seed attributes; returns the domains seen."""
    seen = set()
    for span in spans:
        domain = _domain_of(span)
        if domain is None:
            continue
        seen.add(domain)
        attributes = _attrs(span)
        assert {k: attributes.get(k) for k in SEED[domain]} == SEED[domain], span.name
        if domain == "bolt":
            assert attributes["saga.module"] == "heartbeat", span.name
            assert attributes["saga.correlation_id"] == str(event.id), span.name
    return seen


async def _wait_event_spans(log: SpanLog, event_id: str, names: dict[str, int]) -> None:
    """Wait until, for ``event_id``'s trace, each name ended at least the given times."""

    def done(spans: list[ReadableSpan]) -> bool:
        traces = {trace_id(s) for s in spans if _attrs(s).get("event.id") == event_id}
        mine = [s for s in spans if trace_id(s) in traces]
        return all(sum(s.name == n for s in mine) >= count for n, count in names.items())

    with anyio.fail_after(EVENT_TIMEOUT):
        await log.wait_for(done)


def _of_event(spans: list[ReadableSpan], event_id: str) -> list[ReadableSpan]:
    traces = {trace_id(s) for s in spans if _attrs(s).get("event.id") == event_id}
    return [s for s in spans if trace_id(s) in traces]


SAGA_SPANS = {
    "bolt.run_saga": 1,
    "bolt.saga_execution": 1,
    "link.transport_emit": 1,
    "vault.append": 2,
}


@TRACED
async def test_every_domain_span_has_the_seed_attributes_and_events(
    anyio_backend: str, tmp_path: Path, traced: bool
) -> None:
    """T21/T22: rows flow / bolt / vault / link / gate of the table, one trace Gate -> Link."""
    with memory_tracing() as log:
        published: list[Event] = []

        async def body() -> None:
            event = await publish_fresh(payload={"beat": 1})
            published.append(event)
            await await_emitted({str(event.id)})
            await _wait_event_spans(log, str(event.id), SAGA_SPANS)
            with telemetry.continue_from(None):
                await vault.head()

        await run_app(app_config(tmp_path), body, traced=traced)
        spans = list(log.spans)

    event = published[0]
    mine = _of_event(spans, str(event.id))
    root = _assert_one_tree(mine)
    assert root.name == "gate.publish"
    assert _assert_seed_attributes(mine, event) == set(SEED)
    testing.check_trace_tree(mine)

    gate_span = _one(mine, "gate.publish")
    flow_span = _one(mine, "flow.publish_event")
    run_saga = _one(mine, "bolt.run_saga")
    execution = _one(mine, "bolt.saga_execution")
    link_span = _one(mine, "link.transport_emit")
    # flow: continues Gate's span, validated then handed to the ledger
    assert parent_id(flow_span) == span_id(gate_span)
    names = _events(flow_span)
    assert names.index("flow.event_validated") < names.index("flow.event_published")
    assert flow_span.status.status_code is StatusCode.UNSET
    # bolt: the saga's spans, under the event's trace, with the bolt.* events
    assert parent_id(execution) == span_id(run_saga)
    assert _events(run_saga)[0] == "bolt.saga_registered"
    assert {"bolt.saga_started", "bolt.saga_completed"} <= set(_events(execution))
    assert _attrs(execution)["saga.outcome"] == "succeeded"
    # vault: resource / action / actor (the seed's ash.resource / ash.action / ash.actor):
    # Flow's commit, then the saga's persist step (finds the record already committed)
    actors = sorted(_attrs(s)["vault.actor"] for s in _named(mine, "vault.append"))
    assert actors == ["bolt", "flow"]
    for span in _named(mine, "vault.append"):
        assert _attrs(span)["vault.resource"] == "ledger"
        assert _attrs(span)["vault.action"] == "append"
    # vault spans outside an event's trace carry the domain too
    head = _one(spans, "vault.head")
    assert _attrs(head)["thunderline.domain"] == "vault"
    assert _attrs(head)["vault.action"] == "head"
    # link: transport.event and link.telemetry_emitted
    assert _attrs(link_span)["transport.event"] == "system.heartbeat"
    assert "link.telemetry_emitted" in _events(link_span)
    # gate: gate.event_published after Flow answered, i.e. after Vault's commit
    [published_event] = [e for e in gate_span.events if e.name == "gate.event_published"]
    assert published_event.attributes is not None
    assert published_event.attributes["event.id"] == str(event.id)
    flow_vault = next(s for s in _named(mine, "vault.append") if _attrs(s)["vault.actor"] == "flow")
    assert flow_vault.end_time is not None
    assert published_event.timestamp >= flow_vault.end_time
    assert gate_span.status.status_code is StatusCode.UNSET


@TRACED
async def test_the_seeds_heartbeat_check_is_one_trace_flow_vault_link(
    anyio_backend: str, tmp_path: Path, traced: bool
) -> None:
    """T22: the seed's check as written: ``Event.new(name="test.heartbeat", ..., meta={"pipeline":
    "general"})`` then ``publish_event`` straight to Flow: the general pipeline, one trace."""
    with memory_tracing() as log:
        published: list[Event] = []

        async def body() -> None:
            event = Event.new(
                name="test.heartbeat",
                type="test_event",
                source="gate",
                payload={"timestamp": "2026-01-01T00:00:00Z", "message": "ping"},
                meta={"pipeline": "general"},
            )
            published.append(event)
            with telemetry.continue_from(None):
                await flow.publish_event(event)
            # the same event again: idempotent (the trace Flow gave it is not content)
            await flow.publish(event)
            seen = await await_emitted({str(event.id)})
            assert list(seen) == [str(event.id)]
            await _wait_event_spans(log, str(event.id), {"link.transport_emit": 1})

        await run_app(app_config(tmp_path), body, traced=traced)
        spans = list(log.spans)

    event = published[0]
    first_flow = min(
        (s for s in spans if s.name == "flow.publish_event"), key=lambda s: s.start_time or 0
    )
    mine = [s for s in spans if trace_id(s) == trace_id(first_flow)]
    assert _assert_one_tree(mine) is first_flow
    assert sorted(s.name for s in mine) == [
        "flow.publish_event",
        "link.transport_emit",
        "vault.append",
    ]
    assert _assert_seed_attributes(mine, event) == {"flow", "vault", "link"}
    flow_span = _one(mine, "flow.publish_event")
    assert _attrs(flow_span)["event.pipeline"] == "general"
    assert _attrs(flow_span)["event.name"] == "test.heartbeat"
    assert parent_id(_one(mine, "vault.append")) == span_id(flow_span)
    assert parent_id(_one(mine, "link.transport_emit")) == span_id(flow_span)
    assert _attrs(_one(mine, "vault.append"))["vault.actor"] == "flow"
    assert _attrs(_one(mine, "link.transport_emit"))["transport.event"] == "test.heartbeat"
    # no saga ran for it
    assert not [s for s in spans if s.name.startswith("bolt.")]


@TRACED
async def test_a_saga_event_published_straight_to_flow_is_one_trace(
    anyio_backend: str, tmp_path: Path, traced: bool
) -> None:
    """T22: an event with a saga route and no trace in its meta: Flow -> Bolt's saga -> Vault ->
    Link in Flow's trace; its saga route is kept even with ``meta.pipeline == "general"``."""
    with memory_tracing() as log:
        published: list[Event] = []

        async def body() -> None:
            event = Event.new(
                "system.heartbeat",
                type="heartbeat",
                source="gate",
                payload={"beat": 1},
                meta={"pipeline": "general"},
            )
            published.append(event)
            with telemetry.continue_from(None):
                await flow.publish(event)
            await await_emitted({str(event.id)})
            await _wait_event_spans(log, str(event.id), SAGA_SPANS)

        await run_app(app_config(tmp_path), body, traced=traced)
        spans = list(log.spans)

    event = published[0]
    mine = _of_event(spans, str(event.id))
    root = _assert_one_tree(mine)
    assert root.name == "flow.publish_event"
    assert _assert_seed_attributes(mine, event) == {"flow", "bolt", "vault", "link"}
    assert {"bolt.handle_event", "saga.step persist", "saga.step notify"} <= {s.name for s in mine}
    testing.check_trace_tree(mine)
    app_spans = [s for s in spans if _domain_of(s) is not None]
    assert {trace_id(s) for s in app_spans} == {trace_id(root)}


@TRACED
async def test_refused_events_mark_the_refusing_span_error_with_flow_event_dropped(
    anyio_backend: str, tmp_path: Path, traced: bool
) -> None:
    """T23: Gate's validation, Flow (no route, not an Event) and the ledger (same id, other
    content) each refuse: ERROR with the reason and ``flow.event_dropped`` on their span,
    and never ``gate.event_published``."""
    with memory_tracing() as log:
        ids: dict[str, str] = {}

        async def body() -> None:
            with pytest.raises(EventValidationError):
                await publish_fresh("Not A Name")
            with pytest.raises(flow.EventDroppedError) as dropped:
                await publish_fresh("nobody.listens")
            ids["unrouted"] = dropped.value.event_id
            with telemetry.continue_from(None), pytest.raises(flow.EventDroppedError):
                await flow.publish("not an event")  # type: ignore[arg-type]
            original = Event.new(
                "test.duplicate", type="test_event", source="gate", meta={"pipeline": "general"}
            )
            with telemetry.continue_from(None):
                await flow.publish(original)
            await await_emitted({str(original.id)})
            other = attrs.evolve(original, payload={"changed": True})
            with telemetry.continue_from(None), pytest.raises(DuplicateEventError):
                await flow.publish(other)
            ids["duplicate"] = str(original.id)

        await run_app(app_config(tmp_path), body, traced=traced)
        spans = list(log.spans)

    def assert_refused(span: ReadableSpan, reason_part: str) -> None:
        assert span.status.status_code is StatusCode.ERROR, span.name
        assert span.status.description is not None
        assert reason_part in span.status.description
        [dropped] = [e for e in span.events if e.name == "flow.event_dropped"]
        assert dropped.attributes is not None
        assert reason_part in str(dropped.attributes["reason"])

    gates = {_attrs(s)["event.name"]: s for s in _named(spans, "gate.publish")}
    for span in gates.values():
        assert "gate.event_published" not in _events(span)
        assert span.status.status_code is StatusCode.ERROR
    # Gate's validation refused it: recorded on gate.publish, Flow never saw it
    assert_refused(gates["Not A Name"], "name")
    # Flow refused it: flow.publish_event is ERROR, in the event's trace under gate.publish
    unrouted = [
        s
        for s in _named(spans, "flow.publish_event")
        if _attrs(s).get("event.id") == ids["unrouted"]
    ]
    assert len(unrouted) == 1
    assert_refused(unrouted[0], "no route or subscriber for 'nobody.listens'")
    assert parent_id(unrouted[0]) == span_id(gates["nobody.listens"])
    assert trace_id(unrouted[0]) == trace_id(gates["nobody.listens"])
    # not an Event at all
    [garbage] = [s for s in _named(spans, "flow.publish_event") if "event.id" not in _attrs(s)]
    assert_refused(garbage, "not an Event")
    assert _attrs(garbage)["thunderline.component"] == "event_bus"
    # the ledger refused the same id with other content: vault.append is ERROR
    refused = [
        s
        for s in _named(spans, "vault.append")
        if _attrs(s).get("event.id") == ids["duplicate"]
        and s.status.status_code is StatusCode.ERROR
    ]
    assert len(refused) == 1
    assert_refused(refused[0], "different content")
    assert _attrs(refused[0])["thunderline.domain"] == "vault"


async def test_with_trace_is_not_content() -> None:
    """The trace Flow gives a trace-less event travels in memory only."""
    event = Event.new(
        "test.heartbeat", type="test_event", source="gate", meta={"pipeline": "general"}
    )
    carrier = {"traceparent": f"00-{uuid.uuid4().hex}-{'1' * 16}-01"}
    carried = event.with_trace(carrier)
    assert carried == event
    assert carried.canonical_bytes() == event.canonical_bytes()
    assert carried.to_dict() == event.to_dict()
    assert event.trace_meta == {}
    assert carried.trace_meta == carrier
    # meta's own context (either form) wins over a carried one
    pair = {"trace_id": uuid.uuid4().hex, "span_id": "2" * 16}
    own = Event.new("test.heartbeat", type="test_event", source="gate", meta=pair)
    assert own.with_trace(carrier).trace_meta == pair
