"""The distribution seam: how a node hands signals for other nodes to a transport.

The runtime knows nothing about networks. A node may carry one
:class:`Distribution` (``node.dist``, installed by ``thunderline.dist``); every
operation whose target is a pid of another node (its node number is not the
local node's) or a ``(name, node_name)`` pair is handed to it:

* outbound (runtime -> distribution): ``send``, ``call``, ``link``, ``unlink``,
  ``exit``, ``monitor``, ``demonitor`` and, from :meth:`Node.finalize`, the exit signals
  and ``Down`` messages a dying local process owes to remote partners;
* inbound (distribution -> runtime): the functions of this module apply a
  signal that arrived from another node to the local process table with the
  same rules as a local signal (a link flag signal only acts while the link
  exists; a ``Down`` only for an active monitor; a late call reply is dropped).

Without a distribution nothing changes: a pid of another node is a dead pid.
This is the only runtime module ``thunderline.dist`` imports.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

from thunderline.runtime import _reasons
from thunderline.runtime._messages import Down, Exit
from thunderline.runtime._node import current_node
from thunderline.runtime._pid import Pid, Ref, next_node_id
from thunderline.runtime._process import Envelope, Monitor
from thunderline.runtime._reasons import NOCONNECTION
from thunderline.runtime._server import From, _Call, _Cast, _Reply, _StopRequest

if TYPE_CHECKING:
    from thunderline.runtime._node import Node

__all__ = [
    "Distribution",
    "Monitor",
    "add_link",
    "add_monitor",
    "add_watch",
    "current_node",
    "deliver",
    "deliver_named",
    "exit_signal",
    "fire_down",
    "make_pid",
    "make_ref",
    "new_node_number",
    "node_lost",
    "pid_parts",
    "ref_parts",
    "remove_link",
    "remove_monitor",
    "spawn",
    "wire_types",
]

#: A ``(registered name, node name)`` destination.
NamedDest = tuple[str, str]


class Distribution(Protocol):
    """What a node needs from its distribution (see the module docstring).

    Every method is synchronous and never blocks: signals are queued for the
    target node in call order (per-pair ordering).
    """

    def resolve(self, dest: NamedDest) -> str | Pid:
        """The registered name if ``dest`` names this node, else a stand-in pid.

        The stand-in is pid number 0 of ``dest``'s node: a monitor by name
        records it, so a lost node finds the monitor.
        """

    def send(self, dest: Pid | NamedDest, message: Any) -> None:
        """Send ``message`` to a remote pid or ``(name, node)``; never raises for the target."""

    def call(self, owner: Pid, dest: Pid | NamedDest, ref: Ref, request: Any) -> None:
        """Monitor ``dest`` with ``ref`` and send it a call request in one signal.

        ``owner``'s side of the monitor is already recorded. The callee's node
        drops its side when it sends the reply tagged ``ref``; a target that
        does not exist answers ``Down(ref, dest, NOPROC)``, a node that is down
        ``NOCONNECTION``.
        """

    def link(self, local: Pid, remote: Pid) -> None:
        """``local`` linked itself to ``remote`` (already recorded on this side)."""

    def unlink(self, local: Pid, remote: Pid) -> None:
        """``local`` removed its link to ``remote`` (already removed on this side)."""

    def exit(self, sender: Pid, remote: Pid, reason: Any, linked: bool) -> None:
        """An exit signal for ``remote`` (``linked``: from a dying link partner)."""

    def monitor(self, owner: Pid, target: Pid | NamedDest, ref: Ref) -> None:
        """``owner`` monitors a remote target (its monitor record already exists)."""

    def demonitor(self, owner: Pid, target: Pid, ref: Ref) -> None:
        """``owner`` dropped its monitor ``ref`` on a remote target."""

    def down(self, owner: Pid, ref: Ref, reason: Any) -> None:
        """A local process monitored by the remote ``owner`` ended with ``reason``."""


# ----------------------------------------------------------------- identities


def new_node_number() -> int:
    """A fresh node number (the distribution gives one to every remote incarnation)."""
    return next_node_id()


def make_pid(node_number: int, number: int) -> Pid:
    """The pid ``number`` of the node numbered ``node_number``."""
    return Pid._make(node_number, number)


def make_ref(node_number: int, number: int) -> Ref:
    """The reference ``number`` of the node numbered ``node_number``."""
    return Ref._make(node_number, number)


def pid_parts(pid: Pid) -> tuple[int, int]:
    """``(node number, process number)`` of ``pid``."""
    return pid._node, pid._id


def ref_parts(ref: Ref) -> tuple[int, int]:
    """``(node number, serial)`` of ``ref``."""
    return ref._node, ref._id


# ------------------------------------------------------------------ wire types


#: The runtime's own messages under their stable wire names (the classes hold the fields).
_WIRE_MESSAGES: Final[dict[str, type]] = {
    "Call": _Call,
    "Cast": _Cast,
    "Reply": _Reply,
    "Stop": _StopRequest,
    "From": From,
    "Exit": Exit,
    "Down": Down,
}


def _field_names(cls: type) -> tuple[str, ...]:
    """The constructor fields of ``cls`` in order: attrs fields, else its ``__slots__``."""
    if attrs.has(cls):
        return tuple(field.name for field in attrs.fields(cls))
    slots: tuple[str, ...] = cls.__slots__  # type: ignore[attr-defined]
    return slots


def _wire_entry(
    cls: type, singleton: Any = None
) -> tuple[type, Callable[[Any], list[Any]], Callable[..., Any]]:
    """``(cls, fields_of, rebuild)`` for ``cls``; a rebuilt value equal to ``singleton`` is it."""
    names = _field_names(cls)

    def fields_of(obj: Any) -> list[Any]:
        return [getattr(obj, name) for name in names]

    def rebuild(*values: Any) -> Any:
        obj = cls(*values)
        return singleton if singleton is not None and obj == singleton else obj

    return cls, fields_of, rebuild


def wire_types() -> dict[str, tuple[type, Callable[[Any], list[Any]], Callable[..., Any]]]:
    """The runtime's own message and reason types a codec must carry.

    Maps a stable wire name to ``(class, fields_of, rebuild)``, derived from
    the classes themselves: the messages of :data:`_WIRE_MESSAGES`, and every
    exit reason constant of ``_reasons`` under its OTP name (``normal``,
    ``shutdown``, ``kill``, ...: its repr in lower case), which a rebuilt equal
    value comes back as. ``Crashed`` is not here: an exception never crosses
    a node boundary as an object.
    """
    types = {name: _wire_entry(cls) for name, cls in _WIRE_MESSAGES.items()}
    for export in _reasons.__all__:
        value = getattr(_reasons, export)
        if export.isupper() and attrs.has(type(value)):
            types[repr(value).lower()] = _wire_entry(type(value), value)
    return types


# -------------------------------------------------------------------- inbound


def deliver(node: Node, pid: Pid, message: Any, carrier: Any = None) -> None:
    """A message from another node for the local ``pid`` (dropped if it is dead).

    A call reply whose caller gave up (the alias is gone) is dropped, as
    locally. ``carrier``: the sender's trace context (instrument carrier) that
    travelled with the message; the receiver handles it in that context.
    """
    proc = node.processes.get(pid)
    if proc is None:
        return
    if type(message) is _Reply and message.tag not in proc.aliases:
        return
    if carrier is not None and node.instrument is not None:
        proc.deliver(Envelope(message, carrier))
    else:
        proc.post(message, "send")


def deliver_named(node: Node, name: str, message: Any) -> None:
    """A message for the locally registered ``name`` (dropped if nobody holds it)."""
    pid = node.names.get(name)
    if pid is not None:
        deliver(node, pid, message)


def add_link(node: Node, local: Pid, remote: Pid) -> bool:
    """Record the link ``remote`` made to ``local``; False if ``local`` is not alive."""
    proc = node.processes.get(local)
    if proc is None or proc.exiting:
        return False
    proc.links[remote] = None
    return True


def remove_link(node: Node, local: Pid, remote: Pid) -> None:
    """Forget the link between ``local`` and ``remote``."""
    proc = node.processes.get(local)
    if proc is not None:
        proc.links.pop(remote, None)


def exit_signal(node: Node, target: Pid, sender: Pid, reason: Any, linked: bool) -> None:
    """Apply an exit signal from the remote ``sender``.

    A link exit signal acts only while the link exists (OTP: a signal for a
    link that was removed meanwhile is ignored); it removes the link.
    """
    proc = node.processes.get(target)
    if proc is None:
        return
    if linked:
        if sender not in proc.links:
            return
        del proc.links[sender]
    proc.exit_signal(sender, reason, linked=linked)


def add_monitor(node: Node, target: Pid | str, owner: Pid, ref: Ref) -> bool:
    """Record the remote ``owner``'s monitor on a local pid or name; False if none is alive."""
    pid = node.names.get(target) if type(target) is str else target
    proc = node.processes.get(pid) if type(pid) is Pid else None
    if proc is None or type(pid) is not Pid:
        return False
    proc.monitors_in[ref] = Monitor(ref, owner, pid, pid)
    return True


