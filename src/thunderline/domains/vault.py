"""Vault: the event ledger actor.

Vault owns an append-only, hash-chained, signed ledger (SQLite by default,
PostgreSQL by URL). :func:`append` is acknowledged only after the record is
committed. Appends that arrive while a write is in progress are committed
together in the next transaction (group commit), so a busy Vault writes
batches without delaying a lone append. Flow hands Vault whole batches
(:func:`append_batch_async`): one message in, one ``_Committed`` message back.

Algorithm of one commit round (``_Commit``): take every pending append (single
appends and Flow's batches), append them in one transaction, then answer each
requester, remember the new records (a bounded id -> record map, so an append
of an id committed moments ago is answered without touching the database) and
send the new records to Link (:data:`~thunderline.domains._common.LINK`), the
relay that delivers them in ledger order.

Every action is traced as a span ``vault.{action}`` with
``thunderline.domain=vault``, ``vault.resource``, ``vault.action`` and
``vault.actor`` (the way opentelemetry_ash traces Ash resource actions; they
stand for the seed's ``ash.resource``, ``ash.action`` and ``ash.actor``, see
``docs/design.md``). An append continues its caller's span, or else the
event's own trace (:attr:`~thunderline.domains.Event.trace_meta`); Flow's
batches mix events of many traces, so each event's span continues its own.
An append answered from the recently committed records is traced too
(``vault.recorded=True``). An append the ledger refuses ends ERROR with the
ledger's error and the span event ``flow.event_dropped`` (``reason``).

Appending an event id that is already in the ledger with the same content
returns the existing record, so a retry after a crash never writes an event
twice.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import attrs

import thunderline.runtime as tl
from thunderline import telemetry
from thunderline.domains._common import (
    DROPPED,
    LINK,
    VAULT,
    VAULT_SPAN,
    Address,
    Failure,
    event_context,
    request,
)
from thunderline.domains._event import Event
from thunderline.domains._ledger._core import (
    AsyncLedger,
    DuplicateEventError,
    LedgerError,
    LedgerRecord,
    SignedHead,
    VerifyReport,
    open_async_ledger,
)

__all__ = [
    "Committed",
    "RecordsCommitted",
    "Vault",
    "append",
    "append_batch_async",
    "head",
    "read",
    "signed_head",
    "vault_spec",
    "verify",
]

logger: Final = logging.getLogger("thunderline.domains.vault")

#: Recently committed records kept in memory, by event id (answers repeated appends).
_RECENT: Final = 4096


@attrs.frozen
class _Append:
    event: Event
    actor: str


@attrs.frozen
class _AppendBatch:
    """Flow's batch: answered with one :class:`Committed` message sent to ``reply_to``."""

    ref: tl.Ref
    reply_to: tl.Pid
    events: tuple[Event, ...]
    actor: str


@attrs.frozen
class Committed:
    """Vault's answer to :func:`append_batch_async`: per event its record or the error."""

    ref: tl.Ref
    results: tuple[LedgerRecord | LedgerError, ...]


@attrs.frozen
class RecordsCommitted:
    """Sent to Link after every commit that added records: them in seq order, their events."""

    records: tuple[LedgerRecord, ...]
    events: dict[str, Event]


@attrs.frozen
class _Commit:
    pass


#: A pending append: who waits (a caller, or Flow's batch), its events and spans.
_Waiter = tuple[tl.From | _AppendBatch, tuple[Event, ...], tuple[telemetry.DetachedSpan, ...]]


@attrs.define
class _State:
    ledger: AsyncLedger
    pending: list[_Waiter] = attrs.field(factory=list)
    committing: bool = False
    head_seq: int = 0
    appended: int = 0
    recent: OrderedDict[str, LedgerRecord] = attrs.field(factory=OrderedDict)


