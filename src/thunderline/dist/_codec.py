"""The wire codec: msgpack with extension types; nothing is ever unpickled.

What crosses a node boundary: ``None``, ``bool``, ``int``, ``float``, ``str``,
``bytes``, lists, tuples (extension 3, so they come back as tuples), dicts,
integers beyond 64 bits (extension 6, as decimal text),
:class:`~thunderline.Pid` and :class:`~thunderline.Ref` (extensions 1 and 2,
carrying the owning node's *name and creation*, so a pid means the same
process on every node and a pid of an old incarnation never aliases a new
one), the runtime's own messages and reasons, and attrs classes registered by
name with :func:`register_type` (extension 4: the name, then the field values
in order). A ``Crashed`` reason travels as the exception's type name, message
and traceback text (extension 5) and arrives as ``Crashed(RemoteError(...))``.

Decoding only ever builds those types: an unknown type name or extension code
is a :class:`DecodeError`, and the message is dropped with a log line.

Node identities are interned per interpreter (:class:`NodeTable`): every
``(node name, creation)`` gets one runtime node number, so a pid decoded
twice is the same pid, and the local node's own pids decode to its local pids.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

import attrs
import msgpack

from thunderline.dist._errors import EncodeError, RemoteError
from thunderline.lowlevel import remote as _seam
from thunderline.runtime import Crashed, Pid, Ref

make_pid = _seam.make_pid
make_ref = _seam.make_ref
new_node_number = _seam.new_node_number
pid_parts = _seam.pid_parts
ref_parts = _seam.ref_parts
wire_types = _seam.wire_types

__all__ = ["Codec", "DecodeError", "NodeTable", "register_type", "registered_types"]

#: Version of the envelope and codec; a node of another version is refused.
PROTOCOL_VERSION: Final = 1

_EXT_PID: Final = 1
_EXT_REF: Final = 2
_EXT_TUPLE: Final = 3
_EXT_TYPE: Final = 4
_EXT_CRASH: Final = 5
_EXT_BIGINT: Final = 6


class DecodeError(ValueError):
    """Bytes from the network that are not a valid message of this protocol."""


class NodeTable:
    """``(node name, creation)`` <-> runtime node number, shared by the interpreter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._numbers: dict[tuple[str, int], int] = {}
        self._identities: dict[int, tuple[str, int]] = {}

    def number(self, name: str, creation: int) -> int:
        """The runtime node number of ``name``'s incarnation ``creation`` (made on first use)."""
        key = (name, creation)
        number = self._numbers.get(key)
        if number is None:
            with self._lock:
                number = self._numbers.get(key)
                if number is None:
                    number = new_node_number()
                    self._numbers[key] = number
                    self._identities[number] = key
        return number

    def bind(self, name: str, creation: int, number: int) -> None:
        """Declare that the local node ``number`` is ``name``'s incarnation ``creation``."""
        with self._lock:
            self._numbers[(name, creation)] = number
            self._identities[number] = (name, creation)

    def identity(self, number: int) -> tuple[str, int] | None:
        """``(name, creation)`` of a node number, or None for a node outside any cluster."""
        return self._identities.get(number)


NODES: Final = NodeTable()

_types_by_name: dict[str, tuple[type, Any, Any]] = {}
_names_by_type: dict[type, str] = {}


def _register(name: str, cls: type, fields_of: Any, rebuild: Any) -> None:
    _types_by_name[name] = (cls, fields_of, rebuild)
    _names_by_type[cls] = name


for _name, (_cls, _fields_of, _rebuild) in wire_types().items():
    _register("tl." + _name, _cls, _fields_of, _rebuild)


def register_type(
    cls: type,
    name: str | None = None,
    *,
    fields: Callable[[Any], list[Any]] | None = None,
    build: Callable[..., Any] | None = None,
) -> type:
    """Allow instances of ``cls`` in messages to other nodes.

    Every node of the cluster must register the class under the same ``name``
    (default: its qualified name with module). Returns ``cls``. Values travel
    as the name and their field values in order: for an attrs class its init
    fields; for any other class give ``fields(obj) -> list`` and
    ``build(*values) -> obj``. A registered exception class also crosses
    nodes inside a ``Crashed`` exit reason as itself (others arrive as
    :class:`RemoteError`).

    Raises:
        TypeError: ``cls`` is neither attrs nor given ``fields`` and ``build``,
            or the name is taken by another class.
    """
    wire_name = name if name is not None else f"{cls.__module__}.{cls.__qualname__}"
    known = _types_by_name.get(wire_name)
    if known is not None and known[0] is not cls:
        raise TypeError(f"register_type: the name {wire_name!r} is taken by {known[0]!r}")
    if fields is not None and build is not None:
        _register(wire_name, cls, fields, build)
        return cls
    if not attrs.has(cls):
        raise TypeError(
            f"register_type: {cls!r} is not an attrs class (give fields= and build= for others)"
        )
    init_fields = [f for f in attrs.fields(cls) if f.init]
    names = [f.name for f in init_fields]
    aliases = [f.alias for f in init_fields]

    def fields_of(obj: Any) -> list[Any]:
        return [getattr(obj, n) for n in names]

    def rebuild(*values: Any) -> Any:
        if len(values) != len(aliases):
            raise DecodeError(f"{wire_name}: expected {len(aliases)} fields, got {len(values)}")
        return cls(**dict(zip(aliases, values, strict=True)))

    _register(wire_name, cls, fields_of, rebuild)
    return cls


