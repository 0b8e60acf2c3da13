"""Trace context that follows every message: the runtime's OpenTelemetry instrument.

Install it on a node and every send, cast, call and reply carries the
sender's trace context (a W3C carrier in the message envelope); the receiver
handles the message inside that context::

    from thunderline import telemetry
    import thunderline as tl

    telemetry.configure()
    tl.run(main, instrument=telemetry.RuntimeInstrument(hop_spans=True))

Between messages a process runs in a clean context: each message it takes
replaces the previous message's context, a message sent without trace
context is handled with none, and a restarted process starts from its
spawner's context again. Replies awaited inside ``call`` do not switch the
caller's context.

With ``hop_spans=True`` each hop also gets spans following the OpenTelemetry
messaging semantic conventions: a PRODUCER span ``{operation} {destination}``
on the send (``send``, ``cast``, ``call`` or ``reply``), ended at once, and a
CONSUMER span ``process {destination}`` around the handling, a child of the
producer span (or, with ``links=True``, a new trace linked to it). Both carry
``messaging.system="thunderline"``, ``messaging.operation.name``,
``messaging.destination.name`` and ``messaging.message.id``. Hop spans are
created only when the sender's trace context is valid and sampled, so
untraced or unsampled traffic costs a context lookup per message, not a span.
The sender and the receiver decide alike: a process whose current span has
ended (one spawned inside a span that finished since) still gets a producer
span, so every consumer span's ``messaging.message.id`` names a real
producer; a carrier with no message id (sent by something else) gives a
consumer span without that attribute, never an empty one. Hop spans can be
turned off for single processes with :meth:`RuntimeInstrument.quiet`.

A supervisor restart gets a ``restart {child id}`` span linked to the span
that was current in the child when it crashed.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Final

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode

from thunderline.runtime import BaseInstrument, Pid, is_quiet
from thunderline.telemetry._propagation import capture_carrier, extract
from thunderline.telemetry._state import STATE

__all__ = ["RuntimeInstrument"]

MESSAGING_SYSTEM: Final = "thunderline"
_CRASH_CONTEXTS_KEPT: Final = 1024
_EMPTY: Final = Context()
_MEMO_SIZE: Final = 256


class RuntimeInstrument(BaseInstrument):
    """The OpenTelemetry implementation of :class:`thunderline.runtime.Instrument`.

    Args:
        hop_spans: create PRODUCER/CONSUMER spans for every hop whose sender's
            span is recording (default False: propagation only).
        links: make consumer spans new traces linked to the producer instead
            of its children.
    """

    def __init__(self, *, hop_spans: bool = False, links: bool = False) -> None:
        self.hop_spans = hop_spans
        self.links = links
        self._quiet: set[Pid] = set()
        self._ids = itertools.count(1)
        self._crash_contexts: OrderedDict[Pid, SpanContext] = OrderedDict()
        # Small value memos: sends from one span context share one carrier (when
        # there is no baggage), and equal carriers parse to one Context, so the
        # W3C text is built and parsed once per span context, not per message.
        # Cached carriers are shared by many messages and never mutated.
        self._carriers: dict[tuple[int, int, int], dict[str, str]] = {}
        self._by_context: dict[int, tuple[Context, dict[str, str] | None]] = {}
        self._contexts: dict[tuple[str | None, ...], Context] = {}

    def _propagate(self) -> dict[str, str] | None:
        current = otel_context.get_current()
        if not current:  # an empty context: nothing to carry
            return None
        seen = self._by_context.get(id(current))
        if seen is not None and seen[0] is current:  # this very context was captured before
            return seen[1]
        carrier = self._capture(current)
        if len(self._by_context) >= _MEMO_SIZE:
            self._by_context.clear()
        self._by_context[id(current)] = (current, carrier)
        return carrier

    def _capture(self, current: Context) -> dict[str, str] | None:
        span_context = trace.get_current_span(current).get_span_context()
        if not span_context.is_valid or span_context.trace_state or baggage.get_all(current):
            return capture_carrier(current)
        key = (span_context.trace_id, span_context.span_id, span_context.trace_flags)
        carrier = self._carriers.get(key)
        if carrier is None:
            carrier = capture_carrier(current)
            if carrier is None:
                return None
            if len(self._carriers) >= _MEMO_SIZE:
                self._carriers.clear()
            self._carriers[key] = carrier
        return carrier

    def quiet(self, pid: Pid, quiet: bool = True) -> None:
        """Turn hop spans off (or back on) for messages sent to or by ``pid``."""
        if quiet:
            self._quiet.add(pid)
        else:
            self._quiet.discard(pid)

    # ------------------------------------------------------------------ send

    def capture(self, sender: Pid | None, dest: Pid, dest_label: str, operation: str) -> Any:
        """Capture the sender's context; with hop spans, inside a PRODUCER span."""
        if not self.hop_spans or dest in self._quiet or sender in self._quiet:
            return self._propagate()
        sender_context = trace.get_current_span().get_span_context()
        if not (sender_context.is_valid and sender_context.trace_flags.sampled):
            return self._propagate()
        message_id = f"{dest!r}-{next(self._ids)}"
        producer = STATE.tracer.start_span(
            f"{operation} {dest_label}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.operation.name": operation,
                "messaging.operation.type": "send",
                "messaging.destination.name": dest_label,
                "messaging.message.id": message_id,
            },
        )
        carrier = capture_carrier(trace.set_span_in_context(producer))
        producer.end()
        if carrier is not None:
            carrier["thunderline-message-id"] = message_id
        return carrier

    # --------------------------------------------------------------- receive

    def message_received(self, pid: Pid, label: str, carrier: Any) -> Any:
        """Attach the carried context (a clean one for bare messages)."""
        if not carrier:
            if not otel_context.get_current():
                return None  # already clean: nothing to attach or detach
            ctx = _EMPTY
        else:
            key = (carrier.get("traceparent"), carrier.get("tracestate"), carrier.get("baggage"))
            memo = self._contexts.get(key)
            if memo is None:
                memo = extract(carrier, _EMPTY)
                if len(self._contexts) >= _MEMO_SIZE:
                    self._contexts.clear()
                self._contexts[key] = memo
            ctx = memo
        consumer: Span | None = None
        if self.hop_spans and carrier and pid not in self._quiet:
            parent = trace.get_current_span(ctx).get_span_context()
            if parent.is_valid and parent.trace_flags.sampled:
                attributes = {
                    "messaging.system": MESSAGING_SYSTEM,
                    "messaging.operation.name": "process",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": label,
                }
                message_id = carrier.get("thunderline-message-id")
                if isinstance(message_id, str) and message_id:
                    attributes["messaging.message.id"] = message_id
                if self.links:
                    consumer = STATE.tracer.start_span(
                        f"process {label}",
                        context=_EMPTY,
                        kind=SpanKind.CONSUMER,
                        attributes=attributes,
                        links=[Link(parent)],
                    )
                else:
                    consumer = STATE.tracer.start_span(
                        f"process {label}",
                        context=ctx,
                        kind=SpanKind.CONSUMER,
                        attributes=attributes,
                    )
                ctx = trace.set_span_in_context(consumer, ctx)
        token = otel_context.attach(ctx)
        return (token, consumer)

    def message_done(self, pid: Pid, token: Any) -> None:
        """End the consumer span (if any) and restore the context from before the message."""
        if token is None:
            return
        otel_token, consumer = token
        if consumer is not None:
            consumer.end()
        otel_context.detach(otel_token)

    # --------------------------------------------------------- exits, restarts

    def process_exited(self, pid: Pid, reason: Any) -> None:
        """Remember the crash's span context (for the restart link) and mark the span failed."""
        self._quiet.discard(pid)
        if is_quiet(reason):
            return
        current = trace.get_current_span()
        span_context = current.get_span_context()
        if current.is_recording():
            current.set_status(Status(StatusCode.ERROR, f"process exited: {reason!r}"))
            current.set_attribute("error.type", type(reason).__qualname__)
        if span_context.is_valid:
            self._crash_contexts[pid] = span_context
            while len(self._crash_contexts) > _CRASH_CONTEXTS_KEPT:
                self._crash_contexts.popitem(last=False)

    def child_restarted(
        self,
        supervisor: Pid,
        child_id: Hashable,
        old_pid: Pid | None,
        new_pid: Pid | None,
        reason: Any,
    ) -> None:
        """Record a ``restart {child_id}`` span linked to the crash."""
        crash = self._crash_contexts.pop(old_pid, None) if old_pid is not None else None
        restart = STATE.tracer.start_span(
            f"restart {child_id}",
            context=Context(),
            kind=SpanKind.INTERNAL,
            links=[Link(crash)] if crash is not None else None,
            attributes={
                "thunderline.supervisor": repr(supervisor),
                "thunderline.child.id": str(child_id),
                "thunderline.child.old_pid": repr(old_pid),
                "thunderline.child.new_pid": repr(new_pid),
                "thunderline.exit.reason": repr(reason),
            },
        )
        restart.end()
