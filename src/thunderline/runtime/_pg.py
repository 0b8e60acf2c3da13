"""Process groups as OTP's ``pg``: named groups of processes, per scope, with membership monitors.

::

    pg_join("workers")                      # the caller joins (it may join several times)
    for pid in pg_members("workers"):
        send(pid, job)
    ref, members = pg_monitor("workers")    # then GroupJoin / GroupLeave messages

A scope is an independent namespace of groups (OTP starts one process per
scope; here a scope is a table of the node, created on first use, named by
any hashable, default :data:`DEFAULT_SCOPE`). A process may join a group
several times and is listed once per join; :func:`pg_leave` removes one join.
Members are removed when they end, inside the node's bookkeeping of the
death, before any ``Exit`` or ``Down`` about it is delivered: no lookup ever
returns a dead member. Monitors (:func:`pg_monitor_scope`, :func:`pg_monitor`)
get :class:`GroupJoin` and :class:`GroupLeave` messages for every change,
including the removal of a member that died; a monitor ends with its owner.

Distribution seam (for the distribution layer; nothing here talks to other
nodes). Membership is kept per node: ``PgScope.local`` for this node's
processes, ``PgScope.remote[node]`` for each other node's, and
:func:`pg_members` returns both. A layer that connects nodes installs a
:class:`PgSync` with :func:`pg_set_sync`; the scope calls
``PgSync.local_changed(scope, group, joined, left)`` after every local change
(the delta to broadcast), and the layer applies what other nodes send with
``PgScope.remote_join``/``remote_leave`` (deltas), ``remote_sync`` (the full
membership of a node, on nodeup) and ``remote_purge`` (nodedown). Each of
these notifies the monitors with the resulting deltas, as OTP's ``pg`` does.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable, Iterable
from typing import Any, Final, Protocol

import attrs

from thunderline.runtime._api import current_pid
from thunderline.runtime._errors import (
    InvalidDestinationError,
    NoProcessError,
    NotInProcessError,
)
from thunderline.runtime._node import Node, current_node
from thunderline.runtime._pid import Pid, Ref
from thunderline.runtime._process import current_process_var

__all__ = [
    "DEFAULT_SCOPE",
    "GroupJoin",
    "GroupLeave",
    "PgScope",
    "PgSync",
    "pg_demonitor",
    "pg_join",
    "pg_leave",
    "pg_local_members",
    "pg_members",
    "pg_monitor",
    "pg_monitor_scope",
    "pg_scope",
    "pg_set_sync",
    "pg_which_groups",
]

#: The scope used when none is given (OTP's ``pg``).
DEFAULT_SCOPE: Final = "pg"


@attrs.frozen
class GroupJoin:
    """Monitor message: ``pids`` joined ``group`` (OTP ``{Ref, join, Group, Pids}``)."""

    ref: Ref
    group: Hashable
    pids: tuple[Pid, ...]


@attrs.frozen
class GroupLeave:
    """Monitor message: ``pids`` left ``group`` or ended (OTP ``{Ref, leave, Group, Pids}``)."""

    ref: Ref
    group: Hashable
    pids: tuple[Pid, ...]


class PgSync(Protocol):
    """What a distribution layer provides to a scope (see the module docstring)."""

    def local_changed(
        self, scope: PgScope, group: Hashable, joined: tuple[Pid, ...], left: tuple[Pid, ...]
    ) -> None:
        """This node's membership of ``group`` in ``scope`` changed: broadcast the delta."""