def _span(event: Event, actor: str, *, own_trace: bool = False) -> telemetry.DetachedSpan:
    """The ``vault.append`` span of ``event``: in the caller's trace, or (for Flow's
    batches, which mix events of many traces) in the event's own trace."""
    scope = telemetry.continue_from(event.trace_meta) if own_trace else event_context(event)
    with scope:
        return telemetry.start_span(
            "vault.append",
            attributes={
                **VAULT_SPAN,
                "vault.resource": "ledger",
                "vault.action": "append",
                "vault.actor": actor,
                "event.id": str(event.id),
            },
        )


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
        :meth:`terminate` (committing what is pending and closing the ledger)
        instead of killing it with the database connection open.
        """
        tl.trap_exit(True)
        ledger = await open_async_ledger(self.location, data_dir=self.data_dir, schema=self.schema)
        try:
            head_seq = (await ledger.head()).seq
        except BaseException:
            await ledger.aclose()
            raise
        return tl.Ok(_State(ledger, head_seq=head_seq))

    async def handle_call(
        self, request: Any, from_: tl.From, state: _State
    ) -> tl.Reply[_State] | tl.NoReply[_State]:
        """``_Append`` (answered once committed), ``head``, ``signed_head``, ``verify``, read."""
        if isinstance(request, _Append):
            span = _span(request.event, request.actor)
            known = state.recent.get(str(request.event.id))
            if known is not None:  # committed moments ago: answered without the database
                if known.canonical == request.event.canonical_bytes():
                    span.set_attribute("vault.seq", known.seq)
                    span.set_attribute("vault.recorded", True)
                    span.end()
                    return tl.Reply(known, state)
                error = DuplicateEventError(str(request.event.id), known.seq)
                span.add_event(DROPPED, {"reason": str(error)})
                span.end(error)
                return tl.Reply(Failure(error), state)
            self._enqueue(state, (from_, (request.event,), (span,)))
            return tl.NoReply(state)
        operation = request[0]
        if operation == "read":
            try:
                records = await state.ledger.read(request[1], limit=request[2])
            except LedgerError as exc:
                return tl.Reply(Failure(exc), state)
            return tl.Reply(records, state)
        with telemetry.span(
            f"vault.{operation}",
            attributes={
                **VAULT_SPAN,
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

    def _enqueue(self, state: _State, waiter: _Waiter) -> None:
        state.pending.append(waiter)
        if not state.committing:
            state.committing = True
            tl.send(tl.current_pid(), _Commit())

    async def handle_info(
        self, message: Any, state: _State
    ) -> tl.NoReply[_State] | tl.Hibernate[_State] | tl.Stop[_State]:
        """Flow's batches, and commit rounds (everything pending in one transaction)."""
        if isinstance(message, _AppendBatch):
            spans = tuple(_span(event, message.actor, own_trace=True) for event in message.events)
            self._enqueue(state, (message, message.events, spans))
            return tl.NoReply(state)
        if not isinstance(message, _Commit):
            return await super().handle_info(message, state)
        await self._commit(state)
        if state.pending:
            tl.send(tl.current_pid(), _Commit())
        else:
            state.committing = False
        return tl.NoReply(state)

    async def _commit(self, state: _State) -> None:
        """One transaction for everything pending; answer each waiter; tell Link.

        If the ledger refuses the batch because one event id is recorded with
        other content (:class:`DuplicateEventError`), each event is appended
        alone, so only that event fails.
        """
        batch, state.pending = state.pending, []
        events = [event for _, events_of, _ in batch for event in events_of]
        if not events:
            return
        results: list[LedgerRecord | LedgerError]
        try:
            results = list(await state.ledger.append_batch(events))
        except DuplicateEventError:
            results = []
            for event in events:
                try:
                    results.extend(await state.ledger.append_batch([event]))
                except LedgerError as exc:
                    results.append(exc)
        except LedgerError as exc:
            results = [exc] * len(events)
        fresh: list[LedgerRecord] = []
        for result in results:
            if isinstance(result, LedgerRecord) and result.seq > state.head_seq:
                fresh.append(result)
                state.recent[result.event_id] = result
                state.head_seq = result.seq
        while len(state.recent) > _RECENT:
            state.recent.popitem(last=False)
        state.appended += len(fresh)
        offset = 0
        for waiter, events_of, spans in batch:
            mine = results[offset : offset + len(events_of)]
            offset += len(events_of)
            for span, result in zip(spans, mine, strict=True):
                if isinstance(result, LedgerRecord):
                    span.set_attribute("vault.seq", result.seq)
                    span.set_attribute("vault.batch_size", len(events))
                    span.end()
                else:
                    span.add_event(DROPPED, {"reason": str(result)})
                    span.end(result)
            _answer(waiter, mine)
        if fresh:
            link = tl.whereis(LINK)
            if link is not None:
                by_id = {str(event.id): event for event in events}
                tl.send(link, RecordsCommitted(tuple(fresh), by_id))

    async def terminate(self, reason: Any, state: _State) -> None:
        """Commit what is pending (its requesters may still be waiting), close the ledger."""
        try:
            while state.pending:
                await self._commit(state)
        finally:
            await state.ledger.aclose()


