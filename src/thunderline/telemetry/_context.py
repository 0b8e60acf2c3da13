"""Balanced attach/detach of OpenTelemetry contexts.

``opentelemetry.context.detach`` resets a ``ContextVar`` token and only *logs*
"Failed to detach context" when the token belongs to another
``contextvars.Context`` (an async generator finalized by another task, a
callback run elsewhere). :class:`Attachments` never gets there: alongside the
OpenTelemetry token it sets a private guard variable, and resetting the guard
token first tells whether we are still in the ``contextvars.Context`` that
attached. If so, the OpenTelemetry token is reset too (which cannot fail and
restores the context even if code inside attached without detaching); if not,
the attachment is abandoned (that other Context is not ours to change) and
counted in ``statistics().context_mismatches``.

One :class:`Attachments` object may be entered many times, nested or from
concurrent tasks: each exit releases the attachment made in its own Context.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Generic, TypeVar

from opentelemetry import context as otel_context

from thunderline.telemetry._stats import COUNTERS

_logger = logging.getLogger("thunderline.telemetry")

_GUARD: contextvars.ContextVar[object] = contextvars.ContextVar("thunderline_telemetry_guard")

T = TypeVar("T")


class _Entry(Generic[T]):
    __slots__ = ("guard_token", "otel_token", "payload")

    def __init__(
        self,
        payload: T,
        otel_token: contextvars.Token[otel_context.Context],
        guard_token: contextvars.Token[object],
    ) -> None:
        self.payload = payload
        self.otel_token = otel_token
        self.guard_token = guard_token


class Attachments(Generic[T]):
    """The live attachments made by one context-manager object."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: list[_Entry[T]] = []

    def attach(self, ctx: otel_context.Context, payload: T) -> None:
        """Make ``ctx`` current and remember ``payload`` with the attachment."""
        otel_token = otel_context.attach(ctx)
        guard_token = _GUARD.set(payload)
        self._entries.append(_Entry(payload, otel_token, guard_token))

    def detach(self) -> T:
        """Undo the attachment made in the current Context and return its payload.

        Falls back to the most recent attachment (without touching any context)
        when none was made in the current Context.
        """
        entries = self._entries
        for index in range(len(entries) - 1, -1, -1):
            entry = entries[index]
            try:
                _GUARD.reset(entry.guard_token)
            except (ValueError, RuntimeError):
                continue
            del entries[index]
            otel_context.detach(entry.otel_token)
            return entry.payload
        COUNTERS.add("context_mismatches")
        _logger.debug("telemetry context exited in a different contextvars.Context; not restored")
        return entries.pop().payload
