"""Span helpers: one object that is a sync/async context manager and a decorator.

Example::

    >>> from thunderline.telemetry import span, set_attributes, current_trace_id
    >>> with span("charge card", attributes={"order.id": "o-1"}):
    ...     set_attributes({"amount": 12})
    >>> @span("reserve stock")
    ... async def reserve(sku: str) -> bool:
    ...     return True

Every entry starts a new span as a child of the current context, makes it
current, and on exit restores the previous context and ends exactly that
span. An ``Exception`` escaping the block is recorded on the span (an
``exception`` event, status ERROR, attribute ``error.type``) and re-raised.
Cancellation and other ``BaseException`` s end the span without marking it
failed, and also propagate.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, cast, overload

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from thunderline.telemetry._context import Attachments
from thunderline.telemetry._state import STATE

P = ParamSpec("P")
R = TypeVar("R")

_STATUS_NAMES: dict[str, StatusCode] = {
    "unset": StatusCode.UNSET,
    "ok": StatusCode.OK,
    "error": StatusCode.ERROR,
}


def _start(
    name: str, attributes: Mapping[str, AttributeValue] | None, kind: SpanKind
) -> tuple[Span, Any]:
    new_span = STATE.tracer.start_span(name, kind=kind, attributes=attributes)
    return new_span, trace.set_span_in_context(new_span)


def _finish(ended: Span, exc: BaseException | None) -> None:
    if isinstance(exc, Exception) and ended.is_recording():
        ended.record_exception(exc, escaped=True)
        ended.set_attribute("error.type", type(exc).__qualname__)
        ended.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    ended.end()


class SpanScope:
    """A span to be started: context manager (sync and async) and decorator.

    Created by :func:`span`. Each ``with``/``async with`` entry and each call
    of a decorated function starts its own span, so one object can be reused,
    nested and entered from concurrent tasks.

    .. versionadded:: 0.1
    """

    __slots__ = ("_attachments", "attributes", "kind", "name")

    def __init__(
        self,
        name: str,
        *,
        attributes: Mapping[str, AttributeValue] | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> None:
        """Describe the span; nothing starts until entered or called.

        Args:
            name: The span name (low cardinality, e.g. ``"reserve stock"``).
            attributes: Attributes set when the span starts.
            kind: The OpenTelemetry span kind.
        """
        self.name = name
        self.attributes = dict(attributes) if attributes else None
        self.kind = kind
        self._attachments: Attachments[Span] = Attachments()

    def __repr__(self) -> str:
        return f"SpanScope({self.name!r}, kind={self.kind.name})"

    def __enter__(self) -> Span:
        """Start the span and make it current.

        Returns:
            The started span (for ``set_attribute``, ``add_event`` ...).
        """
        new_span, ctx = _start(self.name, self.attributes, self.kind)
        self._attachments.attach(ctx, new_span)
        return new_span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Restore the previous context and end the span this entry started.

        Args:
            exc_type: The type of the escaping exception, if any.
            exc: The escaping exception, if any; recorded, never suppressed.
            tb: Its traceback.
        """
        _finish(self._attachments.detach(), exc)

    async def __aenter__(self) -> Span:
        """Start the span and make it current (same as ``__enter__``).

        Returns:
            The started span.
        """
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Restore the previous context and end the span (same as ``__exit__``).

        Args:
            exc_type: The type of the escaping exception, if any.
            exc: The escaping exception, if any; recorded, never suppressed.
            tb: Its traceback.
        """
        self.__exit__(exc_type, exc, tb)

    @overload
    def __call__(
        self, fn: Callable[P, Awaitable[R]]
    ) -> Callable[P, Awaitable[R]]: ...  # pragma: no cover

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...  # pragma: no cover

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate ``fn`` so that every call runs inside a new span.

        Coroutine functions get an async wrapper whose span covers the whole
        awaited call; other callables get a sync wrapper.

        Args:
            fn: The function to wrap.

        Returns:
            The wrapper, with ``fn``'s name, docstring and signature.
        """
        if inspect.iscoroutinefunction(fn):
            async_fn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                async with self:
                    return await async_fn(*args, **kwargs)

            return async_wrapper

        @functools.wraps(fn)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            with self:
                return fn(*args, **kwargs)

        return sync_wrapper


def span(
    name: str,
    *,
    attributes: Mapping[str, AttributeValue] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> SpanScope:
    """Return a span usable as ``with``, ``async with`` or a decorator.

    Args:
        name: The span name (low cardinality, e.g. ``"reserve stock"``).
        attributes: Attributes set when the span starts.
        kind: The OpenTelemetry span kind (``opentelemetry.trace.SpanKind``).

    Returns:
        A :class:`SpanScope`; each entry or decorated call starts one span,
        records an escaping ``Exception`` with status ERROR and re-raises it,
        and ends exactly the span it started.

    .. versionadded:: 0.1
    """
    return SpanScope(name, attributes=attributes, kind=kind)


def add_event(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> None:
    """Add an event to the current span (nothing happens if none is recording).

    Args:
        name: The event name.
        attributes: The event's attributes.

    .. versionadded:: 0.1
    """
    trace.get_current_span().add_event(name, attributes=attributes)


def set_attributes(attributes: Mapping[str, AttributeValue]) -> None:
    """Set attributes on the current span (nothing happens if none is recording).

    Args:
        attributes: The attributes to set or overwrite.

    .. versionadded:: 0.1
    """
    trace.get_current_span().set_attributes(attributes)


def set_status(
    status: StatusCode | Literal["unset", "ok", "error"], description: str | None = None
) -> None:
    """Set the status of the current span (nothing happens if none is recording).

    Args:
        status: A ``StatusCode`` or one of ``"unset"``, ``"ok"``, ``"error"``.
        description: A description; OpenTelemetry keeps it only for ERROR.

    Raises:
        ValueError: If ``status`` is a string other than the three accepted.

    .. versionadded:: 0.1
    """
    if isinstance(status, str):
        try:
            code = _STATUS_NAMES[status]
        except KeyError:
            raise ValueError(
                f"status: expected a StatusCode or one of 'unset', 'ok', 'error'; "
                f"received {status!r}"
            ) from None
    else:
        code = status
    trace.get_current_span().set_status(
        Status(code, description if code is StatusCode.ERROR else None)
    )


def current_trace_id() -> str | None:
    """Return the current trace id as 32 lowercase hex characters.

    Returns:
        The trace id of the current span context, or None when there is no
        valid one.

    .. versionadded:: 0.1
    """
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x")


def current_span_id() -> str | None:
    """Return the current span id as 16 lowercase hex characters.

    Returns:
        The span id of the current span context, or None when there is no
        valid one.

    .. versionadded:: 0.1
    """
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.span_id, "016x")
