"""Flow: the event bus, and the application's durable intake.

:func:`publish` hands an event to Flow, which continues the event's trace
(``flow.publish_event`` with ``thunderline.domain=flow``,
``thunderline.component=event_bus``, ``event.id``, ``event.name``,
``event.type``, ``event.source``, ``event.priority`` and ``event.pipeline``
when ``meta`` names one), validates it, commits it to the ledger
and only then answers: **a publish that returns means the event is committed
in the ledger** (Vault's transaction committed). Otherwise it raises, and the
event may or may not be recorded, never twice: publishing the same event again
(same id, same content) is idempotent (answered with success, recorded once).

Algorithm (group commit). Flow keeps the accepted events not yet committed
(``pending``) and at most one batch at Vault (``in_flight``). An accepted
event joins ``pending``; whenever no batch is in flight, all of ``pending``
goes to Vault as one batch (one transaction). When Vault answers, Flow answers
each publisher of the batch, and hands the new events to their routes:

* every process subscribed to a matching pattern (:func:`subscribe`) gets a
  :class:`Delivered` message;
* every pipeline routed for that name gets them (bounded queues with
  concurrency and batching, :class:`~thunderline.domains.PipelineSpec`). By
  default each event name Bolt has a saga for (``system.heartbeat``) goes to
  the ``bolt`` pipeline, whose workers run each event's saga through Bolt.
* A route may also require ``meta["pipeline"]`` (``Route(pattern, pipeline,
  meta_pipeline=...)``), as the seed's Flow routes by ``meta.pipeline``, and a
  route without a processing pipeline (``pipeline=None``) accepts its events
  for the ledger and Link only. The default routes end with the *general
  pipeline*: ``Route("*", None, meta_pipeline="general")``, so any valid
  event whose ``meta["pipeline"]`` is ``"general"`` is committed and relayed
  by Link (and still runs a saga if one is routed for its name).

Trace. An event whose ``meta`` has no trace context (e.g. built with
``Event.new(...)`` and published straight to Flow) continues Flow's
``flow.publish_event``: Flow hands on a copy carrying that context in memory
(:meth:`~thunderline.domains.Event.with_trace`, not content, so a retry stays
idempotent), and Vault, Bolt's saga and Link continue it, so the event is one
trace with or without a runtime instrument.

Flow monitors Vault per batch: if Vault dies with a batch in flight, the batch
is sent again once Vault is back (the ledger deduplicates by event id, so a
batch that was in fact committed is not written twice); publishers just wait.
Vault may live on another node (``flow_spec(vault=(VAULT, "b"))``, see
:func:`~thunderline.domains.front_spec`): when that node is lost (the
monitor fires ``NOCONNECTION``), nothing is retried: every publisher waiting
for a commit gets :class:`VaultUnreachableError` (an acknowledgement still
means committed), and so does every publish until the node is back.

Validation drops (span event ``flow.event_dropped`` with the reason, status
ERROR with the reason, and :class:`EventDroppedError` for the publisher) an
event that is not an :class:`Event`, or that no route or subscriber wants
(refused at once instead of accepted and lost); an event refused because the
application is shutting down, a pipeline is full (:func:`try_publish`) or its
id is pending with other content is recorded the same way. Accepted events
get ``flow.event_validated`` and ``flow.event_published`` (handed to the
ledger). An id already pending joins the pending publish (same content) or is
refused (:class:`~thunderline.domains.DuplicateEventError`).

Backpressure: while a pipeline is full, Flow waits for it before committing
more, so :func:`publish` waits; :func:`try_publish` raises
:class:`~thunderline.domains.PipelineOverloaded` instead when a pipeline for
the event is already full. Memory stays bounded by the pipelines' buffers and
the publishers (each waiting on its own call).

Draining shutdown: when its supervisor stops Flow, Flow stops accepting
(publishers then get :class:`ShuttingDownError`), commits what it accepted,
and waits until its pipelines processed everything, bounded by the shutdown
timeout; it logs one line with what was left, if anything.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, Final

import anyio
import attrs

import thunderline.runtime as tl
from thunderline import telemetry
from thunderline.domains import bolt, vault
from thunderline.domains._common import (
    DROPPED,
    FLOW,
    FLOW_SPAN,
    VAULT,
    Failure,
    event_context,
    request,
)
from thunderline.domains._event import Event
from thunderline.domains._ledger._core import DuplicateEventError, LedgerError
from thunderline.domains._pipeline import (
    Pipeline,
    PipelineOverloaded,
    PipelineSpec,
    PipelineStatistics,
    drain,
    enqueue_many,
    pipeline_statistics,
)

__all__ = [
    "GENERAL_ROUTE",
    "BatchFailedError",
    "Delivered",
    "EventDroppedError",
    "Flow",
    "FlowStatistics",
    "Route",
    "SagaNotSucceededError",
    "ShuttingDownError",
    "VaultUnreachableError",
    "default_routes",
    "flow_spec",
    "publish",
    "publish_event",
    "statistics",
    "subscribe",
    "try_publish",
]

#: Subscribers by name pattern (fnmatch syntax, e.g. ``"system.*"``).
SUBSCRIBERS: Final = tl.Registry(keys="duplicate", name="thunderline.flow.subscribers")
_RECENT_IDS: Final = 10_000
_BOLT_ATTEMPTS: Final = 40


logger: Final = logging.getLogger("thunderline.domains.flow")


class ShuttingDownError(tl.ThunderlineError):
    """The application is shutting down: Flow accepts no new events (nothing was recorded)."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"flow is shutting down: event {event_id} was not accepted")