class PgScope:
    """One scope of one node: its groups, per node, and the monitors of its membership."""

    def __init__(self, node: Node, name: Hashable) -> None:
        self.node = node
        self.name = name
        self.local: dict[Hashable, list[Pid]] = {}
        self.remote: dict[Hashable, dict[Hashable, list[Pid]]] = {}
        self.sync: PgSync | None = None
        self._scope_monitors: dict[Ref, Pid] = {}
        self._group_monitors: dict[Ref, tuple[Pid, Hashable]] = {}
        self._tracked: set[Pid] = set()
        self._watchers: set[Pid] = set()

    # ------------------------------------------------------------ reading

    def members(self, group: Hashable) -> list[Pid]:
        found = list(self.local.get(group, ()))
        for groups in self.remote.values():
            found.extend(groups.get(group, ()))
        return found

    def groups(self) -> list[Hashable]:
        names = dict.fromkeys(self.local)
        for groups in self.remote.values():
            names.update(dict.fromkeys(groups))
        return list(names)

    # ------------------------------------------------------------ local changes

    def join(self, group: Hashable, pids: list[Pid]) -> None:
        for pid in pids:
            proc = self.node.processes.get(pid)
            if proc is None:
                raise NoProcessError(pid, "pg_join")
            if pid not in self._tracked:
                self._tracked.add(pid)
                proc.exit_callbacks.append(self._member_exited)
        self.local.setdefault(group, []).extend(pids)
        self._changed(group, tuple(pids), ())

    def leave(self, group: Hashable, pids: list[Pid]) -> bool:
        members = self.local.get(group, [])
        left: list[Pid] = []
        for pid in pids:
            if pid in members:
                members.remove(pid)
                left.append(pid)
        if not members:
            self.local.pop(group, None)
        if left:
            self._changed(group, (), tuple(left))
        return bool(left)

    def _member_exited(self, pid: Pid, _reason: Any) -> None:
        self._tracked.discard(pid)
        for group in list(self.local):
            members = self.local[group]
            gone = tuple(p for p in members if p == pid)
            if gone:
                members[:] = [p for p in members if p != pid]
                if not members:
                    del self.local[group]
                self._changed(group, (), gone)

    def _changed(self, group: Hashable, joined: tuple[Pid, ...], left: tuple[Pid, ...]) -> None:
        self._notify(group, joined, left)
        if self.sync is not None:
            self.sync.local_changed(self, group, joined, left)

    # ------------------------------------------------------------ remote (seam)

    def remote_join(self, node: Hashable, group: Hashable, pids: Iterable[Pid]) -> None:
        """Apply another node's join delta."""
        added = tuple(pids)
        self.remote.setdefault(node, {}).setdefault(group, []).extend(added)
        self._notify(group, added, ())

    def remote_leave(self, node: Hashable, group: Hashable, pids: Iterable[Pid]) -> None:
        """Apply another node's leave delta (one join removed per pid)."""
        groups = self.remote.get(node, {})
        members = groups.get(group, [])
        left = []
        for pid in pids:
            if pid in members:
                members.remove(pid)
                left.append(pid)
        if not members:
            groups.pop(group, None)
        if left:
            self._notify(group, (), tuple(left))

    def remote_sync(self, node: Hashable, groups: dict[Hashable, list[Pid]]) -> None:
        """Replace a node's whole membership (nodeup); monitors get the differences."""
        old = self.remote.get(node, {})
        new = {group: list(pids) for group, pids in groups.items() if pids}
        self.remote[node] = new
        for group in dict.fromkeys([*old, *new]):
            before, after = list(old.get(group, ())), list(new.get(group, ()))
            left = _minus(before, after)
            joined = _minus(after, before)
            if joined:
                self._notify(group, tuple(joined), ())
            if left:
                self._notify(group, (), tuple(left))

    def remote_purge(self, node: Hashable) -> None:
        """Forget every member of a node (nodedown); monitors get the leaves."""
        for group, pids in self.remote.pop(node, {}).items():
            if pids:
                self._notify(group, (), tuple(pids))

    # ------------------------------------------------------------ monitors

    def monitor(self, owner: Pid, group: Hashable | None, *, whole_scope: bool) -> Ref:
        ref = self.node.make_ref()
        if whole_scope:
            self._scope_monitors[ref] = owner
        else:
            self._group_monitors[ref] = (owner, group)
        if owner not in self._watchers:
            self._watchers.add(owner)
            proc = self.node.processes.get(owner)
            if proc is not None:
                proc.exit_callbacks.append(self._watcher_exited)
        return ref

    def demonitor(self, ref: Ref) -> bool:
        return (
            self._scope_monitors.pop(ref, None) is not None
            or self._group_monitors.pop(ref, None) is not None
        )

    def _watcher_exited(self, pid: Pid, _reason: Any) -> None:
        self._watchers.discard(pid)
        for ref in [r for r, owner in self._scope_monitors.items() if owner == pid]:
            del self._scope_monitors[ref]
        for ref in [r for r, (owner, _) in self._group_monitors.items() if owner == pid]:
            del self._group_monitors[ref]

    def _notify(self, group: Hashable, joined: tuple[Pid, ...], left: tuple[Pid, ...]) -> None:
        targets = list(self._scope_monitors.items())
        targets += [(r, o) for r, (o, g) in self._group_monitors.items() if g == group]
        for ref, owner in targets:
            proc = self.node.processes.get(owner)
            if proc is None:
                continue
            if joined:
                proc.deliver(GroupJoin(ref, group, joined))
            if left:
                proc.deliver(GroupLeave(ref, group, left))


