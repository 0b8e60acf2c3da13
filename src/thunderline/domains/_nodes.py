"""The reference application split over two nodes: the front (Gate, Flow, Bolt) and the back
(Vault, Link).

The back node runs Vault and Link under :func:`back_spec`, registered under their usual
names, so the ledger and Link's relay stay together on the node that owns the data. The
front node runs the saga supervisor, Bolt and Flow under :func:`front_spec`, and reaches
the back only through ``(name, node)`` destinations (``thunderline.dist``):

* Flow sends its group-commit batches to ``(VAULT, back)`` and monitors that
  destination per batch, so **an acknowledgement still means committed on the back
  node's ledger**. When the back node is lost the monitor fires ``NOCONNECTION`` and every
  waiting publisher gets :class:`~thunderline.domains.flow.VaultUnreachableError`
  (``maybe_committed`` for the batch that was at Vault); nothing is acknowledged that
  was not committed, and publishing the same event again later is idempotent.
* Bolt's heartbeat saga (:func:`remote_heartbeat`) calls ``(VAULT, back)`` and
  ``(LINK, back)``; a step whose domain is restarting on the back node is retried like
  the one-node saga's, and one whose node is lost fails at once (its event is
  already committed: Link relays it from the ledger when the back node is back).

Everything that crosses the wire is listed by :func:`wire_types`; this package does
not import ``thunderline.dist``, so the caller registers them
(``thunderline.dist.register_type``) on both nodes before they talk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import attrs

import thunderline.runtime as tl
from thunderline import sagas
from thunderline.domains import link, vault
from thunderline.domains._app import AppConfig, back_children, front_children, top_supervisor
from thunderline.domains._common import LINK, VAULT, Failure
from thunderline.domains._event import Event
from thunderline.domains._ledger._core import (
    DuplicateEventError,
    LedgerError,
    LedgerRecord,
    ProblemKind,
    SignedHead,
    VerifyReport,
)
from thunderline.domains.bolt import heartbeat_saga

__all__ = [
    "RemoteDomainError",
    "RemoteLedgerError",
    "WireType",
    "back_spec",
    "front_spec",
    "remote_heartbeat",
    "wire_types",
]

#: The event name the heartbeat saga handles.
HEARTBEAT_EVENT: Final = "system.heartbeat"


class RemoteDomainError(tl.ThunderlineError):
    """An error a domain server on another node answered with, whose class does not travel.

    Attributes:
        type_name: The original exception's class name.
        message: Its message.
    """

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        self.message = message
        super().__init__(f"{type_name}: {message}")


class RemoteLedgerError(LedgerError):
    """A :class:`~thunderline.domains.LedgerError` from another node's ledger (its
    subclass does not travel; ``type_name`` names it)."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        self.message = message
        super().__init__(f"{type_name}: {message}")


def _portable(error: Any) -> Any:
    """``error`` as a value the wire carries (records and carried errors unchanged)."""
    if not isinstance(error, BaseException) or type(error) in _CARRIED:
        return error
    if isinstance(error, LedgerError):
        return RemoteLedgerError(type(error).__name__, str(error))
    return RemoteDomainError(type(error).__name__, str(error))


_CARRIED: Final = (DuplicateEventError, RemoteLedgerError, RemoteDomainError)


@attrs.frozen
class WireType:
    """A class that crosses between the two nodes: ``register_type(cls, name, fields=, build=)``.

    ``fields`` and ``build`` are None for attrs classes sent as their init fields.
    """

    cls: type
    name: str
    fields: Callable[[Any], list[Any]] | None = None
    build: Callable[..., Any] | None = None


def _build_report(
    ok: bool,
    records: int,
    last_seq: int | None,
    last_hash: str | None,
    first_bad_seq: int | None,
    problem: str | None,
    detail: str,
    head_checked: bool,
) -> VerifyReport:
    return VerifyReport(
        ok=ok,
        records=records,
        last_seq=last_seq,
        last_hash=last_hash,
        first_bad_seq=first_bad_seq,
        problem=ProblemKind(problem) if problem is not None else None,
        detail=detail,
        head_checked=head_checked,
    )


def wire_types() -> tuple[WireType, ...]:
    """Every class the two-node application sends between its nodes (register on both)."""
    prefix = "thunderline.domains."
    return (
        WireType(
            Event, prefix + "Event", lambda e: [e.canonical_bytes()], lambda b: Event.from_json(b)
        ),
        WireType(LedgerRecord, prefix + "LedgerRecord"),
        WireType(SignedHead, prefix + "SignedHead"),
        WireType(
            VerifyReport,
            prefix + "VerifyReport",
            lambda r: [
                r.ok,
                r.records,
                r.last_seq,
                r.last_hash,
                r.first_bad_seq,
                r.problem.value if r.problem is not None else None,
                r.detail,
                r.head_checked,
            ],
            _build_report,
        ),
        WireType(
            DuplicateEventError,
            prefix + "DuplicateEventError",
            lambda e: [e.event_id, e.seq],
            DuplicateEventError,
        ),
        WireType(
            RemoteLedgerError,
            prefix + "RemoteLedgerError",
            lambda e: [e.type_name, e.message],
            RemoteLedgerError,
        ),
        WireType(
            RemoteDomainError,
            prefix + "RemoteDomainError",
            lambda e: [e.type_name, e.message],
            RemoteDomainError,
        ),
        WireType(Failure, prefix + "Failure", lambda f: [_portable(f.error)], Failure),
        WireType(vault._Append, prefix + "vault.Append"),
        WireType(vault._AppendBatch, prefix + "vault.AppendBatch"),
        WireType(
            vault.Committed,
            prefix + "vault.Committed",
            lambda c: [c.ref, tuple(_portable(r) for r in c.results)],
            vault.Committed,
        ),
        WireType(link._Emit, prefix + "link.Emit"),
        WireType(link.Emitted, prefix + "link.Emitted"),
    )


def remote_heartbeat(node: str) -> sagas.Saga:
    """The heartbeat saga with Vault and Link on ``node`` (a step whose node is lost
    fails at once: see :func:`~thunderline.domains.bolt.heartbeat_saga`)."""
    return heartbeat_saga(vault_at=(VAULT, node), link_at=(LINK, node))


def front_spec(config: AppConfig, back: str) -> tl.ChildSpec:
    """The front node's supervisor (``thunderline.app``): the saga supervisor, Bolt, Flow.

    Gate is a library (it runs in the publisher). Vault and Link are reached on node
    ``back`` (:func:`back_spec` there). ``config.routes`` as for the one-node
    application; the ledger fields of ``config`` are the back node's business.
    """
    saga_map = {HEARTBEAT_EVENT: remote_heartbeat(back)}
    return top_supervisor(front_children(config, saga_map, vault=(VAULT, back)))


def back_spec(config: AppConfig) -> tl.ChildSpec:
    """The back node's supervisor (``thunderline.app``): Vault (the ledger) and Link."""
    return top_supervisor(back_children(config))
