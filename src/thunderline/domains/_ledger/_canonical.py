"""Canonical JSON in the style of RFC 8785 (the JSON Canonicalization Scheme).

The ledger hashes and signs these bytes, never ``json.dumps`` output::

    >>> canonicalize({"b": 1, "a": [True, None, 1.5, "x"]})
    b'{"a":[true,null,1.5,"x"],"b":1}'
    >>> canonicalize(parse_json(b'{"z": 1e21, "y": -0.0}'))
    b'{"y":0,"z":1e+21}'

The rules (RFC 8785 sections 3.2.1 to 3.2.4, restricted to the I-JSON subset of
RFC 7493):

* objects have their keys sorted by their UTF-16 code units, keys must be
  strings; ``dict`` and any other :class:`~collections.abc.Mapping` are objects;
* arrays are ``list`` or ``tuple``;
* no whitespace anywhere;
* strings are UTF-8; only ``"``, ``\\`` and the control characters below U+0020
  are escaped (``\\b \\t \\n \\f \\r`` or ``\\u00xx`` in lowercase hex); lone
  surrogates are rejected (they are not Unicode scalar values);
* ``int`` must lie in the I-JSON range ``-(2**53 - 1) .. 2**53 - 1``; ``bool`` is
  ``true``/``false``; ``None`` is ``null``;
* ``float`` is written as ECMAScript's ``Number.prototype.toString`` writes it
  (shortest round-trip digits, exponent form outside ``1e-7 <= |x| < 1e21``,
  ``-0`` as ``0``); NaN and the infinities are rejected.

Since JSON numbers are IEEE doubles in JCS, :func:`parse_json` reads an integer
literal outside the I-JSON range as a ``float`` (as ECMAScript would), so that
``canonicalize(parse_json(canonicalize(x))) == canonicalize(x)`` holds for every
accepted ``x`` (the fixed point property, invariant L5). Objects nested deeper
than :data:`MAX_DEPTH` are rejected.

Why not the ``rfc8785`` package (Trail of Bits): on the ledger's documents
(events: mostly short strings) this module is about twice as fast, and its
errors name the offending path; the package is about 25 % faster on arrays of
non-integral doubles, which events are not (``benchmarks/bench_canonical.py``
measures both in one run). ``tests/domains/test_canonical_rfc8785.py`` holds
this module to the package (same bytes for every value both accept, same
rejections, Hypothesis) and to RFC 8785's published examples.
"""

from __future__ import annotations

import json
import json.encoder
import math
from collections.abc import Callable, Mapping
from typing import Any, cast

from thunderline.runtime import ThunderlineError

__all__ = [
    "MAX_DEPTH",
    "MAX_SAFE_INTEGER",
    "CanonicalizationError",
    "canonicalize",
    "format_number",
    "parse_json",
]

#: The largest integer I-JSON (RFC 7493 section 2.2) allows: ``2**53 - 1``.
MAX_SAFE_INTEGER = 2**53 - 1

#: The deepest nesting of arrays and objects accepted.
MAX_DEPTH = 128

_encode_basestring: Callable[[str], str] = json.encoder.encode_basestring


class CanonicalizationError(ThunderlineError, ValueError):
    """A value cannot be written as canonical (RFC 8785, I-JSON) JSON.

    Attributes:
        path: Where the value sits, as a JSONPath-like string (``$.a[2]``).
        reason: What is wrong with it.
        value: The offending value (its ``repr`` is truncated in the message).

    .. versionadded:: 0.1
    """

    def __init__(self, path: str, reason: str, value: object) -> None:
        self.path = path
        self.reason = reason
        self.value = value
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"cannot canonicalize the value at {path}: {reason} (got {shown})")


