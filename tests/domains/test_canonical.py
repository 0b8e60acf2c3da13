"""Canonical JSON (RFC 8785 style): vectors, fixed point (L5) and rejections."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thunderline.domains._ledger._canonical import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    CanonicalizationError,
    _write,
    canonicalize,
    format_number,
    parse_json,
)
from thunderline.runtime._errors import ThunderlineError


def _from_bits(bits: int) -> float:
    return float(struct.unpack(">d", bits.to_bytes(8, "big"))[0])


# RFC 8785 appendix B (IEEE 754 bit patterns and their ECMAScript text).
RFC_NUMBERS = [
    (0x0000000000000000, "0"),
    (0x8000000000000000, "0"),
    (0x0000000000000001, "5e-324"),
    (0x8000000000000001, "-5e-324"),
    (0x7FEFFFFFFFFFFFFF, "1.7976931348623157e+308"),
    (0xFFEFFFFFFFFFFFFF, "-1.7976931348623157e+308"),
    (0x4340000000000000, "9007199254740992"),
    (0xC340000000000000, "-9007199254740992"),
    (0x4430000000000000, "295147905179352830000"),
    (0x44B52D02C7E14AF5, "9.999999999999997e+22"),
    (0x44B52D02C7E14AF6, "1e+23"),
    (0x44B52D02C7E14AF7, "1.0000000000000001e+23"),
    (0x444B1AE4D6E2EF4E, "999999999999999700000"),
    (0x444B1AE4D6E2EF4F, "999999999999999900000"),
    (0x444B1AE4D6E2EF50, "1e+21"),
    (0x3EB0C6F7A0B5ED8C, "9.999999999999997e-7"),
    (0x3EB0C6F7A0B5ED8D, "0.000001"),
    (0x41B3DE4355555553, "333333333.3333332"),
    (0x41B3DE4355555554, "333333333.33333325"),
    (0x41B3DE4355555555, "333333333.3333333"),
    (0x41B3DE4355555556, "333333333.3333334"),
    (0x41B3DE4355555557, "333333333.33333343"),
    (0xBECBF647612F3696, "-0.0000033333333333333333"),
    (0x43143FF3C1CB0959, "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), RFC_NUMBERS, ids=[t for _, t in RFC_NUMBERS])
def test_rfc8785_number_vectors(bits: int, text: str) -> None:
    assert format_number(_from_bits(bits)) == text


def test_rfc8785_key_sorting_by_utf16_code_units() -> None:
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonicalize(value)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_rfc8785_structure_example() -> None:
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    assert canonicalize(value) == (
        b'{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        b'"string":"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )


def test_string_escapes_only_what_jcs_escapes() -> None:
    assert canonicalize("\b\t\n\f\r\x00\x1f\x7f\u2028/") == (
        b'"\\b\\t\\n\\f\\r\\u0000\\u001f\x7f\xe2\x80\xa8/"'
    )


def test_no_whitespace_and_tuples_are_arrays() -> None:
    assert canonicalize({"a": (1, [2, {}]), "b": ""}) == b'{"a":[1,[2,{}]],"b":""}'


def json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(st.characters(exclude_categories=("Cs",)))
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.text(st.characters(exclude_categories=("Cs",))), children, max_size=4
            )
        ),
        max_leaves=20,
    )


@given(json_values())
def test_fixed_point(value: Any) -> None:
    """L5: canon(parse(canon(x))) == canon(x)."""
    once = canonicalize(value)
    assert canonicalize(parse_json(once)) == once
    # It is also plain JSON that any parser reads.
    json.loads(once)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip_and_use_ecmascript_grammar(value: float) -> None:
    text = format_number(value)
    assert float(text) == value
    assert "E" not in text
    assert not text.startswith("+")
    assert text == "0" or not text.startswith(("0", "-0")) or text.startswith(("0.", "-0."))
    mantissa = text.lstrip("-").split("e")[0]
    if "." in mantissa:
        assert not mantissa.endswith("0")
    if "e" in text:
        assert text.split("e")[1][0] in "+-"
        assert abs(value) < 1e-6 or abs(value) >= 1e21
    else:
        assert value == 0 or 1e-7 <= abs(value) < 1e21


@given(st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER))
def test_ints_in_range_are_plain_decimal(value: int) -> None:
    assert canonicalize(value) == str(value).encode()


@given(st.floats(min_value=1, max_value=1e300).map(math.floor))
def test_integral_floats_fixed_point_even_outside_ijson_int_range(value: float) -> None:
    text = canonicalize(float(value))
    assert canonicalize(parse_json(text)) == text


@pytest.mark.parametrize(
    ("value", "path", "fragment"),
    [
        (float("nan"), "$", "NaN"),
        ({"a": [1, float("inf")]}, "$.a[1]", "NaN and Infinity"),
        (float("-inf"), "$", "Infinity"),
        (2**53, "$", "I-JSON"),
        (-(2**53), "$", "I-JSON"),
        ({"x": 10**30}, "$.x", "I-JSON"),
        ("ok\ud800", "$", "lone surrogate U+D800"),
        ({"\udfff": 1}, "$.\udfff", "lone surrogate U+DFFF"),
        ({1: "a"}, "$[1]", "keys must be strings, not int"),
        ({None: "a"}, "$[None]", "keys must be strings, not NoneType"),
        ({(1, 2): "a"}, "$[(1, 2)]", "keys must be strings, not tuple"),
        ({"s": {1, 2}}, "$.s", "not set"),
        ([b"raw"], "$[0]", "not bytes"),
    ],
)
def test_rejections_name_the_path(value: object, path: str, fragment: str) -> None:
    with pytest.raises(CanonicalizationError) as info:
        canonicalize(value)
    assert info.value.path == path
    assert fragment in str(info.value)
    assert path in str(info.value)
    assert isinstance(info.value, ThunderlineError)
    assert isinstance(info.value, ValueError)


def test_too_deep_is_rejected() -> None:
    value: Any = []
    for _ in range(MAX_DEPTH + 1):
        value = [value]
    with pytest.raises(CanonicalizationError, match="nesting deeper"):
        canonicalize(value)
    shallow: Any = []
    for _ in range(MAX_DEPTH - 1):
        shallow = [shallow]
    canonicalize(shallow)


def test_error_attributes() -> None:
    exc = CanonicalizationError("$.a", "bad thing", "x" * 200)
    assert exc.path == "$.a"
    assert exc.reason == "bad thing"
    assert exc.value == "x" * 200
    assert str(exc).startswith("cannot canonicalize the value at $.a: bad thing (got 'xxx")
    assert len(str(exc)) < 200


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("NaN", "NaN"),
        ('{"a": Infinity}', "Infinity"),
        ('{"a": 1, "a": 2}', "duplicate object key"),
    ],
)
def test_parse_json_rejects_non_ijson(text: str, fragment: str) -> None:
    with pytest.raises(CanonicalizationError, match=fragment):
        parse_json(text)


def test_parse_json_reads_huge_ints_as_doubles() -> None:
    assert parse_json("12345678901234567890") == 12345678901234567890.0
    assert isinstance(parse_json("9007199254740991"), int)
    # and the escaped lone surrogate parses but does not canonicalize
    with pytest.raises(CanonicalizationError, match="lone surrogate"):
        canonicalize(parse_json('"\\ud800"'))


def _ascii_keyed_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**60), max_value=2**60)
        | st.text(st.characters(exclude_categories=("Cs",)))
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.tuples(children, children)
            | st.dictionaries(st.text(st.characters(max_codepoint=127)), children, max_size=4)
        ),
        max_leaves=20,
    )


@given(json_values() | _ascii_keyed_values())
def test_fast_writer_agrees_with_the_path_tracking_writer(value: Any) -> None:
    """The fast path (no paths, ASCII keys, no floats) writes exactly what the reference does."""
    reference: list[str] = []
    problem: tuple[str, str] | None = None
    try:
        _write(value, "$", 0, reference)
    except CanonicalizationError as error:
        problem = (error.path, error.reason)
    if problem is None:
        assert canonicalize(value) == "".join(reference).encode("utf-8")
    else:
        with pytest.raises(CanonicalizationError) as caught:
            canonicalize(value)
        assert (caught.value.path, caught.value.reason) == problem
