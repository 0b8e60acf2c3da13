"""``thunderline state`` answers for a StateMachine with its ``(state, data)`` pair, as OTP's
``sys:get_state`` does for a ``gen_statem`` (through ``format_status``, as for a Server)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from daemon_helpers import Daemon, run_cli

MakeDaemon = Callable[..., Daemon]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_state_shows_a_machines_state_and_data(daemon_factory: MakeDaemon, backend: str) -> None:
    daemon = daemon_factory("--backend", backend, app="daemon_statem_app:application").start()
    control = ("--control", daemon.control)

    shown = run_cli("state", "light", *control)
    assert shown.returncode == 0, shown.stderr
    header, body = shown.stdout.splitlines()
    assert header.endswith("light (Light)")
    assert body == "('green', {'code': '***', 'cycles': 0})"  # keys sorted

    as_json = json.loads(run_cli("state", "light", "--json", *control).stdout)
    assert as_json["name"] == "light"
    assert as_json["state"] == body
    assert as_json["truncated"] is False

    supervisor = run_cli("state", "lights", *control)  # a Supervisor answers too (a Server)
    assert supervisor.returncode == 0, supervisor.stderr
    master = daemon.request("processes")[0]["pid"]  # the node's own process: no loop
    refused = run_cli("state", master, *control)
    assert refused.returncode == 1
    assert "not_a_server" in refused.stderr
    assert "no Server or StateMachine loop" in refused.stderr
    assert refused.stderr.count("\n") == 1
