"""W3C trace context in event metadata and message envelopes.

Example::

    >>> import json
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    ...     InMemorySpanExporter,
    ... )
    >>> from thunderline.telemetry import configure, continue_from, inject, shutdown, span
    >>> exporter = InMemorySpanExporter()
    >>> _ = configure(exporter=exporter, batch=False, install_global=False)
    >>> with span("ingress"):
    ...     meta = inject({})
    >>> sorted(meta)
    ['span_id', 'trace_id', 'traceparent']
    >>> meta = json.loads(json.dumps(meta))  # survives serialization
    >>> with continue_from(meta), span("handle"):
    ...     pass
    >>> ingress, handle = exporter.get_finished_spans()
    >>> handle.parent.span_id == ingress.context.span_id
    True
    >>> shutdown()
    True

The carrier format is fixed to W3C ``traceparent``/``tracestate`` and W3C
``baggage``, whatever ``OTEL_PROPAGATORS`` says: it is part of the message
envelope and event metadata contract, read by other thunderline nodes.
:func:`inject` writes ``traceparent`` and also the pair ``trace_id`` +
``span_id`` (the names the seed's events use, handy for log queries). On
read, ``traceparent`` (with its flags) is authoritative; metadata with no
``traceparent`` but both ``trace_id`` (32 lowercase hex digits) and
``span_id`` (16) continues that trace as a sampled remote parent (the pair
carries no flags; one of the two alone is ignored), so events written by a
producer that only knows the seed's two keys stay in their trace.

Reading never raises. A missing ``traceparent`` gives a context without a
parent; a present but invalid one (wrong lengths, uppercase hex, all-zero
ids, version ``ff``, version ``00`` with extra fields, not a string) does the
same and is counted in ``statistics().malformed_contexts``. Invalid
``tracestate`` members are dropped one by one (counted in
``malformed_tracestates`` and ``dropped_tracestate_entries``) and never
invalidate a good ``traceparent``; members beyond the W3C limit of 32 are
dropped. Baggage over the W3C limits (180 pairs, 8192 bytes) is truncated on
write, so propagation never fails because of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from types import TracebackType
from typing import Any, TypeVar

from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from thunderline.telemetry._context import Attachments
from thunderline.telemetry._stats import COUNTERS

M = TypeVar("M", bound=MutableMapping[str, Any])

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
BAGGAGE = "baggage"
TRACE_ID = "trace_id"
SPAN_ID = "span_id"

_TRACECONTEXT = TraceContextTextMapPropagator()
_BAGGAGE = W3CBaggagePropagator()

# W3C trace-context tracestate member grammar (same as opentelemetry-api's).
_KEY = r"[a-z][_0-9a-z\-\*\/]{0,255}|[a-z0-9][_0-9a-z\-\*\/]{0,240}@[a-z][_0-9a-z\-\*\/]{0,13}"
_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER = re.compile(f"({_KEY})=({_VALUE})")
MAX_TRACESTATE_MEMBERS = 32
MAX_TRACESTATE_LENGTH = 8192  # what opentelemetry-python's extract accepts
_LONG_MEMBER = 128  # W3C: when truncating, drop members longer than this first


def _parse_tracestate(value: object) -> TraceState | None:
    """Parse a tracestate leniently: keep valid members, drop the rest."""
    if not isinstance(value, str):
        COUNTERS.add("malformed_tracestates")
        return None
    members: list[tuple[str, str]] = []
    seen: set[str] = set()
    invalid = 0
    over_limit = 0
    for raw in value.split(","):
        member = raw.strip(" \t")
        if not member:
            continue
        match = _MEMBER.fullmatch(member)
        if match is None or match.group(1) in seen:
            invalid += 1
            continue
        if len(members) == MAX_TRACESTATE_MEMBERS:
            over_limit += 1
            continue
        seen.add(match.group(1))
        members.append((match.group(1), match.group(2)))
    if invalid:
        COUNTERS.add("malformed_tracestates")
    if invalid or over_limit:
        COUNTERS.add("dropped_tracestate_entries", invalid + over_limit)
    return TraceState(members) if members else None


def _tracestate_header(state: TraceState) -> str | None:
    """Format a tracestate, truncating whole members to the length limit."""
    members = [f"{key}={value}" for key, value in state.items()]
    header = ",".join(members)
    if len(header) <= MAX_TRACESTATE_LENGTH:
        return header or None
    dropped = 0
    while len(",".join(members)) > MAX_TRACESTATE_LENGTH:
        long_ones = [i for i, member in enumerate(members) if len(member) > _LONG_MEMBER]
        del members[long_ones[-1] if long_ones else -1]
        dropped += 1
    COUNTERS.add("dropped_tracestate_entries", dropped)
    return ",".join(members) or None


def capture_carrier(context: Context | None = None) -> dict[str, str] | None:
    """Capture a context as a W3C carrier for a message envelope.

    Cheap when there is nothing to carry: one span lookup and one baggage
    lookup, then None. The flags written are the sampled and random-trace-id
    bits; reserved bits are always written as zero (W3C).

    Args:
        context: The context to capture; the current one by default.

    Returns:
        A new ``dict`` with ``traceparent`` (and ``tracestate`` when not
        empty) for a valid span context and ``baggage`` when there is any,
        or None when the context has neither.

    .. versionadded:: 0.1
    """
    span_context = trace.get_current_span(context).get_span_context()
    entries = baggage.get_all(context)
    if not span_context.is_valid and not entries:
        return None
    carrier: dict[str, str] = {}
    if span_context.is_valid:
        carrier[TRACEPARENT] = (
            f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
            f"{span_context.trace_flags & 0x03:02x}"
        )
        if span_context.trace_state:
            header = _tracestate_header(span_context.trace_state)
            if header:
                carrier[TRACESTATE] = header
    if entries:
        _BAGGAGE.inject(carrier, context=context)
    return carrier or None


def inject(
    meta: MutableMapping[str, Any], context: Context | None = None
) -> MutableMapping[str, Any]:
    """Write the current trace context into ``meta`` (an event's metadata).

    Writes ``traceparent``, ``trace_id`` and ``span_id`` (32 and 16 lowercase
    hex characters), ``tracestate`` when not empty and ``baggage`` when
    present. When the span context is valid, a stale ``tracestate`` already in
    ``meta`` is removed. With no valid span context nothing trace-related is
    written.

    Args:
        meta: The mapping to update in place; any ``MutableMapping`` whose
            values may be strings.
        context: The context to write; the current one by default.

    Returns:
        ``meta`` itself.

    .. versionadded:: 0.1
    """
    carrier = capture_carrier(context)
    if carrier is None:
        return meta
    if TRACEPARENT in carrier:
        meta.pop(TRACESTATE, None)
        traceparent = carrier[TRACEPARENT]
        meta[TRACE_ID] = traceparent[3:35]
        meta[SPAN_ID] = traceparent[36:52]
    meta.update(carrier)
    return meta


def extract(meta: Mapping[str, Any] | None, context: Context | None = None) -> Context:
    """Build a context from trace metadata or a carrier; never raises.

    Args:
        meta: A mapping holding ``traceparent`` (or, without it, the pair
            ``trace_id`` + ``span_id``) and optionally ``tracestate`` and
            ``baggage`` (other keys are ignored), or None.
        context: The context to add the remote parent and baggage to; an
            empty context by default, so nothing current leaks in.

    Returns:
        The context with the remote span context as current span (when
        ``traceparent`` is valid) and the baggage; use it as the ``context=``
        of a new span or attach it with :func:`continue_from`.

    .. versionadded:: 0.1
    """
    ctx = Context() if context is None else context
    if not meta:
        return ctx
    traceparent = meta.get(TRACEPARENT)
    if traceparent is None and TRACE_ID in meta and SPAN_ID in meta:
        traceparent = _pair_traceparent(meta.get(TRACE_ID), meta.get(SPAN_ID))
    if traceparent is not None:
        ctx = _extract_traceparent(traceparent, meta.get(TRACESTATE), ctx)
    baggage_header = meta.get(BAGGAGE)
    if isinstance(baggage_header, str) and baggage_header:
        ctx = _BAGGAGE.extract({BAGGAGE: baggage_header}, context=ctx)
    return ctx


_TRACE_ID_RE = re.compile(r"[0-9a-f]{32}")
_SPAN_ID_RE = re.compile(r"[0-9a-f]{16}")


def _pair_traceparent(trace_id: object, span_id: object) -> object:
    """The ``traceparent`` the seed's ``trace_id`` + ``span_id`` pair stands for (sampled).

    A malformed pair gives a value the traceparent check counts as malformed
    (a new trace starts); a lone ``trace_id`` or ``span_id`` is ignored.
    """
    if (
        isinstance(trace_id, str)
        and isinstance(span_id, str)
        and _TRACE_ID_RE.fullmatch(trace_id)
        and _SPAN_ID_RE.fullmatch(span_id)
    ):
        return f"00-{trace_id}-{span_id}-01"
    return False  # not a string: counted as malformed


def _extract_traceparent(traceparent: object, tracestate: object, ctx: Context) -> Context:
    if not isinstance(traceparent, str):
        COUNTERS.add("malformed_contexts")
        return ctx
    parsed = trace.get_current_span(_TRACECONTEXT.extract({TRACEPARENT: traceparent}))
    remote = parsed.get_span_context()
    if not remote.is_valid:
        COUNTERS.add("malformed_contexts")
        return ctx
    state = None if tracestate is None else _parse_tracestate(tracestate)
    if state is not None:
        remote = SpanContext(
            trace_id=remote.trace_id,
            span_id=remote.span_id,
            is_remote=True,
            trace_flags=remote.trace_flags,
            trace_state=state,
        )
        parsed = NonRecordingSpan(remote)
    return trace.set_span_in_context(parsed, ctx)


class ContextScope:
    """Run code inside an extracted context: ``with`` or ``async with``.

    Created by :func:`continue_from` and :func:`attach_carrier`. On entry the
    context is made current; on exit the previous context is restored, also
    after an exception or cancellation. The object may be entered again.

    .. versionadded:: 0.1
    """

    __slots__ = ("_attachments", "context")

    def __init__(self, context: Context) -> None:
        """Wrap ``context``.

        Args:
            context: The context to make current on entry.
        """
        self.context = context
        self._attachments: Attachments[None] = Attachments()

    def __enter__(self) -> Context:
        """Make the context current.

        Returns:
            The context that was made current.
        """
        self._attachments.attach(self.context, None)
        return self.context

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Restore the previous context; exceptions propagate.

        Args:
            exc_type: The type of the escaping exception, if any.
            exc: The escaping exception, if any.
            tb: Its traceback.
        """
        self._attachments.detach()

    async def __aenter__(self) -> Context:
        """Make the context current (same as ``__enter__``).

        Returns:
            The context that was made current.
        """
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Restore the previous context (same as ``__exit__``).

        Args:
            exc_type: The type of the escaping exception, if any.
            exc: The escaping exception, if any.
            tb: Its traceback.
        """
        self.__exit__(exc_type, exc, tb)


def continue_from(meta: Mapping[str, Any] | None) -> ContextScope:
    """Continue the trace recorded in ``meta`` for the code that follows.

    Spans started inside become children of the span that wrote ``meta``
    (with its sampled flag); baggage from ``meta`` is current. Malformed or
    missing trace context starts a new trace instead (never raises).

    Args:
        meta: Metadata written by :func:`inject` (possibly after a JSON round
            trip), metadata with only the seed's ``trace_id`` + ``span_id``,
            or None.

    Returns:
        A :class:`ContextScope` for ``with`` or ``async with``.

    .. versionadded:: 0.1
    """
    return ContextScope(extract(meta))


def attach_carrier(carrier: Mapping[str, str] | None) -> ContextScope:
    """Run code inside the context a message envelope carried.

    The counterpart of :func:`capture_carrier` for the receiving side of a
    message hop. A None carrier (the sender had no trace context) gives a
    clean context, so nothing from the receiver's previous message leaks in.

    Args:
        carrier: What :func:`capture_carrier` returned on the sending side.

    Returns:
        A :class:`ContextScope` for ``with`` or ``async with``.

    .. versionadded:: 0.1
    """
    return ContextScope(extract(carrier))