def _minus(items: list[Pid], remove: list[Pid]) -> list[Pid]:
    rest = list(remove)
    out = []
    for item in items:
        if item in rest:
            rest.remove(item)
        else:
            out.append(item)
    return out


_SCOPES: weakref.WeakKeyDictionary[Node, dict[Hashable, PgScope]] = weakref.WeakKeyDictionary()


def pg_scope(scope: Hashable = DEFAULT_SCOPE) -> PgScope:
    """The :class:`PgScope` named ``scope`` of the current node (created on first use)."""
    node = current_node("pg_scope")
    scopes = _SCOPES.setdefault(node, {})
    found = scopes.get(scope)
    if found is None:
        found = scopes[scope] = PgScope(node, scope)
    return found


def pg_set_sync(sync: PgSync | None, scope: Hashable = DEFAULT_SCOPE) -> None:
    """Install (or remove, with None) the distribution layer's hook on ``scope``."""
    pg_scope(scope).sync = sync


def _pids(pids: Pid | Iterable[Pid] | None, operation: str) -> list[Pid]:
    if pids is None:
        proc = current_process_var.get()
        if proc is None:
            raise NotInProcessError(operation)
        return [proc.pid]
    found = [pids] if type(pids) is Pid else list(pids)  # type: ignore[arg-type]
    for pid in found:
        if type(pid) is not Pid:
            raise InvalidDestinationError(pid, operation, "a Pid or a list of Pids")
    return found


def pg_join(
    group: Hashable, pids: Pid | Iterable[Pid] | None = None, *, scope: Hashable = DEFAULT_SCOPE
) -> None:
    """Add ``pids`` (default: the caller) to ``group``, once per occurrence.

    Raises:
        NoProcessError: a pid is not a live process of this node (nothing joins).
        InvalidDestinationError: something else than a Pid was given.
    """
    found = _pids(pids, "pg_join")
    table = pg_scope(scope)
    for pid in found:
        if pid not in table.node.processes:
            raise NoProcessError(pid, "pg_join")
    table.join(group, found)


def pg_leave(
    group: Hashable, pids: Pid | Iterable[Pid] | None = None, *, scope: Hashable = DEFAULT_SCOPE
) -> bool:
    """Remove one join of each of ``pids`` (default: the caller); False if none was a member."""
    return pg_scope(scope).leave(group, _pids(pids, "pg_leave"))


def pg_members(group: Hashable, *, scope: Hashable = DEFAULT_SCOPE) -> list[Pid]:
    """Every member of ``group`` on every node known to the scope (one entry per join)."""
    return pg_scope(scope).members(group)


def pg_local_members(group: Hashable, *, scope: Hashable = DEFAULT_SCOPE) -> list[Pid]:
    """The members of ``group`` that run on this node."""
    return list(pg_scope(scope).local.get(group, ()))


def pg_which_groups(*, scope: Hashable = DEFAULT_SCOPE) -> list[Hashable]:
    """The groups of the scope that have at least one member."""
    return pg_scope(scope).groups()


def pg_monitor_scope(*, scope: Hashable = DEFAULT_SCOPE) -> tuple[Ref, dict[Hashable, list[Pid]]]:
    """Watch every group of the scope: returns the current membership and a reference.

    Afterwards the caller receives ``GroupJoin(ref, group, pids)`` and
    ``GroupLeave(ref, group, pids)`` for every change, until
    :func:`pg_demonitor` or its own end.
    """
    table = pg_scope(scope)
    ref = table.monitor(current_pid(), None, whole_scope=True)
    return ref, {group: table.members(group) for group in table.groups()}


def pg_monitor(group: Hashable, *, scope: Hashable = DEFAULT_SCOPE) -> tuple[Ref, list[Pid]]:
    """Watch one group: its current members and a reference (see :func:`pg_monitor_scope`)."""
    table = pg_scope(scope)
    ref = table.monitor(current_pid(), group, whole_scope=False)
    return ref, table.members(group)


def pg_demonitor(ref: Ref, *, scope: Hashable = DEFAULT_SCOPE) -> bool:
    """Stop a membership monitor; False if ``ref`` was not one."""
    return pg_scope(scope).demonitor(ref)
