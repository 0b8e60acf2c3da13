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


class _PidSlots:
    """The layout of a :class:`Pid`, without its immutability guard (see :meth:`Pid._make`)."""

    __slots__ = ("_hash", "_id", "_node", "_text")


class _PidMaker(_PidSlots):
    __slots__ = ()


class Pid(_PidSlots):
    """The identifier of a process. Created by the runtime only (``spawn``)."""

    __slots__ = ()

    _node: int
    _id: int
    _hash: int
    _text: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Pid objects are created by the runtime (spawn), not directly")

    @staticmethod
    def _make(node: int, number: int) -> Pid:
        """The pid ``<node.number>`` (one per spawn).

        Built as a guard-less twin with the same slots, filled by plain
        attribute stores, then switched to :class:`Pid` (``__class__``
        assignment): a third of the cost of writing past the immutability
        guard with ``object.__setattr__``. The hash is that of an int (cheap to
        compute, equal for equal pids)."""
        self: Any = _PidMaker()
        self._node = node
        self._id = number
        self._hash = number ^ (node << 40)
        self._text = None
        self.__class__ = Pid
        return self  # type: ignore[no-any-return]

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


class _RefSlots:
    """The layout of a :class:`Ref`, without its immutability guard (see :meth:`Pid._make`)."""

    __slots__ = ("_hash", "_id", "_node")


class _RefMaker(_RefSlots):
    __slots__ = ()


class Ref(_RefSlots):
    """A unique reference (monitors, timers, call tags). Created by the runtime only."""

    __slots__ = ()

    _node: int
    _id: int
    _hash: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Ref objects are created by the runtime, not directly")

    @staticmethod
    def _make(node: int, number: int) -> Ref:
        """The reference ``#Ref<node.number>`` (one per call and monitor); built as
        :meth:`Pid._make` builds a pid."""
        self: Any = _RefMaker()
        self._node = node
        self._id = number
        self._hash = number ^ (node << 40)
        self.__class__ = Ref
        return self  # type: ignore[no-any-return]

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
