"""Bolt: runs the saga each event maps to, under the saga supervisor.

:func:`run` asks Bolt to run the saga registered for an event's name. Bolt
answers later (a deferred reply): it spawns a linked runner process per event
that opens the ``bolt.handle_event`` span, starts the saga under the saga
supervisor (registered as ``thunderline.sagas``, correlation id = the event
id, joining a run already going for that id), waits for the outcome and
replies. So Bolt itself is never blocked by a running saga.

Tracing. With :func:`saga_tracer` on the saga supervisor (the application's
``AppConfig.saga_instrument``), the saga shows as ``bolt.run_saga`` >
``bolt.saga_execution`` > one span per step attempt, with the span events
``bolt.saga_registered``, ``bolt.saga_started`` and ``bolt.saga_completed``.
Every Bolt span (``bolt.handle_event``, the saga's spans) carries
``thunderline.domain=bolt``, ``thunderline.component=sagas_supervisor``,
``saga.module`` (the saga's name) and ``saga.correlation_id`` (the event id).
The saga's spans continue the trace of the event in its input
(:attr:`~thunderline.domains.Event.trace_meta`), so they are in the event's
trace whether or not the runtime carries trace context in messages.

The demo's :data:`HEARTBEAT` saga persists the event to Vault and then
notifies Link; a step whose call fails because Vault or Link is restarting is
retried (with a short backoff), so a restart of either domain delays events
instead of losing them.

The application journals Bolt's sagas (``sagas.db`` in its data dir, events
encoded by :class:`EventJournalCodec`); :data:`HEARTBEAT` recovers by
``resume``: after a crash, a heartbeat that had not finished goes on (its
steps are idempotent by event id), and one that ended is not run again: an
event that reaches Bolt again after its saga ended (Flow asks again when Bolt
died before answering) is answered with :class:`SagaAlreadyEnded`, the
journaled outcome, and :func:`succeeded` reads it like a fresh one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

import thunderline.runtime as tl
from thunderline import sagas, telemetry
from thunderline.domains import link, vault
from thunderline.domains._common import (
    BOLT,
    BOLT_SPAN,
    LINK,
    SAGAS,
    VAULT,
    Address,
    Failure,
    event_context,
    request,
)
from thunderline.domains._event import Event

__all__ = [
    "DEFAULT_SAGAS",
    "HEARTBEAT",
    "Bolt",
    "EventJournalCodec",
    "SagaAlreadyEnded",
    "UnknownEventError",
    "bolt_spec",
    "heartbeat_saga",
    "run",
    "run_batch",
    "saga_tracer",
    "succeeded",
]


class UnknownEventError(tl.ThunderlineError, LookupError):
    """No saga is registered for the event's name."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"bolt: no saga for event {name!r} (known: {', '.join(known) or 'none'})")


async def _retry_when_unavailable(error: Exception, **_args: Any) -> sagas.Retry | None:
    """Retry a step whose domain was not reachable (restarting); fail on anything else,
    and at once when the domain's node is lost (``NOCONNECTION``: the event is committed
    there and Link relays it when the node is back)."""
    if isinstance(error, tl.CallExitError) and error.reason == tl.NOCONNECTION:
        return None
    if isinstance(error, tl.CallError):
        return sagas.Retry(error)
    return None


def heartbeat_saga(*, vault_at: Address = VAULT, link_at: Address = LINK) -> sagas.Saga:
    """The heartbeat saga: persist the event to Vault at ``vault_at``, then notify Link at
    ``link_at`` (registered names, ``(name, node)`` pairs or pids)."""

    async def persist(event: Event) -> dict[str, Any]:
        record = await vault.append(event, actor="bolt", vault=vault_at)
        return {"seq": record.seq, "hash": record.event_hash}

    async def notify(event: Event, seq: int) -> dict[str, Any]:
        delivered = await link.emit(event, seq, link=link_at)
        return {"seq": seq, "delivered": delivered}

    builder = sagas.SagaBuilder("heartbeat", inputs=["event"], recovery="resume")
    builder.step(
        "persist",
        persist,
        args={"event": sagas.Input("event")},
        compensate=_retry_when_unavailable,
        max_retries=20,
        backoff=0.05,
        timeout=30,
    )
    builder.step(
        "notify",
        notify,
        args={"event": sagas.Input("event"), "seq": sagas.StepResult("persist", "seq")},
        compensate=_retry_when_unavailable,
        max_retries=20,
        backoff=0.05,
        timeout=30,
    )
    return builder.build(returns="notify")


class EventJournalCodec(sagas.JournalCodec):
    """Journals :class:`Event` values as ``{"thunderline.event": event.to_dict()}``."""

    def default(self, value: Any) -> Any:
        """An event as its JSON object; anything else as the base codec decides."""
        if isinstance(value, Event):
            return {_EVENT_KEY: value.to_dict()}
        return super().default(value)

    def decode(self, text: str) -> Any:
        """JSON, with every journaled event rebuilt (and validated) by :meth:`Event.from_dict`."""
        return json.loads(text, object_hook=_event_hook)


