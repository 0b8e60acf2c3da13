"""Our RFC 8785 canonicalization against Trail of Bits' ``rfc8785`` package (a dev dependency).

``domains/_ledger/_canonical.py`` is kept over the package because it is faster on the
ledger's events (mostly strings: about 2x; float-heavy documents are about 25 %
slower; ``benchmarks/bench_canonical.py``) and because its errors name the
offending path (``$.a[2]``). These tests hold it
to the package: the same bytes for every value both accept, the same values
rejected, and both agree with RFC 8785's published examples.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st
from test_canonical import RFC_NUMBERS, json_values

from thunderline.domains import CanonicalizationError, canonicalize
from thunderline.domains._ledger._canonical import MAX_SAFE_INTEGER


def _from_bits(bits: int) -> float:
    return float(struct.unpack(">d", bits.to_bytes(8, "big"))[0])


@given(json_values())
def test_same_bytes_as_the_rfc8785_package(value: Any) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_same_numbers_as_the_rfc8785_package(value: float) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


@given(st.text())
def test_same_strings_as_the_rfc8785_package(value: str) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


@given(
    st.integers(min_value=MAX_SAFE_INTEGER + 1)
    | st.integers(max_value=-MAX_SAFE_INTEGER - 1)
    | st.sampled_from([float("nan"), float("inf"), float("-inf")])
)
def test_both_reject_what_ijson_forbids(value: Any) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize([value])
    with pytest.raises(rfc8785.CanonicalizationError):
        rfc8785.dumps([value])


@pytest.mark.parametrize(("bits", "text"), RFC_NUMBERS, ids=[t for _, t in RFC_NUMBERS])
def test_the_package_agrees_with_the_published_number_samples(bits: int, text: str) -> None:
    number = _from_bits(bits)
    assert rfc8785.dumps(number) == text.encode() == canonicalize(number)


def test_the_package_agrees_with_the_published_examples() -> None:
    structure = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    sorting = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    for value in (structure, sorting):
        assert rfc8785.dumps(value) == canonicalize(value)
