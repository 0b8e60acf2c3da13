"""The conformance comparison forgets exactly the orderings Erlang does not promise."""

from __future__ import annotations

from typing import Any

import pytest
from eventlog import (
    LogFormatError,
    canonical_process_order,
    explain_mismatch,
    parse_log,
    render,
)

Event = dict[str, Any]


def _op(*effects: Event) -> list[Event]:
    return [
        {"event": "op", "i": 0, "op": "flush", "proc": "p1"},
        *effects,
        {"event": "result", "i": 0, "result": "{ok,0}"},
        {"event": "end"},
    ]


def _same(a: list[Event], b: list[Event]) -> bool:
    return render(canonical_process_order(a)) == render(canonical_process_order(b))


def _exit(proc: str, reason: str = "boom") -> Event:
    return {"event": "exit", "proc": proc, "reason": reason}


def _msg(proc: str, msg: str) -> Event:
    return {"event": "msg", "proc": proc, "msg": msg}


def test_deaths_of_different_processes_commute() -> None:
    assert _same(_op(_exit("p10"), _exit("p2")), _op(_exit("p2"), _exit("p10")))


def test_one_process_keeps_its_own_order() -> None:
    first = _op(
        {"event": "terminate", "proc": "s1", "reason": "x"},
        _exit("s1", "x"),
    )
    second = _op(
        _exit("s1", "x"),
        {"event": "terminate", "proc": "s1", "reason": "x"},
    )
    assert not _same(first, second)


def test_messages_from_different_senders_commute() -> None:
    a, b = _msg("p1", "{'EXIT',p2,boom}"), _msg("p1", "{'EXIT',p3,boom}")
    assert _same(_op(a, b), _op(b, a))


def test_messages_from_one_sender_keep_their_order() -> None:
    a, b = _msg("p1", "{'EXIT',p2,boom}"), _msg("p1", "{'EXIT',p2,other}")
    assert not _same(_op(a, b), _op(b, a))
    plain_a, plain_b = _msg("p1", "hello"), _msg("p1", "world")
    assert not _same(_op(plain_a, plain_b), _op(plain_b, plain_a))


def test_a_down_and_an_exit_from_the_same_process_keep_their_order() -> None:
    down = {"event": "down", "proc": "p1", "ref": "m1", "target": "p2", "reason": "boom"}
    exit_msg = _msg("p1", "{'EXIT',p2,boom}")
    assert not _same(_op(exit_msg, down), _op(down, exit_msg))


def test_flushes_separated_by_another_effect_do_not_mix() -> None:
    a, b = _msg("p1", "{'EXIT',p2,boom}"), _msg("p1", "{'EXIT',p3,boom}")
    reaction = {"event": "reaction", "proc": "p1", "msg": "x", "result": "{ok,true}"}
    assert not _same(_op(a, reaction, b), _op(b, reaction, a))


def test_lines_outside_effects_are_compared_in_place() -> None:
    log = _op(_exit("p2"))
    moved = [log[0], log[2], log[1], log[3]]
    assert not _same(log, moved)


def test_mismatch_names_the_first_differing_line_and_op() -> None:
    expected = render(_op(_exit("p2", "boom")))
    got = render(_op(_exit("p2", "normal")))
    problem = explain_mismatch(expected, got)
    assert problem is not None
    headline = problem.splitlines()[0]
    assert "line 1" in headline
    assert "in a flush op" in headline
    assert "'boom' -> 'normal'" in headline
    assert "--- otp" in problem
    assert "+++ thunderline" in problem
    assert explain_mismatch(expected, expected) is None


def test_a_missing_line_is_named() -> None:
    expected = render(_op(_exit("p2")))
    problem = explain_mismatch(expected, expected[:-1])
    assert problem is not None
    assert "expected end, got <end of log>" in problem


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"no_event": 1}'])
def test_a_bad_line_is_rejected_with_its_number(text: str) -> None:
    with pytest.raises(LogFormatError, match=r"got\.jsonl line 2"):
        parse_log('{"event": "end"}\n' + text, "got.jsonl")
