"""Distribution-conformance adapter: run a scenario of otp25/distribution/ on thunderline.dist.

Usage::

    python tests/conformance/distribution_adapter.py [--backend asyncio|trio] SCENARIO.json

It prints the event log of the corpus format on stdout (diagnostics on
stderr). The logical nodes ``n1`` .. ``n3`` are real thunderline nodes, each
with its own ``thunderline.dist`` distribution and its own NATS connection,
all in this interpreter, joined to a private ``nats-server`` (started here,
or ``$THUNDERLINE_TEST_NATS_URL`` when set). Everything between nodes goes
through NATS: sends, links, monitors, exit signals, calls, ``monitor_node``,
the global registry, node-down detection. Only the driver's own bookkeeping
(handing a command to the acting process on its node, reading the state
snapshot, ``erpc``-style remote ``gen_server`` starts) uses the interpreter.

Killing a node closes its NATS connection abruptly and drops the node (its
processes vanish: no exit lines); its peers notice through their failure
detector. Restarting starts a new incarnation under the same name.

Settling: the runner waits until every node's tasks are idle, then sends a
marker from every node to every other node through NATS and waits for all of
them (everything published before has then been delivered), and repeats until
a round changes nothing. Process semantics and the op table are the process
adapter's (``process_adapter.Runner``), extended with nodes.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import json
import os
import sys
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import nats.errors
from process_adapter import (
    _PROC_NAME,
    Atom,
    Command,
    EList,
    ErlangError,
    ExitLog,
    Improper,
    OpRaised,
    Printer,
    Runner,
    ScenarioServer,
    Skipped,
    Throw,
    parse_term,
    to_reason,
    write_atom,
)

import thunderline as tl
from thunderline import dist
from thunderline.dist._codec import NODES
from thunderline.runtime._remote import make_pid

dist.register_type(Atom, "conformance.Atom", fields=lambda a: [a.name], build=Atom)
dist.register_type(
    EList, "conformance.EList", fields=lambda e: list(e), build=lambda *items: EList(items)
)
dist.register_type(
    Improper,
    "conformance.Improper",
    fields=lambda i: [i.items, i.tail],
    build=lambda items, tail: Improper(tuple(items), tail),
)
dist.register_type(
    ErlangError, "conformance.ErlangError", fields=lambda e: [e.term], build=ErlangError
)
dist.register_type(Throw, "conformance.Throw", fields=lambda e: [e.term], build=Throw)

HEARTBEAT = 0.05
TICK = 5.0
BOUND = 30.0
#: Longest wait for one round of settle markers (a marker lost to a cut connection).
MARK_BOUND = 5.0


class DistPrinter(Printer):
    """Terms with nodes: names are atoms, nodes print as ``n1``, node messages as tuples."""

    def _parts(self, v: Any) -> Any:
        if isinstance(v, str):
            yield write_atom(v)
        elif isinstance(v, dist.NodeDown):
            yield from self._parts((Atom("nodedown"), Atom(v.node)))
        elif isinstance(v, dist.NodeUp):
            yield from self._parts((Atom("nodeup"), Atom(v.node)))
        elif isinstance(v, tl.NoConnection):
            yield "noconnection"
        else:
            yield from super()._parts(v)


class NodeHandle:
    """One logical node: its runtime node, distribution, context and helper processes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.node: tl.Node | None = None
        self.dist: dist.DistNode | None = None
        self.ctx: contextvars.Context | None = None
        self.scope = anyio.CancelScope()
        self.agent: tl.Pid | None = None
        self.settler: tl.Pid | None = None
        self.marks: set[Any] = set()
        self.marks_changed = anyio.Event()
        self.halted = False
        self.last_creation = 0


class _Job:
    __slots__ = ("box", "done", "fn")

    def __init__(self, fn: Callable[[], Awaitable[Any]]) -> None:
        self.fn = fn
        self.box: dict[str, Any] = {}
        self.done = anyio.Event()


