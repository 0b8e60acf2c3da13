"""The wire codec (properties) and the envelope's protections: size, version, unknown types."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import attrs
import msgpack
import pytest
from dist_helpers import in_process, local_node, receive
from hypothesis import given
from hypothesis import strategies as st

import thunderline as tl
from thunderline import dist
from thunderline.dist._codec import NODES, Codec, DecodeError
from thunderline.lowlevel import BaseInstrument

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
terms = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4)
    ),
    max_leaves=20,
)


@attrs.frozen
class Point:
    x: int
    y: tuple[int, ...] = ()


dist.register_type(Point, "tests.Point")


@given(terms)
def test_codec_round_trips_terms(term: Any) -> None:
    codec = Codec()
    assert codec.decode(codec.encode(term)) == term


def test_codec_round_trips_pids_refs_reasons_and_registered_types() -> None:
    codec = Codec()

    async def main() -> None:
        node_id = tl.current_pid()
        NODES.bind("codec-test", 1, 10**9)  # unused number: only identities matter here
        from thunderline.runtime._remote import make_pid, make_ref

        pid = make_pid(NODES.number("x", 7), 3)
        ref = make_ref(NODES.number("x", 7), 9)
        value = (pid, ref, Point(1, (2, 3)), tl.Exit(pid, tl.NOCONNECTION), tl.Shutdown("why"))
        assert codec.decode(codec.encode(value)) == value
        assert codec.decode(codec.encode([tl.NORMAL, tl.KILLED, tl.NOPROC])) == [
            tl.NORMAL,
            tl.KILLED,
            tl.NOPROC,
        ]
        crashed = codec.decode(codec.encode(tl.Crashed(KeyError("k"))))
        assert isinstance(crashed.exception, dist.RemoteError)
        assert crashed.exception.type_name == "KeyError"
        with pytest.raises(dist.EncodeError, match="set"):
            codec.encode({1, 2})
        with pytest.raises(dist.EncodeError, match="Pid"):
            codec.encode(node_id)  # a pid of a node outside any cluster

    tl.run(main)


def test_decoding_never_builds_unknown_types() -> None:
    codec = Codec()
    unknown = msgpack.packb(msgpack.ExtType(4, msgpack.packb(["os.system", "rm -rf /"])))
    with pytest.raises(DecodeError, match="unknown type"):
        codec.decode(unknown)
    with pytest.raises(DecodeError):
        codec.decode(b"\xc1garbage")
    with pytest.raises(DecodeError, match="extension"):
        codec.decode(msgpack.packb(msgpack.ExtType(42, b"")))


@pytest.mark.anyio
async def test_oversized_message_fails_at_send(cluster_url: str) -> None:
    async with local_node(cluster_url, "b"), local_node(cluster_url, "a"):

        async def body() -> None:
            assert await dist.connect_node("b", 20)
            with pytest.raises(dist.MessageTooLargeError, match="max_payload"):
                tl.send(("anyone", "b"), b"x" * (2 * 1024 * 1024))
            with pytest.raises(dist.EncodeError):
                tl.send(("anyone", "b"), object())
            # a registered attrs class crosses nodes
            tl.register("me", tl.current_pid())
            tl.send(("me", "a"), Point(1))
            assert await receive() == Point(1)

        await in_process(body)


@pytest.mark.anyio
async def test_other_protocol_version_is_refused_with_a_log_line(
    cluster_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "thunderline.dist")
    cluster = cluster_url.rpartition("/")[2]
    async with local_node(cluster_url, "a") as a:
        transport = a.transport
        assert transport is not None
        body99 = msgpack.packb([99, 1, 1, "hb"])
        transport.publish(f"tl.{cluster}.hb.zed", body99)
        await transport.flush()
        with anyio.fail_after(20):
            while "refusing node zed" not in caplog.text:
                await anyio.sleep(0.01)
        assert "protocol version 99" in caplog.text
        assert a.nodes() == []


class Carriers(BaseInstrument):
    """Hands out a W3C-like carrier per send and records what receivers adopt."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    def capture(self, sender: Any, dest: Any, dest_label: str, operation: str) -> Any:
        return {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}

    def message_received(self, pid: Any, label: str, carrier: Any) -> Any:
        self.received.append(carrier)
        return None


@pytest.mark.anyio
async def test_remote_message_is_handled_in_the_senders_context(cluster_url: str) -> None:
    """W3C trace context travels in NATS headers; the receiver adopts the sender's carrier."""
    receiver_side = Carriers()
    async with (
        local_node(cluster_url, "a", instrument=Carriers()) as a,
        local_node(cluster_url, "b", instrument=receiver_side),
    ):

        async def sender() -> None:
            tl.send(("sink", "b"), "traced")

        a.functions["sender"] = sender

        async def body() -> None:
            assert await dist.connect_node("a", 20)
            tl.register("sink", tl.current_pid())
            await dist.spawn_remote("a", "sender")
            assert await receive() == "traced"

        await in_process(body)
    traced = [c for c in receiver_side.received if c and "traceparent" in c]
    assert traced, receiver_side.received
    assert traced[-1]["traceparent"].startswith("00-0af7651916cd43dd")
