"""The global name registry on JetStream KV (OTP ``global``), with leases.

Bucket ``tl_<cluster>_global``, whose streams' ``max_age`` is the cluster's
*lease*: an entry not rewritten for a lease is removed by the server. A name
is the key ``n.<name>`` (value: the encoded ``(pid, registrar node,
registrar creation)``); the holder's reverse entry ``p.<node>.<creation>.<number>``
(value: the name) makes a second name for the same process fail, as
``global`` does by default.

* register: create ``n.<name>`` (JetStream's create-if-absent: exactly one
  winner among racing nodes), then create the reverse entry (if that fails,
  the process already has a name: the first key is deleted again, by
  revision). The registering node (the *registrar*) holds the lease: it
  rewrites both keys every quarter lease, compare-and-set on the revision it
  wrote last, and its name keeper process monitors the holder (local or
  remote);
* the holder ends (any reason, also ``normal``), or its node is lost
  (``noconnection``), or it was dead already (``noproc``): the keeper drops
  the lease and deletes both keys by revision (compare-and-delete, so a newer
  registration of the same name is never removed);
* a node declared down: every survivor deletes the names its processes held
  (by revision; racing survivors are harmless). A node starting removes
  names left by its own earlier incarnations. Names nobody removes (no
  survivor saw the node go) expire with their lease;
* fencing: a registrar that could not renew a lease for 80% of its length
  (its node hung, its NATS connection or JetStream unreachable), or whose
  compare-and-set renewal failed (the key expired or was taken or removed),
  drops the name locally with one warning line: from then on its node never
  answers for that registration (``whereis`` there returns None for it,
  whatever the bucket still says) and never renews it, and the server removes
  it at the latest a lease after the last renewal, so another node can take
  the name. The 80% is counted from *before* the renewal request was sent,
  so the registrar stops answering before the server can expire the key;
* whereis reads the key (strongly consistent: one round trip) and returns
  None for a holder whose node is not connected, and for a registration this
  node made but no longer holds a lease for.

Partitions: JetStream is the arbiter, so a node cut off from the NATS
server cannot register at all (unlike ``global``, which lets both sides of a
partition register the same name and resolves the clash on healing), and a
holder whose node is declared down, or that cannot renew, loses its names
even if it still runs.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc
import attrs
import nats.errors
import nats.js.errors

from thunderline.dist._codec import NODES
from thunderline.dist._errors import GlobalNameError
from thunderline.lowlevel import remote as _seam
from thunderline.runtime import Down, Pid, monitor, receive

deliver = _seam.deliver
pid_parts = _seam.pid_parts
spawn = _seam.spawn

if TYPE_CHECKING:
    from thunderline.dist._node import DistNode

__all__ = ["DEFAULT_LEASE", "GlobalRegistry"]

logger: Final = logging.getLogger("thunderline.dist")

_KEY_RE: Final = re.compile(r"^[A-Za-z0-9_=-]{1,200}$")

_KV_ERRORS: Final = (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError)

_TAKEN: Final = (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError)

#: Default lease of a global name, in seconds (the bucket's ``max_age``).
DEFAULT_LEASE: Final = 5.0
#: A registrar holds a name for this share of the lease after a renewal began.
_HOLD_SHARE: Final = 0.8


def check_global_name(name: object) -> str:
    if not isinstance(name, str) or not _KEY_RE.match(name):
        raise GlobalNameError(name)
    return name


def check_lease(lease: object) -> float:
    if not (
        isinstance(lease, int | float) and not isinstance(lease, bool) and 0.2 <= lease <= 3600
    ):
        raise ValueError(f"lease must be between 0.2 and 3600 seconds, got {lease!r}")
    return float(lease)


@attrs.define(eq=False)
class _Lease:
    """A name this node registered (it renews it)."""

    name: str
    pid: Pid
    value: bytes
    name_rev: int
    pid_key: str
    pid_rev: int
    renewed_at: float


@attrs.frozen
class _Watch:
    lease: _Lease


class GlobalRegistry:
    """The global names of one node's cluster (see the module docstring)."""

    def __init__(self, dist: DistNode, kv: Any, lease: float) -> None:
        self.dist = dist
        self.kv = kv
        self.lease = lease
        self.leases: dict[str, _Lease] = {}
        self.keeper: Pid | None = None
        self.task_group: anyio.abc.TaskGroup | None = None

    @classmethod
    async def open(cls, dist: DistNode, lease: float) -> GlobalRegistry:
        transport = dist.transport
        assert transport is not None
        kv, lease = await transport.run(
            _open_lease_kv, transport, f"tl_{dist.cluster}_global", lease
        )
        return cls(dist, kv, lease)

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        self.task_group = task_group
        self.keeper = spawn(self.dist.node, self._keeper, (), link_to=None, monitored_by=None)
        task_group.start_soon(self._renewals)
        await self._purge(lambda name, creation: name == self.dist.name)

    def _pid_key(self, pid: Pid) -> str:
        identity = NODES.identity(pid_parts(pid)[0])
        if identity is None:
            raise GlobalNameError(pid)
        return f"p.{identity[0]}.{identity[1]}.{pid_parts(pid)[1]}"

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        transport = self.dist.transport
        assert transport is not None

        async def call() -> Any:
            return await fn(*args, **kwargs)

        return await transport.run(call)

    def _holds(self, lease: _Lease) -> bool:
        """Whether this node still holds ``lease`` (renewed recently enough)."""
        return (
            self.leases.get(lease.name) is lease
            and time.monotonic() - lease.renewed_at < _HOLD_SHARE * self.lease
        )

    # ----------------------------------------------------------------- API

    async def register(self, name: str, pid: Pid) -> bool:
        check_global_name(name)
        dist = self.dist
        value = dist.codec.encode((pid, dist.name, dist.creation))
        pid_key = self._pid_key(pid)
        started = time.monotonic()
        # nats-py's create reads the key after a refusal: KeyNotFoundError means
        # the key was there at the create and expired right after (taken then).
        try:
            name_rev = await self._run(self.kv.create, f"n.{name}", value)
        except _TAKEN:
            return False
        try:
            pid_rev = await self._run(self.kv.create, pid_key, name.encode())
        except _TAKEN:
            await self._delete(f"n.{name}", name_rev)
            return False
        lease = _Lease(name, pid, value, int(name_rev), pid_key, int(pid_rev), started)
        self.leases[name] = lease
        if self.keeper is not None:
            deliver(dist.node, self.keeper, _Watch(lease))
        return True

    async def _entry(self, name: str) -> tuple[Pid, int, tuple[str, int]] | None:
        try:
            entry = await self._run(self.kv.get, f"n.{name}")
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        if entry.value is None or entry.operation is not None:
            return None
        value = self.dist.codec.decode(entry.value)
        if (
            type(value) is not tuple
            or len(value) != 3
            or type(value[0]) is not Pid
            or not isinstance(value[1], str)
            or not isinstance(value[2], int)
        ):
            return None
        return value[0], int(entry.revision), (value[1], value[2])

    async def whereis(self, name: str) -> Pid | None:
        check_global_name(name)
        found = await self._entry(name)
        if found is None:
            return None
        pid, _revision, registrar = found
        dist = self.dist
        if registrar == (dist.name, dist.creation):
            lease = self.leases.get(name)
            if lease is None or lease.pid != pid or not self._holds(lease):
                return None  # fenced: this node no longer holds that registration
        identity = NODES.identity(pid_parts(pid)[0])
        if identity is None:
            return None
        if identity[0] == dist.name:
            return pid if identity[1] == dist.creation else None
        peer = dist.peers.get(identity[0])
        return pid if peer is not None and peer.creation == identity[1] else None

    async def unregister(self, name: str) -> None:
        check_global_name(name)
        self.leases.pop(name, None)
        found = await self._entry(name)
        if found is None:
            return
        pid, revision, _registrar = found
        await self._delete(f"n.{name}", revision)
        await self._delete_pid_key(pid, name)

    async def names(self) -> dict[str, Pid]:
        """Every registered name whose holder's node is connected, with its holder."""
        keys = await self._keys()
        if not keys:
            return {}
        result: dict[str, Pid] = {}
        for key in keys:
            if key.startswith("n."):
                pid = await self.whereis(key[2:])
                if pid is not None:
                    result[key[2:]] = pid
        return result

    async def _keys(self) -> list[str]:
        """Every key of the bucket.

        nats-py's ``keys()`` (an ordered consumer over the bucket) was seen to
        end early with no keys on a loaded machine right after deletes; an
        empty answer is confirmed by asking once more.
        """
        for _ in range(2):
            try:
                keys: list[str] = await self._run(self.kv.keys)
            except nats.js.errors.NoKeysError:
                continue
            return keys
        return []

    # ------------------------------------------------------------- leases

    async def _renewals(self) -> None:
        """Renew this node's leases every quarter lease; fence the ones it could not renew."""
        interval = self.lease / 4
        while True:
            await anyio.sleep(interval)
            for lease in list(self.leases.values()):
                if not self._holds(lease):
                    self._fence(lease, "not renewed in time")
                elif self.dist.connected:
                    with anyio.move_on_after(interval):
                        await self._renew(lease)

    async def _renew(self, lease: _Lease) -> None:
        started = time.monotonic()
        try:
            name_rev = await self._run(
                self.kv.update, f"n.{lease.name}", lease.value, last=lease.name_rev
            )
            lease.name_rev = int(name_rev)
            pid_rev = await self._run(
                self.kv.update, lease.pid_key, lease.name.encode(), last=lease.pid_rev
            )
            lease.pid_rev = int(pid_rev)
        except nats.js.errors.KeyWrongLastSequenceError:
            self._fence(lease, "the name expired, or was removed or taken meanwhile")
            return
        except _KV_ERRORS as exc:
            logger.debug("global: renewal of %s failed: %r", lease.name, exc)
            return
        if self.leases.get(lease.name) is lease:
            lease.renewed_at = started
        else:  # released while the renewal was on its way: remove what it wrote
            await self._delete(f"n.{lease.name}", lease.name_rev)
            await self._delete(lease.pid_key, lease.pid_rev)

    def _fence(self, lease: _Lease, why: str) -> None:
        if self.leases.get(lease.name) is not lease:
            return
        del self.leases[lease.name]
        logger.warning(
            "node %s: no longer holds the global name %r (%s); its lease is %.1f s",
            self.dist.name,
            lease.name,
            why,
            self.lease,
        )
        if self.task_group is not None and self.dist.connected:
            self.task_group.start_soon(self._remove, lease)

    async def _remove(self, lease: _Lease) -> None:
        await self._delete(f"n.{lease.name}", lease.name_rev)
        await self._delete(lease.pid_key, lease.pid_rev)

    # ------------------------------------------------------------ cleanup

    async def _delete(self, key: str, revision: int | None) -> None:
        try:
            await self._run(self.kv.delete, key, last=revision)
        except _KV_ERRORS as exc:
            logger.debug("global: delete of %s (revision %s) skipped: %r", key, revision, exc)

    async def _delete_pid_key(self, pid: Pid, name: str) -> None:
        key = self._pid_key(pid)
        try:
            entry = await self._run(self.kv.get, key)
        except _KV_ERRORS:
            return
        if entry.value == name.encode():
            await self._delete(key, int(entry.revision))

    async def _keeper(self) -> None:
        """The name keeper: monitors holders and drops their names when they end."""
        watching: dict[Any, _Lease] = {}
        while True:
            message = await receive()
            if type(message) is _Watch:
                watching[monitor(message.lease.pid)] = message.lease
            elif type(message) is Down:
                lease = watching.pop(message.ref, None)
                if lease is not None and self.leases.get(lease.name) is lease:
                    del self.leases[lease.name]
                    await self._remove(lease)

    def node_down(self, name: str, creation: int) -> None:
        """A peer was declared down: release the names its processes held."""
        if self.task_group is not None and self.dist.connected:
            self.task_group.start_soon(self._purge, lambda n, c: (n, c) == (name, creation))

    async def _purge(self, match: Any) -> None:
        try:
            keys = await self._keys()
        except _KV_ERRORS as exc:
            logger.debug("global: purge skipped: %r", exc)
            return
        for key in keys:
            if not key.startswith("p."):
                continue
            _, node_name, creation, _number = key.split(".", 3)
            if node_name == self.dist.name and int(creation) == self.dist.creation:
                continue
            if not match(node_name, int(creation)):
                continue
            try:
                entry = await self._run(self.kv.get, key)
            except _KV_ERRORS:
                continue
            if entry.value:
                name = entry.value.decode()
                found = await self._entry(name)
                if found is not None and self._pid_key(found[0]) == key:
                    await self._delete(f"n.{name}", found[1])
            await self._delete(key, int(entry.revision))


async def _open_lease_kv(transport: Any, bucket: str, lease: float) -> tuple[Any, float]:
    """The bucket of global names and the cluster's lease (its ``max_age``).

    The first node creates the bucket with its ``lease``; later nodes use the
    bucket's. A bucket without a ``max_age`` (an older cluster) gets one.
    """
    js = transport.nc.jetstream()
    try:
        kv = await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        try:
            kv = await js.create_key_value(bucket=bucket, history=1, ttl=lease)
        except nats.js.errors.BadRequestError:
            kv = await js.key_value(bucket)
    status = await kv.status()
    if status.ttl:
        return kv, float(status.ttl)
    info = await js.stream_info(f"KV_{bucket}")
    config = info.config
    config.max_age = lease
    if config.duplicate_window is None or config.duplicate_window > lease:
        config.duplicate_window = lease
    await js.update_stream(config)
    return await js.key_value(bucket), lease
