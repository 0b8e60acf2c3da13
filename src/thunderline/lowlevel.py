"""Low-level hooks of the runtime, for instrument authors, tools and tests.

Like ``trio.lowlevel``: nothing here is needed to write an application, and
these names may change faster than the top-level API.

* :class:`Instrument` / :class:`BaseInstrument`: the seam through which
  tracing (``thunderline.telemetry.RuntimeInstrument``) and other observers
  see every send, receive, start, exit and restart (``docs/design.md``);
  :func:`set_default_instrument` / :func:`get_default_instrument`: the
  instrument of nodes opened without one (``telemetry.configure()`` sets it).
* :func:`exit_action` and :func:`add_restart` / :class:`RestartDecision`: the
  supervisor's pure decisions (OTP's ``do_restart`` and ``add_restart``), for
  testing restart policies without processes.
* :data:`RECEIVE_BUDGET`: receives served from a non-empty mailbox before a
  process yields once.
* :class:`Node`, :func:`node_statistics`, :func:`process_table`,
  :func:`process_row`, :func:`supervision_tree`, :func:`to_jsonable` and their
  snapshot types: introspection, as used by ``thunderline ps`` / ``tree`` /
  ``top``.
* :func:`resolve_application`: turn an application spec into its child spec.
* :class:`PgScope`, :class:`PgSync`, :func:`pg_scope`, :func:`pg_set_sync`: the
  process groups' seam for a distribution layer (``docs/toolbox.md``).

All of them are also importable from :mod:`thunderline.runtime`; ``remote``
is the distribution seam (``node.dist`` and the inbound functions
``thunderline.dist`` applies signals from other nodes with).
"""

from __future__ import annotations

from thunderline.runtime import (
    RECEIVE_BUDGET,
    BaseInstrument,
    Instrument,
    Node,
    NodeStatistics,
    PgScope,
    PgSync,
    ProcessRow,
    RestartDecision,
    TreeNode,
    add_restart,
    exit_action,
    get_default_instrument,
    node_statistics,
    pg_scope,
    pg_set_sync,
    process_row,
    process_table,
    remote,
    resolve_application,
    set_default_instrument,
    supervision_tree,
    to_jsonable,
)

__all__ = [
    "RECEIVE_BUDGET",
    "BaseInstrument",
    "Instrument",
    "Node",
    "NodeStatistics",
    "PgScope",
    "PgSync",
    "ProcessRow",
    "RestartDecision",
    "TreeNode",
    "add_restart",
    "exit_action",
    "get_default_instrument",
    "node_statistics",
    "pg_scope",
    "pg_set_sync",
    "process_row",
    "process_table",
    "remote",
    "resolve_application",
    "set_default_instrument",
    "supervision_tree",
    "to_jsonable",
]
