"""thunderline.dist: several thunderline nodes over NATS, with Erlang's distribution semantics.

A node joins a cluster by name (``thunderline.run(main, node="a",
cluster="nats://host:4222")``); then ``send``, ``call``, ``cast``, ``link``,
``monitor`` and ``exit`` work on pids of other nodes and on ``(name, node)``
pairs with local semantics, a lost node fires ``NOCONNECTION``, and a global
name registry lives on JetStream KV. See ``docs/distribution.md``.
"""

from __future__ import annotations

from thunderline._exports import publish
from thunderline.dist._api import (
    connect_node,
    disconnect_node,
    distribution,
    monitor_node,
    monitor_nodes,
    node,
    node_of,
    nodes,
    register_function,
    register_global,
    registered_global,
    send_global,
    spawn_remote,
    unregister_global,
    whereis_global,
)
from thunderline.dist._codec import PROTOCOL_VERSION, register_type
from thunderline.dist._errors import (
    ClusterConnectError,
    DistributionError,
    EncodeError,
    GlobalNameError,
    InvalidNodeNameError,
    MessageTooLargeError,
    NotDistributedError,
    RemoteError,
    RemoteSpawnError,
    UnknownFunctionError,
)
from thunderline.dist._node import DistNode, NodeDown, NodeUp, open_distribution
from thunderline.dist._server import NatsServer

__all__ = [
    "PROTOCOL_VERSION",
    "ClusterConnectError",
    "DistNode",
    "DistributionError",
    "EncodeError",
    "GlobalNameError",
    "InvalidNodeNameError",
    "MessageTooLargeError",
    "NatsServer",
    "NodeDown",
    "NodeUp",
    "NotDistributedError",
    "RemoteError",
    "RemoteSpawnError",
    "UnknownFunctionError",
    "connect_node",
    "disconnect_node",
    "distribution",
    "monitor_node",
    "monitor_nodes",
    "node",
    "node_of",
    "nodes",
    "open_distribution",
    "register_function",
    "register_global",
    "register_type",
    "registered_global",
    "send_global",
    "spawn_remote",
    "unregister_global",
    "whereis_global",
]

publish(globals(), __name__, __all__)
