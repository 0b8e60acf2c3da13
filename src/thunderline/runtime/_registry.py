"""Registry: Elixir's local key-value process storage (``Registry``), with local pub/sub.

A :class:`Registry` maps keys to the processes that registered under them,
each with a value. With ``keys="unique"`` a key has at most one owner; with
``keys="duplicate"`` any number of processes (and the same process several
times) may register under one key, which makes :meth:`Registry.dispatch` a
local pub/sub::

    topics = Registry(keys="duplicate", name="topics")

    async def subscriber() -> None:
        topics.register("news", None)
        while True:
            print(await receive())

    topics.dispatch("news", lambda entries: [send(pid, "hello") for pid, _ in entries])

Entries are removed automatically when their owner ends, before ``Exit`` and
``Down`` about it are delivered (unlike Elixir, where removal may lag, so a
lookup here never returns a dead pid).

Only the calling process registers and unregisters itself. Every method is
synchronous and never blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Literal

import attrs

from thunderline.runtime._errors import NotInProcessError, ThunderlineError
from thunderline.runtime._pid import Pid
from thunderline.runtime._process import Process, current_process_var

__all__ = ["KeyTakenError", "Registry", "RegistryStatistics"]


class KeyTakenError(ThunderlineError, ValueError):
    """A unique key is already registered (Elixir ``{:error, {:already_registered, pid}}``)."""

    def __init__(self, registry: str, key: Hashable, holder: Pid) -> None:
        self.registry = registry
        self.key = key
        self.holder = holder
        super().__init__(f"registry {registry!r}: key {key!r} is already registered by {holder!r}")


@attrs.frozen
class RegistryStatistics:
    """A snapshot of a :class:`Registry`.

    Attributes:
        keys: distinct keys with at least one entry.
        entries: (key, pid, value) entries in total.
        owners: distinct processes holding entries.
    """

    keys: int
    entries: int
    owners: int


class Registry:
    """A local key -> (pid, value) store cleaned up when owners end.

    Args:
        keys: ``"unique"`` or ``"duplicate"``.
        name: a label used in error messages.

    Raises:
        ValueError: ``keys`` is neither "unique" nor "duplicate".
    """

    def __init__(self, keys: Literal["unique", "duplicate"] = "unique", *, name: str = "") -> None:
        if keys not in ("unique", "duplicate"):
            raise ValueError(f"Registry keys must be 'unique' or 'duplicate', got {keys!r}")
        self.kind = keys
        self.name = name or f"registry-{id(self):x}"
        self._entries: dict[Hashable, list[tuple[Pid, Any]]] = {}
        self._owned: dict[Pid, list[Hashable]] = {}

    def _caller(self, operation: str) -> Process:
        proc = current_process_var.get()
        if proc is None:
            raise NotInProcessError(f"Registry.{operation}")
        return proc

    def register(self, key: Hashable, value: Any = None) -> None:
        """Register the calling process under ``key`` with ``value``.

        Raises:
            KeyTakenError: unique registry, and another process (or this one) holds ``key``.
            TypeError: ``key`` is not hashable.
            NotInProcessError: called outside a process.
        """
        proc = self._caller("register")
        hash(key)
        entries = self._entries.get(key)
        if self.kind == "unique" and entries:
            raise KeyTakenError(self.name, key, entries[0][0])
        self._entries.setdefault(key, []).append((proc.pid, value))
        owned = self._owned.get(proc.pid)
        if owned is None:
            owned = self._owned[proc.pid] = []
            proc.exit_callbacks.append(self._owner_exited)
        owned.append(key)

    def unregister(self, key: Hashable) -> None:
        """Remove every entry of the calling process under ``key`` (no error if there is none)."""
        proc = self._caller("unregister")
        self._remove(proc.pid, key)

    def _remove(self, pid: Pid, key: Hashable) -> None:
        entries = self._entries.get(key)
        if entries:
            kept = [entry for entry in entries if entry[0] != pid]
            if kept:
                self._entries[key] = kept
            else:
                del self._entries[key]
        owned = self._owned.get(pid)
        if owned is not None:
            remaining = [k for k in owned if k != key]
            if remaining:
                self._owned[pid] = remaining
            else:
                del self._owned[pid]

    def _owner_exited(self, pid: Pid, _reason: Any) -> None:
        for key in set(self._owned.pop(pid, ())):
            entries = [entry for entry in self._entries.get(key, ()) if entry[0] != pid]
            if entries:
                self._entries[key] = entries
            else:
                self._entries.pop(key, None)

    def lookup(self, key: Hashable) -> list[tuple[Pid, Any]]:
        """The ``(pid, value)`` entries under ``key``, in registration order."""
        return list(self._entries.get(key, ()))

    def all_keys(self) -> list[Hashable]:
        """Every key with at least one entry, in first-registration order."""
        return list(self._entries)

    def whereis(self, key: Hashable) -> Pid | None:
        """For a unique registry: the pid under ``key``, or None."""
        entries = self._entries.get(key)
        return entries[0][0] if entries else None

    def keys(self, pid: Pid) -> list[Hashable]:
        """The keys ``pid`` is registered under."""
        return list(dict.fromkeys(self._owned.get(pid, ())))

    def values(self, key: Hashable, pid: Pid) -> list[Any]:
        """The values ``pid`` registered under ``key``."""
        return [value for owner, value in self._entries.get(key, ()) if owner == pid]

    def update_value(self, key: Hashable, fn: Callable[[Any], Any]) -> tuple[Any, Any]:
        """Replace the calling process's value under a unique ``key`` by ``fn(old)``.

        Returns:
            ``(new, old)``.

        Raises:
            LookupError: the caller is not registered under ``key``.
            TypeError: the registry is not unique.
        """
        proc = self._caller("update_value")
        if self.kind != "unique":
            raise TypeError(f"registry {self.name!r}: update_value needs a unique registry")
        entries = self._entries.get(key)
        if not entries or entries[0][0] != proc.pid:
            raise LookupError(
                f"registry {self.name!r}: {proc.pid!r} is not registered under {key!r}"
            )
        old = entries[0][1]
        new = fn(old)
        entries[0] = (proc.pid, new)
        return new, old

    def dispatch(self, key: Hashable, fn: Callable[[list[tuple[Pid, Any]]], Any]) -> bool:
        """Call ``fn(entries)`` in the caller with the entries under ``key``.

        Returns:
            False when there are no entries (``fn`` is not called), True otherwise.
        """
        entries = self.lookup(key)
        if not entries:
            return False
        fn(entries)
        return True

    def count(self) -> int:
        """The number of entries."""
        return sum(len(entries) for entries in self._entries.values())

    def statistics(self) -> RegistryStatistics:
        """A :class:`RegistryStatistics` snapshot."""
        return RegistryStatistics(
            keys=len(self._entries), entries=self.count(), owners=len(self._owned)
        )

    def __repr__(self) -> str:
        return f"<Registry {self.name!r} keys={self.kind} entries={self.count()}>"