class VaultUnreachableError(tl.ThunderlineError):
    """Vault's node was lost (``NOCONNECTION``) before the event's commit was confirmed.

    The event was not acknowledged. With ``maybe_committed`` it was sent to
    Vault and may or may not be in the ledger; otherwise it was never sent.
    Publishing it again once the node is back is safe (idempotent by id).
    """

    def __init__(self, event_id: str, vault: object, maybe_committed: bool) -> None:
        self.event_id = event_id
        self.vault = vault
        self.maybe_committed = maybe_committed
        state = "may or may not be committed" if maybe_committed else "was not committed"
        super().__init__(f"vault {vault!r} is unreachable (noconnection): event {event_id} {state}")


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
    """Events whose name matches ``pattern`` (fnmatch) go to ``pipeline``.

    Attributes:
        pattern: fnmatch pattern of the event names routed.
        pipeline: the processing pipeline, or None: the route only accepts its
            events (committed to the ledger and relayed by Link).
        meta_pipeline: if given, the route takes only events whose
            ``meta["pipeline"]`` equals it.
    """

    pattern: str
    pipeline: PipelineSpec[Event] | None
    meta_pipeline: str | None = attrs.field(default=None, kw_only=True)

    def matches(self, event: Event) -> bool:
        """Whether ``event`` takes this route."""
        return fnmatch.fnmatchcase(event.name, self.pattern) and (
            self.meta_pipeline is None or event.meta.get("pipeline") == self.meta_pipeline
        )


#: The seed's general pipeline: events with ``meta["pipeline"] == "general"`` go to
#: the ledger and Link (and to a saga only if another route takes them too).
GENERAL_ROUTE: Final = Route("*", None, meta_pipeline="general")


@attrs.frozen
class FlowStatistics:
    """Counts since Flow started, and each pipeline's statistics."""

    published: int
    dropped: int
    pipelines: dict[str, PipelineStatistics]