_EVENT_KEY: Final = "thunderline.event"


def _event_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and _EVENT_KEY in obj:
        return Event.from_dict(obj[_EVENT_KEY])
    return obj


#: Persist to Vault, then notify Link.
HEARTBEAT: Final = heartbeat_saga()
#: The sagas Bolt runs by default, by event name.
DEFAULT_SAGAS: Final = {"system.heartbeat": HEARTBEAT}


@attrs.frozen
class SagaAlreadyEnded:
    """Bolt's answer for an event whose saga had already ended (journaled) when it came again.

    Attributes:
        event_id: The event (the saga's correlation id).
        outcome: The journaled outcome: ``"succeeded"``, ``"failed"`` or ``"halted"``
            (None if the journal holds a run that has not ended and is not running).
    """

    event_id: str
    outcome: str | None


#: What Bolt answers per event.
Outcome = sagas.SagaOutcome | SagaAlreadyEnded | Failure


def succeeded(outcome: Outcome) -> bool:
    """True if the event's saga succeeded, now or in a run that had already ended."""
    if isinstance(outcome, SagaAlreadyEnded):
        return outcome.outcome == "succeeded"
    return isinstance(outcome, sagas.SagaSucceeded)


async def _start_or_ended(
    supervisor: str, saga: sagas.Saga, event: Event
) -> sagas.SagaHandle | SagaAlreadyEnded:
    """Start (or join) the event's saga; its journaled outcome if it already ended."""
    try:
        return await sagas.start_saga(
            supervisor, saga, {"event": event}, correlation_id=str(event.id), on_duplicate="join"
        )
    except sagas.SagaAlreadyRanError as exc:
        return SagaAlreadyEnded(exc.correlation_id, exc.outcome)


@attrs.frozen
class _Run:
    event: Event


@attrs.frozen
class _RunBatch:
    events: tuple[Event, ...]


@attrs.define
class _State:
    runners: dict[tl.Pid, tl.From] = attrs.field(factory=dict)
    completed: int = 0
    failed: int = 0


def _span_attributes(event: Event, saga: sagas.Saga) -> dict[str, str]:
    return {
        **BOLT_SPAN,
        "saga.module": saga.name,
        "saga.correlation_id": str(event.id),
        "event.name": event.name,
    }


def _saga_attributes(run: sagas.SagaRunInfo) -> dict[str, str]:
    return {**BOLT_SPAN, "saga.module": run.saga.name}


def _saga_trace_parent(run: sagas.SagaRunInfo) -> Mapping[str, Any] | None:
    event = run.inputs.get("event")
    return event.trace_meta if isinstance(event, Event) else None


def _bolt_event_name(name: str) -> str:
    return f"bolt.{name}"


def saga_tracer(**kwargs: Any) -> telemetry.SagaTracer:
    """A :class:`~thunderline.telemetry.SagaTracer` with Bolt's names and attributes.

    Spans ``bolt.run_saga`` and ``bolt.saga_execution``, span events
    ``bolt.{event}`` (``bolt.saga_started``...), ``thunderline.domain=bolt``,
    ``thunderline.component=sagas_supervisor`` and ``saga.module`` on every
    span, each run continuing the trace of its input event. Pass it as the
    application's ``AppConfig.saga_instrument``; ``kwargs`` go to the tracer
    (e.g. ``tracer=``, ``current_steps=``).
    """
    return telemetry.SagaTracer(
        run_span="bolt.run_saga",
        execution_span="bolt.saga_execution",
        event_name=_bolt_event_name,
        attributes=_saga_attributes,
        trace_parent=_saga_trace_parent,
        **kwargs,
    )


async def _runner(event: Event, saga: sagas.Saga, supervisor: str) -> Outcome:
    correlation_id = str(event.id)
    attributes = _span_attributes(event, saga)
    with event_context(event), telemetry.span("bolt.handle_event", attributes=attributes):
        # The saga supervisor's tracer records bolt.run_saga > bolt.saga_execution
        # (with bolt.saga_registered / started / completed) below this span.
        handle = await _start_or_ended(supervisor, saga, event)
        if isinstance(handle, SagaAlreadyEnded):
            telemetry.set_attributes({"saga.outcome": f"already {handle.outcome}"})
            return handle
        outcome = await sagas.await_saga(supervisor, correlation_id)
        telemetry.set_attributes(
            {"saga.outcome": type(outcome).__name__, "saga.joined": handle.joined}
        )
        return outcome


