"""Gate: the ingress of the reference application.

:func:`publish` hands Gate the fields of a new event. Gate opens the
``gate.publish`` span (``thunderline.domain=gate``,
``thunderline.component=thunder_bridge``, ``event.name``) — continuing the
trace in ``meta["traceparent"]`` when the publisher passes one, else the
publisher's current trace, else starting a new one — injects that context
into the event's ``meta`` (``trace_id``, ``span_id``, ``traceparent``,
``parent_domain="gate"``), validates and builds the :class:`Event`, records
``gate.event_published`` and hands it to Flow.

Bad input never disturbs anything else: invalid fields raise one
:class:`~thunderline.domains.EventValidationError` listing every problem;
malformed trace metadata is replaced (a new trace starts, and telemetry
counts it); events Flow refuses raise
:class:`~thunderline.domains.flow.EventDroppedError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import attrs

import thunderline.runtime as tl
from thunderline import telemetry
from thunderline.domains import flow
from thunderline.domains._common import GATE, Failure, request
from thunderline.domains._event import TRACE_META_KEYS, Event, EventValidationError
from thunderline.domains._pipeline import PipelineOverloaded

__all__ = ["Gate", "gate_spec", "publish"]


@attrs.frozen
class _Publish:
    fields: dict[str, Any]
    wait: bool


@attrs.define
class _State:
    published: int = 0
    rejected: int = 0


class Gate(tl.Server[_State]):
    """The ingress actor. Start with :func:`gate_spec`."""

    async def init(self) -> tl.Ok[_State]:
        """Nothing to set up."""
        return tl.Ok(_State())

    async def handle_call(self, request: Any, from_: tl.From, state: _State) -> tl.Reply[_State]:
        """Build, trace and publish one event; answers it (or the error)."""
        if not isinstance(request, _Publish):
            return tl.Reply(Failure(ValueError(f"gate: unknown request {request!r}")), state)
        fields = dict(request.fields)
        meta = fields.get("meta")
        inbound = dict(meta) if isinstance(meta, Mapping) else {}
        parent: contextlib.AbstractContextManager[Any] = (
            telemetry.continue_from(inbound)
            if "traceparent" in inbound
            else contextlib.nullcontext()
        )
        try:
            with parent:
                event = await self._publish(fields, inbound, request.wait)
        except (
            EventValidationError,
            flow.EventDroppedError,
            PipelineOverloaded,
            tl.CallError,
        ) as exc:
            state.rejected += 1
            return tl.Reply(Failure(exc), state)
        state.published += 1
        return tl.Reply(event, state)

    async def _publish(self, fields: dict[str, Any], inbound: dict[str, Any], wait: bool) -> Event:
        with telemetry.span(
            "gate.publish",
            attributes={
                "thunderline.domain": "gate",
                "thunderline.component": "thunder_bridge",
                "event.name": str(fields.get("name")),
            },
        ):
            given = fields.get("meta")
            if given is None or isinstance(given, Mapping):
                meta = {k: v for k, v in inbound.items() if k not in TRACE_META_KEYS}
                telemetry.inject(meta)
                meta["parent_domain"] = "gate"
                fields["meta"] = meta
            # else: Event.new reports the non-mapping meta with the other problems
            event = Event.new(**fields)
            telemetry.add_event("gate.event_published", {"event.id": str(event.id)})
            if wait:
                await flow.publish(event)
            else:
                await flow.try_publish(event)
            return event


def gate_spec() -> tl.ChildSpec:
    """The Gate child spec (registered as ``thunderline.gate``)."""

    async def start() -> tl.Pid | None:
        return await tl.start_link(Gate(), name=GATE)

    return tl.ChildSpec(id="gate", start=start)


async def publish(
    name: str,
    *,
    type: str = "heartbeat",
    source: str = "gate",
    payload: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    priority: str = "normal",
    wait: bool = True,
    gate: tl.Pid | str = GATE,
) -> Event:
    """Publish a new event through Gate and return it (with its trace context in ``meta``).

    Raises:
        EventValidationError: the fields are invalid (every problem listed).
        EventDroppedError: Flow dropped the event.
        PipelineOverloaded: ``wait=False`` and the pipeline is full.
        CallError: Gate is not running.
    """
    fields: dict[str, Any] = {
        "name": name,
        "type": type,
        "source": source,
        "payload": payload,
        "meta": meta,
        "priority": priority,
    }
    event: Event = await request(gate, _Publish(fields, wait), timeout=None)
    return event
