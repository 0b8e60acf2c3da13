"""The errors of ``thunderline.dist``; each names the value or node at fault."""

from __future__ import annotations

from thunderline.runtime import ThunderlineError


class DistributionError(ThunderlineError):
    """Base class of the errors of ``thunderline.dist``."""


class NotDistributedError(DistributionError, RuntimeError):
    """A distribution function ran on a node that has not joined a cluster."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(
            f"{operation}() needs a distributed node: start it with "
            "thunderline.run(main, node=NAME, cluster=URL) or open_distribution(...)"
        )


class InvalidNodeNameError(DistributionError, ValueError):
    """A node or cluster name is not a valid subject token."""

    def __init__(self, kind: str, name: object) -> None:
        self.name = name
        super().__init__(
            f"invalid {kind} name {name!r}: use lowercase letters, digits, '_' and '-', "
            "starting with a letter"
        )


class EncodeError(DistributionError, TypeError):
    """A message holds a value the wire codec cannot carry (named in the message)."""

    def __init__(self, value: object, path: str) -> None:
        self.value = value
        self.path = path
        super().__init__(
            f"cannot send {type(value).__qualname__} value {value!r:.80} (at {path}) to another "
            "node: messages may hold None, bool, int, float, str, bytes, tuples, lists, dicts, "
            "Pid, Ref, runtime reasons and attrs classes registered with register_type()"
        )


class MessageTooLargeError(DistributionError, ValueError):
    """An encoded message is larger than the NATS server accepts."""

    def __init__(self, size: int, limit: int, dest: object) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"message for {dest!r} is {size} bytes encoded; the cluster's limit (NATS "
            f"max_payload) is {limit} bytes"
        )


class ClusterConnectError(DistributionError, ConnectionError):
    """The node could not join its cluster (NATS unreachable, refused, or name clash)."""


class UnknownFunctionError(DistributionError, LookupError):
    """A remote start named a function the target node did not register."""

    def __init__(self, node: str, name: str) -> None:
        self.node = node
        self.name = name
        super().__init__(f"node {node!r} has no function registered as {name!r}")


class RemoteSpawnError(DistributionError):
    """A remote start failed: the node is down, or the function is unknown there."""

    def __init__(self, node: str, name: str, reason: str) -> None:
        self.node = node
        self.name = name
        self.reason = reason
        super().__init__(f"starting {name!r} on node {node!r} failed: {reason}")


class RemoteError(DistributionError):
    """An exception raised on another node, as its exit reason arrives here.

    Exceptions never cross nodes as objects: a ``Crashed`` reason from another
    node wraps a ``RemoteError`` with the type name, message and traceback text.
    """

    def __init__(self, type_name: str, message: str, traceback: str) -> None:
        self.type_name = type_name
        self.message = message
        self.traceback = traceback
        super().__init__(f"{type_name}: {message}")

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RemoteError)
            and other.type_name == self.type_name
            and other.message == self.message
        )

    def __hash__(self) -> int:
        return hash((self.type_name, self.message))


class GlobalNameError(DistributionError, ValueError):
    """A global name is not a valid key (letters, digits, '-', '_', '=', '.')."""

    def __init__(self, name: object) -> None:
        self.name = name
        super().__init__(
            f"invalid global name {name!r}: use letters, digits, '-', '_' and '=' "
            "(it is a JetStream KV key)"
        )
