"""Event logs of the OTP conformance corpora: parse, put in comparable order, explain a mismatch.

A log is a list of JSON objects, one per line, each with an ``"event"`` key
(``otp25/README.md`` describes the formats). Two logs are compared as lists of
*rendered* lines: each object dumped with sorted keys and no whitespace, so key
order and spacing never matter.

Order:

* Supervisor logs are compared line for line (their order is deterministic).
* Process logs are first put in **canonical order** (:func:`canonical_process_order`),
  which keeps every ordering Erlang guarantees and forgets the ones that only
  reflect how ERTS happened to schedule processes. Inside one op (the effect
  lines after an ``op`` line, up to the next line that is not an effect), the
  effect lines are grouped by acting process, each process keeping its own
  order, groups sorted ``driver``, ``p1``, ``p2``, ..., ``s1``, ... (numerically),
  then other names alphabetically. Inside a group, each maximal run of
  ``msg``/``down`` lines (one flush) is stably sorted by sender: a ``down``'s
  sender is its ``target``, an ``{'EXIT',From,_}`` message's is ``From``, and
  any other message sorts before all of those, keeping its place among its kind.

On a mismatch, :func:`explain_mismatch` names the first differing line (and the
op it belongs to) and shows a unified diff, ``otp`` against ``thunderline``.

Run as a program to diff two log files::

    python tests/conformance/eventlog.py --process expected.jsonl got.jsonl
    python tests/conformance/eventlog.py --supervisor expected.jsonl got.jsonl
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "LogFormatError",
    "actor_rank",
    "canonical_process_order",
    "explain_mismatch",
    "mailbox_sender",
    "parse_log",
    "render",
]

Event = dict[str, Any]

#: Lines that report something a process did or took during an op (``init``,
#: ``cb`` and ``reply`` occur in gen_statem logs only).
EFFECTS = frozenset({"exit", "terminate", "msg", "down", "reaction", "init", "cb", "reply"})
#: Effect lines that are one message taken out of a mailbox.
MAILBOX = frozenset({"msg", "down"})

_ACTOR = re.compile(r"([ps])(\d+)")
_EXIT_FROM = re.compile(r"\{'EXIT',([^,]+),")


class LogFormatError(ValueError):
    """A log line is not a JSON object with an ``"event"`` key (the message names the line)."""


def parse_log(text: str, origin: str) -> list[Event]:
    """Parse JSON lines (blank lines skipped); raise :class:`LogFormatError` on a bad one."""
    events: list[Event] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise LogFormatError(
                f"{origin} line {number} is not JSON ({exc}): {line[:120]!r}"
            ) from exc
        if not isinstance(event, dict) or "event" not in event:
            raise LogFormatError(f"{origin} line {number} is not an event object: {line[:120]!r}")
        events.append(event)
    return events


def actor_rank(name: object) -> tuple[int, int, str]:
    """Sort key of a scenario actor: driver, then p1 < p2 < p10, then s1 < s2, then others."""
    if name == "driver":
        return (1, 0, "")
    if isinstance(name, str):
        match = _ACTOR.fullmatch(name)
        if match:
            return (2 if match[1] == "p" else 3, int(match[2]), "")
        return (4, 0, name)
    return (5, 0, repr(name))


def mailbox_sender(event: Event) -> tuple[int, int, str]:
    """Sort key of the sender of a ``msg``/``down`` line; messages with no visible sender first."""
    if event["event"] == "down":
        return actor_rank(event.get("target", ""))
    match = _EXIT_FROM.match(str(event.get("msg", "")))
    return actor_rank(match[1]) if match else (0, 0, "")


def _order_effects(block: list[Event]) -> list[Event]:
    by_actor: dict[Any, list[Event]] = {}
    for event in block:
        by_actor.setdefault(event.get("proc"), []).append(event)
    ordered: list[Event] = []
    for actor in sorted(by_actor, key=actor_rank):
        run: list[Event] = []
        for event in by_actor[actor]:
            if event["event"] in MAILBOX:
                run.append(event)
                continue
            ordered.extend(sorted(run, key=mailbox_sender))
            run = []
            ordered.append(event)
        ordered.extend(sorted(run, key=mailbox_sender))
    return ordered


def canonical_process_order(events: Iterable[Event]) -> list[Event]:
    """Reorder a process log canonically (see the module docstring); other lines stay put."""
    out: list[Event] = []
    block: list[Event] | None = None
    for event in events:
        kind = event.get("event")
        if block is not None and kind in EFFECTS:
            block.append(event)
            continue
        if block:
            out.extend(_order_effects(block))
        block = [] if kind == "op" else None
        out.append(event)
    if block:
        out.extend(_order_effects(block))
    return out


def render(events: Iterable[Event]) -> list[str]:
    """One comparable string per event: sorted keys, no whitespace."""
    return [json.dumps(e, sort_keys=True, separators=(",", ":")) for e in events]


def _label(line: str | None) -> str:
    if line is None:
        return "<end of log>"
    event = json.loads(line)
    kind = str(event["event"])
    return f"{kind} of {event['proc']}" if kind in EFFECTS and "proc" in event else kind


def explain_mismatch(
    expected: Sequence[str], got: Sequence[str], *, context: int = 2, limit: int = 60
) -> str | None:
    """None if the rendered logs are equal; else the first difference and a unified diff."""
    if list(expected) == list(got):
        return None
    index = 0
    while index < min(len(expected), len(got)) and expected[index] == got[index]:
        index += 1
    ops = [json.loads(x).get("op") for x in expected[:index] if '"event":"op"' in x]
    where = f" (in a {ops[-1]} op)" if ops else ""
    want = expected[index] if index < len(expected) else None
    have = got[index] if index < len(got) else None
    if want is not None and have is not None and _label(want) == _label(have):
        w, h = json.loads(want), json.loads(have)
        fields = sorted(k for k in set(w) | set(h) if w.get(k) != h.get(k))
        changes = "; ".join(f"{k}: {w.get(k)!r} -> {h.get(k)!r}" for k in fields)
        headline = f"line {index}: {w['event']} differs{where}: {changes}"
    else:
        headline = f"line {index}: expected {_label(want)}, got {_label(have)}{where}"
    diff = list(
        difflib.unified_diff(
            list(expected), list(got), "otp", "thunderline", n=context, lineterm=""
        )
    )
    if len(diff) > limit:
        diff = [*diff[:limit], f"... ({len(diff) - limit} more diff lines)"]
    return "\n".join([headline, *diff])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Diff two conformance event logs.")
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--process", action="store_true", help="canonical order (process logs)")
    kind.add_argument("--supervisor", action="store_true", help="exact order (supervisor logs)")
    parser.add_argument("expected", type=Path)
    parser.add_argument("got", type=Path)
    args = parser.parse_args(argv)
    try:
        logs = [
            parse_log(path.read_text(encoding="utf-8"), str(path))
            for path in (args.expected, args.got)
        ]
    except (OSError, LogFormatError) as exc:
        print(f"eventlog: {exc}", file=sys.stderr)
        return 2
    if args.process:
        logs = [canonical_process_order(log) for log in logs]
    problem = explain_mismatch(render(logs[0]), render(logs[1]))
    if problem is None:
        print("logs match")
        return 0
    print(problem)
    return 1


if __name__ == "__main__":
    sys.exit(main())
