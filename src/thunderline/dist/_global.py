"""The global name registry on JetStream KV (OTP ``global``).

Bucket ``tl_<cluster>_global``. A name is the key ``n.<name>`` (value: the
encoded pid); the holder's reverse entry ``p.<node>.<creation>.<number>``
(value: the name) makes a second name for the same process fail, as
``global`` does by default.

* register: create ``n.<name>`` (JetStream's create-if-absent: exactly one
  winner among racing nodes), then create the reverse entry (if that fails,
  the process already has a name: the first key is deleted again, by
  revision). The registering node's name keeper process then monitors the
  holder (local or remote);
* the holder ends (any reason, also ``normal``), or its node is lost
  (``noconnection``), or it was dead already (``noproc``): the keeper deletes
  both keys by revision (compare-and-delete, so a newer registration of the
  same name is never removed);
* a node declared down: every survivor deletes the names its processes held
  (by revision; racing survivors are harmless). A node starting removes
  names left by its own earlier incarnations;
* whereis reads the key (strongly consistent: one round trip) and returns
  None for a holder whose node is not connected.

Partitions: JetStream is the arbiter, so a node cut off from the NATS
server cannot register at all (unlike ``global``, which lets both sides of a
partition register the same name and resolves the clash on healing), and a
holder whose node is declared down loses its names even if it still runs.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Final

import anyio.abc
import nats.errors
import nats.js.errors

from thunderline.dist._codec import NODES
from thunderline.dist._errors import GlobalNameError
from thunderline.runtime import Down, Pid, monitor, receive
from thunderline.lowlevel import remote as _seam

deliver = _seam.deliver
pid_parts = _seam.pid_parts
spawn = _seam.spawn

if TYPE_CHECKING:
    from thunderline.dist._node import DistNode

__all__ = ["GlobalRegistry"]

logger: Final = logging.getLogger("thunderline.dist")

_KEY_RE: Final = re.compile(r"^[A-Za-z0-9_=-]{1,200}$")

_KV_ERRORS: Final = (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError)


def check_global_name(name: object) -> str:
    if not isinstance(name, str) or not _KEY_RE.match(name):
        raise GlobalNameError(name)
    return name


class _Watch:
    __slots__ = ("name", "name_rev", "pid", "pid_key", "pid_rev")

    def __init__(self, pid: Pid, name: str, name_rev: int, pid_key: str, pid_rev: int) -> None:
        self.pid = pid
        self.name = name
        self.name_rev = name_rev
        self.pid_key = pid_key
        self.pid_rev = pid_rev


class GlobalRegistry:
    """The global names of one node's cluster (see the module docstring)."""

    def __init__(self, dist: DistNode, kv: Any) -> None:
        self.dist = dist
        self.kv = kv
        self.keeper: Pid | None = None
        self.task_group: anyio.abc.TaskGroup | None = None

    @classmethod
    async def open(cls, dist: DistNode) -> GlobalRegistry:
        from thunderline.dist._node import _open_kv

        transport = dist.transport
        assert transport is not None
        kv = await transport.run(_open_kv, transport, f"tl_{dist.cluster}_global")
        return cls(dist, kv)

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        self.task_group = task_group
        self.keeper = spawn(self.dist.node, self._keeper, (), link_to=None, monitored_by=None)
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

    # ----------------------------------------------------------------- API

    async def register(self, name: str, pid: Pid) -> bool:
        check_global_name(name)
        codec = self.dist.codec
        value = codec.encode(pid)
        pid_key = self._pid_key(pid)
        try:
            name_rev = await self._run(self.kv.create, f"n.{name}", value)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        try:
            pid_rev = await self._run(self.kv.create, pid_key, name.encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            await self._delete(f"n.{name}", name_rev)
            return False
        if self.keeper is not None:
            deliver(self.dist.node, self.keeper, _Watch(pid, name, name_rev, pid_key, pid_rev))
        return True

    async def _entry(self, name: str) -> tuple[Pid, int] | None:
        try:
            entry = await self._run(self.kv.get, f"n.{name}")
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        if entry.value is None or entry.operation is not None:
            return None
        pid = self.dist.codec.decode(entry.value)
        if type(pid) is not Pid:
            return None
        return pid, int(entry.revision)

    async def whereis(self, name: str) -> Pid | None:
        check_global_name(name)
        found = await self._entry(name)
        if found is None:
            return None
        pid = found[0]
        identity = NODES.identity(pid_parts(pid)[0])
        if identity is None:
            return None
        dist = self.dist
        if identity[0] == dist.name:
            return pid if identity[1] == dist.creation else None
        peer = dist.peers.get(identity[0])
        return pid if peer is not None and peer.creation == identity[1] else None

    async def unregister(self, name: str) -> None:
        check_global_name(name)
        found = await self._entry(name)
        if found is None:
            return
        pid, revision = found
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
        """The name keeper: monitors holders and deletes their names when they end."""
        watching: dict[Any, _Watch] = {}
        while True:
            message = await receive()
            if type(message) is _Watch:
                watching[monitor(message.pid)] = message
            elif type(message) is Down:
                watch = watching.pop(message.ref, None)
                if watch is not None:
                    await self._delete(f"n.{watch.name}", watch.name_rev)
                    await self._delete(watch.pid_key, watch.pid_rev)

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