async def _to_bolt(batch: Sequence[Event]) -> None:
    """Run the batch's sagas concurrently through Bolt (one call per batch).

    A Bolt that is restarting is asked again (up to ``_BOLT_ATTEMPTS`` times):
    a saga still running for an event is joined (its correlation id is the
    event id) and one that already ended answers with its journaled outcome
    (:class:`~thunderline.domains.bolt.SagaAlreadyEnded`): no saga runs twice.
    """
    for attempt in range(_BOLT_ATTEMPTS):
        try:
            outcomes = await bolt.run_batch(batch)
            break
        except tl.CallError:
            if attempt == _BOLT_ATTEMPTS - 1:
                raise
            await anyio.sleep(0.05)
    failures = [o for o in outcomes if not bolt.succeeded(o)]
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
    """Each of ``event_names`` -> the ``bolt`` pipeline, whose workers run each event's saga;
    then the general pipeline (:data:`GENERAL_ROUTE`).

    Args:
        event_names: the names Bolt has a saga for (default: the keys of
            :data:`~thunderline.domains.bolt.DEFAULT_SAGAS`). Only these go to
            Bolt: any other event is refused by Flow (:class:`EventDroppedError`)
            rather than accepted and then lost when Bolt cannot run it, unless
            its ``meta["pipeline"]`` is ``"general"``.
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
    return (*(Route(_exact(name), pipeline) for name in names), GENERAL_ROUTE)


def _exact(name: str) -> str:
    """An fnmatch pattern matching exactly ``name``."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def _pipelines(routes: Iterable[Route]) -> dict[str, PipelineSpec[Event]]:
    """The distinct pipelines of ``routes`` by name (routes may share one)."""
    return {route.pipeline.name: route.pipeline for route in routes if route.pipeline is not None}


@attrs.frozen
class _Publish:
    event: Event
    wait: bool


@attrs.frozen
class _Retry:
    """Try again to send the pending batch to Vault (it was not running)."""


#: A publisher waiting for its event's commit, or None (a joined duplicate has several).
_Waiters = list[tl.From]


@attrs.define
class _State:
    pending: dict[str, tuple[Event, _Waiters]] = attrs.field(factory=dict)
    in_flight: dict[str, tuple[Event, _Waiters]] = attrs.field(factory=dict)
    ref: tl.Ref | None = None
    retrying: bool = False
    recent: OrderedDict[str, None] = attrs.field(factory=OrderedDict)
    published: int = 0
    dropped: int = 0
    closing: bool = False


