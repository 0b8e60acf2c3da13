"""Daemon logging: text lines or one JSON object per line, with report fields and trace ids.

Supervisor reports (``supervisor``, ``context``, ``reason``, ``offender``) and
crash reports (``pid``, ``label``, ``reason``, ``traceback``) arrive as
``extra`` fields; the JSON formatter copies every such field into the object.
``trace_id`` / ``span_id`` appear when a filter (``thunderline.telemetry``'s
``TraceContextFilter``, installed on the handler by the daemon when tracing is
on) set them on the record.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, Final, TextIO

from thunderline.runtime import to_jsonable

__all__ = ["JsonFormatter", "TextFormatter", "setup_logging"]

#: Attributes every LogRecord has; anything else came from ``extra`` or a filter.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))
) | {"message", "asctime", "taskName"}
_TRACE: Final = ("trace_id", "span_id")


def _trace_suffix(record: logging.LogRecord) -> str:
    parts = [
        f"{key}={getattr(record, key)}" for key in _TRACE if getattr(record, key, None) is not None
    ]
    return (" " + " ".join(parts)) if parts else ""


class TextFormatter(logging.Formatter):
    """``time level logger: message [trace_id=.. span_id=..]``, then any traceback."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        first, newline, rest = text.partition("\n")
        return first + _trace_suffix(record) + newline + rest


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line.

    Keys: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, every
    ``extra`` field (values made JSON-safe: pids printed, other objects by
    ``repr``), ``trace_id``/``span_id`` when set, and ``exception`` with the
    formatted traceback when the record carries one.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key in entry or key in _TRACE:
                continue
            entry[key] = to_jsonable(value)
        for key in _TRACE:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def setup_logging(log_format: str, level: int, stream: TextIO | None = None) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (stderr) in ``log_format``.

    The root logger gets the handler; ``thunderline.supervisor`` is kept at
    INFO at least so applications can count restarts from its reports (the
    handler still filters by ``level``). With tracing on, the daemon adds the
    trace-id filter of ``thunderline.telemetry`` to the returned handler.

    Returns:
        The installed handler.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    supervisor = logging.getLogger("thunderline.supervisor")
    if supervisor.getEffectiveLevel() > logging.INFO:
        supervisor.setLevel(logging.INFO)
    return handler
