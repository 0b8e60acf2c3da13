"""The public functions of ``thunderline.dist`` (they act on the calling context's node)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from thunderline.dist._codec import NODES
from thunderline.dist._errors import NotDistributedError
from thunderline.dist._node import (
    DEFAULT_HEARTBEAT,
    DEFAULT_TICK,
    DistNode,
    check_name,
    current_dist,
    open_distribution,
    split_cluster_url,
)
from thunderline.lowlevel import remote as _seam
from thunderline.runtime import (
    NameNotRegisteredError,
    Node,
    NotInProcessError,
    Pid,
    Ref,
    current_pid,
    send,
)

current_node = _seam.current_node
pid_parts = _seam.pid_parts

__all__ = [
    "connect_node",
    "disconnect_node",
    "distribution",
    "monitor_node",
    "monitor_nodes",
    "node",
    "node_of",
    "nodes",
    "register_function",
    "register_global",
    "registered_global",
    "send_global",
    "spawn_remote",
    "unregister_global",
    "whereis_global",
]


def node() -> str:
    """This node's name (OTP ``node()``); ``"nonode"`` for a node outside any cluster."""
    dist = current_node("node").dist
    return dist.name if isinstance(dist, DistNode) else "nonode"


def nodes() -> list[str]:
    """The connected nodes of the cluster, sorted, without this one (OTP ``nodes()``)."""
    dist = current_node("nodes").dist
    return dist.nodes() if isinstance(dist, DistNode) else []


def node_of(pid: Pid) -> str:
    """The name of the node ``pid`` lives on (OTP ``node(Pid)``)."""
    node_number = pid_parts(pid)[0]
    identity = NODES.identity(node_number)
    if identity is not None:
        return identity[0]
    return node()


def _caller(operation: str) -> Pid:
    try:
        return current_pid()
    except NotInProcessError:
        raise NotInProcessError(operation) from None


def monitor_node(node_name: str, flag: bool = True) -> None:
    """Watch ``node_name``: the caller gets one ``NodeDown`` when it is lost (OTP ``monitor_node``).

    Calls stack: each ``True`` adds one ``NodeDown``, each ``False`` removes
    one. For a node that is not connected ``NodeDown(node, "not_connected")``
    arrives at once.
    """
    current_dist("monitor_node").monitor_node(_caller("monitor_node"), node_name, flag)


def monitor_nodes(flag: bool = True) -> None:
    """Subscribe the caller to ``NodeUp`` / ``NodeDown`` for every node (OTP ``monitor_nodes``)."""
    current_dist("monitor_nodes").monitor_nodes(_caller("monitor_nodes"), flag)


def disconnect_node(node_name: str) -> bool:
    """Drop the connection to ``node_name`` on both sides (OTP ``disconnect_node``).

    Both sides see ``noconnection`` on their links and monitors; both keep
    running, and they reconnect at the next heartbeat. Returns False if it
    was not connected.
    """
    return current_dist("disconnect_node").disconnect(node_name)


async def connect_node(node_name: str, timeout: float = 5.0) -> bool:
    """Wait until ``node_name`` is connected (at most ``timeout`` s); True if it is."""
    return await current_dist("connect_node").wait_for(node_name, timeout)


def register_function(name: str, fn: Callable[..., Awaitable[Any]]) -> None:
    """Let other nodes start ``fn`` on this node by ``name`` (see :func:`spawn_remote`).

    Only registered functions can be started remotely: no code travels.
    """
    if not callable(fn):
        raise TypeError(f"register_function: {fn!r} is not callable")
    current_dist("register_function").functions[name] = fn


async def spawn_remote(
    node_name: str,
    function: str,
    *args: Any,
    link: bool = False,
    monitor: bool = False,
    timeout: float = 5.0,
) -> Any:
    """Start the function ``node_name`` registered as ``function`` there; returns its pid.

    With ``link`` the caller and the new process are linked before it runs;
    with ``monitor`` the caller monitors it and ``(pid, ref)`` is returned.
    Arguments travel through the wire codec.

    Raises:
        RemoteSpawnError: the node is not connected, has no such function, or
            did not answer within ``timeout``.
    """
    dist = current_dist("spawn_remote")
    pid, ref = await dist.spawn_remote(
        _caller("spawn_remote"),
        node_name,
        function,
        args,
        link=link,
        monitor=monitor,
        timeout=timeout,
    )
    if monitor:
        return pid, ref
    return pid


def _globals(operation: str) -> Any:
    registry = current_dist(operation).global_names
    if registry is None:
        raise NotDistributedError(operation)
    return registry


async def register_global(name: str, pid: Pid | None = None) -> bool:
    """Register ``pid`` (default: the caller) under the cluster-wide ``name`` (OTP ``global``).

    Returns False if the name is taken (by anyone, also by ``pid`` itself) or
    ``pid`` already has a global name. The name is released when the holder
    ends or its node is declared down. This node holds a lease on the name
    and renews it; if it cannot (hung, cut off from NATS), it stops answering
    for the name and the name expires a lease later (docs/distribution.md).
    """
    return bool(await _globals("register_global").register(name, pid or _caller("register")))


async def whereis_global(name: str) -> Pid | None:
    """The holder of the global ``name``, or None."""
    result: Pid | None = await _globals("whereis_global").whereis(name)
    return result


async def unregister_global(name: str) -> None:
    """Remove the global ``name`` (nothing happens if nobody holds it)."""
    await _globals("unregister_global").unregister(name)


async def registered_global() -> dict[str, Pid]:
    """Every global name and its holder."""
    result: dict[str, Pid] = await _globals("registered_global").names()
    return result


async def send_global(name: str, message: Any) -> Pid:
    """Send ``message`` to the holder of the global ``name``; returns the holder.

    Raises:
        NameNotRegisteredError: nobody holds ``name`` (OTP exits ``badarg``).
    """
    pid = await whereis_global(name)
    if pid is None:
        raise NameNotRegisteredError(name, "send_global")
    send(pid, message)
    return pid


def distribution(
    name: str,
    cluster: str,
    *,
    cluster_name: str | None = None,
    heartbeat: float = DEFAULT_HEARTBEAT,
    tick: float = DEFAULT_TICK,
    lease: float | None = None,
    connect_options: dict[str, Any] | None = None,
) -> Callable[[Node], contextlib.AbstractAsyncContextManager[Any]]:
    """A ``setup`` for :func:`thunderline.run`: join the cluster before ``main`` starts.

    Raises:
        InvalidNodeNameError: bad node or cluster name (before any node starts).
        ClusterConnectError: ``cluster`` is not a NATS URL.
    """
    check_name("node", name)
    split_cluster_url(cluster, cluster_name)

    @contextlib.asynccontextmanager
    async def setup(node: Node) -> AsyncIterator[Any]:
        async with open_distribution(
            node,
            name,
            cluster,
            cluster_name=cluster_name,
            heartbeat=heartbeat,
            tick=tick,
            lease=lease,
            connect_options=connect_options,
        ) as dist:
            yield dist

    return setup


_ = Ref
