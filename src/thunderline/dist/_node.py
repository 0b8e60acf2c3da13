"""One node's distribution: peers, failure detection and the signal protocol over NATS.

Identity. A node is ``(name, creation)``: the creation is the JetStream KV
revision of the node's entry in ``tl_<cluster>_nodes``, written at start, so
a node restarted under the same name has a larger creation and its pids never
alias the old ones. An *epoch* counts the node's connections: it starts at 1
and grows whenever the node loses its own NATS connection or learns that a
peer declared it down. A peer is up for one ``(creation, epoch)``.

Subjects (cluster prefix ``tl.<cluster>``):

* ``<prefix>.n.<dest>.<src>``: every signal from ``src`` to ``dest``. A node
  subscribes once to ``<prefix>.n.<self>.>``, so signals from one peer arrive
  in the order they were published (per-pair ordering);
* ``<prefix>.hb.<node>``: heartbeats (``hb``), ``hello`` (a node starts or
  reconnected: peers answer with a heartbeat at once) and ``bye``.

Envelope (msgpack array): ``[version, src creation, src epoch, dest creation,
dest epoch, kind, args...]``. A message whose version differs is refused with
a log line; one stamped for another connection of this node (old dest
creation or epoch) is dropped, and so is one from a peer connection that was
declared down (the sender's ``(creation, epoch)`` is at most the fenced one):
nothing of an old connection is delivered after the nodedown. A newer
``(creation, epoch)`` of a known peer means its old connection is gone: the
peer goes down (``noconnection`` everywhere) and up again.

Failure detection. Every ``heartbeat`` seconds a node publishes a heartbeat.
A peer silent for two heartbeats is probed with a request on its inbound
subject: NATS answers "no responders" at once when the peer's connection is
gone (kill -9: its subscriptions vanished), so a crashed node is down within
about ``3 * heartbeat``. A peer silent for ``tick`` seconds (hung, partitioned)
is declared down too, and is told so: it then bumps its epoch, which every
node sees as its old connection ending (OTP 25's ``prevent_overlapping_partitions``
also turns a partial disconnect into a full one). A node that loses its own
NATS connection treats every peer as down, bumps its epoch, drops what it had
queued, and announces itself again after reconnecting.

Node down. Links to processes there deliver ``NOCONNECTION``, monitors fire
``Down(..., NOCONNECTION)``, pending calls fail (``CallNodeDownError``),
``monitor_node`` subscribers get :class:`NodeDown` once, ``monitor_nodes``
subscribers get it too, and global names held there are released (at once
after a crash or a shutdown; after a tick timeout, when their lease runs out).

A disconnect (``disconnect_node`` here, or a peer's) isolates the node from
every peer, as OTP 25's ``prevent_overlapping_partitions`` does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.abc
import attrs
import msgpack
import nats.errors
import nats.js.errors

from thunderline.dist._codec import NODES, PROTOCOL_VERSION, Codec, DecodeError
from thunderline.dist._errors import (
    ClusterConnectError,
    InvalidNodeNameError,
    MessageTooLargeError,
    NotDistributedError,
    RemoteSpawnError,
)
from thunderline.dist._global import DEFAULT_LEASE, GlobalRegistry, check_lease
from thunderline.dist._transport import Event, Transport, open_transport
from thunderline.lowlevel import remote as _seam
from thunderline.runtime import (
    NOCONNECTION,
    NOPROC,
    InvalidDestinationError,
    Node,
    NotInProcessError,
    Pid,
    Ref,
    current_pid,
)

add_link = _seam.add_link
add_monitor = _seam.add_monitor
add_watch = _seam.add_watch
current_node = _seam.current_node
deliver = _seam.deliver
deliver_named = _seam.deliver_named
exit_signal = _seam.exit_signal
fire_down = _seam.fire_down
make_pid = _seam.make_pid
node_lost = _seam.node_lost
pid_parts = _seam.pid_parts
remove_link = _seam.remove_link
remove_monitor = _seam.remove_monitor
spawn = _seam.spawn

_WIRE: Final = _seam.wire_types()
_Call: Final[Any] = _WIRE["Call"][0]
_Reply: Final[Any] = _WIRE["Reply"][0]
_From: Final[Any] = _WIRE["From"][0]

__all__ = ["DistNode", "NodeDown", "NodeUp", "current_dist", "open_distribution"]

logger: Final = logging.getLogger("thunderline.dist")

#: Node-down reasons after which the lost node's global names are released at
#: once: its NATS connection is gone (it crashed) or it left. A node silent for
#: ``tick`` (hung, partitioned, or this node was the one paused) keeps its names
#: until their lease expires: it fences itself before that, so there is never
#: a second holder, and a paused node that wakes up does not release the names
#: of the healthy nodes it saw as silent. After a disconnect both sides live on.
_RELEASES_NAMES: Final = frozenset({"connection_closed", "shutdown"})

_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")

#: Default seconds between heartbeats.
DEFAULT_HEARTBEAT: Final = 0.2
#: Default seconds of silence after which a peer is declared down (OTP net_ticktime).
DEFAULT_TICK: Final = 3.0


@attrs.frozen
class NodeUp:
    """A node joined (or rejoined) the cluster (OTP ``{nodeup, Node}``)."""

    node: str


@attrs.frozen
class NodeDown:
    """A node was lost (OTP ``{nodedown, Node, [{nodedown_reason, Reason}]}``).

    ``reason``: ``"connection_closed"`` (it crashed or closed its NATS
    connection), ``"shutdown"`` (it left the cluster), ``"net_tick_timeout"``
    (silent for ``tick`` seconds), ``"disconnect"`` (:func:`disconnect_node`
    here or there), ``"connection_lost"`` (this node lost its own NATS
    connection), ``"restarted"`` (a newer incarnation or connection appeared).
    """

    node: str
    reason: str


@attrs.define
class Peer:
    name: str
    creation: int
    epoch: int
    number: int
    last_seen: float
    probing: bool = False


def check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidNodeNameError(kind, name)
    return name


#: The URL schemes nats-py connects with.
_NATS_SCHEMES: Final = ("nats", "tls", "ws", "wss")


def split_cluster_url(url: str, cluster_name: str | None) -> tuple[list[str], str]:
    """``nats://[user:pass@]host:port[/cluster]`` -> (server URLs, cluster name).

    Raises:
        ClusterConnectError: ``url`` is not a NATS URL with a host (refused here,
            instead of being retried until ``connect_timeout``).
        InvalidNodeNameError: bad cluster name.
    """
    parts = urlsplit(url) if isinstance(url, str) else None
    try:
        valid = parts is not None and parts.scheme in _NATS_SCHEMES and bool(parts.hostname)
        if parts is not None:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        valid = False
    if not valid or parts is None:
        raise ClusterConnectError(
            f"not a NATS URL: {url!r} (expected nats://host:port[/cluster]; "
            f"schemes {', '.join(_NATS_SCHEMES)})"
        )
    path_name = parts.path.strip("/")
    name = cluster_name or path_name or "thunderline"
    server = urlunsplit((parts.scheme or "nats", parts.netloc, "", "", ""))
    return [server], check_name("cluster", name)


class DistNode:
    """The distribution of one runtime node (it is ``node.dist``)."""

    def __init__(
        self,
        node: Node,
        name: str,
        cluster: str,
        *,
        heartbeat: float,
        tick: float,
    ) -> None:
        self.node = node
        self.name = name
        self.cluster = cluster
        self.prefix = f"tl.{cluster}"
        self.heartbeat = heartbeat
        self.tick = tick
        self.creation = 0
        self.epoch = 1
        self.connected = False
        self.codec = Codec()
        self.peers: dict[str, Peer] = {}
        self.fenced: dict[str, tuple[int, int]] = {}
        # peer -> ((creation, epoch) of the connection this node declared down and told
        # so, the reason): the "down" is sent again if it may have been discarded unsent
        self.told_down: dict[str, tuple[tuple[int, int], str]] = {}
        # Disconnected on purpose (disconnect_node, here or there): heartbeats
        # do not bring them back; the first contact either way does (OTP's
        # dist_auto_connect). ``seen``: the last heartbeat's (creation, epoch).
        self.passive: set[str] = set()
        self.seen: dict[str, tuple[int, int]] = {}
        self.transport: Transport | None = None
        self.max_payload = 1024 * 1024
        self.node_watchers: dict[str, list[Pid]] = {}
        self.nodes_watchers: dict[Pid, int] = {}
        self.functions: dict[str, Callable[..., Awaitable[Any]]] = {}
        self.pending_spawns: dict[Ref, _PendingSpawn] = {}
        self.incoming_monitors: dict[Ref, tuple[Pid, Pid]] = {}
        self.refused: set[tuple[str, object]] = set()
        self.abrupt = False
        self.task_group: anyio.abc.TaskGroup | None = None
        self.kv_nodes: Any = None
        self.global_names: Any = None  # _global.GlobalRegistry
        self._inbound_prefix = f"{self.prefix}.n.{name}."
        self._hb_prefix = f"{self.prefix}.hb."

    # ================================================================ peers

    def up_peer(self, name: str) -> Peer | None:
        return self.peers.get(name)

    def _contact(self, name: str) -> Peer | None:
        """The peer ``name`` for an outbound signal; reconnects a passive one that is alive."""
        peer = self.peers.get(name)
        if peer is not None or name not in self.passive:
            return peer
        seen = self.seen.get(name)
        fence = self.fenced.get(name)
        if seen is None or (fence is not None and seen <= fence):
            return None
        self.passive.discard(name)
        peer = self._peer_up(name, seen[0], seen[1])
        self._signal(peer, "c")  # so the other side takes the connection up at once
        return peer

    def nodes(self) -> list[str]:
        return sorted(self.peers)

    def _accept(self, src: str, creation: int, epoch: int) -> Peer | None:
        """The peer connection ``(creation, epoch)`` of ``src``, or None if it is an old one."""
        key = (creation, epoch)
        fence = self.fenced.get(src)
        if fence is not None and key <= fence:
            return None
        peer = self.peers.get(src)
        if peer is not None:
            current = (peer.creation, peer.epoch)
            if key == current:
                peer.last_seen = time.monotonic()
                return peer
            if key < current:
                return None
            self._peer_down(peer, "restarted", tell=False, fence=True)
        return self._peer_up(src, creation, epoch)

    def _peer_up(self, name: str, creation: int, epoch: int) -> Peer:
        peer = Peer(name, creation, epoch, NODES.number(name, creation), time.monotonic())
        self.peers[name] = peer
        logger.info("node %s: nodeup %s (creation %d, epoch %d)", self.name, name, creation, epoch)
        self._publish_heartbeat("hb")
        for watcher in list(self.nodes_watchers):
            self._notify(watcher, NodeUp(name))
        return peer

    def _peer_down(self, peer: Peer, reason: str, *, tell: bool, fence: bool) -> None:
        """Declare ``peer``'s connection down.

        ``fence``: drop everything that still comes from that connection
        (False when this node's own epoch changed: the peer's messages for the
        old epoch are dropped by the destination check, and its next heartbeat
        brings it up again).
        """
        if self.peers.get(peer.name) is not peer:
            return
        del self.peers[peer.name]
        if fence:
            self.fenced[peer.name] = (peer.creation, peer.epoch)
        logger.info("node %s: nodedown %s (%s)", self.name, peer.name, reason)
        if tell and self.connected:
            # Tell it, so it drops its side too (it bumps its epoch).
            self.told_down[peer.name] = ((peer.creation, peer.epoch), reason)
            self._signal(peer, "down", reason)
        numbers = {peer.number}
        for ref, (owner, _target) in list(self.incoming_monitors.items()):
            if _node_number(owner) in numbers:
                del self.incoming_monitors[ref]
        node_lost(self.node, numbers)
        for ref, pending in list(self.pending_spawns.items()):
            if pending.node == peer.name:
                del self.pending_spawns[ref]
                pending.fail("the node went down")
        for watcher in self.node_watchers.pop(peer.name, []):
            self._notify(watcher, NodeDown(peer.name, reason))
        for watcher in list(self.nodes_watchers):
            self._notify(watcher, NodeDown(peer.name, reason))
        if self.global_names is not None and reason in _RELEASES_NAMES:
            self.global_names.node_down(peer.name, peer.creation)

    def _all_down(self, reason: str) -> None:
        for peer in list(self.peers.values()):
            self._peer_down(peer, reason, tell=False, fence=False)

    def _notify(self, watcher: Pid, message: Any) -> None:
        if watcher in self.node.processes:
            deliver(self.node, watcher, message)
        else:
            self.nodes_watchers.pop(watcher, None)

    # ============================================================ outbound

    def _signal(
        self, peer: Peer, kind: str, *args: Any, headers: dict[str, str] | None = None
    ) -> None:
        transport = self.transport
        if transport is None or not self.connected:
            return
        body = msgpack.packb(
            [PROTOCOL_VERSION, self.creation, self.epoch, peer.creation, peer.epoch, kind, *args]
        )
        if len(body) > self.max_payload:
            raise MessageTooLargeError(len(body), self.max_payload, peer.name)
        transport.publish(f"{self.prefix}.n.{peer.name}.{self.name}", body, headers)

    def _publish_heartbeat(self, kind: str) -> None:
        transport = self.transport
        if transport is None or not self.connected:
            return
        body = msgpack.packb([PROTOCOL_VERSION, self.creation, self.epoch, kind])
        transport.publish(f"{self._hb_prefix}{self.name}", body)

    def _peer_of(self, pid: Pid) -> tuple[Peer | None, bool]:
        """(the up peer hosting ``pid``, whether ``pid`` is of its current creation)."""
        identity = NODES.identity(_node_number(pid))
        if identity is None:
            return None, False
        peer = self._contact(identity[0])
        if peer is None:
            return None, False
        return peer, peer.creation == identity[1]

    def _named(self, dest: Any, operation: str) -> tuple[str, str]:
        if (
            type(dest) is not tuple
            or len(dest) != 2
            or not isinstance(dest[0], str)
            or not isinstance(dest[1], str)
        ):
            raise InvalidDestinationError(dest, operation, "a Pid, a name or (name, node)")
        return dest[0], dest[1]

    # Distribution protocol (called by the runtime) -------------------------

    def resolve(self, dest: tuple[str, str]) -> str | Pid:
        name, node_name = self._named(dest, "resolve")
        if node_name == self.name:
            return name
        peer = self._contact(node_name)
        if peer is not None:
            return make_pid(peer.number, 0)
        return make_pid(NODES.number(node_name, 0), 0)

    def send(self, dest: Pid | tuple[str, str], message: Any) -> None:
        if type(message) is _Reply:
            # A call reply: the caller forgets its monitor when the reply
            # arrives, this side forgets it as the reply leaves (no demonitor).
            entry = self.incoming_monitors.pop(message.tag, None)
            if entry is not None:
                remove_monitor(self.node, entry[1], message.tag)
        payload = self.codec.encode(message)
        headers = self._trace_headers(dest)
        if type(dest) is Pid:
            peer, current = self._peer_of(dest)
            if peer is not None and current:
                self._signal(peer, "s", self.codec.encode(dest), payload, headers=headers)
            return
        name, node_name = self._named(dest, "send")
        if node_name == self.name:
            deliver_named(self.node, name, message)
            return
        peer = self._contact(node_name)
        if peer is not None:
            self._signal(peer, "sn", name, payload, headers=headers)

    def call(self, owner: Pid, dest: Pid | tuple[str, str], ref: Ref, request: Any) -> None:
        """A monitor and a call request in one signal (``cl`` / ``cln``)."""
        encode = self.codec.encode
        payload = encode(request)
        headers = self._trace_headers(dest)
        if type(dest) is Pid:
            peer, current = self._peer_of(dest)
            if peer is None:
                fire_down(self.node, owner, ref, NOCONNECTION)
            elif not current:
                fire_down(self.node, owner, ref, NOPROC)
            else:
                self._signal(
                    peer, "cl", encode(dest), encode(owner), encode(ref), payload, headers=headers
                )
            return
        name, node_name = self._named(dest, "call")
        named_peer = self._contact(node_name)
        if named_peer is None:
            fire_down(self.node, owner, ref, NOCONNECTION)
        else:
            self._signal(
                named_peer, "cln", name, encode(owner), encode(ref), payload, headers=headers
            )

    def link(self, local: Pid, remote: Pid) -> None:
        peer, current = self._peer_of(remote)
        if peer is None:
            exit_signal(self.node, local, remote, NOCONNECTION, True)
        elif not current:
            exit_signal(self.node, local, remote, NOPROC, True)
        else:
            self._signal(peer, "l", self.codec.encode(local), self.codec.encode(remote))

    def unlink(self, local: Pid, remote: Pid) -> None:
        peer, current = self._peer_of(remote)
        if peer is not None and current:
            self._signal(peer, "u", self.codec.encode(local), self.codec.encode(remote))

    def exit(self, sender: Pid, remote: Pid, reason: Any, linked: bool) -> None:
        peer, current = self._peer_of(remote)
        if peer is not None and current:
            encode = self.codec.encode
            self._signal(peer, "x", encode(sender), encode(remote), encode(reason), linked)

    def monitor(self, owner: Pid, target: Pid | tuple[str, str], ref: Ref) -> None:
        encode = self.codec.encode
        if type(target) is Pid:
            peer, current = self._peer_of(target)
            if peer is None:
                fire_down(self.node, owner, ref, NOCONNECTION)
            elif not current:
                fire_down(self.node, owner, ref, NOPROC)
            else:
                self._signal(peer, "m", encode(owner), encode(target), encode(ref))
            return
        name, node_name = self._named(target, "monitor")
        named_peer = self._contact(node_name)
        if named_peer is None:
            fire_down(self.node, owner, ref, NOCONNECTION)
        else:
            self._signal(named_peer, "mn", encode(owner), name, encode(ref))

    def demonitor(self, owner: Pid, target: Pid, ref: Ref) -> None:
        identity = NODES.identity(_node_number(target))
        peer = self.peers.get(identity[0]) if identity is not None else None
        if peer is not None:
            self._signal(peer, "dm", self.codec.encode(owner), self.codec.encode(ref))

    def down(self, owner: Pid, ref: Ref, reason: Any) -> None:
        self.incoming_monitors.pop(ref, None)
        peer, current = self._peer_of(owner)
        if peer is not None and current:
            encode = self.codec.encode
            self._signal(peer, "d", encode(owner), encode(ref), encode(reason))

    def _trace_headers(self, dest: Any) -> dict[str, str] | None:
        """The sender's trace context as NATS headers (W3C ``traceparent`` ...), if traced."""
        instrument = self.node.instrument
        if instrument is None:
            return None
        try:
            sender: Pid | None = current_pid()
        except NotInProcessError:
            sender = None
        target = dest if type(dest) is Pid else self.resolve(dest)
        if type(target) is not Pid:
            return None
        carrier = instrument.capture(sender, target, repr(dest), "send")
        if not isinstance(carrier, dict):
            return None
        return {str(k): str(v) for k, v in carrier.items()}

    # ============================================================= inbound

    def handle(self, event: Event) -> None:
        """One event from the transport (on the node's backend, in arrival order)."""
        kind = event[0]
        if kind == "msg":
            _, subject, data, headers, reply = event
            try:
                if subject.startswith(self._inbound_prefix):
                    self._on_signal(subject[len(self._inbound_prefix) :], data, headers, reply)
                elif subject.startswith(self._hb_prefix):
                    self._on_heartbeat(subject[len(self._hb_prefix) :], data)
            except (DecodeError, ValueError, TypeError, IndexError) as exc:
                logger.warning(
                    "node %s: dropped a malformed message on %s: %s", self.name, subject, exc
                )
        elif kind == "disconnected":
            if self.connected:
                logger.warning("node %s: lost its NATS connection; every peer is down", self.name)
                self.connected = False
                self.epoch += 1
                if self.transport is not None:
                    self.transport.discard_outbox()
                self._all_down("connection_lost")
        elif kind == "reconnected":
            logger.info("node %s: NATS connection back (epoch %d)", self.name, self.epoch)
            self.connected = True
            self._publish_heartbeat("hello")

    def _check_version(self, src: str, version: object) -> bool:
        if version == PROTOCOL_VERSION:
            return True
        if (src, version) not in self.refused:
            self.refused.add((src, version))
            logger.error(
                "node %s: refusing node %s: it speaks protocol version %r, this node speaks %d",
                self.name,
                src,
                version,
                PROTOCOL_VERSION,
            )
        return False

    def _on_heartbeat(self, src: str, data: bytes) -> None:
        if src == self.name:
            return
        body = msgpack.unpackb(data)
        if not self._check_version(src, body[0]):
            return
        creation, epoch, kind = body[1], body[2], body[3]
        if kind == "bye":
            peer = self.peers.get(src)
            if peer is not None and (peer.creation, peer.epoch) == (creation, epoch):
                self._peer_down(peer, "shutdown", tell=False, fence=True)
            return
        self.seen[src] = (creation, epoch)
        if src in self.passive:
            return
        had = self.peers.get(src)
        peer = self._accept(src, creation, epoch)
        if kind == "hello" and peer is not None and had is peer:
            self._publish_heartbeat("hb")

    def _on_signal(self, src: str, data: bytes, headers: Any, reply: str) -> None:
        body = msgpack.unpackb(data)
        if type(body) is not list or len(body) < 6:
            raise DecodeError("not an envelope")
        if not self._check_version(src, body[0]):
            return
        src_creation, src_epoch, dst_creation, dst_epoch, kind = body[1:6]
        args = body[6:]
        if kind == "probe":
            if reply and self.transport is not None:
                self.transport.publish(reply, b"")
            return
        if (dst_creation, dst_epoch) != (self.creation, self.epoch):
            return  # meant for another connection of this node
        if kind == "down":
            # The sender declared this node down: leave every connection, come back anew.
            logger.warning("node %s: %s declared this node down (%s)", self.name, src, args[0])
            self.epoch += 1
            if self.transport is not None:
                self.transport.discard_outbox()
            told = self.told_down.pop(src, None)
            if told is not None and told[0] == (src_creation, src_epoch):
                # Both sides declared each other down at once (a hung node resumed):
                # this node's "down" to src may have been in the outbox just discarded.
                # Without it src keeps its connection, whose every message this node
                # drops (fenced), while src sees this node up again: tell it again.
                again = Peer(src, src_creation, src_epoch, 0, time.monotonic())
                self._signal(again, "down", told[1])
            if args[0] == "disconnect":
                # A disconnect isolates both sides (see :meth:`disconnect`): the
                # other peers are cut too, told so, and stay apart until contacted.
                # The others go first, then the sender (OTP's order at a third node).
                others = [peer for peer in self.peers.values() if peer.name != src]
                for other in others:
                    self._signal(other, "down", "disconnect")
                self.passive.update(other.name for other in others)
                for other in others:
                    self._peer_down(other, "disconnect", tell=False, fence=False)
            self._all_down("disconnect")
            self.passive.add(src)
            self._publish_heartbeat("hello")
            return
        if src in self.passive:
            fence = self.fenced.get(src)
            if fence is not None and (src_creation, src_epoch) <= fence:
                return  # from the connection that was cut
            self.passive.discard(src)  # a new connection contacted this node
        peer = self._accept(src, src_creation, src_epoch)
        if peer is None:
            return
        self._dispatch(peer, kind, args, headers)

    def _dispatch(self, peer: Peer, kind: str, args: list[Any], headers: Any) -> None:
        decode = self.codec.decode
        node = self.node
        if kind == "s":
            pid = decode(args[0])
            message = decode(args[1])
            self._deliver_traced(pid, message, headers)
        elif kind == "sn":
            message = decode(args[1])
            holder = node.names.get(args[0])
            if holder is not None:
                self._deliver_traced(holder, message, headers)
        elif kind == "l":
            remote, local = decode(args[0]), decode(args[1])
            if not add_link(node, local, remote):
                self._signal(peer, "x", args[1], args[0], self.codec.encode(NOPROC), True)
        elif kind == "u":
            remove_link(node, decode(args[1]), decode(args[0]))
        elif kind == "x":
            sender, target, reason, linked = (
                decode(args[0]),
                decode(args[1]),
                decode(args[2]),
                args[3],
            )
            exit_signal(node, target, sender, reason, bool(linked))
        elif kind in ("m", "mn"):
            owner, ref = decode(args[0]), decode(args[2])
            target = decode(args[1]) if kind == "m" else args[1]
            if add_monitor(node, target, owner, ref):
                where = target if type(target) is Pid else node.names[target]
                self.incoming_monitors[ref] = (owner, where)
            else:
                self._signal(peer, "d", args[0], args[2], self.codec.encode(NOPROC))
        elif kind in ("cl", "cln"):
            target = decode(args[0]) if kind == "cl" else args[0]
            owner, ref = decode(args[1]), decode(args[2])
            if add_monitor(node, target, owner, ref):
                where = target if type(target) is Pid else node.names[target]
                self.incoming_monitors[ref] = (owner, where)
                self._deliver_traced(where, _Call(_From(owner, ref), decode(args[3])), headers)
            else:
                self._signal(peer, "d", args[1], args[2], self.codec.encode(NOPROC))
        elif kind == "dm":
            ref = decode(args[1])
            entry = self.incoming_monitors.pop(ref, None)
            if entry is not None:
                remove_monitor(node, entry[1], ref)
        elif kind == "d":
            fire_down(node, decode(args[0]), decode(args[1]), decode(args[2]))
        elif kind == "c":
            pass  # a contact after a disconnect: accepting the sender was the point
        elif kind == "sp":
            self._on_spawn_request(peer, args)
        elif kind == "spr":
            self._on_spawn_reply(args)
        else:
            logger.warning("node %s: unknown signal %r from %s", self.name, kind, peer.name)

    def _deliver_traced(self, pid: Any, message: Any, headers: Any) -> None:
        deliver(self.node, pid, message, dict(headers) if headers else None)

    # ========================================================= remote spawn

    async def spawn_remote(
        self,
        requester: Pid,
        node_name: str,
        function: str,
        args: tuple[Any, ...],
        *,
        link: bool,
        monitor: bool,
        timeout: float,
    ) -> tuple[Pid, Ref | None]:
        peer = self._contact(node_name)
        if node_name == self.name:
            fn = self.functions.get(function)
            if fn is None:
                raise RemoteSpawnError(
                    node_name, function, "no function is registered by that name"
                )
            mref = self.node.make_ref() if monitor else None
            pid = spawn(self.node, fn, args, link_to=requester if link else None, monitored_by=None)
            if link:
                add_link(self.node, requester, pid)
            if mref is not None:
                add_watch(self.node, requester, pid, mref)
                add_monitor(self.node, pid, requester, mref)
            return pid, mref
        if peer is None:
            raise RemoteSpawnError(node_name, function, "the node is not connected")
        request = self.node.make_ref()
        mref = self.node.make_ref() if monitor else None
        pending = _PendingSpawn(node_name, requester, link, mref)
        self.pending_spawns[request] = pending
        encode = self.codec.encode
        self._signal(
            peer,
            "sp",
            encode(request),
            encode(requester),
            function,
            encode(args),
            link,
            encode(mref) if mref is not None else None,
        )
        try:
            with anyio.fail_after(timeout):
                await pending.done.wait()
        except TimeoutError:
            self.pending_spawns.pop(request, None)
            raise RemoteSpawnError(node_name, function, f"no answer within {timeout} s") from None
        if pending.error is not None:
            raise RemoteSpawnError(node_name, function, pending.error)
        assert pending.pid is not None
        return pending.pid, mref

    def _on_spawn_request(self, peer: Peer, args: list[Any]) -> None:
        decode = self.codec.decode
        request, requester, function = decode(args[0]), decode(args[1]), args[2]
        fn_args, link, mref = decode(args[3]), bool(args[4]), args[5]
        fn = self.functions.get(function)
        if fn is None:
            self._signal(peer, "spr", args[0], None, f"no function is registered as {function!r}")
            return
        monitored_by = (requester, decode(mref)) if mref is not None else None
        pid = spawn(
            self.node,
            fn,
            tuple(fn_args),
            link_to=requester if link else None,
            monitored_by=monitored_by,
        )
        if monitored_by is not None:
            self.incoming_monitors[monitored_by[1]] = (requester, pid)
        self._signal(peer, "spr", self.codec.encode(request), self.codec.encode(pid), None)
        del request

    def _on_spawn_reply(self, args: list[Any]) -> None:
        request = self.codec.decode(args[0])
        pending = self.pending_spawns.pop(request, None)
        if pending is None:
            return
        if args[1] is None:
            pending.fail(str(args[2]))
            return
        pid = self.codec.decode(args[1])
        if pending.link and not add_link(self.node, pending.requester, pid):
            self.unlink(pending.requester, pid)
        if pending.mref is not None:
            add_watch(self.node, pending.requester, pid, pending.mref)
        pending.pid = pid
        pending.done.set()

    # ====================================================== monitor_node(s)

    def monitor_node(self, watcher: Pid, node_name: str, flag: bool) -> None:
        if not flag:
            watchers = self.node_watchers.get(node_name, [])
            if watcher in watchers:
                watchers.remove(watcher)
            return
        if node_name != self.name and node_name not in self.peers:
            deliver(self.node, watcher, NodeDown(node_name, "not_connected"))
            return
        self.node_watchers.setdefault(node_name, []).append(watcher)

    def monitor_nodes(self, watcher: Pid, flag: bool) -> None:
        if flag:
            self.nodes_watchers[watcher] = self.nodes_watchers.get(watcher, 0) + 1
        else:
            count = self.nodes_watchers.get(watcher, 0) - 1
            if count <= 0:
                self.nodes_watchers.pop(watcher, None)
            else:
                self.nodes_watchers[watcher] = count

    def halt(self) -> None:
        """Stop all traffic at once, as a crash would: nothing more is sent, no goodbye.

        The connection itself is closed when the distribution's block is left.
        """
        self.abrupt = True
        self.connected = False
        if self.transport is not None:
            self.transport.discard_outbox()

    def disconnect(self, node_name: str) -> bool:
        """Cut the connection to ``node_name``, and with it every other one.

        OTP 25's ``prevent_overlapping_partitions`` (the default) keeps
        partitions fully connected: once this node and ``node_name`` no
        longer see each other, every node still connected to both is cut
        too. In a fully connected cluster that is every peer, on both sides:
        both nodes end up alone (each cut is told to the peer, and stays
        until either side contacts the other again).
        """
        peer = self.peers.get(node_name)
        if peer is None:
            return False
        self._peer_down(peer, "disconnect", tell=True, fence=True)
        self.passive.add(node_name)
        for other in list(self.peers.values()):
            self._peer_down(other, "disconnect", tell=True, fence=True)
            self.passive.add(other.name)
        return True

    # ============================================================ lifecycle

    async def _heartbeats(self) -> None:
        interval = self.heartbeat
        while True:
            await anyio.sleep(interval)
            if not self.connected:
                continue
            self._publish_heartbeat("hb")
            now = time.monotonic()
            for peer in list(self.peers.values()):
                silence = now - peer.last_seen
                if silence > self.tick:
                    self._peer_down(peer, "net_tick_timeout", tell=True, fence=True)
                elif silence > 2 * interval and not peer.probing and self.task_group is not None:
                    peer.probing = True
                    self.task_group.start_soon(self._probe, peer)

    async def _probe(self, peer: Peer) -> None:
        """Ask a silent peer; "no responders" means its connection is gone (it crashed)."""
        transport = self.transport
        assert transport is not None
        body = msgpack.packb(
            [PROTOCOL_VERSION, self.creation, self.epoch, peer.creation, peer.epoch, "probe"]
        )
        subject = f"{self.prefix}.n.{peer.name}.{self.name}"
        try:
            await transport.run(transport.nc.request, subject, body, max(self.tick, 0.5))
        except nats.errors.NoRespondersError:
            if self.peers.get(peer.name) is peer:
                self._peer_down(peer, "connection_closed", tell=False, fence=True)
            return
        except (nats.errors.Error, OSError, TimeoutError):
            pass
        finally:
            peer.probing = False
        if self.peers.get(peer.name) is peer:
            peer.last_seen = max(peer.last_seen, time.monotonic() - self.heartbeat)

    async def wait_for(self, node_name: str, timeout: float) -> bool:
        """Wait until ``node_name`` is up (at most ``timeout`` seconds)."""
        if node_name == self.name:
            return True
        self._contact(node_name)
        self.passive.discard(node_name)
        with anyio.move_on_after(timeout):
            while node_name not in self.peers:
                self._publish_heartbeat("hello")
                await anyio.sleep(min(0.05, self.heartbeat))
            return True
        return node_name in self.peers


