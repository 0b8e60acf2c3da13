"""Compare a gen_statem event log with the one a real OTP 25 recorded, in canonical order.

Canonical order (the corpus's format, section 5): between an ``op`` line and
its ``result`` line, the effect lines are grouped by process (``driver``,
then the clients ``p1, p2, ...``, then the machines ``s1, s2, ...``), each
process keeping its own order; inside a process, each run of consecutive
``msg``/``down`` lines is ordered by sender (the target of a ``down``, the
dying process of an ``'EXIT'`` message), stably. ``op``, ``result``,
``alive`` and ``end`` never move. Lines compare as JSON objects (key order
and whitespace do not matter).

Usage as a command::

    python tests/conformance/statem_compare.py [--backend B] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent / "otp25" / "statem"
EFFECTS = frozenset({"init", "cb", "terminate", "exit", "reply", "msg", "down"})
_EXIT_SENDER = re.compile(r"^\{'EXIT',([a-z0-9]+),")


def _proc_key(name: str) -> tuple[int, int, str]:
    if name == "driver":
        return (0, 0, name)
    match = re.fullmatch(r"([ps])(\d+)", name)
    if match is None:
        return (3, 0, name)
    return (1 if match.group(1) == "p" else 2, int(match.group(2)), name)


def _sender(line: dict[str, Any]) -> tuple[int, int, str]:
    if line["event"] == "down":
        return _proc_key(str(line.get("target", "")))
    match = _EXIT_SENDER.match(str(line.get("msg", "")))
    return _proc_key(match.group(1)) if match else (-1, 0, "")


def _sort_mailbox_runs(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    run: list[dict[str, Any]] = []
    for line in [*lines, {"event": "_"}]:
        if line["event"] in ("msg", "down"):
            run.append(line)
            continue
        out.extend(sorted(run, key=_sender))
        run = []
        if line["event"] != "_":
            out.append(line)
    return out


def canonical(lines: Iterable[dict[str, Any]]) -> list[str]:
    """The log as canonical JSON strings, in canonical order."""
    result: list[dict[str, Any]] = []
    effects: list[dict[str, Any]] = []

    def flush() -> None:
        groups: dict[str, list[dict[str, Any]]] = {}
        for line in effects:
            groups.setdefault(str(line.get("proc", "")), []).append(line)
        for name in sorted(groups, key=_proc_key):
            result.extend(_sort_mailbox_runs(groups[name]))
        effects.clear()

    for line in lines:
        if line.get("event") in EFFECTS:
            effects.append(line)
        else:
            flush()
            result.append(line)
    flush()
    return [json.dumps(line, sort_keys=True, separators=(",", ":")) for line in result]


def loose(lines: Iterable[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The log with ``result``/``alive`` lines taken out, and those lines on their own.

    Two logs equal under :func:`loose` differ at most in where effect lines
    fall relative to an op's ``result`` and ``alive`` lines (before or after
    them, up to the next op), the rest of the canonical order holding.
    """
    kept = [line for line in lines if line.get("event") not in ("result", "alive")]
    marks = [line for line in lines if line.get("event") in ("result", "alive")]
    return canonical(kept), canonical(marks)


def read_log(text: str) -> list[dict[str, Any]]:
    """Parse a JSON-lines log (blank lines ignored)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def expected_log(name: str) -> list[dict[str, Any]]:
    return read_log((CORPUS / "expected" / f"{name}.jsonl").read_text(encoding="utf-8"))


def difference(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> str | None:
    """None when the logs match in canonical order, else the first divergence and a diff."""
    want, have = canonical(expected), canonical(got)
    if want == have:
        return None
    index = next(
        (n for n, (a, b) in enumerate(zip(want, have, strict=False)) if a != b),
        min(len(want), len(have)),
    )
    diff = difflib.unified_diff(
        want[max(0, index - 3) : index + 12],
        have[max(0, index - 3) : index + 12],
        "expected",
        "got",
        lineterm="",
    )
    return f"first difference at canonical line {index}\n" + "\n".join(diff)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
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