def format_number(value: int | float, *, path: str = "$") -> str:
    """Write a number as ECMAScript's ``Number.prototype.toString`` does (RFC 8785 3.2.2.3).

    Args:
        value: An ``int`` within ``±(2**53 - 1)`` or a finite ``float``.
        path: Where the number sits, used in the error message.

    Returns:
        The number's canonical text.

    Raises:
        CanonicalizationError: The number is NaN, infinite, or an ``int`` outside
            the I-JSON range.

    .. versionadded:: 0.1
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise CanonicalizationError(
                path, f"integers must lie within ±{MAX_SAFE_INTEGER} (I-JSON)", value
            )
        return str(value)
    if not math.isfinite(value):
        raise CanonicalizationError(path, "NaN and Infinity are not JSON numbers", value)
    if value == 0:
        return "0"  # also -0.0
    sign = "-" if value < 0 else ""
    # repr gives the shortest digits that round-trip, which is what ECMAScript uses.
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    all_digits = int_part + frac_part
    leading_zeros = len(all_digits) - len(all_digits.lstrip("0"))
    digits = all_digits[leading_zeros:].rstrip("0")
    # value = 0.d1d2...dk * 10**n  (ECMAScript's k and n)
    n = len(int_part) + (int(exp_text) if exp_text else 0) - leading_zeros
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        exponent = n - 1
        exp_sign = "+" if exponent >= 0 else "-"
        head = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{head}e{exp_sign}{abs(exponent)}"
    return sign + text


def _string(value: str, path: str) -> str:
    # The C JSON escaper escapes exactly what JCS escapes: '"', '\\' and
    # U+0000..U+001F (with \b \t \n \f \r short forms, else lowercase \u00xx).
    # Lone surrogates pass here and are caught when the result is encoded.
    return _encode_basestring(value)


def _check_surrogates(value: object, path: str) -> None:
    """Raise for the first lone surrogate in value (slow path, after encoding failed)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CanonicalizationError(
                path,
                f"lone surrogate U+{ord(value[exc.start]):04X} is not a Unicode scalar",
                value,
            ) from None
    elif isinstance(value, Mapping):
        for key in sorted(value, key=_utf16_key):
            _check_surrogates(key, f"{path}.{key}")
            _check_surrogates(value[key], f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_surrogates(item, f"{path}[{index}]")


def _utf16_key(key: str) -> bytes:
    # Big-endian UTF-16 bytes compare like the sequences of UTF-16 code units.
    return key.encode("utf-16-be", "surrogatepass")


def _write(value: object, path: str, depth: int, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value, path))
    elif isinstance(value, int | float):
        out.append(format_number(value, path=path))
    elif isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            raise CanonicalizationError(path, f"nesting deeper than {MAX_DEPTH} levels", "{...}")
        for key in value:
            if not isinstance(key, str):
                raise CanonicalizationError(
                    f"{path}[{key!r}]",
                    f"object keys must be strings, not {type(key).__name__}",
                    key,
                )
        out.append("{")
        first = True
        for key in sorted(value, key=_utf16_key):
            child = f"{path}.{key}"
            if not first:
                out.append(",")
            first = False
            out.append(_string(key, child))
            out.append(":")
            _write(value[key], child, depth + 1, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            raise CanonicalizationError(path, f"nesting deeper than {MAX_DEPTH} levels", "[...]")
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, f"{path}[{index}]", depth + 1, out)
        out.append("]")
    else:
        raise CanonicalizationError(
            path,
            "expected a JSON value (None, bool, int, float, str, list, tuple or a "
            f"mapping with str keys), not {type(value).__name__}",
            value,
        )


class _Slow(Exception):
    """The fast writer met something it does not handle: use the path-tracking writer."""


def _write_fast(value: object, depth: int, out: list[str]) -> None:
    """:func:`_write` without the paths: the same output for what it accepts.

    Keys are sorted with ``sorted`` when all are ASCII (then code point order is
    UTF-16 code unit order); anything unusual (non-ASCII keys, floats, an int
    out of range, a bad value, too deep a nesting) raises :class:`_Slow`, and
    :func:`canonicalize` starts again with :func:`_write`, which also names
    the path of an error.
    """
    kind = type(value)
    if isinstance(value, str):
        out.append(_encode_basestring(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is int:
        number = cast(int, value)
        if not -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
            raise _Slow
        out.append(str(number))
    elif isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            raise _Slow
        keys = list(value)
        for key in keys:
            if type(key) is not str or not key.isascii():
                raise _Slow
        keys.sort()
        out.append("{")
        first = True
        for key in keys:
            if not first:
                out.append(",")
            first = False
            out.append(_encode_basestring(key))
            out.append(":")
            _write_fast(value[key], depth + 1, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            raise _Slow
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write_fast(item, depth + 1, out)
        out.append("]")
    else:
        raise _Slow


def canonicalize(value: object) -> bytes:
    """Serialize ``value`` to canonical JSON bytes (RFC 8785 style, I-JSON subset).

    Args:
        value: ``None``, ``bool``, ``int``, ``float``, ``str``, ``list``/``tuple``
            or a mapping with ``str`` keys, nested at most :data:`MAX_DEPTH` deep.

    Returns:
        The UTF-8 encoded canonical JSON text.

    Raises:
        CanonicalizationError: Naming the path of the first value that is not
            I-JSON: NaN/Infinity, an out-of-range int, a lone surrogate, a
            non-string key, an unsupported type, or too deep a nesting.

    .. versionadded:: 0.1
    """
    out: list[str] = []
    try:
        _write_fast(value, 0, out)
    except _Slow:
        out = []
        _write(value, "$", 0, out)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError:
        _check_surrogates(value, "$")
        raise  # unreachable: the walk finds the surrogate


def _parse_int(text: str) -> int | float:
    number = int(text)
    if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        return number
    return float(text)  # JSON numbers are doubles in JCS


def _reject_constant(name: str) -> Any:
    raise CanonicalizationError("$", "NaN and Infinity are not JSON numbers", name)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in pairs:
        if key in result:
            raise CanonicalizationError("$", "duplicate object key (not I-JSON)", key)
        result[key] = item
    return result


def parse_json(data: str | bytes) -> Any:
    """Parse JSON text the way canonical JSON reads it.

    Integer literals outside ``±(2**53 - 1)`` become ``float`` (JSON numbers are
    IEEE doubles in JCS), ``NaN``/``Infinity`` and duplicate object keys are
    rejected. Lone surrogates written as ``\\ud800`` escapes parse, but
    :func:`canonicalize` then rejects them.

    Args:
        data: JSON text, as ``str`` or UTF-8 ``bytes``.

    Returns:
        The parsed value (``dict``, ``list``, ``str``, ``int``, ``float``,
        ``bool`` or ``None``).

    Raises:
        CanonicalizationError: For NaN/Infinity or a duplicate key.
        ValueError: For text that is not JSON (``json.JSONDecodeError``) or
            bytes that are not UTF-8 (``UnicodeDecodeError``).

    .. versionadded:: 0.1
    """
    return json.loads(
        data,
        parse_int=_parse_int,
        parse_constant=_reject_constant,
        object_pairs_hook=_no_duplicates,
    )
