"""``thunderline demo``: a small, runnable tour of the process core.

A ping and a pong process exchange messages; pong is linked to a trapping
parent and monitored by an observer, then crashes on purpose, and the demo
prints what each process saw. It runs on the embedded default (no server).
"""

from __future__ import annotations

import argparse
from typing import Any

import thunderline.runtime as tl
from thunderline.cli._main import CommandError


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser("demo", help="run the demo application and print its trace")
    parser.add_argument("--rounds", type=int, default=3, help="ping-pong rounds (default 3)")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.set_defaults(handler=run_demo)


async def _pong() -> None:
    while True:
        message = await tl.receive()
        if message == "crash":
            raise RuntimeError("pong was asked to crash")
        sender, count = message
        tl.send(sender, ("pong", count))


async def _observer(target: tl.Pid, lines: list[str]) -> None:
    ref = tl.monitor(target)
    down = await tl.receive(lambda m: isinstance(m, tl.Down) and m.ref == ref)
    lines.append(f"observer {tl.current_pid()!r}: Down from {down.pid!r}, reason {down.reason!r}")


async def _main(rounds: int) -> list[str]:
    lines: list[str] = []
    me = tl.current_pid()
    tl.trap_exit(True)
    pong = tl.spawn_link(_pong)
    tl.register("pong", pong)
    observer = tl.spawn(_observer, pong, lines)
    lines.append(f"main {me!r} spawned pong {pong!r} (linked, registered 'pong')")
    lines.append(f"observer {observer!r} monitors pong")
    for count in range(rounds):
        tl.send("pong", (me, count))
        reply = await tl.receive(tuple, timeout=5)
        lines.append(f"main got {reply!r}")
    observer_done = tl.monitor(observer)
    tl.send(pong, "crash")
    exit_message = await tl.receive(tl.Exit, timeout=5)
    lines.append(
        f"main (trapping exits) got Exit from {exit_message.pid!r}: {exit_message.reason!r}"
    )
    await tl.receive(lambda m: isinstance(m, tl.Down) and m.ref == observer_done, timeout=5)
    lines.append(f"whereis('pong') after the crash: {tl.whereis('pong')!r}")
    return lines


def run_demo(args: argparse.Namespace) -> int:
    """Run the process-core demo and print what happened."""
    if args.rounds < 0:
        raise CommandError(f"--rounds must be >= 0, got {args.rounds}")
    lines = tl.run(_main, args.rounds, backend=args.backend)
    for line in lines:
        print(line)
    return 0
