"""The far side of the distribution benchmarks, in its own OS process.

``python -m benchmarks._dist_peer URL`` joins the cluster of URL as node
``peer`` (asyncio) and, on the same loop, opens a raw nats-py connection:

* thunderline: ``echo`` (a registered Server: a call returns its request) and
  ``sink`` (a registered process: counts messages; ``("done", pid, n)``
  answers ``"done"`` once n messages arrived);
* raw nats-py: ``bench.raw.echo`` (request/reply) and ``bench.raw.sink``
  (counts; a request on ``bench.raw.done`` with n answers once n arrived).

Prints ``ready`` and runs until killed.
"""

from __future__ import annotations

import sys
from typing import Any

import nats

import thunderline as tl


class Echo(tl.Server[None]):
    async def init(self, *args: Any) -> tl.Ok[None]:
        return tl.Ok(None)

    async def handle_call(self, request: Any, from_: tl.From, state: None) -> tl.Reply[None]:
        if request == "pid":
            return tl.Reply(tl.current_pid(), state)
        return tl.Reply(request, state)


async def sink() -> None:
    count = 0
    while True:
        message = await tl.receive()
        if type(message) is tuple and message and message[0] == "done":
            while count < message[2]:
                await tl.receive()
                count += 1
            tl.send(message[1], "done")
            count = 0
        else:
            count += 1


async def main(url: str) -> None:
    tl.register("sink", tl.spawn(sink))
    await tl.start(Echo, name="echo")
    nc = await nats.connect(url.rsplit("/", 1)[0] if url.count("/") > 2 else url)
    counter = {"n": 0}
    waiting: list[tuple[int, Any]] = []

    async def echo(msg: Any) -> None:
        await msg.respond(msg.data)

    async def count(msg: Any) -> None:
        counter["n"] += 1
        for item in list(waiting):
            if counter["n"] >= item[0]:
                waiting.remove(item)
                await item[1].respond(b"done")
                counter["n"] = 0

    async def done(msg: Any) -> None:
        target = int(msg.data)
        if counter["n"] >= target:
            counter["n"] = 0
            await msg.respond(b"done")
        else:
            waiting.append((target, msg))

    await nc.subscribe("bench.raw.echo", cb=echo)
    await nc.subscribe("bench.raw.sink", cb=count, pending_msgs_limit=0, pending_bytes_limit=0)
    await nc.subscribe("bench.raw.done", cb=done)
    await nc.flush()
    print("ready", flush=True)
    await tl.receive()


if __name__ == "__main__":
    tl.run(main, sys.argv[1], node="peer", cluster=sys.argv[1])
