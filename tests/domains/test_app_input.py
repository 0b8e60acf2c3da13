"""Bad input through Gate (T10, L7): a clear specific error or ``flow.event_dropped``;
nothing else is disturbed, nothing is lost.

Every test then publishes a good event and checks it reaches Link, that Gate
and Flow were not restarted, and that the ledger holds exactly the good events.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from app_helpers import (
    EVENT_TIMEOUT,
    app_config,
    await_emitted,
    ledger_event_ids,
    memory_tracing,
    publish_fresh,
    run_app,
    trace_id,
)
from opentelemetry.sdk.trace import ReadableSpan

import thunderline.runtime as tl
from thunderline.domains import (
    DuplicateEventError,
    Event,
    EventValidationError,
    PipelineOverloaded,
    PipelineSpec,
    flow,
    gate,
)
from thunderline.domains._common import FLOW, VAULT

pytestmark = pytest.mark.anyio

BAD_FIELDS: list[tuple[str, dict[str, Any], set[str]]] = [
    ("name not a string", {"name": 42}, {"name"}),
    ("bad name", {"name": "System Heartbeat!"}, {"name"}),
    ("one-word name", {"name": "heartbeat"}, {"name"}),
    ("name too long", {"name": "system." + "a" * 300}, {"name"}),
    ("type not a word", {"type": "Heart Beat"}, {"type"}),
    ("undeclared source", {"source": "nowhere"}, {"source"}),
    ("unknown priority", {"priority": "urgent"}, {"priority"}),
    ("payload not a mapping", {"payload": [1, 2, 3]}, {"payload"}),
    ("non-JSON payload", {"payload": {"when": object()}}, {"payload"}),
    ("NaN in payload", {"payload": {"x": float("nan")}}, {"payload"}),
    ("oversized payload", {"payload": {"blob": "x" * (300 * 1024)}}, {"payload"}),
    ("meta not a mapping", {"meta": "traceparent"}, {"meta"}),
    ("bad pipeline meta", {"meta": {"pipeline": 7}}, {"meta.pipeline"}),
    (
        "many problems at once",
        {"name": 1, "type": 2, "source": 3, "priority": 4},
        {"name", "type", "source", "priority"},
    ),
]


async def _good_event_still_served(
    good: set[str], pids: tuple[tl.Pid | None, tl.Pid | None]
) -> None:
    event = await publish_fresh(payload={"good": True})
    good.add(str(event.id))
    await await_emitted({str(event.id)})
    assert (tl.whereis(FLOW), tl.whereis(VAULT)) == pids, "Flow and Vault were not restarted"


def _fields(overrides: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"name": "system.heartbeat"}
    fields.update(overrides)
    return fields


async def test_invalid_fields_get_one_clear_error_listing_every_problem(
    anyio_backend: str, tmp_path: Path
) -> None:
    good: set[str] = set()

    async def body() -> None:
        pids = (tl.whereis(FLOW), tl.whereis(VAULT))
        for label, overrides, problem_fields in BAD_FIELDS:
            fields = _fields(overrides)
            with pytest.raises(EventValidationError) as caught:
                await gate.publish(fields.pop("name"), **fields)
            # each problem names its field (a payload problem names the key path)
            reported = {
                f.split(".")[0] if f.startswith("payload.") else f for f in caught.value.fields
            }
            assert reported == problem_fields, (label, str(caught.value))
            for problem in caught.value.problems:
                assert problem.field in str(caught.value)
        await _good_event_still_served(good, pids)

    await run_app(app_config(tmp_path), body, traced=False)
    assert ledger_event_ids(tmp_path) == sorted(good)


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        "00-" + "0" * 32 + "-" + "1" * 16 + "-01",  # all-zero trace id
        "00-" + "a" * 32 + "-" + "0" * 16 + "-01",  # all-zero span id
        "00-" + "A" * 32 + "-" + "B" * 16 + "-01",  # uppercase hex
        "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",  # version ff
        "00-" + "a" * 31 + "-" + "b" * 16 + "-01",  # wrong length
        "00-" + "a" * 32 + "-" + "b" * 16 + "-01-extra",  # version 00 with extra fields
    ],
)
async def test_malformed_trace_metadata_starts_a_new_trace_t10(
    anyio_backend: str, tmp_path: Path, traceparent: str
) -> None:
    """T10: malformed inbound trace context never raises; the event starts a new trace."""
    with memory_tracing() as log:
        published: list[Event] = []

        async def body() -> None:
            meta = {
                "traceparent": traceparent,
                "trace_id": "not-a-trace-id",
                "span_id": 12,
                "tracestate": "a=1",
                "tenant": "acme",
            }
            event = await publish_fresh(meta=meta)
            published.append(event)
            await await_emitted({str(event.id)})
            with anyio.fail_after(EVENT_TIMEOUT):
                await log.wait_named("bolt.run_saga", 1)

        await run_app(app_config(tmp_path), body)
        spans = list(log.spans)

    event = published[0]
    assert event.meta["tenant"] == "acme"  # free keys survive
    assert event.meta["traceparent"] != traceparent
    assert event.meta["traceparent"].split("-")[1] == event.meta["trace_id"]
    assert "a" * 31 not in event.meta["trace_id"]
    gate_span = next(s for s in spans if s.name == "gate.publish")
    assert gate_span.parent is None, "a new trace, not a child of the bad context"
    assert trace_id(gate_span) == event.meta["trace_id"]
    assert ledger_event_ids(tmp_path) == [str(event.id)]


def _dropped(spans: Sequence[ReadableSpan]) -> list[str]:
    return [
        str((e.attributes or {}).get("reason"))
        for s in spans
        if s.name == "flow.publish_event"
        for e in s.events
        if e.name == "flow.event_dropped"
    ]


async def test_unknown_route_is_dropped_with_a_reason(anyio_backend: str, tmp_path: Path) -> None:
    """An event nobody routes or subscribes to: EventDroppedError and flow.event_dropped."""
    with memory_tracing() as log:
        good: set[str] = set()

        async def body() -> None:
            pids = (tl.whereis(FLOW), tl.whereis(VAULT))
            with pytest.raises(flow.EventDroppedError) as caught:
                await publish_fresh("audit.login")
            assert "no route or subscriber" in caught.value.reason
            assert "audit.login" in str(caught.value)
            await _good_event_still_served(good, pids)
            stats = await flow.statistics()
            assert (stats.published, stats.dropped) == (1, 1)

        await run_app(app_config(tmp_path), body)
        spans = list(log.spans)

    reasons = _dropped(spans)
    assert len(reasons) == 1
    assert "no route or subscriber for 'audit.login'" in reasons[0]
    assert ledger_event_ids(tmp_path) == sorted(good)


async def test_event_without_a_saga_is_refused_not_lost(anyio_backend: str, tmp_path: Path) -> None:
    """An event no saga handles is refused at publish time instead of being accepted and
    then failing in the pipeline after the publisher was told it was published."""
    with memory_tracing() as log:
        good: set[str] = set()

        async def body() -> None:
            pids = (tl.whereis(FLOW), tl.whereis(VAULT))
            with pytest.raises(flow.EventDroppedError) as caught:
                await publish_fresh("system.reboot")
            assert "system.reboot" in caught.value.reason
            await _good_event_still_served(good, pids)
            stats = await flow.statistics()
            assert all(p.failed == 0 for p in stats.pipelines.values())

        await run_app(app_config(tmp_path), body)
        spans = list(log.spans)

    assert len(_dropped(spans)) == 1
    assert ledger_event_ids(tmp_path) == sorted(good)


async def test_republishing_an_event_is_idempotent(anyio_backend: str, tmp_path: Path) -> None:
    """Publishing an event again (a retry) succeeds and records it once; the same id with
    other content is refused with DuplicateEventError."""
    first: list[Event] = []

    async def body() -> None:
        event = await publish_fresh()
        first.append(event)
        await await_emitted({str(event.id)})
        await flow.publish(event)  # committed already: answered, not written again
        # two concurrent publishes of one new event: one record
        again = Event.new("system.heartbeat", type="heartbeat", source="gate")
        refs = {tl.spawn_monitor(flow.publish, again)[1] for _ in range(2)}
        while refs:
            down = await tl.receive(tl.Down, timeout=EVENT_TIMEOUT)
            assert down.reason == tl.NORMAL, down.reason
            refs.discard(down.ref)
        first.append(again)
        other = Event.new(
            "system.heartbeat", type="heartbeat", source="gate", id=event.id, payload={"x": 1}
        )
        with pytest.raises(DuplicateEventError):
            await flow.publish(other)
        await await_emitted({str(again.id)})

    await run_app(app_config(tmp_path), body, traced=False)
    assert ledger_event_ids(tmp_path) == [str(e.id) for e in first]


async def test_try_publish_on_a_full_pipeline_is_overloaded(
    anyio_backend: str, tmp_path: Path
) -> None:
    """try_publish (wait=False) on a full pipeline: PipelineOverloaded and flow.event_dropped;
    the queued events and the rest of the app are undisturbed."""
    release = anyio.Event()
    handled: list[str] = []

    async def slow(batch: Sequence[Event]) -> None:
        await release.wait()
        handled.extend(str(e.id) for e in batch)
        tl.send(tester[0], ("handled", len(batch)))

    tester: list[tl.Pid] = []
    blocked = PipelineSpec(
        name="test.blocked", handler=slow, max_buffer=2, concurrency=1, batch_size=1
    )
    routes = (*flow.default_routes(), flow.Route("audit.*", blocked))

    with memory_tracing() as log:
        good: set[str] = set()
        queued: list[str] = []

        async def body() -> None:
            tester.append(tl.current_pid())
            pids = (tl.whereis(FLOW), tl.whereis(VAULT))
            # one event taken by the only worker (blocked), two fill the buffer
            for _ in range(3):
                queued.append(str((await publish_fresh("audit.login", wait=False)).id))
            with pytest.raises(PipelineOverloaded) as caught:
                await publish_fresh("audit.login", wait=False)
            assert caught.value.pipeline == "test.blocked"
            assert caught.value.max_buffer == 2
            stats = await flow.statistics()
            assert stats.pipelines["test.blocked"].buffered == 2
            await _good_event_still_served(good, pids)
            release.set()
            count = 0
            while count < 3:
                count += (await tl.receive(tuple, timeout=EVENT_TIMEOUT))[1]

        await run_app(app_config(tmp_path, routes=routes), body)
        spans = list(log.spans)

    assert sorted(handled) == sorted(queued)
    reasons = _dropped(spans)
    assert len(reasons) == 1
    assert "full" in reasons[0]
    # accepted means committed: the queued events are in the ledger, the refused one is not
    assert sorted(ledger_event_ids(tmp_path)) == sorted(good | set(queued))
