"""The wire table of the distribution seam (``remote.wire_types``): derived from the
runtime's classes, its names are the protocol's and every value round-trips."""

from __future__ import annotations

from typing import Any

import pytest

import thunderline.runtime as tl
from thunderline.lowlevel import remote


def _pid_and_ref() -> tuple[tl.Pid, tl.Ref]:
    return remote.make_pid(1, 7), remote.make_ref(1, 9)


def test_the_wire_names_are_stable() -> None:
    assert sorted(remote.wire_types()) == [
        "Call",
        "Cast",
        "Down",
        "Exit",
        "From",
        "Reply",
        "Stop",
        "kill",
        "killed",
        "noconnection",
        "noproc",
        "normal",
        "shutdown",
    ]


@pytest.mark.parametrize(
    "reason", [tl.NORMAL, tl.SHUTDOWN, tl.KILL, tl.KILLED, tl.NOPROC, tl.NOCONNECTION]
)
def test_every_reason_constant_comes_back_as_itself(reason: Any) -> None:
    cls, fields_of, rebuild = remote.wire_types()[repr(reason).lower()]
    assert type(reason) is cls
    assert rebuild(*fields_of(reason)) is reason


def test_messages_and_shutdown_details_round_trip_field_by_field() -> None:
    pid, ref = _pid_and_ref()
    from_ = tl.From(pid, ref)
    values: dict[str, Any] = {
        "From": from_,
        "Exit": tl.Exit(pid, "boom"),
        "Down": tl.Down(ref, "name", tl.NOPROC),
        "shutdown": tl.Shutdown("detail"),
    }
    types = remote.wire_types()
    for name, value in values.items():
        cls, fields_of, rebuild = types[name]
        assert type(value) is cls
        assert rebuild(*fields_of(value)) == value
    assert types["Down"][1](values["Down"]) == [ref, "name", tl.NOPROC]
    # the internal messages (no equality of their own): fields in constructor order
    for name, fields in [
        ("Call", [from_, "request"]),
        ("Cast", ["request"]),
        ("Reply", [ref, "value"]),
        ("Stop", [tl.SHUTDOWN]),
    ]:
        _cls, fields_of, rebuild = types[name]
        assert fields_of(rebuild(*fields)) == fields
