"""inject/extract/continue_from and carriers (T8, T9, T10, T11, T12, T19)."""

from __future__ import annotations

import json
import string
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from telemetry_helpers import TRACEPARENT_RE, by_name, memory_tracing

from thunderline.telemetry import (
    attach_carrier,
    capture_carrier,
    continue_from,
    current_trace_id,
    extract,
    inject,
    span,
    statistics,
)

pytestmark = pytest.mark.anyio

HEX = "0123456789abcdef"
trace_ids = st.integers(min_value=1, max_value=2**128 - 1)
span_ids = st.integers(min_value=1, max_value=2**64 - 1)
flags = st.integers(min_value=0, max_value=3)
ts_keys = st.from_regex(r"\A[a-z][a-z0-9_\-*/]{0,20}\Z")
ts_values = st.from_regex(r"\A[!-+\--<>-~]{1,20}\Z")
tracestates = st.dictionaries(ts_keys, ts_values, max_size=32).map(
    lambda d: TraceState(list(d.items()))
)


def remote_context(trace_id: int, span_id: int, trace_flags: int, state: TraceState) -> Any:
    span_context = SpanContext(
        trace_id, span_id, is_remote=False, trace_flags=TraceFlags(trace_flags), trace_state=state
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def remote_of(ctx: Any) -> SpanContext:
    return trace.get_current_span(ctx).get_span_context()


# T8: round trip, also through JSON.


@given(trace_ids, span_ids, flags, tracestates, st.booleans())
def test_round_trip_preserves_ids_flags_and_tracestate(
    trace_id: int, span_id: int, trace_flags: int, state: TraceState, via_json: bool
) -> None:
    meta: dict[str, Any] = inject(
        {"event": "x"}, remote_context(trace_id, span_id, trace_flags, state)
    )
    assert meta["event"] == "x"
    assert meta["trace_id"] == format(trace_id, "032x")
    assert meta["span_id"] == format(span_id, "016x")
    assert ("tracestate" in meta) == bool(state)
    if via_json:
        meta = json.loads(json.dumps(meta))
    remote = remote_of(extract(meta))
    assert remote.is_valid
    assert remote.is_remote
    assert (remote.trace_id, remote.span_id) == (trace_id, span_id)
    assert remote.trace_flags == trace_flags
    assert list(remote.trace_state.items()) == list(state.items())


def test_inject_without_span_writes_nothing() -> None:
    meta = {"k": "v"}
    assert inject(meta) == {"k": "v"}
    assert capture_carrier() is None


def test_inject_removes_stale_tracestate(exporter: InMemorySpanExporter) -> None:
    meta = {"tracestate": "old=1", "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    with span("s"):
        inject(meta)
        expected = current_trace_id()
    assert "tracestate" not in meta
    assert meta["trace_id"] == expected


# T9: every injected traceparent is well formed.


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=0, max_value=4))
def test_injected_traceparent_is_well_formed(depth: int) -> None:
    with memory_tracing():
        metas = []
        for level in range(depth + 1):
            with span(f"level-{level}"):
                metas.append(inject({}))
    for meta in metas:
        assert TRACEPARENT_RE.match(meta["traceparent"]), meta
        _, trace_hex, span_hex, flags_hex = meta["traceparent"].split("-")
        assert int(trace_hex, 16) != 0
        assert int(span_hex, 16) != 0
        assert int(flags_hex, 16) & ~0x03 == 0
        assert int(flags_hex, 16) & 0x01  # sampled by the default sampler


def test_reserved_flag_bits_are_never_sent() -> None:
    meta = inject({}, remote_context(1, 2, 0xFF, TraceState()))
    assert meta["traceparent"].endswith("-03")


# T10: malformed inbound context never raises and starts a new trace.

GOOD_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
GOOD_SPAN = "00f067aa0ba902b7"


def _hexes(length: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=HEX, min_size=length, max_size=length)


