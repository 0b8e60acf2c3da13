"""Compare a gen_statem event log with the one OTP 25 recorded (canonical order).

The canonical order and the mismatch report are the project's one comparison,
:mod:`eventlog` (gen_statem logs are process logs with three more effect
lines: ``init``, ``cb`` and ``reply``). This module adds what only the
gen_statem corpus needs: reading its expected logs, :func:`loose` for the
recordings whose effect lines fell after the op's ``result`` line, and a
command that runs the whole corpus::

    python tests/conformance/statem_compare.py [--backend B] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eventlog import canonical_process_order, explain_mismatch, parse_log, render

CORPUS = Path(__file__).resolve().parent / "otp25" / "statem"


def canonical(lines: Iterable[dict[str, Any]]) -> list[str]:
    """The log rendered in canonical order."""
    return render(canonical_process_order(lines))


def loose(lines: Iterable[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The log without its ``result``/``alive`` lines (canonical), and those lines apart.

    Two logs equal under :func:`loose` differ at most in where effect lines
    fall relative to an op's ``result`` and ``alive`` lines (before them or
    after them, up to the next op).
    """
    lines = list(lines)
    kept = [line for line in lines if line.get("event") not in ("result", "alive")]
    marks = [line for line in lines if line.get("event") in ("result", "alive")]
    return canonical(kept), render(marks)


def read_log(text: str) -> list[dict[str, Any]]:
    """Parse a JSON-lines log."""
    return parse_log(text, "log")


def expected_log(name: str) -> list[dict[str, Any]]:
    path = CORPUS / "expected" / f"{name}.jsonl"
    return parse_log(path.read_text(encoding="utf-8"), str(path))


def difference(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> str | None:
    """None when the logs match in canonical order, else the first difference and a diff."""
    return explain_mismatch(canonical(expected), canonical(got))


def main(argv: list[str] | None = None) -> int:
    import statem_adapter

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    args = parser.parse_args(argv)
    names = sorted(p.stem for p in (CORPUS / "scenarios").glob("*.json"))
    if args.only:
        wanted = set(args.only.split(","))
        names = [n for n in names if n in wanted]
    failed = 0
    for name in names:
        scenario = json.loads((CORPUS / "scenarios" / f"{name}.json").read_text(encoding="utf-8"))
        got = statem_adapter.run_scenario(scenario, args.backend)
        problem = difference(expected_log(name), got)
        if problem is not None:
            failed += 1
            print(f"--- {name}: {problem}\n")
    print(f"{len(names)} scenarios on {args.backend}: {len(names) - failed} match")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
