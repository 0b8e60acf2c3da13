"""The event that travels Gate -> Flow -> Bolt -> Vault -> Link.

Build events with :meth:`Event.new`, which checks every field and reports every
problem at once::

    >>> event = Event.new(
    ...     "system.heartbeat", type="heartbeat", source="gate", payload={"beat": 1}
    ... )
    >>> Event.from_json(event.to_json()) == event
    True
    >>> Event.new("Bad Name", type="t", source="x")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    thunderline.domains._event.EventValidationError: invalid event: 2 problems

Field rules (the constants below hold the limits):

* ``id``: a :class:`uuid.UUID` (a fresh ``uuid4`` by default).
* ``name``: two or more dot-separated lowercase words (``[a-z][a-z0-9_]*``), at
  most :data:`MAX_NAME_LENGTH` characters, like ``system.heartbeat``.
* ``type``: one lowercase word (``[a-z][a-z0-9_]*``) of at most
  :data:`MAX_TYPE_LENGTH` characters, like ``heartbeat`` or ``command``.
* ``source``: one of :data:`DOMAIN_SOURCES` or an external source declared with
  :func:`declare_source`.
* ``payload``: a mapping with ``str`` keys whose canonical JSON (see
  :mod:`thunderline.domains._ledger._canonical`) is at most ``max_payload_bytes``
  (default :data:`DEFAULT_MAX_PAYLOAD_BYTES`, 256 KiB).
* ``meta``: a mapping with ``str`` keys and JSON values. The reserved keys are
  checked: ``trace_id`` (32 lowercase hex digits, not all zero), ``span_id``
  (16, not all zero), ``traceparent`` (W3C ``00-<trace_id>-<span_id>-<flags>``,
  whose trace id and span id must agree with ``trace_id``/``span_id`` when both
  are given), ``tracestate`` (a string of at most 512 characters),
  ``parent_domain`` (a source) and ``pipeline`` (a non-empty string of at most
  128 characters). Any other key is free.
* ``priority``: :class:`Priority` (``low``, ``normal``, ``high``).
* ``occurred_at``: a timezone-aware datetime, stored in UTC (now by default).

Events are immutable: ``payload`` and ``meta`` are deep-frozen (mappings become
read-only mapping proxies, lists become tuples); :meth:`Event.to_dict` thaws them.
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
import threading
import types
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from thunderline.domains._ledger._canonical import CanonicalizationError, canonicalize, parse_json
from thunderline.runtime import ThunderlineError

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DOMAIN_SOURCES",
    "EVENT_FIELDS",
    "MAX_NAME_LENGTH",
    "MAX_TYPE_LENGTH",
    "TRACE_META_KEYS",
    "Event",
    "EventProblem",
    "EventValidationError",
    "Priority",
    "declare_source",
    "declared_sources",
]

#: The five domains of the reference application, always valid sources.
DOMAIN_SOURCES: frozenset[str] = frozenset({"gate", "flow", "bolt", "vault", "link"})

#: Longest accepted event name.
MAX_NAME_LENGTH = 255

#: Longest accepted event type.
MAX_TYPE_LENGTH = 64

#: Default bound on the canonical JSON size of a payload: 256 KiB.
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024

#: Meta keys that carry W3C trace context and are format-checked.
TRACE_META_KEYS: frozenset[str] = frozenset({"trace_id", "span_id", "traceparent", "tracestate"})

#: The keys of :meth:`Event.to_dict`, in order.
EVENT_FIELDS: tuple[str, ...] = (
    "id",
    "name",
    "type",
    "source",
    "payload",
    "meta",
    "priority",
    "occurred_at",
)

_WORD = r"[a-z][a-z0-9_]*"
_NAME_RE = re.compile(rf"{_WORD}(?:\.{_WORD})+")
_TYPE_RE = re.compile(_WORD)
_SOURCE_RE = re.compile(rf"{_WORD}(?:[.-]{_WORD})*")
_TRACE_ID_RE = re.compile(r"[0-9a-f]{32}")
_SPAN_ID_RE = re.compile(r"[0-9a-f]{16}")
_TRACEPARENT_RE = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_MAX_SOURCE_LENGTH = 64
_MAX_TRACESTATE_LENGTH = 512
_MAX_PIPELINE_LENGTH = 128
_TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")

_sources_lock = threading.Lock()
_external_sources: set[str] = set()


class Priority(enum.Enum):
    """How urgently an event should be handled.

    .. versionadded:: 0.1
    """

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


@attrs.frozen
class EventProblem:
    """One thing wrong with an event.

    Attributes:
        field: The field at fault (``payload``, ``meta.trace_id`` ...).
        expected: What the field accepts.
        received: A short description of what was given.

    .. versionadded:: 0.1
    """

    field: str
    expected: str
    received: str

    def __str__(self) -> str:
        return f"{self.field}: expected {self.expected}, got {self.received}"


class EventValidationError(ThunderlineError, ValueError):
    """An event failed validation; lists every problem found, not just the first.

    Attributes:
        problems: One :class:`EventProblem` per invalid field.

    .. versionadded:: 0.1
    """

    def __init__(self, problems: Iterable[EventProblem]) -> None:
        self.problems: tuple[EventProblem, ...] = tuple(problems)
        count = len(self.problems)
        listed = "; ".join(str(problem) for problem in self.problems)
        super().__init__(f"invalid event: {count} problem{'s' if count != 1 else ''}: {listed}")

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of the fields at fault, in the order they were checked."""
        return tuple(problem.field for problem in self.problems)