@attrs.define(eq=False)
class _PendingSpawn:
    node: str
    requester: Pid
    link: bool
    mref: Ref | None
    done: anyio.Event = attrs.field(factory=anyio.Event)
    pid: Pid | None = None
    error: str | None = None

    def fail(self, error: str) -> None:
        self.error = error
        self.done.set()


def _node_number(pid: Pid) -> int:
    return pid_parts(pid)[0]


def current_dist(operation: str) -> DistNode:
    """The distribution of the calling context's node."""
    node = current_node(operation)
    dist = node.dist
    if not isinstance(dist, DistNode):
        raise NotDistributedError(operation)
    return dist


@contextlib.asynccontextmanager
async def open_distribution(
    node: Node,
    name: str,
    cluster: str,
    *,
    cluster_name: str | None = None,
    heartbeat: float = DEFAULT_HEARTBEAT,
    tick: float = DEFAULT_TICK,
    lease: float | None = None,
    connect_options: dict[str, Any] | None = None,
    connect_timeout: float = 10.0,
) -> AsyncIterator[DistNode]:
    """Join ``node`` to a cluster as ``name`` for the duration of the block.

    Args:
        node: the runtime node (from :func:`thunderline.open_node`).
        name: the node's name in the cluster (``[a-z][a-z0-9_-]*``).
        cluster: the NATS URL, ``nats://[user:password@]host:port[/cluster]``;
            the path names the cluster (its subject prefix), default ``thunderline``.
        cluster_name: overrides the cluster name of the URL.
        heartbeat: seconds between heartbeats (a crashed node is noticed after
            about three).
        tick: seconds of silence after which a hung peer is declared down.
        lease: seconds a global name lives without renewal (default 5); a
            cluster setting: the first node creates the registry with it, later
            nodes use the registry's.
        connect_options: passed to ``nats.connect`` (``user_credentials``,
            ``nkeys_seed``, ``tls``, ``user``, ``password``, ``token`` ...).
        connect_timeout: seconds to wait for the NATS server at start.

    Raises:
        InvalidNodeNameError: bad node or cluster name.
        ClusterConnectError: NATS unreachable, JetStream unavailable, not a NATS URL,
            or a live node of this name is already in the cluster.
    """
    check_name("node", name)
    lease = check_lease(DEFAULT_LEASE if lease is None else lease)
    if not (isinstance(tick, int | float) and math.isfinite(tick) and tick > 0):
        raise ValueError(f"tick must be a positive number of seconds, got {tick!r}")
    if not (isinstance(heartbeat, int | float) and 0 < heartbeat <= tick / 2):
        raise ValueError(f"heartbeat must be positive and at most tick/2, got {heartbeat!r}")
    if node.dist is not None:
        raise ClusterConnectError(f"this node already belongs to a cluster ({node.dist!r})")
    servers, cluster_token = split_cluster_url(cluster, cluster_name)
    dist = DistNode(node, name, cluster_token, heartbeat=heartbeat, tick=tick)
    options: dict[str, Any] = {
        "name": f"thunderline {cluster_token}/{name}",
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.2,
        "ping_interval": max(1, int(tick)),
        "max_outstanding_pings": 2,
        "connect_timeout": max(1, int(connect_timeout)),
        "pending_size": 64 * 1024 * 1024,
    }
    options.update(connect_options or {})

    async with open_transport(
        servers, options, dist.handle, abrupt=lambda: dist.abrupt
    ) as transport:
        dist.transport = transport
        dist.max_payload = int(getattr(transport.nc, "max_payload", dist.max_payload))
        # outside the task group: a failure here is raised as itself, not in an ExceptionGroup
        await _check_name_free(transport, dist, servers)
        try:
            kv = await transport.run(_open_kv, transport, f"tl_{cluster_token}_nodes")
            dist.creation = await transport.run(kv.put, name, msgpack.packb([PROTOCOL_VERSION]))
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
            raise ClusterConnectError(
                f"node {name!r}: JetStream KV is not available on {servers} ({exc!r}); "
                "run nats-server with -js"
            ) from None
        dist.kv_nodes = kv
        NODES.bind(name, dist.creation, node.id)
        dist.global_names = await GlobalRegistry.open(dist, lease)
        async with anyio.create_task_group() as task_group:
            dist.task_group = task_group
            await transport.subscribe(f"{dist.prefix}.n.{name}.>")
            await transport.subscribe(f"{dist.prefix}.hb.*")
            dist.connected = True
            node.dist = dist
            await transport.flush()
            dist._publish_heartbeat("hello")
            task_group.start_soon(dist._heartbeats)
            await dist.global_names.start(task_group)
            try:
                yield dist
            finally:
                if not dist.abrupt:
                    dist._publish_heartbeat("bye")
                node.dist = None
                dist.connected = False
                task_group.cancel_scope.cancel()