class DistRunner(Runner):
    """The process adapter's runner, with nodes (see the module docstring)."""

    def __init__(self, script: list[dict[str, Any]], nodes: list[str], url: str) -> None:
        super().__init__(script)
        self.fmt = DistPrinter()
        self.node_names = nodes
        self.url = url
        self.cluster = "c" + uuid.uuid4().hex[:10]
        self.handles: dict[str, NodeHandle] = {}
        self.task_group: anyio.abc.TaskGroup | None = None
        self.home: dict[str, str] = {}
        self.fake_numbers = 10**6
        self.backend = "asyncio"
        self.root_ctx: contextvars.Context | None = None

    # -- nodes

    async def start_node(self, name: str) -> NodeHandle:
        handle = NodeHandle(name)
        self.handles[name] = handle
        assert self.task_group is not None
        assert self.root_ctx is not None
        started = anyio.Event()
        # From the root context: not inside the driver's process (a node's
        # helpers must be processes of that node).
        self.root_ctx.run(self.task_group.start_soon, self._node_main, handle, started)
        with anyio.fail_after(BOUND):
            await started.wait()
        return handle

    async def _node_main(self, handle: NodeHandle, started: anyio.Event) -> None:
        with handle.scope:
            async with (
                tl.open_node(instrument=ExitLog(self)) as node,
                dist.open_distribution(
                    node,
                    handle.name,
                    self.url,
                    cluster_name=self.cluster,
                    heartbeat=HEARTBEAT,
                    tick=TICK,
                ) as d,
            ):
                handle.node = node
                handle.dist = d
                handle.last_creation = d.creation
                handle.ctx = contextvars.copy_context()
                d.functions["plain"] = self._remote_plain
                handle.agent = tl.spawn(self._agent)
                handle.settler = tl.spawn(self._settler, handle)
                tl.register("$settler", handle.settler)
                started.set()
                await anyio.sleep_forever()

    async def _agent(self) -> None:
        while True:
            job = await tl.receive(_Job)
            tl.spawn(self._job, job)

    @staticmethod
    async def _job(job: _Job) -> None:
        try:
            job.box["value"] = await job.fn()
        except BaseException as exc:
            job.box["error"] = exc
            raise
        finally:
            job.done.set()

    async def on_node(self, name: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``fn()`` in a process of node ``name``; return its result."""
        handle = self.handles[name]
        assert handle.ctx is not None
        job = _Job(fn)
        handle.ctx.run(tl.send, handle.agent, job)
        with anyio.fail_after(BOUND):
            await job.done.wait()
        if "error" in job.box:
            raise job.box["error"]
        return job.box.get("value")

    async def _settler(self, handle: NodeHandle) -> None:
        while True:
            message = await tl.receive()
            handle.marks.add(message)
            handle.marks_changed.set()

    def up(self) -> list[NodeHandle]:
        return [h for n, h in self.handles.items() if not h.halted and n in self.node_names]

    async def kill_node(self, name: str) -> None:
        handle = self.handles[name]
        handle.halted = True
        assert handle.dist is not None
        handle.dist.halt()
        handle.scope.cancel()
        with anyio.fail_after(BOUND):
            while any(name in h.dist.peers for h in self.up() if h.dist is not None):
                await anyio.sleep(0.01)

    async def restart_node(self, name: str) -> None:
        await self.start_node(name)
        await self.fully_connected()

    async def fully_connected(self) -> None:
        with anyio.fail_after(BOUND):
            for handle in self.up():
                assert handle.dist is not None
                for other in self.up():
                    if other is not handle:
                        await handle.dist.wait_for(other.name, BOUND)

    # -- bookkeeping

    def home_of(self, pid: tl.Pid) -> str:
        from thunderline.runtime._remote import pid_parts

        identity = NODES.identity(pid_parts(pid)[0])
        assert identity is not None
        return identity[0]

    def alive(self, name: str) -> bool:
        pid = self.procs.get(name)
        if pid is None:
            return False
        handle = self.handles.get(self.home.get(name, "n1"))
        if handle is None or handle.halted or handle.node is None:
            return False
        return pid in handle.node.processes

    def bind(self, name: str, pid: tl.Pid, kind: str) -> None:
        super().bind(name, pid, kind)
        identity = NODES.identity(_node_number(pid))
        self.home[name] = identity[0] if identity is not None else "n1"

    def on_exit(self, pid: tl.Pid, reason: Any) -> None:
        name = self.fmt.pids.get(pid)
        if name is not None:
            handle = self.handles.get(self.home.get(name, ""))
            if handle is not None and handle.halted:
                command = self.pending.pop(pid, None)
                if command is not None:
                    command.done.set()
                return
        super().on_exit(pid, reason)

    def dest(self, name: str, node: str | None = None) -> Any:
        if _PROC_NAME.match(name):
            return self.pid(name)
        if node is not None:
            return (name, node)
        return name

    def dest_term(self, name: str, node: str | None = None) -> Any:
        if _PROC_NAME.match(name):
            return self.pid(name)
        if node is not None:
            return (Atom(name), Atom(node))
        return Atom(name)

    # -- ops

    async def evaluate(self, op: dict[str, Any], actor: str) -> Any:
        kind = op["op"]
        home = self.home.get(actor, "n1")
        if kind == "$spawn":
            return await self.spawn_op({**op, "op": "spawn"}, actor)
        if kind == "$start_server":
            return await self.start_server_op({**op, "op": "start_server"}, actor)
        if kind == "monitor":
            target = op["target"]
            if _PROC_NAME.match(target):
                dest: Any = self.pid(target)
            else:
                dest = (target, op.get("node", home))
            ref = tl.monitor(dest)
            self.bind_ref(op["ref"], ref)
            return ref
        if kind == "link":
            try:
                tl.link(self.pid(op["target"]))
            except tl.NoProcessError:
                raise OpRaised("error", Atom("noproc")) from None
            return True
        if kind == "send":
            message = parse_term(op["msg"])
            if "node" in op:
                tl.send((op["to"], op["node"]), message)
                return message
            try:
                tl.send(self.dest(op["to"]), message)
            except tl.NameNotRegisteredError:
                raise OpRaised("error", Atom("badarg")) from None
            return message
        if kind == "call":
            return await self.do_call(op)
        if kind == "cast":
            tl.cast(self.dest(op["to"], op.get("node")), parse_term(op["request"]))
            return Atom("ok")
        if kind == "monitor_node":
            dist.monitor_node(op["node"], bool(op.get("value", True)))
            return True
        if kind == "monitor_nodes":
            dist.monitor_nodes(bool(op.get("value", True)))
            return Atom("ok")
        if kind == "disconnect":
            done = dist.disconnect_node(op["node"])
            await anyio.lowlevel.checkpoint()  # a caller killed by its own disconnect dies here
            return done
        if kind == "connect":
            return await dist.connect_node(op["node"], 5.0)
        if kind == "global_register":
            target = self.pid(op.get("target", actor))
            won = await dist.register_global(op["name"], target)
            return Atom("yes" if won else "no")
        if kind == "global_unregister":
            await dist.unregister_global(op["name"])
            return Atom("ok")
        if kind == "global_whereis":
            pid = await dist.whereis_global(op["name"])
            return pid if pid is not None else Atom("undefined")
        if kind == "global_send":
            message = parse_term(op["msg"])
            try:
                return await dist.send_global(op["name"], message)
            except tl.NameNotRegisteredError:
                raise OpRaised("exit", (Atom("badarg"), (Atom(op["name"]), message))) from None
        return await super().evaluate(op, actor)

    async def do_call(self, op: dict[str, Any]) -> Any:
        request = parse_term(op["request"])
        timeout_ms = op.get("timeout", 5000)
        timeout = None if timeout_ms == "infinity" else timeout_ms / 1000
        dest = self.dest(op["to"], op.get("node"))
        try:
            return await tl.call(dest, request, timeout)
        except (
            tl.CallTimeoutError,
            tl.CallNoProcError,
            tl.CallingSelfError,
            tl.CallExitError,
        ) as exc:
            if isinstance(exc, tl.CallTimeoutError):
                reason: Any = Atom("timeout")
            elif isinstance(exc, tl.CallNoProcError):
                reason = tl.NOPROC
            elif isinstance(exc, tl.CallingSelfError):
                reason = Atom("calling_self")
            elif isinstance(exc, tl.CallNodeDownError):
                node = op.get("node") or self.home.get(op["to"], "n1")
                reason = (Atom("nodedown"), Atom(node))
            else:
                reason = exc.reason
            mfa = (
                Atom("gen_server"),
                Atom("call"),
                EList(
                    [
                        self.dest_term(op["to"], op.get("node")),
                        request,
                        Atom("infinity") if timeout is None else timeout_ms,
                    ]
                ),
            )
            raise OpRaised("exit", (reason, mfa)) from None

    async def do_stop(self, op: dict[str, Any]) -> Any:
        reason = to_reason(parse_term(op.get("reason", "normal")))
        timeout_ms = op.get("timeout", "infinity")
        timeout = None if timeout_ms == "infinity" else timeout_ms / 1000
        try:
            await tl.stop(self.dest(op["to"], op.get("node")), reason, timeout)
        except tl.NoProcessError:
            raise OpRaised("exit", tl.NOPROC) from None
        except tl.CallingSelfError:
            raise OpRaised("exit", Atom("calling_self")) from None
        except tl.StopTimeoutError:
            raise OpRaised("exit", Atom("timeout")) from None
        except tl.CallExitError as exc:
            raise OpRaised("exit", exc.reason) from None
        return Atom("ok")

    async def _remote_plain(self, name: str, trap: bool) -> None:
        tl.trap_exit(trap)
        await self.plain_body(name)

    def do_spawn(self, op: dict[str, Any]) -> Any:
        raise AssertionError("spawn is asynchronous here")

    async def spawn_op(self, op: dict[str, Any], actor: str) -> Any:
        home = self.home.get(actor, "n1")
        target = op.get("node", home)
        name = op["name"]
        trap = bool(op.get("trap_exit", False))
        if target == home:
            return super().do_spawn(op)
        link, watch = bool(op.get("link", False)), bool(op.get("monitor", False))
        ref: tl.Ref | None = None
        try:
            result = await dist.spawn_remote(target, "plain", name, trap, link=link, monitor=watch)
        except dist.RemoteSpawnError:
            # spawn onto a down node returns a pid that never runs (Surprise 5).
            handle = self.handles[target]
            self.fake_numbers += 1
            pid = make_pid(NODES.number(target, handle.last_creation), self.fake_numbers)
            if link:
                tl.link(pid)
            if watch:
                ref = tl.monitor(pid)
        else:
            pid, ref = result if watch else (result, None)
        self.bind(name, pid, "p")
        self.home[name] = target
        if ref is None:
            return pid
        self.bind_ref(op["ref"], ref)
        return (pid, ref)

    async def start_server_op(self, op: dict[str, Any], actor: str) -> Any:
        home = self.home.get(actor, "n1")
        target = op.get("node", home)
        if target == home:
            return await self.do_start_server(op)
        handle = self.handles[target]
        if handle.halted:
            return (Atom("error"), (Atom("erpc"), Atom("noconnection")))
        plain = dict(op)
        plain["link"] = False
        result = await self.on_node(target, lambda: self.do_start_server(plain))
        if op.get("link", False) and isinstance(result, tuple) and result[0] == Atom("ok"):
            tl.link(result[1])
        return result

    async def run_command(self, actor: str, op: dict[str, Any]) -> str:
        if op["op"] in ("spawn", "start_server"):
            op = {**op, "op": "$" + op["op"]}
        pid = self.procs[actor]
        home = self.home.get(actor, "n1")
        if actor == "driver":
            return await self.execute(op, actor)
        if not self.alive(actor):
            return "skipped"
        command = Command(op)
        if self.kinds[actor] == "s":

            async def via_call() -> str:
                try:
                    return str(await tl.call(pid, command, None))
                except tl.CallExitError:
                    return "died"

            return str(await self.on_node(home, via_call))
        self.pending[pid] = command
        handle = self.handles[home]
        assert handle.ctx is not None
        handle.ctx.run(tl.send, pid, command)
        await command.done.wait()
        return command.result

    # -- settling

    def fingerprint(self) -> Any:
        parts: list[Any] = [len(self.lines)]
        for handle in self.up():
            node = handle.node
            assert node is not None
            assert handle.dist is not None
            helpers = (handle.settler, handle.agent)
            procs = [p for pid, p in node.processes.items() if pid not in helpers]
            parts.append(
                (
                    handle.name,
                    len(procs),
                    tuple(handle.dist.nodes()),
                    sum(len(p.mailbox) + p.handled for p in procs),
                )
            )
        return tuple(parts)

    async def quiet(self) -> None:
        if self.backend == "trio":
            await anyio.wait_all_tasks_blocked()
        else:
            for _ in range(20):
                await anyio.sleep(0)
        while self.sleepers:
            woke = self.woke = anyio.Event()
            await woke.wait()

    async def mark_round(self, serial: int) -> None:
        handles = self.up()
        expected: dict[str, set[Any]] = {}
        for sender in handles:
            assert sender.ctx is not None
            for receiver in handles:
                if receiver is sender:
                    continue
                peers = sender.dist.peers if sender.dist is not None else {}
                if receiver.name not in peers:
                    continue
                mark = ("mark", serial, sender.name)
                expected.setdefault(receiver.name, set()).add(mark)
                sender.ctx.run(tl.send, ("$settler", receiver.name), mark)
        with anyio.move_on_after(MARK_BOUND):
            for receiver in handles:
                want = expected.get(receiver.name, set())
                while not want <= receiver.marks:
                    # A mark between two nodes that parted meanwhile never arrives.
                    want = {m for m in want if self._connected(m[2], receiver)}
                    receiver.marks_changed = anyio.Event()
                    with anyio.move_on_after(0.05):
                        await receiver.marks_changed.wait()
                receiver.marks -= want

    def _connected(self, sender: str, receiver: NodeHandle) -> bool:
        handle = self.handles.get(sender)
        if handle is None or handle.halted or handle.dist is None or receiver.dist is None:
            return False
        # Delivered unless the sender's side cut the connection (then the
        # receiver may have dropped it as a signal of the old connection).
        return receiver.name in handle.dist.peers

    async def flush_network(self) -> None:
        """Everything published so far has reached its receivers' handlers.

        A flush is a PING/PONG round trip: the senders' flushes make the
        server take what they published, then the receivers' flushes bring
        it in before the PONG. Marks cannot do this between nodes that are no
        longer connected (a signal telling a third node to disconnect).
        """
        for _ in range(2):
            for handle in self.up():
                transport = handle.dist.transport if handle.dist is not None else None
                if transport is not None:
                    with (
                        anyio.move_on_after(MARK_BOUND),
                        contextlib.suppress(nats.errors.Error, OSError, TimeoutError),
                    ):
                        await transport.flush()

    async def settle(self) -> None:
        serial = 0
        previous = None
        while True:
            await self.quiet()
            serial += 1
            await self.mark_round(serial)
            await self.flush_network()
            await self.quiet()
            current = self.fingerprint()
            if current == previous:
                return
            previous = current

    # -- the driver

    async def driver_main(self) -> None:
        self.bind("driver", tl.current_pid(), "driver")
        self.driver = tl.current_pid()
        for i, op in enumerate([*self.script, {"op": "flush_all"}]):
            self.log("op", i=i, **op)
            kind = op["op"]
            if kind == "flush_all":
                total = 0
                for name in [*self.order, "driver"]:
                    if name == "driver" or self.alive(name):
                        flushed = await self.run_command(name, {"op": "flush"})
                        total += int(flushed[4:-1])
                result = f"{{ok,{total}}}"
            elif kind == "kill_node":
                await self.kill_node(op["node"])
                result = "{ok,halted}"
            elif kind == "restart_node":
                if self.handles[op["node"]].halted:
                    await self.restart_node(op["node"])
                    result = "{ok,started}"
                else:
                    result = "skipped"
            else:
                actor = op.get("proc", "driver")
                if actor not in self.procs:
                    result = "skipped"
                else:
                    result = await self.run_command(actor, op)
            await self.settle()
            self.log("result", i=i, result=result)
            await self.snapshot_async()
        self.log("end")
        self.finished = True

    async def snapshot_async(self) -> None:
        alive: dict[str, list[str]] = {}
        for name in self.node_names:
            handle = self.handles[name]
            if not handle.halted:
                alive[name] = [p for p in self.order if self.home.get(p) == name and self.alive(p)]
        self.log("alive", procs=alive)
        rank = {name: n for n, name in enumerate(["driver", *self.order])}
        links: dict[str, list[str]] = {}
        monitors: dict[str, list[str]] = {}
        trap: list[str] = []
        names: dict[str, dict[str, str]] = {}
        queues: dict[str, int] = {}
        live = ["driver", *[n for n in self.order if self.alive(n)]]
        for name in sorted(live, key=lambda n: rank[n]):
            handle = self.handles[self.home.get(name, "n1")]
            assert handle.ctx is not None
            info = handle.ctx.run(tl.process_info, self.procs[name])
            if info is None:
                continue
            if name != "driver" and info.links:
                partners = sorted(info.links, key=lambda p: rank.get(self.fmt(p), 1 << 30))
                links[name] = [self.fmt(p) for p in partners]
            if name != "driver" and info.monitors:
                pids = [m for m in info.monitors if isinstance(m, tl.Pid)]
                by_name = sorted(self.fmt(m) for m in info.monitors if not isinstance(m, tl.Pid))
                pids.sort(key=lambda p: rank.get(self.fmt(p), 1 << 30))
                monitors[name] = [self.fmt(m) for m in pids] + by_name
            if name != "driver" and info.trap_exit:
                trap.append(name)
            if info.registered_name is not None and not info.registered_name.startswith("$"):
                names.setdefault(handle.name, {})[info.registered_name] = name
            count = len(self.recorded[name]) if self.kinds[name] == "s" else info.message_queue_len
            if count:
                queues[name] = count
        global_view: dict[str, dict[str, str]] = {}
        nodes_view: dict[str, list[str]] = {}
        for name in self.node_names:
            handle = self.handles[name]
            if handle.halted:
                continue
            table = await self.on_node(name, dist.registered_global)
            global_view[name] = {key: self.fmt(pid) for key, pid in sorted(table.items())}
            assert handle.dist is not None
            nodes_view[name] = [n for n in handle.dist.nodes() if n in self.node_names]
        self.log(
            "state",
            links=links,
            monitors=monitors,
            trap=trap,
            names={n: names[n] for n in self.node_names if n in names},
            **{"global": global_view},
            queues=queues,
            nodes=nodes_view,
        )


def _node_number(pid: tl.Pid) -> int:
    from thunderline.runtime._remote import pid_parts

    return pid_parts(pid)[0]


async def run_scenario_async(runner: DistRunner) -> list[dict[str, Any]]:
    """Run the runner's script on fresh nodes of the current backend; return the event log."""
    async with anyio.create_task_group() as task_group:
        runner.task_group = task_group
        runner.root_ctx = contextvars.copy_context()
        for name in runner.node_names:
            await runner.start_node(name)
        await runner.fully_connected()
        n1 = runner.handles["n1"]
        done = anyio.Event()
        failure: list[BaseException] = []

        async def driver() -> None:
            try:
                await runner.driver_main()
            except Exception as exc:
                failure.append(exc)
                raise
            finally:
                done.set()

        assert n1.ctx is not None
        n1.ctx.run(tl.spawn, driver, trap_exit=True)
        with anyio.fail_after(600):
            await done.wait()
        runner.finished = True
        task_group.cancel_scope.cancel()
        if failure:
            raise failure[0]
    return runner.lines


def run_scenario(scenario: dict[str, Any], backend: str, url: str) -> list[dict[str, Any]]:
    """Run a parsed scenario on ``backend`` against the NATS server at ``url``."""
    runner = DistRunner(scenario["script"], scenario.get("nodes", ["n1", "n2"]), url)
    runner.backend = backend
    anyio.run(run_scenario_async, runner, backend=backend)
    return runner.lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("scenario")
    args = parser.parse_args(argv)
    with open(args.scenario, encoding="utf-8") as f:
        scenario = json.load(f)
    url = os.environ.get("THUNDERLINE_TEST_NATS_URL")
    status = 0
    lines: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if not url:
            url = stack.enter_context(dist.NatsServer()).url
        runner = DistRunner(scenario["script"], scenario.get("nodes", ["n1", "n2"]), url)
        runner.backend = args.backend
        try:
            anyio.run(run_scenario_async, runner, backend=args.backend)
        except Exception as exc:  # noqa: BLE001 - print what was logged, then fail
            print(f"adapter failed: {exc!r}", file=sys.stderr)
            traceback.print_exc()
            status = 1
        lines = runner.lines
    for line in lines:
        sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return status


_ = (ScenarioServer, Skipped, to_reason)

if __name__ == "__main__":
    sys.exit(main())
