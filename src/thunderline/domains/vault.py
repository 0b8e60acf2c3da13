"""Vault: the event ledger actor.

Vault owns an append-only, hash-chained, signed ledger (SQLite by default,
PostgreSQL by URL). :func:`append` is acknowledged only after the record is
committed. Appends that arrive while a write is in progress are committed
together in the next transaction (group commit), so a busy Vault writes
batches without delaying a lone append.

Every action is traced as a span ``vault.{action}`` with ``vault.resource``,
``vault.action`` and ``vault.actor`` (the way opentelemetry_ash traces Ash
resource actions). Appending an event id that is already in the ledger with
the same content returns the existing record, so a retry after a crash never
writes an event twice.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

import attrs

import thunderline.runtime as tl
from thunderline import telemetry
from thunderline.domains._common import VAULT, Failure, event_context, request
from thunderline.domains._event import Event
from thunderline.domains._ledger import (
    AsyncLedger,
    LedgerError,
    LedgerRecord,
    SignedHead,
    VerifyReport,
    open_async_ledger,
)

__all__ = ["Vault", "append", "head", "signed_head", "vault_spec", "verify"]

logger: Final = logging.getLogger("thunderline.domains.vault")


@attrs.frozen
class _Append:
    event: Event
    actor: str


@attrs.frozen
class _Commit:
    pass


@attrs.define
class _State:
    ledger: AsyncLedger
    pending: list[tuple[tl.From, Event, telemetry.DetachedSpan]] = attrs.field(factory=list)
    committing: bool = False
    appended: int = 0


class Vault(tl.Server[_State]):
    """The ledger actor. Start with :func:`vault_spec` under the application supervisor."""

    def __init__(
        self,
        location: str | Path,
        data_dir: str | Path | None,
        schema: str = "thunderline_ledger",
    ) -> None:
        self.location = location
        self.data_dir = data_dir
        self.schema = schema

    async def init(self) -> tl.Ok[_State]:
        """Open (or create) the ledger; the signing key is created on first start.

        Vault traps exits so that an orderly shutdown by its supervisor runs
        :meth:`terminate` (failing pending appends and closing the ledger)
        instead of killing it with the database connection open.
        """
        tl.trap_exit(True)
        ledger = await open_async_ledger(self.location, data_dir=self.data_dir, schema=self.schema)
        return tl.Ok(_State(ledger))

    async def handle_call(
        self, request: Any, from_: tl.From, state: _State
    ) -> tl.Reply[_State] | tl.NoReply[_State]:
        """``_Append`` (deferred until committed), ``head``, ``signed_head``, ``verify``."""
        if isinstance(request, _Append):
            with event_context(request.event):
                action = telemetry.start_span(
                    "vault.append",
                    attributes={
                        "vault.resource": "ledger",
                        "vault.action": "append",
                        "vault.actor": request.actor,
                        "event.id": str(request.event.id),
                    },
                )
            state.pending.append((from_, request.event, action))
            if not state.committing:
                state.committing = True
                tl.send(tl.current_pid(), _Commit())
            return tl.NoReply(state)
        operation = request[0]
        with telemetry.span(
            f"vault.{operation}",
            attributes={
                "vault.resource": "ledger",
                "vault.action": operation,
                "vault.actor": "api",
            },
        ):
            try:
                if operation == "head":
                    return tl.Reply(await state.ledger.head(), state)
                if operation == "signed_head":
                    return tl.Reply(await state.ledger.signed_head(), state)
                if operation == "verify":
                    return tl.Reply(await state.ledger.verify(request[1]), state)
            except LedgerError as exc:
                return tl.Reply(Failure(exc), state)
        return tl.Reply(Failure(ValueError(f"vault: unknown request {request!r}")), state)

    async def handle_info(
        self, message: Any, state: _State
    ) -> tl.NoReply[_State] | tl.Stop[_State]:
        """Commit everything pending in one transaction, then answer each appender."""
        if not isinstance(message, _Commit):
            return await super().handle_info(message, state)
        batch, state.pending = state.pending, []
        try:
            records = await state.ledger.append_batch([event for _, event, _ in batch])
        except LedgerError as exc:
            for from_, _event, action in batch:
                action.end(exc)
                tl.reply(from_, Failure(exc))
        else:
            state.appended += len(records)
            for (from_, _event, action), record in zip(batch, records, strict=True):
                action.set_attribute("vault.seq", record.seq)
                action.set_attribute("vault.batch_size", len(batch))
                action.end()
                tl.reply(from_, record)
        if state.pending:
            tl.send(tl.current_pid(), _Commit())
        else:
            state.committing = False
        return tl.NoReply(state)

    async def terminate(self, reason: Any, state: _State) -> None:
        """Fail pending appends (never acknowledged) and close the ledger."""
        for from_, _event, action in state.pending:
            error = LedgerError(f"vault stopped before committing: {reason!r}")
            action.end(error)
            tl.reply(from_, Failure(error))
        await state.ledger.aclose()


def vault_spec(
    location: str | Path,
    data_dir: str | Path | None = None,
    *,
    schema: str = "thunderline_ledger",
) -> tl.ChildSpec:
    """The Vault child spec (registered as ``thunderline.vault``); ``schema`` is PostgreSQL's."""

    async def start() -> tl.Pid | None:
        return await tl.start_link(Vault(location, data_dir, schema), name=VAULT)

    return tl.ChildSpec(id="vault", start=start, shutdown=30.0)


async def append(event: Event, *, actor: str = "api", vault: tl.Pid | str = VAULT) -> LedgerRecord:
    """Append ``event``; returns its committed record.

    Raises:
        LedgerError: the ledger refused it (e.g. the same id with other content).
        CallError: Vault is not running or died before committing.
    """
    record: LedgerRecord = await request(vault, _Append(event, actor))
    return record


async def head(vault: tl.Pid | str = VAULT) -> LedgerRecord:
    """The ledger's last record."""
    record: LedgerRecord = await request(vault, ("head",))
    return record


async def signed_head(vault: tl.Pid | str = VAULT) -> SignedHead:
    """The signed head (seq, hash, signature) to keep elsewhere for truncation checks."""
    result: SignedHead = await request(vault, ("signed_head",))
    return result


async def verify(saved_head: SignedHead | None = None, vault: tl.Pid | str = VAULT) -> VerifyReport:
    """Verify the chain and every signature (and against ``saved_head`` if given)."""
    report: VerifyReport = await request(vault, ("verify", saved_head), timeout=None)
    return report