class Flow(tl.Server[_State]):
    """The event bus actor. Start with :func:`flow_spec`."""

    def __init__(
        self,
        routes: Sequence[Route],
        shutdown_timeout: float = 30.0,
        vault: str | tuple[str, str] = VAULT,
    ) -> None:
        self.routes = tuple(routes)
        self.shutdown_timeout = shutdown_timeout
        self.vault = vault

    async def init(self) -> tl.Ok[_State]:
        """Start each distinct pipeline of the routes, linked to Flow (they restart with it).

        Flow traps exits so that its supervisor's shutdown runs :meth:`terminate` (the drain).
        """
        tl.trap_exit(True)
        for spec in _pipelines(self.routes).values():
            await tl.start_link(Pipeline(spec), name=spec.name)
        return tl.Ok(_State())

    async def handle_call(
        self, request: Any, from_: tl.From, state: _State
    ) -> tl.Reply[_State] | tl.NoReply[_State]:
        """``_Publish`` (answered once committed) and ``("statistics",)``."""
        if isinstance(request, _Publish):
            answer = await self._accept(request.event, request.wait, from_, state)
            if answer is _DEFERRED:
                return tl.NoReply(state)
            return tl.Reply(answer, state)
        if request == ("statistics",):
            pipelines = {name: await pipeline_statistics(name) for name in _pipelines(self.routes)}
            return tl.Reply(FlowStatistics(state.published, state.dropped, pipelines), state)
        return tl.Reply(Failure(ValueError(f"flow: unknown request {request!r}")), state)

    async def handle_info(
        self, message: Any, state: _State
    ) -> tl.NoReply[_State] | tl.Hibernate[_State] | tl.Stop[_State]:
        """Vault's answers and deaths, retry timers, pipeline exits."""
        if isinstance(message, vault.Committed | tl.Down | _Retry):
            await self._on_vault(message, state)
        elif isinstance(message, tl.Exit):
            if message.reason != tl.NORMAL:
                raise tl.ProcessExit(message.reason)  # a pipeline died: restart with it
        else:
            return await super().handle_info(message, state)
        return tl.NoReply(state)

    def _routes_of(self, event: Event) -> list[str]:
        """The names of the processing pipelines routed for ``event``."""
        return list(_pipelines(r for r in self.routes if r.matches(event)))

    def _routed(self, event: Event) -> bool:
        return any(r.matches(event) for r in self.routes)

    async def _accept(self, event: Event, wait: bool, from_: tl.From, state: _State) -> Any:
        """Validate; join or queue for commit (deferred answer), or answer a Failure now."""
        if not isinstance(event, Event):
            state.dropped += 1
            with telemetry.span("flow.publish_event", attributes=FLOW_SPAN):
                return _refuse(EventDroppedError(repr(event)[:64], "not an Event"))
        attributes = {
            **FLOW_SPAN,
            "event.id": str(event.id),
            "event.name": event.name,
            "event.type": event.type,
            "event.source": event.source,
            "event.priority": event.priority.value,
        }
        pipeline = event.meta.get("pipeline")
        if isinstance(pipeline, str):
            attributes["event.pipeline"] = pipeline
        with (
            event_context(event),
            telemetry.span("flow.publish_event", attributes=attributes),
        ):
            if state.closing:
                return _refuse(ShuttingDownError(str(event.id)))
            routes = self._routes_of(event)
            reason = None
            if not self._routed(event) and not _subscribers(event):
                reason = f"no route or subscriber for {event.name!r}"
            elif not wait:
                reason = await self._overloaded(routes, state)
            if reason is not None:
                state.dropped += 1
                if reason.startswith("pipeline "):
                    name = reason.split("'")[1]
                    spec = _pipelines(self.routes)[name]
                    return _refuse(PipelineOverloaded(name, spec.max_buffer), reason)
                return _refuse(EventDroppedError(str(event.id), reason), reason)
            telemetry.add_event("flow.event_validated")
            key = str(event.id)
            queued = state.pending.get(key) or state.in_flight.get(key)
            if queued is not None:
                if queued[0] != event:
                    return _refuse(DuplicateEventError(key, None))
                queued[1].append(from_)  # the same event again: answered with the first
                return _DEFERRED
            if not event.trace_meta:
                # No trace of its own: the domains after Flow continue this span.
                carrier = telemetry.capture_carrier()
                if carrier is not None:
                    event = event.with_trace(carrier)
            state.pending[key] = (event, [from_])
            telemetry.add_event("flow.event_published", {"pipelines": len(routes)})
        self._dispatch(state)
        return _DEFERRED

    async def _overloaded(self, routes: list[str], state: _State) -> str | None:
        """For ``try_publish``: the first route pipeline with no room, counting uncommitted."""
        specs = _pipelines(self.routes)
        for name in routes:
            stats = await pipeline_statistics(name)
            coming = sum(
                1
                for event, _ in (*state.pending.values(), *state.in_flight.values())
                if name in self._routes_of(event)
            )
            if stats.buffered + stats.waiting_publishers + coming >= specs[name].max_buffer:
                return f"pipeline {name!r} is full ({specs[name].max_buffer} items buffered)"
        return None

    def _dispatch(self, state: _State) -> None:
        """Send every pending event to Vault as one batch, unless a batch is in flight."""
        if state.ref is not None or not state.pending or state.retrying:
            return
        target = tl.whereis(self.vault) if isinstance(self.vault, str) else self.vault
        if target is None:
            state.retrying = True
            tl.send_after(_VAULT_RETRY, tl.current_pid(), _Retry())
            return
        state.in_flight, state.pending = state.pending, {}
        events = [event for event, _ in state.in_flight.values()]
        state.ref = vault.append_batch_async(target, events, actor="flow")

    async def _on_vault(self, message: Any, state: _State) -> None:
        if isinstance(message, _Retry):
            state.retrying = False
            self._dispatch(state)
            return
        if message.ref != state.ref:
            return  # a stale Down (its Committed came first) or an old answer
        state.ref = None
        batch, state.in_flight = state.in_flight, {}
        if isinstance(message, tl.Down) and message.reason == tl.NOCONNECTION:
            self._unreachable(batch, state)
            return
        if isinstance(message, tl.Down):
            # Vault died with the batch: it may or may not be committed; send it
            # again first (idempotent), once Vault is back.
            logger.warning(
                "flow: vault died (%r) with %d events in flight; retrying",
                message.reason,
                len(batch),
            )
            state.pending = {**batch, **state.pending}
            state.retrying = True
            tl.send_after(_VAULT_RETRY, tl.current_pid(), _Retry())
            return
        tl.demonitor(message.ref)
        committed: list[Event] = []
        for (key, (event, waiters)), result in zip(batch.items(), message.results, strict=True):
            answer: Any = Failure(result) if isinstance(result, LedgerError) else None
            for from_ in waiters:
                tl.reply(from_, answer)
            if answer is None:
                state.published += 1
                if key not in state.recent:
                    state.recent[key] = None
                    committed.append(event)
            else:
                state.dropped += 1
        while len(state.recent) > _RECENT_IDS:
            state.recent.popitem(last=False)
        self._dispatch(state)
        await self._route(committed)

    def _unreachable(self, batch: dict[str, tuple[Event, _Waiters]], state: _State) -> None:
        """Vault's node is lost: fail the batch (maybe committed) and the pending (not sent)."""
        pending, state.pending = state.pending, {}
        logger.error(
            "flow: vault %r unreachable (noconnection): %d events in flight, %d pending failed",
            self.vault,
            len(batch),
            len(pending),
        )
        for events, maybe in ((batch, True), (pending, False)):
            for key, (_event, waiters) in events.items():
                state.dropped += 1
                for from_ in waiters:
                    tl.reply(from_, Failure(VaultUnreachableError(key, self.vault, maybe)))

    async def _route(self, events: list[Event]) -> None:
        """Hand newly committed events to subscribers and pipelines (waits while one is full)."""
        by_pipeline: dict[str, list[Event]] = {}
        for event in events:
            for pid in _subscribers(event):
                tl.send(pid, Delivered(event))
            for name in self._routes_of(event):
                by_pipeline.setdefault(name, []).append(event)
        for name, batch in by_pipeline.items():
            try:
                await enqueue_many(name, batch)
            except tl.CallError as exc:
                # Committed (in the ledger, Link delivers them) but not processed.
                logger.error(
                    "flow: pipeline %s refused %d committed events: %s", name, len(batch), exc
                )

    async def terminate(self, reason: Any, state: _State) -> None:
        """Drain: commit what was accepted, wait for the pipelines, bounded by the timeout."""
        state.closing = True
        started = anyio.current_time()
        with anyio.move_on_after(self.shutdown_timeout) as scope:
            while state.pending or state.in_flight:
                self._dispatch(state)
                message = await tl.receive(
                    lambda m: isinstance(m, vault.Committed | tl.Down | _Retry)
                )
                await self._on_vault(message, state)
            for name in _pipelines(self.routes):
                with contextlib.suppress(tl.CallError):
                    await drain(name)
        left = len(state.pending) + len(state.in_flight)
        if scope.cancelled_caught:
            backlog = []
            for name in _pipelines(self.routes):
                with contextlib.suppress(tl.CallError):
                    stats = await pipeline_statistics(name, timeout=1.0)
                    backlog.append(f"{name}: {stats.buffered + stats.in_flight}")
            logger.error(
                "flow: shutdown timeout (%.1f s) reached: %d accepted events not committed "
                "(their publishers got errors); committed events not yet processed: %s",
                self.shutdown_timeout,
                left,
                ", ".join(backlog) or "none",
            )
            error = ShuttingDownError("*")
            for _event, waiters in (*state.pending.values(), *state.in_flight.values()):
                for from_ in waiters:
                    tl.reply(from_, Failure(error))
        else:
            logger.info(
                "flow: drained in %.2f s (%d events published)",
                anyio.current_time() - started,
                state.published,
            )