def _wrong_length() -> st.SearchStrategy[str]:
    return (
        st.tuples(
            st.integers(0, 40).filter(lambda n: n != 32),
            st.integers(0, 20).filter(lambda n: n != 16),
        )
        .flatmap(lambda n: st.tuples(_hexes(n[0]), _hexes(n[1])))
        .map(lambda ids: f"00-{ids[0]}-{ids[1]}-01")
    )


def _uppercase() -> st.SearchStrategy[str]:
    return (
        st.tuples(_hexes(32), _hexes(16))
        .filter(lambda ids: any(c in "abcdef" for c in ids[0] + ids[1]))
        .map(lambda ids: f"00-{ids[0].upper()}-{ids[1].upper()}-01")
    )


malformed_traceparents = st.one_of(
    _wrong_length(),
    _uppercase(),
    st.just(f"00-{'0' * 32}-{GOOD_SPAN}-01"),
    st.just(f"00-{GOOD_TRACE}-{'0' * 16}-01"),
    _hexes(16).map(lambda s: f"ff-{GOOD_TRACE}-{s}-01"),
    st.text(alphabet=string.printable, min_size=1, max_size=8).map(
        lambda extra: f"00-{GOOD_TRACE}-{GOOD_SPAN}-01-{extra}"
    ),
    st.text(max_size=60).filter(lambda s: not TRACEPARENT_RE.match(s.strip(" \t"))),
    st.sampled_from([None, 1, 1.5, b"00", ["00"], {"a": 1}]).filter(lambda v: v is not None),
)
garbage_tracestates = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["=", ",,,", "UPPER=1", "a=b=c", "k=" + "v" * 300, "a=1,a=2"]),
    st.integers(),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(malformed_traceparents, st.one_of(st.none(), garbage_tracestates))
def test_malformed_traceparent_starts_new_trace_and_is_counted(
    traceparent: Any, tracestate: Any
) -> None:
    meta: dict[str, Any] = {"traceparent": traceparent}
    if tracestate is not None:
        meta["tracestate"] = tracestate
    before = statistics().malformed_contexts
    assert not remote_of(extract(meta)).is_valid
    assert statistics().malformed_contexts == before + 1
    with memory_tracing() as exporter:
        with span("outer"), continue_from(meta), span("handler"):
            pass
        spans = by_name(exporter.get_finished_spans())
    assert spans["handler"].parent is None
    assert spans["handler"].context.trace_id != spans["outer"].context.trace_id


@given(garbage_tracestates)
def test_bad_tracestate_never_invalidates_good_traceparent(tracestate: Any) -> None:
    meta = {"traceparent": f"00-{GOOD_TRACE}-{GOOD_SPAN}-01", "tracestate": tracestate}
    remote = remote_of(extract(meta))
    assert remote.is_valid
    assert format(remote.trace_id, "032x") == GOOD_TRACE
    assert remote.trace_flags.sampled


def test_bad_tracestate_members_dropped_one_by_one() -> None:
    before = statistics()
    meta = {
        "traceparent": f"00-{GOOD_TRACE}-{GOOD_SPAN}-01",
        "tracestate": "good=1, BAD=2 ,other@vendor=x,a=b=c,good=dup",
    }
    remote = remote_of(extract(meta))
    assert list(remote.trace_state.items()) == [("good", "1"), ("other@vendor", "x")]
    after = statistics()
    assert after.malformed_tracestates == before.malformed_tracestates + 1
    assert after.dropped_tracestate_entries == before.dropped_tracestate_entries + 3
    assert after.malformed_contexts == before.malformed_contexts


def test_absent_traceparent_is_not_malformed() -> None:
    before = statistics().malformed_contexts
    assert not remote_of(extract({"trace_id": GOOD_TRACE})).is_valid
    assert not remote_of(extract({})).is_valid
    assert not remote_of(extract(None)).is_valid
    assert statistics().malformed_contexts == before


# The seed's trace_id + span_id pair (issue 13).