def add_watch(node: Node, owner: Pid, target: Pid, ref: Ref) -> bool:
    """Record the local ``owner``'s monitor ``ref`` on the remote ``target``; False if dead."""
    proc = node.processes.get(owner)
    if proc is None:
        return False
    proc.monitors_out[ref] = Monitor(ref, owner, target, target)
    return True


def remove_monitor(node: Node, target: Pid, ref: Ref) -> None:
    """Forget the remote monitor ``ref`` on the local ``target``."""
    proc = node.processes.get(target)
    if proc is not None:
        proc.monitors_in.pop(ref, None)


def fire_down(node: Node, owner: Pid, ref: Ref, reason: Any) -> None:
    """The remote target of ``owner``'s active monitor ``ref`` ended: deliver ``Down``."""
    proc = node.processes.get(owner)
    if proc is None:
        return
    mon = proc.monitors_out.pop(ref, None)
    if mon is not None:
        proc.deliver(Down(ref, mon.reported, reason))


def node_lost(node: Node, lost: Iterable[int]) -> None:
    """Connections to the node numbers ``lost`` are gone: fire ``noconnection``.

    Every link to a process there delivers an exit signal ``NOCONNECTION``
    (trappable; kills a non-trapping partner), every monitor of a process
    there fires ``Down(ref, target, NOCONNECTION)``, and monitors held by
    processes there on local processes are dropped.
    """
    numbers = set(lost)
    if not numbers:
        return
    for proc in list(node.processes.values()):
        for ref, mon in list(proc.monitors_in.items()):
            if mon.owner._node in numbers:
                del proc.monitors_in[ref]
        # Links first, then monitors (ERTS's order for one lost connection).
        for partner in [p for p in proc.links if p._node in numbers]:
            del proc.links[partner]
            proc.exit_signal(partner, NOCONNECTION, linked=True)
        for ref, mon in list(proc.monitors_out.items()):
            if mon.target._node in numbers:
                del proc.monitors_out[ref]
                proc.deliver(Down(ref, mon.reported, NOCONNECTION))


def spawn(
    node: Node,
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    *,
    link_to: Pid | None,
    monitored_by: tuple[Pid, Ref] | None,
) -> Pid:
    """Start a local process for a remote requester, linked/monitored atomically."""
    pid, _ = node.spawn(fn, args, parent=None, link=False, monitor=False, trap_exit=False)
    proc = node.processes[pid]
    if link_to is not None:
        proc.links[link_to] = None
    if monitored_by is not None:
        owner, ref = monitored_by
        proc.monitors_in[ref] = Monitor(ref, owner, pid, pid)
    return pid
