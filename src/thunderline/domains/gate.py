"""Gate: the ingress of the reference application.

:func:`publish` builds a new event from its fields in the calling process and
hands it to Flow, the durable intake: it returns only once the event is
committed in the ledger (see :mod:`~thunderline.domains.flow`). Building it
opens the ``gate.publish`` span (``thunderline.domain=gate``,
``thunderline.component=thunder_bridge``, ``event.name``), continuing the trace
in ``meta["traceparent"]`` when the publisher passes one, else the
publisher's current trace, else starting a new one; injects that context into
the event's ``meta`` (``trace_id``, ``span_id``, ``traceparent``,
``parent_domain="gate"``), validates and builds the :class:`Event`, hands it
to Flow and, once Flow has committed it, records ``gate.event_published``
(``event.id``). A refused event never gets ``gate.event_published``: invalid
fields record ``flow.event_dropped`` (``reason``) on ``gate.publish`` and mark
it ERROR; an event Flow refuses marks ``gate.publish`` ERROR with Flow's
error (Flow's own span holds ``flow.event_dropped``).

Gate is a library, not a process: validation and tracing run in the
publisher, so an event costs one call (to Flow) on its way in.

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

import thunderline.runtime as tl
from thunderline import telemetry
from thunderline.domains import flow
from thunderline.domains._common import DROPPED, FLOW, GATE_SPAN
from thunderline.domains._event import TRACE_META_KEYS, Event, EventValidationError

__all__ = ["publish"]


async def publish(
    name: str,
    *,
    type: str = "heartbeat",
    source: str = "gate",
    payload: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    priority: str = "normal",
    wait: bool = True,
    flow_server: tl.Pid | str = FLOW,
) -> Event:
    """Publish a new event and return it (with its trace context in ``meta``).

    Returns once the event is committed in the ledger. To retry after an
    error, publish the returned or raised event again with
    :func:`~thunderline.domains.flow.publish` (same id and content: idempotent).

    Raises:
        EventValidationError: the fields are invalid (every problem listed).
        EventDroppedError: Flow dropped the event.
        PipelineOverloaded: ``wait=False`` and the pipeline is full.
        ShuttingDownError: the application is shutting down.
        CallError: Flow is not running or died (the event may or may not be recorded).
    """
    fields: dict[str, Any] = {
        "name": name,
        "type": type,
        "source": source,
        "payload": payload,
        "meta": meta,
        "priority": priority,
    }
    inbound = dict(meta) if isinstance(meta, Mapping) else {}
    parent: contextlib.AbstractContextManager[Any] = (
        telemetry.continue_from(inbound)
        if "traceparent" in inbound or ("trace_id" in inbound and "span_id" in inbound)
        else contextlib.nullcontext()
    )
    with (
        parent,
        telemetry.span("gate.publish", attributes={**GATE_SPAN, "event.name": str(name)}),
    ):
        if meta is None or isinstance(meta, Mapping):
            built = {k: v for k, v in inbound.items() if k not in TRACE_META_KEYS}
            telemetry.inject(built)
            built["parent_domain"] = "gate"
            fields["meta"] = built
        # else: Event.new reports the non-mapping meta with the other problems
        try:
            event = Event.new(**fields)
        except EventValidationError as exc:
            telemetry.add_event(DROPPED, {"reason": str(exc)})
            raise  # the span records it: status ERROR
        telemetry.set_attributes({"event.id": str(event.id)})
        if wait:
            await flow.publish(event, flow=flow_server)
        else:
            await flow.try_publish(event, flow=flow_server)
        telemetry.add_event("gate.event_published", {"event.id": str(event.id)})
        return event