@given(trace_ids, span_ids)
def test_seed_pair_alone_continues_the_trace(trace_id: int, span_id: int) -> None:
    """Meta with only ``trace_id`` + ``span_id`` continues that trace, as a sampled parent."""
    meta = {"trace_id": f"{trace_id:032x}", "span_id": f"{span_id:016x}", "pipeline": "general"}
    remote = remote_of(extract(json.loads(json.dumps(meta))))
    assert (remote.trace_id, remote.span_id) == (trace_id, span_id)
    assert remote.is_remote
    assert remote.trace_flags.sampled


def test_traceparent_wins_over_the_pair() -> None:
    """``traceparent`` is authoritative (with its flags) when both forms are present."""
    other_span = "1" * 16
    meta = {
        "traceparent": f"00-{GOOD_TRACE}-{GOOD_SPAN}-00",
        "trace_id": GOOD_TRACE,
        "span_id": other_span,
    }
    remote = remote_of(extract(meta))
    assert f"{remote.span_id:016x}" == GOOD_SPAN
    assert not remote.trace_flags.sampled


@pytest.mark.parametrize(
    "pair",
    [
        {"trace_id": "0" * 32, "span_id": GOOD_SPAN},
        {"trace_id": GOOD_TRACE, "span_id": "0" * 16},
        {"trace_id": GOOD_TRACE.upper(), "span_id": GOOD_SPAN},
        {"trace_id": GOOD_TRACE, "span_id": GOOD_SPAN + "0"},
        {"trace_id": 12, "span_id": GOOD_SPAN},
    ],
)
def test_malformed_pair_starts_a_new_trace_and_is_counted(pair: dict[str, Any]) -> None:
    before = statistics().malformed_contexts
    assert not remote_of(extract(pair)).is_valid
    assert statistics().malformed_contexts == before + 1


def test_inject_keeps_all_three_keys_and_continue_from_reads_either(
    exporter: InMemorySpanExporter,
) -> None:
    with span("origin"):
        meta = dict(inject({"parent_domain": "gate"}))
    assert {"traceparent", "trace_id", "span_id", "parent_domain"} <= meta.keys()
    assert meta["traceparent"].startswith(f"00-{meta['trace_id']}-{meta['span_id']}-")
    pair_only = {k: v for k, v in meta.items() if k != "traceparent"}
    with continue_from(pair_only), span("from pair"):
        pass
    with continue_from(meta), span("from traceparent"):
        pass
    spans = by_name(exporter.get_finished_spans())
    origin = spans["origin"]
    assert origin.context is not None
    for name in ("from pair", "from traceparent"):
        child = spans[name]
        assert child.parent is not None
        assert child.parent.span_id == origin.context.span_id
        assert child.context is not None
        assert child.context.trace_id == origin.context.trace_id


def test_future_version_is_accepted() -> None:
    remote = remote_of(extract({"traceparent": f"01-{GOOD_TRACE}-{GOOD_SPAN}-01-future"}))
    assert remote.is_valid


# T11 and T12: sampling is consistent per trace and flags survive hops.


async def test_sampling_consistent_per_trace_across_hops() -> None:
    roots: list[str] = []
    with memory_tracing(sampler="parentbased_traceidratio", sampler_ratio=0.5) as exporter:
        for index in range(200):
            async with span(f"root-{index}"):
                trace_id = current_trace_id()
                assert trace_id is not None
                roots.append(trace_id)
                async with span("local-child"):
                    meta = json.loads(json.dumps(inject({})))
            # The hop: another task, another context, only the metadata crosses.
            async with anyio.create_task_group() as tg:

                async def receive(meta: dict[str, str] = meta) -> None:
                    async with continue_from(meta), span("remote-child"):
                        assert current_trace_id() == meta["trace_id"]

                tg.start_soon(receive)
        finished = exporter.get_finished_spans()
    per_trace: dict[str, int] = {}
    for finished_span in finished:
        key = format(finished_span.context.trace_id, "032x")
        per_trace[key] = per_trace.get(key, 0) + 1
    assert set(per_trace) <= set(roots)
    assert set(per_trace.values()) == {3}  # all three spans, or none (absent)
    assert 0 < len(per_trace) < len(roots)  # both outcomes happened


