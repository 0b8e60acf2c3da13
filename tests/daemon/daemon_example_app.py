"""A small application for the daemon tests: a supervisor, three workers and a nested supervisor.

Tree (start order)::

    example (one_for_one, intensity from EXAMPLE_INTENSITY, default 3 in 10 s)
    ├── alpha   worker, registered "alpha"
    ├── inner   supervisor, registered "inner"
    │   ├── gamma   worker
    │   └── delta   worker
    └── beta    worker, registered "beta"

Every worker traps exits, so a shutdown from its supervisor runs ``terminate``,
which logs ``example worker <name> terminating`` on the ``example`` logger; the
tests read the shutdown order from those lines. ``cast(name, "crash")`` crashes
a worker on demand. With ``EXAMPLE_SLOW_STOP=<seconds>``, ``beta`` takes that
long to terminate (its shutdown timeout is raised to match).

:func:`application_with_sagas` is a second tree for the telemetry tests::

    example_sagas (one_for_one)
    ├── sagas     saga supervisor, registered "thunderline.sagas"
    ├── alpha     worker, registered "alpha"
    └── starter   starts two sagas from its init (so again on every restart):
                  "greet" (one step that logs "greeting <who>" and returns) and
                  "linger" (one step that sleeps until cancelled; joined if running)
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any

import anyio

import thunderline.runtime as tl
from thunderline import sagas

logger = logging.getLogger("example")


class Worker(tl.Server[str]):
    """A worker that answers ``ping``, crashes on ``crash`` and logs its start and stop."""

    async def init(self, name: str) -> tl.Ok[str]:
        tl.trap_exit(True)
        logger.info("example worker %s started", name)
        return tl.Ok(name)

    async def handle_call(self, request: Any, from_: tl.From, state: str) -> tl.Reply[str]:
        return tl.Reply(("pong", state), state)

    async def handle_cast(self, request: Any, state: str) -> tl.NoReply[str]:
        if request == "crash":
            raise RuntimeError(f"worker {state} was asked to crash")
        return tl.NoReply(state)

    async def terminate(self, reason: Any, state: str) -> None:
        logger.info("example worker %s terminating: %r", state, reason)
        slow = float(os.environ.get("EXAMPLE_SLOW_STOP", "0"))
        if state == "beta" and slow > 0:
            await anyio.sleep(slow)


async def start_worker(name: str, register: bool) -> tl.Pid | None:
    """Start a :class:`Worker` linked to the caller (a supervisor)."""
    return await tl.start_link(Worker, name, name=name if register else None)


def worker_spec(name: str, *, register: bool = True, shutdown: float = 5.0) -> tl.ChildSpec:
    """The child spec of one worker."""
    return tl.ChildSpec(id=name, start=start_worker, args=(name, register), shutdown=shutdown)


def application() -> tl.ChildSpec:
    """The application spec (a zero-argument factory, as ``thunderline run`` accepts)."""
    intensity = int(os.environ.get("EXAMPLE_INTENSITY", "3"))
    slow = float(os.environ.get("EXAMPLE_SLOW_STOP", "0"))
    inner = tl.supervisor_spec(
        "inner",
        [worker_spec("gamma", register=False), worker_spec("delta", register=False)],
        name="inner",
    )
    return tl.supervisor_spec(
        "example",
        [worker_spec("alpha"), inner, worker_spec("beta", shutdown=max(5.0, slow + 5.0))],
        name="example",
        strategy="one_for_one",
        intensity=intensity,
        period=10,
    )


#: A Supervisor instance as application spec (the other accepted shape).
def supervisor_instance() -> tl.Supervisor:
    """A bare two-worker supervisor, returned as a Supervisor instance."""
    return tl.Supervisor([worker_spec("one"), worker_spec("two")], name="pair")


not_a_spec = 42


async def greet(who: str) -> str:
    """The one step of the ``greet`` saga (its log line carries the step's trace id)."""
    logger.info("greeting %s", who)
    return f"hello {who}"


async def linger() -> None:
    """The one step of the ``linger`` saga: runs until the saga is cancelled."""
    await anyio.sleep_forever()


def _build_sagas() -> tuple[sagas.Saga, sagas.Saga]:
    greeting = sagas.SagaBuilder("greet", inputs=["who"])
    greeting.step("hello", greet, args={"who": sagas.Input("who")})
    lingering = sagas.SagaBuilder("linger")
    lingering.step("wait", linger)
    return greeting.build(returns="hello"), lingering.build(returns="wait")


GREET, LINGER = _build_sagas()
_incarnations = itertools.count(1)


class SagaStarter(tl.Server[int]):
    """Starts ``greet`` (a new correlation id each time) and ``linger`` from its init."""

    async def init(self) -> tl.Ok[int]:
        number = next(_incarnations)
        await sagas.start_saga(
            "thunderline.sagas", GREET, {"who": "daemon"}, correlation_id=f"greet-{number}"
        )
        await sagas.start_saga(
            "thunderline.sagas",
            LINGER,
            correlation_id="linger",
            on_duplicate="join",
            in_flight="cancel",
        )
        return tl.Ok(number)


async def start_saga_starter() -> tl.Pid | None:
    """Start a :class:`SagaStarter` linked to the caller."""
    return await tl.start_link(SagaStarter, name="starter")


def application_with_sagas() -> tl.ChildSpec:
    """A tree with a saga supervisor, a worker and a process that starts sagas."""
    return tl.supervisor_spec(
        "example_sagas",
        [
            sagas.saga_supervisor_spec("sagas", name="thunderline.sagas"),
            worker_spec("alpha"),
            tl.ChildSpec(id="starter", start=start_saga_starter),
        ],
        name="example_sagas",
        strategy="one_for_one",
        intensity=5,
        period=10,
    )
