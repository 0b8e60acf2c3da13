"""Flow: the event bus.

:func:`publish` hands an event to Flow, which continues the event's trace
(``flow.publish_event`` with ``event.id``, ``event.name``, ``event.type``,
``event.source``, ``event.priority``), validates it, and routes it by name:

* to every process subscribed to a matching pattern (:func:`subscribe`), as a
  :class:`Delivered` message;
* to every pipeline routed for that name: bounded queues with concurrency and
  batching (:class:`~thunderline.domains.PipelineSpec`). By default each event
  name Bolt has a saga for (``system.heartbeat``) goes to the ``bolt``
  pipeline, whose workers run each event's saga through Bolt; any other name
  has no route, so Flow refuses it at once instead of accepting an event that
  would fail later in the pipeline. Routes may share a pipeline (same
  :class:`PipelineSpec` name): it is started once and an event enters it once.

Validation drops (span event ``flow.event_dropped`` with the reason, and
:class:`EventDroppedError` for the publisher) an event that is not an
:class:`Event`, that no route or subscriber wants, or whose id Flow has seen
recently (a duplicate). Accepted events get ``flow.event_validated`` and, once
every pipeline took them, ``flow.event_published``.

Backpressure: while a pipeline is full, :func:`publish` waits (Flow answers
when the pipeline took the event); :func:`try_publish` raises
:class:`~thunderline.domains.PipelineOverloaded` instead. Memory stays bounded
by the pipelines' buffers whatever the publishers do.
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, Final

import attrs

import thunderline.runtime as tl
from thunderline import sagas, telemetry
from thunderline.domains import bolt
from thunderline.domains._common import FLOW, Failure, event_context, request
from thunderline.domains._event import Event
from thunderline.domains._pipeline import (
    Pipeline,
    PipelineOverloaded,
    PipelineSpec,
    PipelineStatistics,
    enqueue,
    pipeline_statistics,
    try_enqueue,
)

__all__ = [
    "BatchFailedError",
    "Delivered",
    "EventDroppedError",
    "Flow",
    "FlowStatistics",
    "Route",
    "SagaNotSucceededError",
    "default_routes",
    "flow_spec",
    "publish",
    "statistics",
    "subscribe",
    "try_publish",
]

#: Subscribers by name pattern (fnmatch syntax, e.g. ``"system.*"``).
SUBSCRIBERS: Final = tl.Registry(keys="duplicate", name="thunderline.flow.subscribers")
_RECENT_IDS: Final = 10_000


class EventDroppedError(tl.ThunderlineError, ValueError):
    """Flow dropped the event; ``reason`` says why (also on the ``flow.event_dropped`` event)."""

    def __init__(self, event_id: str, reason: str) -> None:
        self.event_id = event_id
        self.reason = reason
        super().__init__(f"flow dropped event {event_id}: {reason}")


class SagaNotSucceededError(tl.ThunderlineError):
    """An event's saga did not succeed (it failed, halted or was cancelled).

    Attributes:
        event_id: The event whose saga it was.
        outcome: The saga's outcome.
    """

    def __init__(self, event_id: object, outcome: object) -> None:
        self.event_id = event_id
        self.outcome = outcome
        super().__init__(f"saga for event {event_id} ended with {outcome!r}")


class BatchFailedError(tl.ThunderlineError):
    """Some events of a pipeline batch failed, so the pipeline counts the batch as failed.

    Attributes:
        failures: The exit reasons of the failed events' processes.
        total: The size of the batch.
    """

    def __init__(self, what: str, failures: Sequence[object], total: int) -> None:
        self.failures = tuple(failures)
        self.total = total
        super().__init__(f"{len(failures)} of {total} {what} failed: {list(failures[:3])!r}")


@attrs.frozen
class Delivered:
    """Sent to a subscriber for each accepted event matching its pattern."""

    event: Event


@attrs.frozen
class Route:
    """Events whose name matches ``pattern`` (fnmatch) go to ``pipeline``."""

    pattern: str
    pipeline: PipelineSpec[Event]


@attrs.frozen
class FlowStatistics:
    """Counts since Flow started, and each pipeline's statistics."""

    published: int
    dropped: int
    pipelines: dict[str, PipelineStatistics]


async def _run_one(event: Event) -> None:
    # A batch mixes events of many traces: continue each event's own trace.
    with telemetry.continue_from(event.meta):
        outcome = await bolt.run(event)
    if not isinstance(outcome, sagas.SagaSucceeded):
        raise SagaNotSucceededError(event.id, outcome)


async def _to_bolt(batch: Sequence[Event]) -> None:
    """Run the batch's sagas concurrently, one process each (so Vault commits them together)."""
    refs = {tl.spawn_monitor(_run_one, event)[1] for event in batch}
    failures: list[Any] = []
    while refs:
        down = await tl.receive(lambda m: isinstance(m, tl.Down) and m.ref in refs)
        refs.discard(down.ref)
        if down.reason != tl.NORMAL:
            failures.append(down.reason)
    if failures:
        raise BatchFailedError("sagas", failures, len(batch))


