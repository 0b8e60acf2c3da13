"""Event: validation listing every problem, immutability, JSON round trip with trace context."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from thunderline.domains._event import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DOMAIN_SOURCES,
    MAX_NAME_LENGTH,
    Event,
    EventProblem,
    EventValidationError,
    Priority,
    declare_source,
    declared_sources,
)
from thunderline.runtime._errors import ThunderlineError

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


def good(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": "system.heartbeat",
        "type": "heartbeat",
        "source": "gate",
        "payload": {"beat": 1},
        "meta": {"trace_id": TRACE_ID, "span_id": SPAN_ID, "traceparent": TRACEPARENT},
        "priority": "high",
        "occurred_at": dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC),
    }
    fields.update(overrides)
    return fields


def make(**overrides: Any) -> Event:
    fields = good(**overrides)
    return Event.new(fields.pop("name"), **fields)


def test_new_builds_a_valid_event() -> None:
    event = make()
    assert isinstance(event.id, uuid.UUID)
    assert event.priority is Priority.HIGH
    assert event.trace_context == {
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "traceparent": TRACEPARENT,
    }
    assert event.payload["beat"] == 1


def test_defaults() -> None:
    event = Event.new("a.b", type="t", source="flow")
    assert dict(event.payload) == {}
    assert dict(event.meta) == {}
    assert event.priority is Priority.NORMAL
    assert event.occurred_at.tzinfo is dt.UTC
    assert event.id.version == 4


def test_occurred_at_is_converted_to_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    event = make(occurred_at=dt.datetime(2024, 5, 1, 14, 0, tzinfo=paris))
    assert event.occurred_at == dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    assert event.occurred_at.utcoffset() == dt.timedelta(0)


# Each entry: field name -> a bad value and the field the error must name.
BAD_VALUES: dict[str, tuple[Any, str]] = {
    "name": ("System.Heartbeat", "name"),
    "type": (7, "type"),
    "source": ("nowhere", "source"),
    "payload": ({"x": float("nan")}, "payload.x"),
    "meta": ({"trace_id": "XYZ"}, "meta.trace_id"),
    "priority": ("urgent", "priority"),
    "occurred_at": (dt.datetime(2024, 1, 1), "occurred_at"),
    "id": ("not-a-uuid", "id"),
}


@given(st.sets(st.sampled_from(sorted(BAD_VALUES)), min_size=1))
def test_every_problem_is_listed(broken: set[str]) -> None:
    overrides = {field: BAD_VALUES[field][0] for field in broken}
    with pytest.raises(EventValidationError) as info:
        make(**overrides)
    error = info.value
    assert set(error.fields) == {BAD_VALUES[field][1] for field in broken}
    assert f"{len(broken)} problem" in str(error)
    for problem in error.problems:
        assert problem.field in str(error)
        assert problem.expected
        assert problem.received


def test_problem_says_expected_and_received() -> None:
    with pytest.raises(EventValidationError) as info:
        make(name="Bad Name", priority=3)
    name, priority = info.value.problems
    assert name == EventProblem(name.field, name.expected, "str 'Bad Name'")
    assert "dot-separated lowercase words" in name.expected
    assert priority.field == "priority"
    assert priority.received == "int 3"
    assert "'low', 'normal', 'high'" in priority.expected
    assert isinstance(info.value, ThunderlineError)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith("invalid event: 2 problems: name: expected ")


@pytest.mark.parametrize(
    "name",
    ["heartbeat", "system.", ".system", "system..beat", "System.beat", "a.b-c", "1a.b", ""],
)
def test_bad_names(name: str) -> None:
    with pytest.raises(EventValidationError, match="name: expected"):
        make(name=name)


def test_name_length_is_bounded() -> None:
    make(name="a." + "b" * (MAX_NAME_LENGTH - 2))
    with pytest.raises(EventValidationError, match="at most 255"):
        make(name="a." + "b" * (MAX_NAME_LENGTH - 1))


def test_payload_size_limit() -> None:
    big = {"x": "a" * DEFAULT_MAX_PAYLOAD_BYTES}
    with pytest.raises(EventValidationError) as info:
        make(payload=big)
    assert info.value.fields == ("payload",)
    assert f"at most {DEFAULT_MAX_PAYLOAD_BYTES} bytes" in str(info.value)
    assert make(payload={"x": "a" * 100}, max_payload_bytes=200)
    with pytest.raises(EventValidationError, match="at most 50 bytes"):
        make(payload={"x": "a" * 100}, max_payload_bytes=50)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([1, 2], "payload"),
        ({"x": object()}, "payload.x"),
        ({1: "x"}, "payload[1]"),
        ({"a": {"b": 2**60}}, "payload.a.b"),
        ({"s": "\ud800"}, "payload.s"),
    ],
)
def test_non_json_payloads(payload: object, field: str) -> None:
    with pytest.raises(EventValidationError) as info:
        make(payload=payload)
    assert info.value.fields == (field,)


@pytest.mark.parametrize(
    ("meta", "field"),
    [
        ({"trace_id": "0" * 32}, "meta.trace_id"),
        ({"trace_id": TRACE_ID.upper()}, "meta.trace_id"),
        ({"span_id": "abc"}, "meta.span_id"),
        ({"traceparent": "01-" + TRACEPARENT[3:]}, "meta.traceparent"),
        ({"traceparent": f"00-{'0' * 32}-{SPAN_ID}-01"}, "meta.traceparent"),
        ({"traceparent": TRACEPARENT, "trace_id": "1" * 32}, "meta.traceparent"),
        ({"traceparent": TRACEPARENT, "span_id": "1" * 16}, "meta.traceparent"),
        ({"tracestate": 5}, "meta.tracestate"),
        ({"tracestate": "a" * 513}, "meta.tracestate"),
        ({"parent_domain": "mars"}, "meta.parent_domain"),
        ({"pipeline": ""}, "meta.pipeline"),
        ("not a mapping", "meta"),
    ],
)
def test_malformed_trace_metadata(meta: object, field: str) -> None:
    with pytest.raises(EventValidationError) as info:
        make(meta=meta)
    assert info.value.fields == (field,)


def test_free_meta_keys_and_pipeline() -> None:
    event = make(
        meta={"pipeline": "heartbeats", "parent_domain": "gate", "custom": [1, {"a": None}]}
    )
    assert event.meta["custom"] == (1, {"a": None})


def test_sources_domains_and_declared() -> None:
    assert {"gate", "flow", "bolt", "vault", "link"} == DOMAIN_SOURCES
    name = f"ext-x{uuid.uuid4().hex[:8]}.sensor"
    with pytest.raises(EventValidationError, match="source"):
        make(source=name)
    declare_source(name)
    declare_source(name)  # idempotent
    assert name in declared_sources()
    assert make(source=name).source == name
    assert make(source="vault", meta={"parent_domain": name}).meta["parent_domain"] == name
    with pytest.raises(EventValidationError, match="source: expected lowercase words"):
        declare_source("Bad Source")


def test_events_are_immutable() -> None:
    event = make(payload={"list": [1, 2], "nested": {"a": 1}})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.name = "other.name"  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.payload["new"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        event.payload["nested"]["a"] = 2
    assert event.payload["list"] == (1, 2)
    assert hash(event) == hash(event.id)


def test_caller_mutations_do_not_leak_in() -> None:
    payload = {"list": [1]}
    event = make(payload=payload)
    payload["list"].append(2)
    assert event.payload["list"] == (1,)


trace_ids = st.text("0123456789abcdef", min_size=32, max_size=32).filter(lambda s: s != "0" * 32)
span_ids = st.text("0123456789abcdef", min_size=16, max_size=16).filter(lambda s: s != "0" * 16)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.text(max_size=5).filter(lambda s: all(not 0xD800 <= ord(ch) <= 0xDFFF for ch in s)),
            c,
            max_size=3,
        )
    ),
    max_leaves=10,
)


@given(
    trace_id=trace_ids,
    span_id=span_ids,
    flags=st.sampled_from(["00", "01"]),
    tracestate=st.text("abcdefghij=,", max_size=30),
    extra=st.dictionaries(st.sampled_from(["tenant", "user", "x"]), json_values, max_size=3),
    payload=st.dictionaries(
        st.text(st.characters(exclude_categories=("Cs",)), max_size=5), json_values, max_size=4
    ),
    when=st.datetimes(timezones=st.just(dt.UTC)),
    priority=st.sampled_from(list(Priority)),
)
def test_json_round_trip_keeps_trace_context(
    trace_id: str,
    span_id: str,
    flags: str,
    tracestate: str,
    extra: dict[str, Any],
    payload: dict[str, Any],
    when: dt.datetime,
    priority: Priority,
) -> None:
    meta = {
        **extra,
        "trace_id": trace_id,
        "span_id": span_id,
        "traceparent": f"00-{trace_id}-{span_id}-{flags}",
        "tracestate": tracestate,
        "parent_domain": "gate",
    }
    event = make(meta=meta, payload=payload, occurred_at=when, priority=priority)
    text = event.to_json()
    again = Event.from_json(text)
    assert again == event
    assert again.to_json() == text
    assert again.trace_context == event.trace_context
    assert again.meta["traceparent"] == f"00-{trace_id}-{span_id}-{flags}"
    assert Event.from_dict(event.to_dict()) == event
    # key order in the JSON text does not matter
    shuffled = json.dumps(dict(reversed(list(json.loads(text).items()))), indent=2)
    assert Event.from_json(shuffled).canonical_bytes() == event.canonical_bytes()


def test_to_dict_shape() -> None:
    event = make(id="12345678-1234-5678-1234-567812345678")
    data = event.to_dict()
    assert data["id"] == "12345678-1234-5678-1234-567812345678"
    assert data["occurred_at"] == "2024-05-01T12:00:00.123456Z"
    assert data["priority"] == "high"
    assert list(data) == [
        "id",
        "name",
        "type",
        "source",
        "payload",
        "meta",
        "priority",
        "occurred_at",
    ]


def test_from_json_validates() -> None:
    with pytest.raises(EventValidationError, match="event: expected JSON text"):
        Event.from_json("{nope")
    with pytest.raises(EventValidationError, match="event: expected a JSON object"):
        Event.from_json("[1]")
    data = make().to_dict()
    del data["name"]
    data["color"] = "red"
    data["occurred_at"] = "yesterday"
    with pytest.raises(EventValidationError) as info:
        Event.from_dict(data)
    assert set(info.value.fields) == {"name", "color", "occurred_at"}
    data = make().to_dict()
    data["id"] = data["id"].upper()
    with pytest.raises(EventValidationError, match="id: expected"):
        Event.from_dict(data)