async def _check_name_free(transport: Transport, dist: DistNode, servers: list[str]) -> None:
    """Refuse to start a second live node of the same name (as epmd refuses a taken name).

    A probe to the name's subject is answered by a node of that name; "no
    responders" means there is none. No answer in time means one that is alive
    but hung (its connection is still there): taken as well.

    Raises:
        ClusterConnectError: a node of this name is connected to the cluster.
    """
    body = msgpack.packb([PROTOCOL_VERSION, 0, 0, 0, 0, "probe"])
    subject = f"{dist.prefix}.n.{dist.name}.{dist.name}"
    try:
        await transport.run(transport.nc.request, subject, body, max(dist.tick, 1.0))
    except nats.errors.NoRespondersError:
        return
    except (nats.errors.TimeoutError, TimeoutError):
        pass  # a connected node that does not answer: hung, still holding its name
    except (nats.errors.Error, OSError) as exc:
        raise ClusterConnectError(
            f"node {dist.name!r}: cannot check the name on {servers} ({exc!r})"
        ) from None
    raise ClusterConnectError(
        f"node name {dist.name!r} is already in use in cluster {dist.cluster!r} "
        f"(another node of that name is connected to {servers}); stop it or pick another name"
    )


async def _open_kv(transport: Transport, bucket: str) -> Any:
    js = transport.nc.jetstream()
    try:
        return await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        try:
            return await js.create_key_value(bucket=bucket, history=1)
        except nats.js.errors.BadRequestError:
            return await js.key_value(bucket)
