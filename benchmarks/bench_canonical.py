"""Canonical JSON: ``thunderline.domains.canonicalize`` against the ``rfc8785`` package.

Run: ``python benchmarks/bench_canonical.py [ROUNDS]`` (``--smoke``: 3 rounds).
Both encoders run interleaved on the same documents in the same process, so
the printed ratio (package time / ours, median over rounds; above 1 means ours
is faster) does not depend on how loaded the machine is. Documents:

* ``event``: a ledger event as the demo writes it (mostly short strings);
* ``unicode``: non-ASCII keys and strings, escapes;
* ``floats``: an array of 50 non-integral doubles (the package's strong case).

This is why ``domains/_ledger/_canonical.py`` is kept (see its docstring); the
equality of the two is tested in ``tests/domains/test_canonical_rfc8785.py``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import rfc8785

from thunderline.domains import Event, canonicalize


def documents() -> dict[str, Any]:
    """The documents timed (plain JSON values)."""
    event = Event.new(
        "system.heartbeat",
        type="heartbeat",
        source="gate",
        payload={"beat": 1, "node": "bench"},
        meta={
            "trace_id": "a" * 32,
            "span_id": "b" * 16,
            "traceparent": f"00-{'a' * 32}-{'b' * 16}-01",
            "parent_domain": "gate",
        },
    )
    return {
        "event": json.loads(event.canonical_bytes()),
        "unicode": {"k\u00e9y": "\u20ac\U0001f600 text \n\t", "a": ["x" * 20] * 10},
        "floats": {"xs": [i * 0.1 + 0.01 for i in range(50)]},
    }


def _time(encode: Callable[[Any], bytes], doc: Any, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        encode(doc)
    return (time.perf_counter() - start) / calls


def measure(rounds: int, calls: int = 200) -> dict[str, tuple[float, float, float]]:
    """Per document: (our best seconds, the package's best seconds, median ratio)."""
    results = {}
    for name, doc in documents().items():
        if canonicalize(doc) != rfc8785.dumps(doc):
            raise AssertionError(f"the encoders disagree on {name}")
        ours, theirs, ratios = [], [], []
        for _ in range(rounds):
            a = _time(canonicalize, doc, calls)
            b = _time(rfc8785.dumps, doc, calls)
            ours.append(a)
            theirs.append(b)
            ratios.append(b / a)
        results[name] = (min(ours), min(theirs), statistics.median(ratios))
    return results


def main(argv: list[str]) -> int:
    """Print one line per document."""
    args = [a for a in argv if a != "--smoke"]
    rounds = 3 if "--smoke" in argv else int(args[0]) if args else 30
    for name, (ours, theirs, ratio) in measure(rounds).items():
        print(
            f"{name:8} ours {ours * 1e6:8.1f} us  rfc8785 {theirs * 1e6:8.1f} us  "
            f"rfc8785/ours {ratio:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