def default_routes(
    *,
    concurrency: int = 8,
    batch_size: int = 16,
    max_buffer: int = 1024,
    batch_timeout: float = 0.005,
    event_names: Iterable[str] | None = None,
) -> tuple[Route, ...]:
    """Each of ``event_names`` -> the ``bolt`` pipeline, whose workers run each event's saga.

    Args:
        event_names: the names Bolt has a saga for (default: the keys of
            :data:`~thunderline.domains.bolt.DEFAULT_SAGAS`). Only these are
            routed: an event no saga handles is refused by Flow
            (:class:`EventDroppedError`) rather than accepted and then lost
            when Bolt cannot run it.
    """
    names = sorted(bolt.DEFAULT_SAGAS if event_names is None else set(event_names))
    pipeline: PipelineSpec[Event] = PipelineSpec(
        name="thunderline.flow.bolt",
        handler=_to_bolt,
        concurrency=concurrency,
        batch_size=batch_size,
        max_buffer=max_buffer,
        batch_timeout=batch_timeout,
    )
    return tuple(Route(_exact(name), pipeline) for name in names)


def _exact(name: str) -> str:
    """An fnmatch pattern matching exactly ``name``."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def _pipelines(routes: Iterable[Route]) -> dict[str, PipelineSpec[Event]]:
    """The distinct pipelines of ``routes`` by name (routes may share one)."""
    return {route.pipeline.name: route.pipeline for route in routes}


@attrs.frozen
class _Publish:
    event: Event
    wait: bool


@attrs.define
class _State:
    recent: OrderedDict[str, None] = attrs.field(factory=OrderedDict)
    published: int = 0
    dropped: int = 0


class Flow(tl.Server[_State]):
    """The event bus actor. Start with :func:`flow_spec`."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)

    async def init(self) -> tl.Ok[_State]:
        """Start each distinct pipeline of the routes, linked to Flow (they restart with it)."""
        for spec in _pipelines(self.routes).values():
            await tl.start_link(Pipeline(spec), name=spec.name)
        return tl.Ok(_State())

    async def handle_call(self, request: Any, from_: tl.From, state: _State) -> tl.Reply[_State]:
        """``_Publish`` and ``("statistics",)``."""
        if isinstance(request, _Publish):
            return tl.Reply(await self._publish(request.event, request.wait, state), state)
        if request == ("statistics",):
            pipelines = {name: await pipeline_statistics(name) for name in _pipelines(self.routes)}
            return tl.Reply(FlowStatistics(state.published, state.dropped, pipelines), state)
        return tl.Reply(Failure(ValueError(f"flow: unknown request {request!r}")), state)

    async def _publish(self, event: Event, wait: bool, state: _State) -> Any:
        if not isinstance(event, Event):
            state.dropped += 1
            return Failure(EventDroppedError(repr(event)[:64], "not an Event"))
        with (
            event_context(event),
            telemetry.span(
                "flow.publish_event",
                attributes={
                    "thunderline.domain": "flow",
                    "event.id": str(event.id),
                    "event.name": event.name,
                    "event.type": event.type,
                    "event.source": event.source,
                    "event.priority": event.priority.value,
                },
            ),
        ):
            routes = list(
                _pipelines(r for r in self.routes if fnmatch.fnmatchcase(event.name, r.pattern))
            )
            subscribers = [
                pid
                for pattern in SUBSCRIBERS.all_keys()
                if isinstance(pattern, str) and fnmatch.fnmatchcase(event.name, pattern)
                for pid, _ in SUBSCRIBERS.lookup(pattern)
            ]
            reason = None
            if str(event.id) in state.recent:
                reason = "duplicate event id"
            elif not routes and not subscribers:
                reason = f"no route or subscriber for {event.name!r}"
            if reason is not None:
                state.dropped += 1
                telemetry.add_event("flow.event_dropped", {"reason": reason})
                return Failure(EventDroppedError(str(event.id), reason))
            telemetry.add_event("flow.event_validated")
            state.recent[str(event.id)] = None
            if len(state.recent) > _RECENT_IDS:
                state.recent.popitem(last=False)
            for pid in subscribers:
                tl.send(pid, Delivered(event))
            for pipeline in routes:
                try:
                    if wait:
                        await enqueue(pipeline, event)
                    else:
                        await try_enqueue(pipeline, event)
                except (tl.CallError, PipelineOverloaded) as exc:
                    state.recent.pop(str(event.id), None)
                    telemetry.add_event("flow.event_dropped", {"reason": str(exc)})
                    state.dropped += 1
                    return Failure(exc)
            state.published += 1
            telemetry.add_event("flow.event_published", {"pipelines": len(routes)})
            return None


def flow_spec(routes: Sequence[Route] | None = None) -> tl.ChildSpec:
    """The Flow child spec (registered as ``thunderline.flow``)."""
    chosen = default_routes() if routes is None else tuple(routes)

    async def start() -> tl.Pid | None:
        return await tl.start_link(Flow(chosen), name=FLOW)

    return tl.ChildSpec(id="flow", start=start)


async def publish(event: Event, *, flow: tl.Pid | str = FLOW) -> None:
    """Publish ``event``; waits while a pipeline is full (backpressure).

    Raises:
        EventDroppedError: Flow dropped it (reason given).
        CallError: Flow is not running.
    """
    await request(flow, _Publish(event, True), timeout=None)


async def try_publish(event: Event, *, flow: tl.Pid | str = FLOW) -> None:
    """Publish ``event`` without waiting.

    Raises:
        PipelineOverloaded: a pipeline for it is full.
        EventDroppedError: Flow dropped it.
    """
    await request(flow, _Publish(event, False), timeout=None)


def subscribe(pattern: str) -> None:
    """Subscribe the calling process to events whose name matches ``pattern`` (fnmatch)."""
    SUBSCRIBERS.register(pattern)


async def statistics(flow: tl.Pid | str = FLOW) -> FlowStatistics:
    """Flow's counters and its pipelines' statistics."""
    result: FlowStatistics = await request(flow, ("statistics",))
    return result