def _refuse(error: Exception, reason: str | None = None) -> Failure:
    """Record a refusal on the current (``flow.publish_event``) span: ERROR with the reason."""
    text = reason if reason is not None else str(error)
    telemetry.add_event(DROPPED, {"reason": text})
    telemetry.set_attributes({"error.type": type(error).__qualname__})
    telemetry.set_status("error", text)
    return Failure(error)


_DEFERRED: Final = object()
#: Seconds between attempts to reach a restarting Vault.
_VAULT_RETRY: Final = 0.05


def _subscribers(event: Event) -> list[tl.Pid]:
    return [
        pid
        for pattern in SUBSCRIBERS.all_keys()
        if isinstance(pattern, str) and fnmatch.fnmatchcase(event.name, pattern)
        for pid, _ in SUBSCRIBERS.lookup(pattern)
    ]


def flow_spec(
    routes: Sequence[Route] | None = None,
    *,
    shutdown_timeout: float = 30.0,
    vault: str | tuple[str, str] = VAULT,
) -> tl.ChildSpec:
    """The Flow child spec (registered as ``thunderline.flow``).

    ``shutdown_timeout`` bounds the drain at shutdown (its supervisor waits a
    little longer before killing Flow, so the drain can report what was left).
    ``vault``: Vault's registered name, or ``(name, node)`` on another node.
    """
    chosen = default_routes() if routes is None else tuple(routes)

    async def start() -> tl.Pid | None:
        return await tl.start_link(Flow(chosen, shutdown_timeout, vault), name=FLOW)

    return tl.ChildSpec(id="flow", start=start, shutdown=shutdown_timeout + 5.0)


