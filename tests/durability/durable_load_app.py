"""The reference application under load, for the crash tests (run by ``thunderline run``).

Tree (start order)::

    durable_load (one_for_one)
    ├── load      LOAD_PUBLISHERS publisher processes (default 32) and, with
    │             LOAD_KILL=flow,vault,..., a killer of those domains
    └── app       the reference application (AppConfig.from_env())

The load starts first so that it stops last: during a graceful stop the
publishers keep publishing and meet the draining application.

Each publisher publishes ``system.heartbeat`` events in a loop. Right after a
publish returned it appends the event id to LOAD_ACKS (one ``O_APPEND`` write
per line: the test's record outside the process under test, kept by the OS
when this process is killed). A publish that raised is retried with the same
event (idempotent); ``ShuttingDownError`` ends the publisher, and is appended
to LOAD_ERRORS as ``shutting_down``; any other error type is appended there too.
LOAD_KILL=flow,vault,... kills those domains in turn every LOAD_KILL_PERIOD
seconds (``exit(pid, KILL)``, each kill appended to LOAD_KILLS) until the file
LOAD_KILL_STOP exists.
Without LOAD_ACKS there is no load (a quiet restart).
"""

from __future__ import annotations

import os
from typing import Any

import anyio

import thunderline.runtime as tl
from thunderline.domains import AppConfig, Event, ShuttingDownError, application_spec, flow

_NAMES = {
    "flow": "thunderline.flow",
    "bolt": "thunderline.bolt",
    "vault": "thunderline.vault",
    "link": "thunderline.link",
}


def _append(fd: int, line: str) -> None:
    os.write(fd, (line + "\n").encode())


async def _publisher(index: int, acks: int, errors: int) -> None:
    n = 0
    while True:
        n += 1
        event = Event.new(
            "system.heartbeat", type="heartbeat", source="gate", payload={"p": index, "n": n}
        )
        while True:
            try:
                await flow.publish(event)
            except ShuttingDownError:
                _append(errors, "shutting_down")
                return
            except tl.ThunderlineError as exc:  # retried with the same event: idempotent
                _append(errors, type(exc).__name__)
                await anyio.sleep(0.02)
                continue
            _append(acks, str(event.id))
            break


async def _killer(names: list[str], period: float, stop_file: str, log: int) -> None:
    """Kill each named domain in turn every ``period`` s, until ``stop_file`` exists.

    Starts once Flow is registered (the application has started).
    """
    while tl.whereis(_NAMES["flow"]) is None:
        await anyio.sleep(0.05)
    while True:
        for name in names:
            await anyio.sleep(period)
            if os.path.exists(stop_file):
                return
            pid = tl.whereis(_NAMES[name])
            if pid is not None:
                tl.exit(pid, tl.KILL)
                _append(log, name)


async def _start_load() -> tl.Pid | None:
    async def load() -> None:
        acks = os.open(os.environ["LOAD_ACKS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        errors = os.open(os.environ["LOAD_ERRORS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        tl.trap_exit(True)
        workers = [
            tl.spawn_link(_publisher, i, acks, errors)
            for i in range(int(os.environ.get("LOAD_PUBLISHERS", "32")))
        ]
        kill = [name for name in os.environ.get("LOAD_KILL", "").split(",") if name]
        if kill:
            period = float(os.environ.get("LOAD_KILL_PERIOD", "0.5"))
            log = os.open(os.environ["LOAD_KILLS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            stop = os.environ["LOAD_KILL_STOP"]
            workers.append(tl.spawn_link(_killer, kill, period, stop, log))
        while True:  # until the supervisor's shutdown (the killer may end normally before)
            message: Any = await tl.receive(tl.Exit)
            if not (message.pid in workers and message.reason == tl.NORMAL):
                break
        for pid in workers:
            tl.exit(pid, tl.KILL)
        raise tl.ProcessExit(message.reason)

    return tl.spawn_link(load)


def application() -> tl.ChildSpec:
    """The application spec (a zero-argument factory, as ``thunderline run`` accepts)."""
    children = [application_spec(AppConfig.from_env())]
    if os.environ.get("LOAD_ACKS"):
        children.insert(0, tl.ChildSpec(id="load", start=_start_load, shutdown=5.0))
    return tl.supervisor_spec("durable_load", children, strategy="one_for_one", intensity=1000)