@pytest.mark.parametrize(("flags_hex", "exported"), [("01", True), ("00", False)])
async def test_upstream_flags_decide_downstream_sampling(flags_hex: str, exported: bool) -> None:
    meta = {"traceparent": f"00-{GOOD_TRACE}-{GOOD_SPAN}-{flags_hex}"}
    with memory_tracing() as exporter:
        async with continue_from(meta), span("downstream"):
            downstream = inject({})
        assert bool(exporter.get_finished_spans()) is exported
    assert downstream["traceparent"].endswith(f"-{flags_hex}")
    assert downstream["trace_id"] == GOOD_TRACE


# Carriers for the runtime message hook.


async def test_capture_and_attach_carrier_cross_tasks(exporter: InMemorySpanExporter) -> None:
    before = otel_context.get_current()
    async with span("send"):
        carrier = capture_carrier()
    assert carrier is not None
    assert set(carrier) == {"traceparent"}

    async def handle() -> None:
        async with attach_carrier(carrier), span("process"):
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(handle)
    spans = by_name(exporter.get_finished_spans())
    assert spans["process"].parent is not None
    assert spans["process"].parent.span_id == spans["send"].context.span_id
    assert otel_context.get_current() is before


def test_attach_none_carrier_gives_clean_context(exporter: InMemorySpanExporter) -> None:
    with span("previous message"), attach_carrier(None):
        assert current_trace_id() is None
        with span("next"):
            pass
    assert by_name(exporter.get_finished_spans())["next"].parent is None


def test_baggage_only_carrier() -> None:
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        carrier = capture_carrier()
    finally:
        otel_context.detach(token)
    assert carrier == {"baggage": "tenant=acme"}
    with attach_carrier(carrier):
        assert baggage.get_baggage("tenant") == "acme"
        assert current_trace_id() is None


# T19: beyond W3C limits entries are dropped, propagation never fails.


def test_tracestate_over_32_members_keeps_first_32() -> None:
    members = ",".join(f"k{i}=v{i}" for i in range(40))
    before = statistics().dropped_tracestate_entries
    remote = remote_of(
        extract({"traceparent": f"00-{GOOD_TRACE}-{GOOD_SPAN}-01", "tracestate": members})
    )
    assert remote.is_valid
    assert list(remote.trace_state.keys()) == [f"k{i}" for i in range(32)]
    assert statistics().dropped_tracestate_entries == before + 8


def test_long_tracestate_truncated_on_inject() -> None:
    entries = [(f"k{i}", "v" * 255) for i in range(32)]  # 32 x 260 chars > 8192
    meta = inject({}, remote_context(1, 2, 1, TraceState(entries)))
    assert len(meta["tracestate"]) <= 8192
    remote = remote_of(extract(meta))
    assert remote.is_valid
    kept = list(remote.trace_state.items())
    assert kept == entries[: len(kept)]
    assert 0 < len(kept) < 32


def test_baggage_over_limits_is_truncated(exporter: InMemorySpanExporter) -> None:
    ctx = otel_context.get_current()
    for index in range(250):
        ctx = baggage.set_baggage(f"key{index}", "v" * 40, ctx)
    token = otel_context.attach(ctx)
    try:
        with span("with baggage"):
            meta = inject({})
    finally:
        otel_context.detach(token)
    assert TRACEPARENT_RE.match(meta["traceparent"])
    assert len(meta["baggage"].encode()) <= 8192
    assert meta["baggage"].count(",") + 1 <= 180
    with continue_from(meta):
        assert baggage.get_baggage("key0") == "v" * 40
        assert current_trace_id() == meta["trace_id"]
