"""Spans that outlive the code that started them (e.g. an append acknowledged later).

:func:`start_span` starts a span as a child of the current context *without*
making it current, so nothing has to be detached later; the caller ends it
with :meth:`DetachedSpan.end`, possibly in another callback of the same
process.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from thunderline.telemetry._state import STATE

__all__ = ["DetachedSpan", "start_span"]


class DetachedSpan:
    """A started span that is not current; end it exactly once with :meth:`end`."""

    __slots__ = ("_ended", "_span")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._ended = False

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set one attribute (ignored once ended or when not recording)."""
        if not self._ended:
            self._span.set_attribute(key, value)

    def add_event(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        """Add an event (ignored once ended)."""
        if not self._ended:
            self._span.add_event(name, attributes=attributes)

    def end(self, error: BaseException | None = None) -> None:
        """End the span; with ``error`` it is recorded and the status set to ERROR.

        Ending twice does nothing the second time.
        """
        if self._ended:
            return
        self._ended = True
        if error is not None and self._span.is_recording():
            self._span.record_exception(error)
            self._span.set_attribute("error.type", type(error).__qualname__)
            self._span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        self._span.end()

    @property
    def ended(self) -> bool:
        """True once :meth:`end` was called."""
        return self._ended


def start_span(
    name: str,
    *,
    attributes: Mapping[str, AttributeValue] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> DetachedSpan:
    """Start a child of the current context without making it current.

    Args:
        name: The span name.
        attributes: Attributes set at the start.
        kind: The span kind.

    Returns:
        A :class:`DetachedSpan` to end later.

    .. versionadded:: 0.1
    """
    return DetachedSpan(STATE.tracer.start_span(name, kind=kind, attributes=attributes))