async def publish(event: Event, *, flow: tl.Pid | str = FLOW) -> None:
    """Publish ``event``; returns once it is committed in the ledger.

    Waits while a pipeline is full (backpressure). Publishing the same event
    again is idempotent.

    Raises:
        EventDroppedError: Flow dropped it (reason given).
        DuplicateEventError: its id is recorded with other content.
        ShuttingDownError: the application is shutting down (nothing recorded).
        CallError: Flow is not running or died (the event may or may not be recorded).
        LedgerError: the ledger failed (the event may or may not be recorded).
        VaultUnreachableError: Vault's node was lost (see the error's ``maybe_committed``).
    """
    await _request(flow, _Publish(event, True), str(getattr(event, "id", "?")))


async def publish_event(event: Event, *, flow: tl.Pid | str = FLOW) -> None:
    """The seed's name for :func:`publish` (``EventBus.publish_event(event)``): the same call."""
    await publish(event, flow=flow)


async def try_publish(event: Event, *, flow: tl.Pid | str = FLOW) -> None:
    """Publish ``event`` unless a pipeline for it is full; returns once it is committed.

    Raises:
        PipelineOverloaded: a pipeline for it is full.
        EventDroppedError, DuplicateEventError, ShuttingDownError, CallError,
        LedgerError, VaultUnreachableError: as for :func:`publish`.
    """
    await _request(flow, _Publish(event, False), str(getattr(event, "id", "?")))


async def _request(flow: tl.Pid | str, message: _Publish, event_id: str) -> None:
    try:
        await request(flow, message, timeout=None)
    except tl.CallExitError as exc:
        if exc.reason == tl.SHUTDOWN:
            raise ShuttingDownError(event_id) from None
        raise


def subscribe(pattern: str) -> None:
    """Subscribe the calling process to events whose name matches ``pattern`` (fnmatch)."""
    SUBSCRIBERS.register(pattern)


async def statistics(flow: tl.Pid | str = FLOW) -> FlowStatistics:
    """Flow's counters and its pipelines' statistics."""
    result: FlowStatistics = await request(flow, ("statistics",))
    return result
