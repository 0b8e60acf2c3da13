"""Log correlation: trace and span ids on log records.

Example::

    >>> import logging
    >>> from thunderline.telemetry import install_log_correlation
    >>> handler = logging.StreamHandler()
    >>> handler.setFormatter(logging.Formatter("%(message)s trace=%(trace_id)s"))
    >>> _ = install_log_correlation(handler)
"""

from __future__ import annotations

import logging

from opentelemetry import trace


class TraceContextFilter(logging.Filter):
    """A logging filter that adds ``trace_id`` and ``span_id`` to records.

    While a valid span context is current the attributes are 32 and 16
    lowercase hex characters; otherwise they are None, so format strings
    using ``%(trace_id)s`` always work. Values already on the record (from
    ``extra=``) are kept. The filter never rejects a record.

    .. versionadded:: 0.1
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the ids to ``record``.

        Args:
            record: The log record.

        Returns:
            True (the record is always kept).
        """
        if getattr(record, "trace_id", None) is not None:
            return True
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        else:
            record.trace_id = None
            record.span_id = None
        return True


def install_log_correlation(
    target: logging.Handler | logging.Logger | None = None,
) -> TraceContextFilter:
    """Install a :class:`TraceContextFilter` on a handler or a logger's handlers.

    A filter on a handler sees every record the handler emits, including
    those propagated from child loggers, which a filter on a logger would
    not; so a logger target gets the filter on each of its current handlers.

    Args:
        target: A handler, or a logger whose handlers get the filter; the
            root logger by default.

    Returns:
        The installed filter (remove it with ``removeFilter``).

    .. versionadded:: 0.1
    """
    installed = TraceContextFilter()
    handlers: list[logging.Handler]
    if isinstance(target, logging.Handler):
        handlers = [target]
    else:
        handlers = list((target or logging.getLogger()).handlers)
    for handler in handlers:
        handler.addFilter(installed)
    return installed
