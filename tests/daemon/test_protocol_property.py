"""Property tests of the control protocol's decoding and of the CLI's table alignment."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from thunderline._daemon._protocol import (
    MAX_ID_LENGTH,
    RequestError,
    decode_request,
    encode,
    error_reply,
)
from thunderline.cli._style import Style, table

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


def _valid_id(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return len(value) <= MAX_ID_LENGTH
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_give_a_request_error(line: bytes) -> None:
    try:
        request_id, request = decode_request(line)
    except RequestError as exc:
        reply = json.loads(encode(error_reply(exc.code, exc.message, exc.request_id)))
        ok = reply["ok"]
        echoed = reply.get("id")
    else:
        ok, echoed = None, None
    if ok is not None:
        assert ok is False
        assert _valid_id(echoed)
    else:
        assert isinstance(request["command"], str)
        assert _valid_id(request_id)


@given(json_values, json_values, st.text(max_size=10))
def test_json_requests_keep_only_valid_ids(request_id: Any, extra: Any, command: str) -> None:
    line = json.dumps({"command": command, "id": request_id, "x": extra}).encode()
    try:
        decoded_id, request = decode_request(line)
    except RequestError as exc:
        refused: RequestError | None = exc
    else:
        refused = None
    if refused is not None:
        assert refused.request_id is None or _valid_id(refused.request_id)
        encoded = encode(error_reply(refused.code, refused.message, refused.request_id))
        assert json.loads(encoded)["ok"] is False
    else:
        assert _valid_id(decoded_id)
        assert request["command"] == command
        # a reply echoing the id always encodes as strict JSON
        assert json.loads(encode({"ok": True, "result": None, "id": decoded_id}))["ok"]


@given(
    st.lists(
        st.text(alphabet="abcXYZ<>.19 -", min_size=1, max_size=6), min_size=2, max_size=4
    ).flatmap(
        lambda headers: st.tuples(
            st.just(headers),
            st.lists(
                st.lists(
                    st.text(alphabet="abc<>.19-", max_size=12),
                    min_size=len(headers),
                    max_size=len(headers),
                ),
                max_size=5,
            ),
        )
    )
)
def test_colour_never_shifts_a_column(case: tuple[list[str], list[list[str]]]) -> None:
    headers, rows = case
    plain = table(headers, rows, Style(False))
    coloured = table(headers, rows, Style(True), lambda _col, _cell: ("red", "bold"))
    assert [_ANSI.sub("", line) for line in coloured] == plain