def declare_source(name: str) -> None:
    """Declare an external event source (besides the five domains).

    Declaring is idempotent and process-wide; it is safe from any thread.

    Args:
        name: Lowercase words joined by ``.`` or ``-`` (like ``sensor.gps``), at
            most 64 characters.

    Raises:
        EventValidationError: The name has the wrong shape.

    .. versionadded:: 0.1
    """
    problem = _check_source_name(name)
    if problem is not None:
        raise EventValidationError([problem])
    with _sources_lock:
        _external_sources.add(name)


def declared_sources() -> frozenset[str]:
    """Return every valid source: the five domains and the declared external ones.

    .. versionadded:: 0.1
    """
    with _sources_lock:
        return DOMAIN_SOURCES | frozenset(_external_sources)


def _describe(value: object) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{type(value).__name__} {shown}"


def _check_source_name(name: object) -> EventProblem | None:
    if (
        not isinstance(name, str)
        or len(name) > _MAX_SOURCE_LENGTH
        or not _SOURCE_RE.fullmatch(name)
    ):
        return EventProblem(
            "source",
            "lowercase words joined by '.' or '-', at most "
            f"{_MAX_SOURCE_LENGTH} characters (like 'sensor.gps')",
            _describe(name),
        )
    return None


def _format_timestamp(when: _dt.datetime) -> str:
    # isoformat pads the year to four digits (strftime's %Y does not everywhere).
    return when.astimezone(_dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return types.MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    return value


def _check_json_mapping(
    field: str, value: object, problems: list[EventProblem]
) -> tuple[Mapping[str, Any] | None, int]:
    """Check that value is a JSON object; return it and its canonical size."""
    if not isinstance(value, Mapping):
        problems.append(
            EventProblem(field, "a mapping with str keys and JSON values", _describe(value))
        )
        return None, 0
    try:
        size = len(canonicalize(value))
    except CanonicalizationError as exc:
        path = field + exc.path[1:]
        problems.append(
            EventProblem(
                path,
                f"a JSON-serializable value (I-JSON: {exc.reason})",
                _describe(exc.value),
            )
        )
        return None, 0
    return value, size


def _check_meta(
    meta: Mapping[str, Any], sources: frozenset[str], problems: list[EventProblem]
) -> None:
    trace_id = meta.get("trace_id")
    span_id = meta.get("span_id")
    if "trace_id" in meta and (
        not isinstance(trace_id, str)
        or not _TRACE_ID_RE.fullmatch(trace_id)
        or trace_id == "0" * 32
    ):
        problems.append(
            EventProblem(
                "meta.trace_id", "32 lowercase hex digits, not all zero", _describe(trace_id)
            )
        )
        trace_id = None
    if "span_id" in meta and (
        not isinstance(span_id, str) or not _SPAN_ID_RE.fullmatch(span_id) or span_id == "0" * 16
    ):
        problems.append(
            EventProblem(
                "meta.span_id", "16 lowercase hex digits, not all zero", _describe(span_id)
            )
        )
        span_id = None
    if "traceparent" in meta:
        traceparent = meta["traceparent"]
        match = _TRACEPARENT_RE.fullmatch(traceparent) if isinstance(traceparent, str) else None
        if match is None or match[1] == "0" * 32 or match[2] == "0" * 16:
            problems.append(
                EventProblem(
                    "meta.traceparent",
                    "a W3C traceparent '00-<32 hex trace id>-<16 hex span id>-<2 hex flags>' "
                    "with non-zero ids",
                    _describe(traceparent),
                )
            )
        else:
            if isinstance(trace_id, str) and match[1] != trace_id:
                problems.append(
                    EventProblem(
                        "meta.traceparent",
                        f"the same trace id as meta.trace_id ({trace_id})",
                        _describe(traceparent),
                    )
                )
            if isinstance(span_id, str) and match[2] != span_id:
                problems.append(
                    EventProblem(
                        "meta.traceparent",
                        f"the same span id as meta.span_id ({span_id})",
                        _describe(traceparent),
                    )
                )
    if "tracestate" in meta:
        tracestate = meta["tracestate"]
        if not isinstance(tracestate, str) or len(tracestate) > _MAX_TRACESTATE_LENGTH:
            problems.append(
                EventProblem(
                    "meta.tracestate",
                    f"a string of at most {_MAX_TRACESTATE_LENGTH} characters",
                    _describe(tracestate),
                )
            )
    if "parent_domain" in meta and meta["parent_domain"] not in sources:
        problems.append(
            EventProblem(
                "meta.parent_domain",
                f"one of {sorted(sources)}",
                _describe(meta["parent_domain"]),
            )
        )
    if "pipeline" in meta:
        pipeline = meta["pipeline"]
        if not isinstance(pipeline, str) or not 0 < len(pipeline) <= _MAX_PIPELINE_LENGTH:
            problems.append(
                EventProblem(
                    "meta.pipeline",
                    f"a non-empty string of at most {_MAX_PIPELINE_LENGTH} characters",
                    _describe(pipeline),
                )
            )


@attrs.frozen(eq=False)
class Event:
    """An immutable, validated event.

    Construct with :meth:`new` (or :meth:`from_dict`/:meth:`from_json`), which
    validate; the attrs ``__init__`` does not. Two events are equal when every
    field is equal; the hash is the id's.

    Attributes:
        id: Unique id of the event.
        name: Dotted lowercase words, like ``system.heartbeat``.
        type: One lowercase word, like ``heartbeat``.
        source: The domain or declared external source that produced it.
        payload: The event's data (deep-frozen JSON object).
        meta: Trace context (``trace_id``, ``span_id``, ``traceparent``,
            ``tracestate``), ``parent_domain``, ``pipeline`` and free keys
            (deep-frozen JSON object).
        priority: How urgently to handle it.
        occurred_at: When it happened, timezone-aware UTC.

    .. versionadded:: 0.1
    """

    id: uuid.UUID
    name: str
    type: str
    source: str
    payload: Mapping[str, Any]
    meta: Mapping[str, Any]
    priority: Priority
    occurred_at: _dt.datetime
    #: The canonical bytes, computed on first use (the event is immutable).
    _canonical: bytes | None = attrs.field(default=None, init=False, repr=False)
    #: Trace context carried in memory beside the content (see :meth:`with_trace`).
    _carried_trace: Mapping[str, str] | None = attrs.field(default=None, init=False, repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (
            self.id == other.id
            and self.name == other.name
            and self.type == other.type
            and self.source == other.source
            and self.priority == other.priority
            and self.occurred_at == other.occurred_at
            and _thaw(self.payload) == _thaw(other.payload)
            and _thaw(self.meta) == _thaw(other.meta)
        )

    def __hash__(self) -> int:
        return hash(self.id)

    @classmethod
    def new(
        cls,
        name: object,
        *,
        type: object,
        source: object,
        payload: object = None,
        meta: object = None,
        priority: object = Priority.NORMAL,
        occurred_at: object = None,
        id: object = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> Event:
        """Validate the fields and build an event.

        Args:
            name: Dotted lowercase words, like ``system.heartbeat``.
            type: One lowercase word, like ``heartbeat``.
            source: A domain (``gate``, ``flow``, ``bolt``, ``vault``, ``link``)
                or a source declared with :func:`declare_source`.
            payload: A JSON object (mapping); ``None`` means ``{}``.
            meta: A JSON object with the trace context and other keys; ``None``
                means ``{}``.
            priority: A :class:`Priority` or its value (``"low"``, ``"normal"``,
                ``"high"``).
            occurred_at: A timezone-aware datetime (converted to UTC); ``None``
                means now.
            id: A :class:`uuid.UUID` or its string form; ``None`` means a fresh
                ``uuid4``.
            max_payload_bytes: Bound on the payload's canonical JSON size.

        Returns:
            The event.

        Raises:
            EventValidationError: Listing every invalid field, what it accepts
                and what it got.

        .. versionadded:: 0.1
        """
        problems: list[EventProblem] = []
        sources = declared_sources()

        event_id: uuid.UUID | None = None
        if id is None:
            event_id = uuid.uuid4()
        elif isinstance(id, uuid.UUID):
            event_id = id
        elif isinstance(id, str):
            try:
                event_id = uuid.UUID(id)
            except ValueError:
                pass
            else:
                if str(event_id) != id:
                    event_id = None  # only the canonical 8-4-4-4-12 lowercase form
        if event_id is None:
            problems.append(
                EventProblem(
                    "id", "a UUID or its canonical lowercase 8-4-4-4-12 string", _describe(id)
                )
            )

        if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _NAME_RE.fullmatch(name):
            problems.append(
                EventProblem(
                    "name",
                    "two or more dot-separated lowercase words ([a-z][a-z0-9_]*), at most "
                    f"{MAX_NAME_LENGTH} characters (like 'system.heartbeat')",
                    _describe(name),
                )
            )
        if not isinstance(type, str) or len(type) > MAX_TYPE_LENGTH or not _TYPE_RE.fullmatch(type):
            problems.append(
                EventProblem(
                    "type",
                    f"one lowercase word ([a-z][a-z0-9_]*), at most {MAX_TYPE_LENGTH} characters",
                    _describe(type),
                )
            )
        if not isinstance(source, str) or source not in sources:
            problems.append(
                EventProblem(
                    "source",
                    f"one of {sorted(sources)} (declare others with declare_source)",
                    _describe(source),
                )
            )

        checked_payload, size = _check_json_mapping(
            "payload", {} if payload is None else payload, problems
        )
        if checked_payload is not None and size > max_payload_bytes:
            problems.append(
                EventProblem(
                    "payload",
                    f"at most {max_payload_bytes} bytes of canonical JSON",
                    f"{size} bytes",
                )
            )
            checked_payload = None
        checked_meta, _ = _check_json_mapping("meta", {} if meta is None else meta, problems)
        if checked_meta is not None:
            _check_meta(checked_meta, sources, problems)

        checked_priority: Priority | None = None
        if isinstance(priority, Priority):
            checked_priority = priority
        elif isinstance(priority, str):
            try:
                checked_priority = Priority(priority)
            except ValueError:
                pass
        if checked_priority is None:
            problems.append(
                EventProblem(
                    "priority",
                    "one of 'low', 'normal', 'high' (or a Priority)",
                    _describe(priority),
                )
            )

        when: _dt.datetime | None = None
        if occurred_at is None:
            when = _dt.datetime.now(_dt.UTC)
        elif isinstance(occurred_at, _dt.datetime) and occurred_at.utcoffset() is not None:
            when = occurred_at.astimezone(_dt.UTC)
        else:
            problems.append(
                EventProblem("occurred_at", "a timezone-aware datetime", _describe(occurred_at))
            )

        if problems:
            raise EventValidationError(problems)
        assert event_id is not None
        assert checked_payload is not None
        assert checked_meta is not None
        assert checked_priority is not None
        assert when is not None
        assert isinstance(name, str)
        assert isinstance(type, str)
        assert isinstance(source, str)
        return cls(
            id=event_id,
            name=name,
            type=type,
            source=source,
            payload=_freeze(checked_payload),
            meta=_freeze(checked_meta),
            priority=checked_priority,
            occurred_at=when,
        )

    @property
    def trace_context(self) -> dict[str, str]:
        """The W3C trace-context keys present in :attr:`meta`, as a carrier dict.

        .. versionadded:: 0.1
        """
        return {key: value for key, value in self.meta.items() if key in TRACE_META_KEYS}

    @property
    def trace_meta(self) -> Mapping[str, Any]:
        """The trace context the domains continue for this event.

        The trace keys of :attr:`meta` when it holds a context (``traceparent``,
        or the pair ``trace_id`` + ``span_id``), else the context carried in
        memory by :meth:`with_trace`, else an empty mapping (a new trace).
        Pass it to :func:`thunderline.telemetry.continue_from`.

        .. versionadded:: 0.1
        """
        if "traceparent" in self.meta or ("trace_id" in self.meta and "span_id" in self.meta):
            return self.trace_context
        return self._carried_trace or {}

    def with_trace(self, carrier: Mapping[str, str]) -> Event:
        """A copy of this event carrying ``carrier`` (a W3C carrier) as its trace, in memory.

        The carried context is not content: it is not in :meth:`to_dict`, the
        canonical bytes, equality or the ledger, so publishing the event again
        stays idempotent. It is used only when :attr:`meta` has no trace
        context of its own (see :attr:`trace_meta`). Flow gives an event
        published without trace context its ``flow.publish_event`` span this
        way, so the domains after Flow continue that trace.

        .. versionadded:: 0.1
        """
        copy = attrs.evolve(self)
        object.__setattr__(copy, "_carried_trace", dict(carrier))
        return copy

    def to_dict(self) -> dict[str, Any]:
        """Return the event as a JSON object (plain dicts, lists and strings).

        ``occurred_at`` is ISO 8601 UTC with microseconds and a ``Z``; ``id`` is
        the lowercase UUID string; ``priority`` its value.

        .. versionadded:: 0.1
        """
        return {
            "id": str(self.id),
            "name": self.name,
            "type": self.type,
            "source": self.source,
            "payload": _thaw(self.payload),
            "meta": _thaw(self.meta),
            "priority": self.priority.value,
            "occurred_at": _format_timestamp(self.occurred_at),
        }

    def canonical_bytes(self) -> bytes:
        """Return the canonical JSON (RFC 8785 style) bytes of :meth:`to_dict`.

        Computed once per event and kept (the event is immutable).

        .. versionadded:: 0.1
        """
        cached = self._canonical
        if cached is None:
            cached = canonicalize(self.to_dict())
            object.__setattr__(self, "_canonical", cached)
        return cached

    def to_json(self) -> str:
        """Return the canonical JSON text of the event; :meth:`from_json` inverts it.

        .. versionadded:: 0.1
        """
        return self.canonical_bytes().decode("utf-8")

    @classmethod
    def from_dict(
        cls, data: object, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    ) -> Event:
        """Validate a JSON object produced by :meth:`to_dict` and rebuild the event.

        Args:
            data: A mapping with exactly the keys of :data:`EVENT_FIELDS`.
            max_payload_bytes: Bound on the payload's canonical JSON size.

        Returns:
            The event, equal to the one that produced ``data``.

        Raises:
            EventValidationError: Listing missing and unknown keys and every
                invalid field.

        .. versionadded:: 0.1
        """
        if not isinstance(data, Mapping):
            raise EventValidationError(
                [EventProblem("event", "a JSON object with the event fields", _describe(data))]
            )
        problems: list[EventProblem] = []
        for key in EVENT_FIELDS:
            if key not in data:
                problems.append(EventProblem(key, "a value (the key is required)", "nothing"))
        for key in data:
            if key not in EVENT_FIELDS:
                problems.append(
                    EventProblem(
                        str(key), f"no such key (allowed: {list(EVENT_FIELDS)})", "a value"
                    )
                )
        stamp = data.get("occurred_at")
        occurred_at: object = stamp
        if isinstance(stamp, str) and _TIMESTAMP_RE.fullmatch(stamp):
            try:
                occurred_at = _dt.datetime.fromisoformat(stamp)
            except ValueError:
                occurred_at = stamp
        elif "occurred_at" in data:
            problems.append(
                EventProblem(
                    "occurred_at",
                    "an ISO 8601 UTC timestamp 'YYYY-MM-DDTHH:MM:SS.ffffffZ'",
                    _describe(stamp),
                )
            )
            occurred_at = None
        try:
            event = cls.new(
                data.get("name"),
                type=data.get("type"),
                source=data.get("source"),
                payload=data.get("payload"),
                meta=data.get("meta"),
                priority=data.get("priority"),
                occurred_at=occurred_at,
                id=data.get("id", ""),
                max_payload_bytes=max_payload_bytes,
            )
        except EventValidationError as exc:
            problems.extend(p for p in exc.problems if p.field not in {q.field for q in problems})
            raise EventValidationError(problems) from None
        if problems:
            raise EventValidationError(problems)
        return event

    @classmethod
    def from_json(
        cls, text: str | bytes, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    ) -> Event:
        """Parse and validate JSON text produced by :meth:`to_json`.

        Args:
            text: JSON text (``str`` or UTF-8 ``bytes``).
            max_payload_bytes: Bound on the payload's canonical JSON size.

        Returns:
            The event.

        Raises:
            EventValidationError: The text is not JSON, or the object is not a
                valid event (every problem listed).

        .. versionadded:: 0.1
        """
        try:
            data = parse_json(text)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, CanonicalizationError
            raise EventValidationError(
                [EventProblem("event", "JSON text of an event object", f"{exc}")]
            ) from None
        return cls.from_dict(data, max_payload_bytes=max_payload_bytes)
