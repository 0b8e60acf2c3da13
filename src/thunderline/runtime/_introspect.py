"""Snapshots of a node for tools: the process table and the supervision tree.

Built only from public runtime data (``processes``, ``process_info``,
``which_children``, ``get_childspec``, ``count_children``)::

    rows = process_table()                       # any code inside a node
    tree = await supervision_tree(app.pid)       # inside a process (it calls supervisors)
    stats = node_statistics(rows, tree)
    json.dumps(to_jsonable(tree))

Every record is frozen; pids appear as their printed form (``"<1.5>"``) so a
snapshot can be serialised as it is. :func:`node_statistics` gives the counts
and gauges a metrics exporter needs.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import attrs

from thunderline.runtime._api import ProcessInfo, process_info, processes
from thunderline.runtime._child_spec import BRUTAL_KILL, ChildSpec, ChildType
from thunderline.runtime._pid import Pid, Ref
from thunderline.runtime._reasons import Crashed, Kill, Killed, NoProc, Normal, Shutdown
from thunderline.runtime._server import CallError
from thunderline.runtime._supervisor import (
    ChildCounts,
    ChildInfo,
    SupervisorError,
    count_children,
    get_childspec,
    which_children,
)

__all__ = [
    "NodeStatistics",
    "ProcessRow",
    "TreeNode",
    "node_statistics",
    "process_row",
    "process_table",
    "supervision_tree",
    "to_jsonable",
]


@attrs.frozen
class ProcessRow:
    """One process, as tools show it.

    Attributes:
        pid: printed pid, e.g. ``"<1.5>"``.
        name: registered name, or None.
        label: the function the process runs.
        status: ``running``, ``waiting`` or ``exiting``.
        mailbox: messages waiting in its mailbox.
        handled: messages it has taken out of its mailbox so far.
        links: printed pids of its link partners.
        monitors: what it monitors (printed pids or names).
        monitored_by: printed pids of the processes monitoring it.
        trap_exit: whether it traps exits.
        parent: printed pid of the process that spawned it, or None.
    """

    pid: str
    name: str | None
    label: str
    status: str
    mailbox: int
    handled: int
    links: tuple[str, ...]
    monitors: tuple[str, ...]
    monitored_by: tuple[str, ...]
    trap_exit: bool
    parent: str | None


def process_row(info: ProcessInfo) -> ProcessRow:
    """The :class:`ProcessRow` for one :class:`~thunderline.runtime.ProcessInfo`."""
    return ProcessRow(
        pid=repr(info.pid),
        name=info.registered_name,
        label=info.label,
        status=info.status,
        mailbox=info.message_queue_len,
        handled=info.messages_handled,
        links=tuple(repr(p) for p in info.links),
        monitors=tuple(m if isinstance(m, str) else repr(m) for m in info.monitors),
        monitored_by=tuple(repr(p) for p in info.monitored_by),
        trap_exit=info.trap_exit,
        parent=repr(info.parent) if info.parent is not None else None,
    )


def process_table() -> list[ProcessRow]:
    """Every live process of the current node, oldest first.

    Raises:
        NoNodeError: no node is running in this context.
    """
    rows = []
    for pid in processes():
        info = process_info(pid)
        if info is not None:  # it may have ended since processes() was taken
            rows.append(process_row(info))
    return rows


@attrs.frozen
class TreeNode:
    """One child of a supervision tree (the root is the top supervisor itself).

    Attributes:
        id: the child id, printed (``str`` ids as they are, others by ``repr``).
        pid: printed pid, or None when it is not running.
        name: registered name of the process, or None.
        type: ``worker`` or ``supervisor``.
        restart: ``permanent``, ``transient`` or ``temporary`` (None if unknown).
        shutdown: ``brutal_kill``, ``infinity`` or a timeout in seconds (None if unknown).
        restarting: True while a failed restart waits for its retry.
        restarts: times this child was restarted after ending by itself, as
            counted by the caller (see ``restart_counts`` of :func:`supervision_tree`).
        window_restarts: for a running supervisor, the restarts counted in its
            intensity window now (``count_children``); None for workers.
        error: why the children of a supervisor could not be listed, or None.
        children: a supervisor's children in start order (oldest first).
    """

    id: str
    pid: str | None
    name: str | None
    type: str
    restart: str | None
    shutdown: str | float | None
    restarting: bool = False
    restarts: int = 0
    window_restarts: int | None = None
    error: str | None = None
    children: tuple[TreeNode, ...] = ()

    def walk(self) -> Iterable[TreeNode]:
        """This node and every node below it, depth first, in start order."""
        yield self
        for child in self.children:
            yield from child.walk()


def _show_id(child_id: Hashable) -> str:
    return child_id if isinstance(child_id, str) else repr(child_id)


def _show_shutdown(spec: ChildSpec) -> str | float:
    if spec.shutdown is BRUTAL_KILL:
        return "brutal_kill"
    assert isinstance(spec.shutdown, float)
    return "infinity" if math.isinf(spec.shutdown) else spec.shutdown


def _name_of(pid: Pid | None) -> str | None:
    if pid is None:
        return None
    info = process_info(pid)
    return info.registered_name if info is not None else None


async def supervision_tree(
    top: Pid,
    *,
    top_spec: ChildSpec | None = None,
    restart_counts: Mapping[tuple[Pid, Hashable], int] | None = None,
) -> TreeNode:
    """Walk the supervision tree under ``top`` with ``which_children`` calls.

    Must run inside a process (it calls the supervisors). A supervisor that
    ends during the walk is shown with ``error`` set instead of children.

    Args:
        top: the top supervisor.
        top_spec: its ChildSpec (id, restart, shutdown of the root), if known.
        restart_counts: restarts keyed by (supervisor pid, child id), e.g.
            ``Application.restart_counts()``.

    Returns:
        The root :class:`TreeNode`.
    """
    counts = restart_counts or {}
    if top_spec is not None:
        root_id: str = _show_id(top_spec.id)
        restart: str | None = top_spec.restart.value
        shutdown: str | float | None = _show_shutdown(top_spec)
    else:
        root_id, restart, shutdown = repr(top), None, None
    return await _supervisor_node(
        top, root_id, restart, shutdown, restarts=0, restarting=False, counts=counts
    )


async def _supervisor_node(
    pid: Pid,
    node_id: str,
    restart: str | None,
    shutdown: str | float | None,
    *,
    restarts: int,
    restarting: bool,
    counts: Mapping[tuple[Pid, Hashable], int],
) -> TreeNode:
    base = TreeNode(
        id=node_id,
        pid=repr(pid),
        name=_name_of(pid),
        type=ChildType.SUPERVISOR.value,
        restart=restart,
        shutdown=shutdown,
        restarting=restarting,
        restarts=restarts,
    )
    try:
        infos: Any = await which_children(pid)
        counts_reply: Any = await count_children(pid)
    except (CallError, SupervisorError) as exc:
        return attrs.evolve(base, error=f"{type(exc).__name__}: {exc}")
    if not (
        isinstance(infos, list)
        and all(isinstance(info, ChildInfo) for info in infos)
        and isinstance(counts_reply, ChildCounts)
    ):
        # a process of type supervisor that is not a thunderline Supervisor
        # (e.g. a saga supervisor): shown as a leaf
        return attrs.evolve(base, error="children not listed: not a thunderline Supervisor")
    window = counts_reply.restarts
    children = []
    for info in reversed(infos):  # which_children is newest first
        children.append(await _child_node(pid, info, counts))
    return attrs.evolve(base, window_restarts=window, children=tuple(children))


async def _child_node(
    supervisor: Pid, info: ChildInfo, counts: Mapping[tuple[Pid, Hashable], int]
) -> TreeNode:
    restart: str | None = None
    shutdown: str | float | None = None
    if info.id is not None:
        try:
            spec = await get_childspec(supervisor, info.id)
        except (CallError, SupervisorError):
            pass  # the child or its supervisor went away meanwhile: shown without its spec
        else:
            restart, shutdown = spec.restart.value, _show_shutdown(spec)
    restarts = counts.get((supervisor, info.id), 0)
    node_id = _show_id(info.id)
    if info.type is ChildType.SUPERVISOR and info.pid is not None:
        return await _supervisor_node(
            info.pid,
            node_id,
            restart,
            shutdown,
            restarts=restarts,
            restarting=info.restarting,
            counts=counts,
        )
    return TreeNode(
        id=node_id,
        pid=repr(info.pid) if info.pid is not None else None,
        name=_name_of(info.pid),
        type=info.type.value,
        restart=restart,
        shutdown=shutdown,
        restarting=info.restarting,
        restarts=restarts,
    )


@attrs.frozen
class NodeStatistics:
    """Counts and gauges of one node, for ``top`` and for metrics.

    Attributes:
        processes: live processes (gauge).
        mailbox_total: messages waiting in all mailboxes (gauge).
        mailbox_max: the deepest mailbox (gauge).
        messages_handled: messages taken out of mailboxes by the live
            processes (sum over them; it drops when a busy process ends).
        supervisors: supervisors in the tree (gauge).
        workers: workers in the tree (gauge).
        restarts: restarts counted in the tree so far (monotonic while the
            application runs).
        restarting: children waiting for a restart retry (gauge).
    """

    processes: int
    mailbox_total: int
    mailbox_max: int
    messages_handled: int
    supervisors: int = 0
    workers: int = 0
    restarts: int = 0
    restarting: int = 0


def node_statistics(rows: Iterable[ProcessRow], tree: TreeNode | None = None) -> NodeStatistics:
    """Aggregate a process table (and optionally a supervision tree) into counts and gauges."""
    rows = list(rows)
    mailboxes = [row.mailbox for row in rows]
    nodes = list(tree.walk()) if tree is not None else []
    return NodeStatistics(
        processes=len(rows),
        mailbox_total=sum(mailboxes),
        mailbox_max=max(mailboxes, default=0),
        messages_handled=sum(row.handled for row in rows),
        supervisors=sum(1 for n in nodes if n.type == ChildType.SUPERVISOR.value),
        workers=sum(1 for n in nodes if n.type == ChildType.WORKER.value),
        restarts=sum(n.restarts for n in nodes),
        restarting=sum(1 for n in nodes if n.restarting),
    )


_REASONS = (Normal, Shutdown, Kill, Killed, NoProc, Crashed)


def to_jsonable(value: Any) -> Any:
    """Convert snapshots (and log fields) to JSON-compatible values.

    exit reasons their ``repr`` (``SHUTDOWN``, ``Crashed(...)``), other attrs
    records dicts of their fields, tuples and sets become lists, pids and refs
    their printed form, enums their value, non-finite floats ``"infinity"``
    / ``"-infinity"`` / ``"nan"``; any other object its ``repr``.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if math.isnan(value):
            return "nan"
        return "infinity" if value > 0 else "-infinity"
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, Pid | Ref):
        return repr(value)
    if isinstance(value, _REASONS):
        return repr(value)
    if attrs.has(type(value)):
        return {
            field.name: to_jsonable(getattr(value, field.name))
            for field in attrs.fields(type(value))
        }
    if isinstance(value, Mapping):
        return {
            (key if isinstance(key, str) else repr(key)): to_jsonable(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(item) for item in value]
    return repr(value)