def _answer(waiter: tl.From | _AppendBatch, results: list[LedgerRecord | LedgerError]) -> None:
    if isinstance(waiter, _AppendBatch):
        tl.send(waiter.reply_to, Committed(waiter.ref, tuple(results)))
    else:
        result = results[0]
        tl.reply(waiter, Failure(result) if isinstance(result, LedgerError) else result)


def vault_spec(
    location: str | Path,
    data_dir: str | Path | None = None,
    *,
    schema: str = "thunderline_ledger",
) -> tl.ChildSpec:
    """The Vault child spec (registered as ``thunderline.vault``); ``schema``: PostgreSQL's."""

    async def start() -> tl.Pid | None:
        return await tl.start_link(Vault(location, data_dir, schema), name=VAULT)

    return tl.ChildSpec(id="vault", start=start, shutdown=30.0)


async def append(event: Event, *, actor: str = "api", vault: Address = VAULT) -> LedgerRecord:
    """Append ``event``; returns its committed record (the existing one for a known id).

    Raises:
        LedgerError: the ledger refused it (e.g. the same id with other content).
        CallError: Vault is not running or died before committing.
    """
    record: LedgerRecord = await request(vault, _Append(event, actor))
    return record


def append_batch_async(
    vault: tl.Pid | tuple[str, str], events: Sequence[Event], *, actor: str = "flow"
) -> tl.Ref:
    """Ask ``vault`` to append ``events`` in its next transaction; returns the request's ref.

    The caller receives one :class:`Committed` with that ref (per event, in
    order, its record or the ledger's error), unless Vault dies first: the ref is a monitor of
    ``vault``, so the caller then receives ``Down`` with it instead (the
    events may or may not be committed; appending them again is idempotent).
    """
    ref = tl.monitor(vault)
    tl.send(vault, _AppendBatch(ref, tl.current_pid(), tuple(events), actor))
    return ref


async def read(
    from_seq: int, limit: int | None = None, *, vault: Address = VAULT
) -> list[LedgerRecord]:
    """The committed records with ``seq >= from_seq``, in order, at most ``limit``."""
    records: list[LedgerRecord] = await request(vault, ("read", from_seq, limit), timeout=None)
    return records


async def head(vault: Address = VAULT) -> LedgerRecord:
    """The ledger's last record."""
    record: LedgerRecord = await request(vault, ("head",))
    return record


async def signed_head(vault: Address = VAULT) -> SignedHead:
    """The signed head (seq, hash, signature) to keep elsewhere for truncation checks."""
    result: SignedHead = await request(vault, ("signed_head",))
    return result


async def verify(saved_head: SignedHead | None = None, vault: Address = VAULT) -> VerifyReport:
    """Verify the chain and every signature (and against ``saved_head`` if given)."""
    report: VerifyReport = await request(vault, ("verify", saved_head), timeout=None)
    return report
