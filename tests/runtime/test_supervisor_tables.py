"""Decision tables and validation: ``exit_action`` over every reason x restart type, and the
errors of child specs and supervisor flags (what was accepted, what was received)."""

from __future__ import annotations

from typing import Any

import pytest

from thunderline.runtime import (
    BRUTAL_KILL,
    INFINITY,
    KILL,
    KILLED,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    ChildSpec,
    ChildSpecError,
    ChildType,
    Crashed,
    DynamicSupervisor,
    Pid,
    Restart,
    Shutdown,
    Supervisor,
    SupervisorFlags,
    exit_action,
    supervisor_spec,
)

QUIET: list[Any] = [NORMAL, SHUTDOWN, Shutdown("drain"), Shutdown(("a", 1))]
ABNORMAL: list[Any] = [KILLED, KILL, NOPROC, Crashed(ValueError("x")), "boom", ("bad", 1), None]

# (restart type, quiet reason?) -> (action, report): supervisor.erl do_restart/3
TABLE = {
    (Restart.PERMANENT, True): ("restart", True),
    (Restart.PERMANENT, False): ("restart", True),
    (Restart.TRANSIENT, True): ("drop", False),
    (Restart.TRANSIENT, False): ("restart", True),
    (Restart.TEMPORARY, True): ("drop", False),
    (Restart.TEMPORARY, False): ("drop", True),
}


@pytest.mark.parametrize("restart", list(Restart))
@pytest.mark.parametrize("reason", QUIET + ABNORMAL, ids=repr)
def test_exit_action_table(restart: Restart, reason: Any) -> None:
    assert exit_action(restart, reason) == TABLE[(restart, reason in QUIET)]


async def _start() -> Pid | None:
    return None


def test_child_spec_defaults() -> None:
    worker = ChildSpec(id="w", start=_start)
    assert (worker.restart, worker.type, worker.shutdown) == (
        Restart.PERMANENT,
        ChildType.WORKER,
        5.0,
    )
    sup = ChildSpec(id="s", start=_start, type="supervisor")
    assert sup.shutdown == INFINITY
    assert ChildSpec(id="b", start=_start, shutdown="brutal_kill").shutdown is BRUTAL_KILL
    assert supervisor_spec("nested").type is ChildType.SUPERVISOR


@pytest.mark.parametrize(
    ("options", "field", "accepted", "received"),
    [
        ({"restart": "sometimes"}, "restart", "permanent / transient / temporary", "sometimes"),
        ({"type": "manager"}, "type", "worker / supervisor", "manager"),
        ({"shutdown": 0}, "shutdown", "BRUTAL_KILL, a timeout in seconds > 0, or INFINITY", 0),
        (
            {"shutdown": -1.5},
            "shutdown",
            "BRUTAL_KILL, a timeout in seconds > 0, or INFINITY",
            -1.5,
        ),
        (
            {"shutdown": True},
            "shutdown",
            "BRUTAL_KILL, a timeout in seconds > 0, or INFINITY",
            True,
        ),
        ({"start": "not callable"}, "start", "an async callable", "not callable"),
        ({"id": ["unhashable"]}, "id", "a hashable value", ["unhashable"]),
        ({"significant": "yes"}, "significant", "True or False", "yes"),
    ],
)
def test_child_spec_errors_say_what_was_accepted_and_received(
    options: dict[str, Any], field: str, accepted: str, received: Any
) -> None:
    arguments: dict[str, Any] = {"id": "w", "start": _start, **options}
    with pytest.raises(ChildSpecError) as info:
        ChildSpec(**arguments)
    error = info.value
    assert (error.field, error.accepted, error.received) == (field, accepted, received)
    assert accepted in str(error)
    assert repr(received) in str(error)


@pytest.mark.parametrize(
    ("flags", "field", "received"),
    [
        ({"strategy": "one_for_some"}, "strategy", "one_for_some"),
        ({"intensity": -1}, "intensity", -1),
        ({"intensity": 1.5}, "intensity", 1.5),
        ({"period": 0}, "period", 0),
        ({"auto_shutdown": "sometimes"}, "auto_shutdown", "sometimes"),
    ],
)
def test_supervisor_flag_errors(flags: dict[str, Any], field: str, received: Any) -> None:
    with pytest.raises(ChildSpecError) as info:
        SupervisorFlags(**flags)
    assert (info.value.field, info.value.received) == (field, received)
    with pytest.raises(ChildSpecError):
        Supervisor((), **flags)


def test_supervisor_rejects_duplicate_ids_and_non_specs() -> None:
    spec = ChildSpec(id="w", start=_start)
    with pytest.raises(ChildSpecError) as duplicate:
        Supervisor([spec, spec])
    assert (duplicate.value.field, duplicate.value.received) == ("id", "w")
    with pytest.raises(ChildSpecError) as not_spec:
        Supervisor(["w"])  # type: ignore[list-item]
    assert not_spec.value.received == "w"
    with pytest.raises(ChildSpecError) as nested:
        supervisor_spec("nested", intensity=-3)
    assert nested.value.field == "intensity"
    with pytest.raises(ChildSpecError) as dynamic:
        DynamicSupervisor(spec, max_children=-1)
    assert dynamic.value.field == "max_children"