async def _batch_runner(
    events: Sequence[Event], saga_map: dict[str, sagas.Saga], supervisor: str
) -> list[Outcome]:
    """Start every event's saga (each under its ``bolt.handle_event`` span), then await all."""
    started: list[tuple[Event, Outcome | None]] = []
    for event in events:
        saga = saga_map.get(event.name)
        if saga is None:
            known = tuple(sorted(saga_map))
            started.append((event, Failure(UnknownEventError(event.name, known))))
            continue
        with (
            telemetry.continue_from(event.trace_meta),
            telemetry.span("bolt.handle_event", attributes=_span_attributes(event, saga)),
        ):
            handle = await _start_or_ended(supervisor, saga, event)
            if isinstance(handle, SagaAlreadyEnded):
                telemetry.set_attributes({"saga.outcome": f"already {handle.outcome}"})
                started.append((event, handle))
                continue
            telemetry.set_attributes({"saga.joined": handle.joined})
        started.append((event, None))
    return [
        answer if answer is not None else await sagas.await_saga(supervisor, str(event.id))
        for event, answer in started
    ]


async def _run_and_reply(event: Event, saga: sagas.Saga, supervisor: str, bolt: tl.Pid) -> None:
    outcome = await _runner(event, saga, supervisor)
    tl.send(bolt, ("done", tl.current_pid(), outcome))


async def _batch_and_reply(
    events: tuple[Event, ...], saga_map: dict[str, sagas.Saga], supervisor: str, bolt: tl.Pid
) -> None:
    outcomes = await _batch_runner(events, saga_map, supervisor)
    tl.send(bolt, ("done", tl.current_pid(), outcomes))


class Bolt(tl.Server[_State]):
    """The saga-running actor. Start with :func:`bolt_spec`."""

    def __init__(self, saga_map: dict[str, sagas.Saga], supervisor: str = SAGAS) -> None:
        self.saga_map = dict(saga_map)
        self.supervisor = supervisor

    async def init(self) -> tl.Ok[_State]:
        """Trap exits: a runner that crashes fails its caller instead of Bolt."""
        tl.trap_exit(True)
        return tl.Ok(_State())

    async def handle_call(
        self, request: Any, from_: tl.From, state: _State
    ) -> tl.Reply[_State] | tl.NoReply[_State]:
        """Start a runner for the event and answer when its saga ended."""
        if isinstance(request, _RunBatch):
            runner = tl.spawn_link(
                _batch_and_reply, request.events, self.saga_map, self.supervisor, tl.current_pid()
            )
            state.runners[runner] = from_
            return tl.NoReply(state)
        if not isinstance(request, _Run):
            return tl.Reply(Failure(ValueError(f"bolt: unknown request {request!r}")), state)
        saga = self.saga_map.get(request.event.name)
        if saga is None:
            error = UnknownEventError(request.event.name, tuple(sorted(self.saga_map)))
            return tl.Reply(Failure(error), state)
        runner = tl.spawn_link(
            _run_and_reply, request.event, saga, self.supervisor, tl.current_pid()
        )
        state.runners[runner] = from_
        return tl.NoReply(state)

    async def handle_info(self, message: Any, state: _State) -> tl.NoReply[_State]:
        """Runner results and runner exits."""
        if isinstance(message, tuple) and message[:1] == ("done",):
            _, runner, outcome = message
            from_ = state.runners.pop(runner, None)
            if from_ is not None:
                for one in outcome if isinstance(outcome, list) else [outcome]:
                    if succeeded(one):
                        state.completed += 1
                    else:
                        state.failed += 1
                tl.reply(from_, outcome)
        elif isinstance(message, tl.Exit):
            from_ = state.runners.pop(message.pid, None)
            if from_ is not None:
                state.failed += 1
                error = sagas.SagaError(
                    f"bolt: saga runner {message.pid!r} died: {message.reason!r}"
                )
                tl.reply(from_, Failure(error))
        return tl.NoReply(state)


def bolt_spec(saga_map: dict[str, sagas.Saga] | None = None) -> tl.ChildSpec:
    """The Bolt child spec (registered as ``thunderline.bolt``)."""
    mapping = DEFAULT_SAGAS if saga_map is None else saga_map

    async def start() -> tl.Pid | None:
        return await tl.start_link(Bolt(mapping), name=BOLT)

    return tl.ChildSpec(id="bolt", start=start)


async def run(event: Event, *, bolt: tl.Pid | str = BOLT) -> sagas.SagaOutcome | SagaAlreadyEnded:
    """Run the saga mapped to ``event.name`` and return its outcome.

    If the event's saga had already ended (journaled), the answer is
    :class:`SagaAlreadyEnded` and nothing runs again.

    Raises:
        UnknownEventError: no saga for that event name.
        CallError: Bolt is not running.
    """
    outcome: sagas.SagaOutcome | SagaAlreadyEnded = await request(bolt, _Run(event), timeout=None)
    return outcome


async def run_batch(events: Sequence[Event], *, bolt: tl.Pid | str = BOLT) -> list[Outcome]:
    """Run each event's saga, concurrently; one outcome per event, in order.

    Each is a saga outcome, a :class:`SagaAlreadyEnded` (the event's saga had
    ended before: :func:`succeeded` reads both) or a ``Failure``.

    Raises:
        CallError: Bolt is not running or died.
    """
    outcomes: list[Outcome] = await request(bolt, _RunBatch(tuple(events)), timeout=None)
    return outcomes
