"""Process identifiers and references.

A :class:`Pid` names one process of one node. Pids are small, hashable and
immutable, are never reused within a node, and print as ``<node.number>``.
A :class:`Ref` is a unique reference (monitors, timers, call tags) printed as
``#Ref<node.number>``. Both are created only by the runtime.
"""

from __future__ import annotations

import itertools
from typing import Any, Final

__all__ = ["Pid", "Ref"]

_node_ids: Final = itertools.count(1)


def next_node_id() -> int:
    """A fresh node number for this interpreter."""
    return next(_node_ids)


class Pid:
    """The identifier of a process. Created by the runtime only (``spawn``)."""

    __slots__ = ("_hash", "_id", "_node", "_text")

    _node: int
    _id: int
    _hash: int
    _text: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Pid objects are created by the runtime (spawn), not directly")

    @classmethod
    def _make(cls, node: int, number: int) -> Pid:
        self = object.__new__(cls)
        object.__setattr__(self, "_node", node)
        object.__setattr__(self, "_id", number)
        object.__setattr__(self, "_hash", hash((node, number, "pid")))
        object.__setattr__(self, "_text", None)
        return self

    @property
    def number(self) -> int:
        """The process's serial number within its node."""
        return self._id

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Pid is immutable")

    def __eq__(self, other: object) -> bool:
        return self is other or (
            type(other) is Pid and other._id == self._id and other._node == self._node
        )

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: Pid) -> bool:
        return (self._node, self._id) < (other._node, other._id)

    def __repr__(self) -> str:
        text = self._text
        if text is None:  # built once: labels for traces and logs use it per message
            text = f"<{self._node}.{self._id}>"
            object.__setattr__(self, "_text", text)
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        return (Pid._make, (self._node, self._id))


class Ref:
    """A unique reference (monitors, timers, call tags). Created by the runtime only."""

    __slots__ = ("_hash", "_id", "_node")

    _node: int
    _id: int
    _hash: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Ref objects are created by the runtime, not directly")

    @classmethod
    def _make(cls, node: int, number: int) -> Ref:
        self = object.__new__(cls)
        object.__setattr__(self, "_node", node)
        object.__setattr__(self, "_id", number)
        object.__setattr__(self, "_hash", hash((node, number, "ref")))
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Ref is immutable")

    def __eq__(self, other: object) -> bool:
        return self is other or (
            type(other) is Ref and other._id == self._id and other._node == self._node
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"#Ref<{self._node}.{self._id}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Ref._make, (self._node, self._id))