def registered_types() -> dict[str, type]:
    """Every wire name and its class (the runtime's own ones start with ``tl.``)."""
    return {name: entry[0] for name, entry in _types_by_name.items()}


class Codec:
    """Encodes and decodes message bodies for one node (it knows its own identity)."""

    def __init__(self, table: NodeTable = NODES) -> None:
        self._table = table

    # ------------------------------------------------------------ encoding

    def _identity(self, number: int, value: object) -> tuple[str, int]:
        identity = self._table.identity(number)
        if identity is None:
            raise EncodeError(value, "a pid or ref of a node outside the cluster")
        return identity

    def _default(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is tuple:
            return msgpack.ExtType(_EXT_TUPLE, self._pack(list(obj)))
        if kind is int:  # beyond 64 bits
            return msgpack.ExtType(_EXT_BIGINT, str(obj).encode())
        if kind is Pid:
            node_number, number = pid_parts(obj)
            name, creation = self._identity(node_number, obj)
            return msgpack.ExtType(_EXT_PID, self._pack([name, creation, number]))
        if kind is Ref:
            node_number, number = ref_parts(obj)
            name, creation = self._identity(node_number, obj)
            return msgpack.ExtType(_EXT_REF, self._pack([name, creation, number]))
        if kind is Crashed:
            exc = obj.exception
            if isinstance(exc, RemoteError):
                fields = [exc.type_name, exc.message, exc.traceback, None]
            else:
                payload = exc if type(exc) in _names_by_type else None
                fields = [type(exc).__qualname__, str(exc), obj.traceback, payload]
            return msgpack.ExtType(_EXT_CRASH, self._pack(fields))
        wire_name = _names_by_type.get(kind)
        if wire_name is not None:
            fields_of = _types_by_name[wire_name][1]
            return msgpack.ExtType(_EXT_TYPE, self._pack([wire_name, *fields_of(obj)]))
        raise EncodeError(obj, "message")

    def _pack(self, value: Any) -> bytes:
        try:
            return msgpack.packb(value, default=self._default, strict_types=True)  # type: ignore[no-any-return]
        except EncodeError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(value, f"message ({exc})") from None

    def encode(self, value: Any) -> bytes:
        """The bytes of ``value``.

        Raises:
            EncodeError: ``value`` holds something the codec cannot carry.
        """
        return self._pack(value)

    # ------------------------------------------------------------ decoding

    def _ext(self, code: int, data: bytes) -> Any:
        if code == _EXT_BIGINT:
            if len(data) > 4300:  # Python's int(str) limit
                raise DecodeError("integer too long")
            return int(data.decode("ascii"))
        if code not in (_EXT_PID, _EXT_REF, _EXT_TUPLE, _EXT_TYPE, _EXT_CRASH):
            raise DecodeError(f"unknown extension type {code}")
        inner = self._unpack(data)
        if code == _EXT_TUPLE:
            return tuple(inner)
        if code in (_EXT_PID, _EXT_REF):
            name, creation, number = inner
            if type(name) is not str or type(creation) is not int or type(number) is not int:
                raise DecodeError("malformed pid or ref")
            node_number = self._table.number(name, creation)
            return (
                make_pid(node_number, number) if code == _EXT_PID else make_ref(node_number, number)
            )
        if code == _EXT_CRASH:
            type_name, message, traceback, payload = inner
            if isinstance(payload, BaseException):
                return Crashed(payload)
            return Crashed(RemoteError(str(type_name), str(message), str(traceback)))
        if code == _EXT_TYPE:
            if not inner or type(inner[0]) is not str:
                raise DecodeError("malformed registered type")
            entry = _types_by_name.get(inner[0])
            if entry is None:
                raise DecodeError(f"unknown type {inner[0]!r} (not registered on this node)")
            return entry[2](*inner[1:])
        raise DecodeError(f"unknown extension type {code}")

    def _unpack(self, data: bytes) -> Any:
        return msgpack.unpackb(data, ext_hook=self._ext, strict_map_key=False, use_list=True)

    def decode(self, data: bytes) -> Any:
        """The value encoded in ``data``.

        Raises:
            DecodeError: ``data`` is not a valid encoding (or names an unknown type).
        """
        try:
            return self._unpack(data)
        except DecodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - anything malformed is a DecodeError
            raise DecodeError(f"undecodable message: {exc}") from None
