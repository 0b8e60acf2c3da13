"""Link: outbound notifications (not to be confused with process links), relayed from the ledger.

Link is the ledger's relay (the transactional-outbox pattern): it delivers
every committed record, in ledger order, to the processes subscribed with
:func:`subscribe` (an :class:`Emitted` message each) and to an optional
JSON-lines sink file (one ``{"event": ..., "seq": ...}`` object per line).
Each delivery is traced as ``link.transport_emit`` (``thunderline.domain=link``,
``thunderline.component=transport_telemetry``, ``transport.event``) with the
span event ``link.telemetry_emitted``, in the event's own trace
(:attr:`~thunderline.domains.Event.trace_meta`).

Algorithm. Link keeps a cursor: the seq of the last record it delivered.
* Start: the cursor is the seq on the sink's last complete line (a torn last
  line, left by a crash in the middle of a write, is truncated first); with no
  sink, the ledger's head when Link starts. Then Link catches up: it reads the
  records after the cursor from Vault, in chunks, and delivers them.
* Vault sends :class:`~thunderline.domains.vault.RecordsCommitted` after each
  commit. Records at or below the cursor are skipped (already delivered); a
  gap (records Link has not seen, e.g. committed while Link restarted) is
  filled by reading the ledger from the cursor first.
* Delivery of a batch: one write (and flush) of all its lines to the sink,
  then the cursor moves, then subscribers get their messages.
So every committed record reaches the sink at least once, and exactly once
as long as the sink file is the cursor: a record is on the sink's last
complete line before the cursor passes it, and the cursor never passes a
record that is not on the sink.

:func:`emit` (the heartbeat saga's ``notify`` step) waits until Link has
delivered the given seq and answers how many subscribers it reached.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Any, Final

import attrs

import thunderline.runtime as tl
from thunderline import telemetry
from thunderline.domains import vault
from thunderline.domains._common import LINK, LINK_SPAN, Address, Failure, request
from thunderline.domains._event import Event
from thunderline.domains._ledger._core import LedgerError, LedgerRecord

__all__ = ["Emitted", "Link", "emit", "link_spec", "subscribe", "unsubscribe"]

logger: Final = logging.getLogger("thunderline.domains.link")

#: Subscribers of every emitted event (key ``"events"``), cleaned up when they exit.
SUBSCRIBERS: Final = tl.Registry(keys="duplicate", name="thunderline.link.subscribers")

#: Records read from the ledger per catch-up call.
_CHUNK: Final = 500
#: Seconds before retrying a catch-up while Vault is unavailable.
_RETRY: Final = 0.05


@attrs.frozen
class Emitted:
    """Sent to each subscriber: ``event`` was persisted as ledger record ``seq``."""

    event: Event
    seq: int


@attrs.frozen
class _Emit:
    event: Event
    seq: int


@attrs.frozen
class _CatchUp:
    pass


@attrs.define
class _State:
    sink: IO[bytes] | None
    cursor: int
    waiting: list[tuple[int, tl.From]] = attrs.field(factory=list)
    catching_up: bool = False
    emitted: int = 0


def recover_sink(path: Path) -> int:
    """Truncate a torn last line of the sink at ``path``; return the last complete line's seq.

    Returns 0 for a missing or empty sink. Reads only the file's tail.
    """
    try:
        handle = path.open("r+b")
    except FileNotFoundError:
        return 0
    with handle:
        size = handle.seek(0, os.SEEK_END)
        block = 1 << 16
        end = size
        tail = b""
        while end > 0:
            start = max(0, end - block)
            handle.seek(start)
            tail = handle.read(end - start) + tail
            end = start
            if tail.count(b"\n") >= 2 or (end == 0):
                break
        keep = tail.rfind(b"\n") + 1  # bytes of the tail up to the last newline
        if keep < len(tail):
            handle.truncate(size - (len(tail) - keep))
            handle.flush()
            os.fsync(handle.fileno())
            logger.warning("link sink %s: truncated a torn last line", path)
        complete = tail[:keep].rstrip(b"\n")
        if not complete:
            return 0
        last = complete.rsplit(b"\n", 1)[-1]
        try:
            return int(json.loads(last)["seq"])
        except (ValueError, KeyError, TypeError):
            raise LedgerError(f"link sink {path}: last line is not a delivered record") from None


def _line(record: LedgerRecord) -> bytes:
    return b'{"event":' + record.canonical + b',"seq":' + str(record.seq).encode() + b"}\n"


class Link(tl.Server[_State]):
    """The outbound relay actor. Start with :func:`link_spec`."""

    def __init__(self, sink_path: str | Path | None) -> None:
        self.sink_path = Path(sink_path) if sink_path is not None else None

    async def init(self) -> tl.Ok[_State]:
        """Recover the sink and its cursor, then catch up from the ledger (a message to self).

        Link traps exits so that an orderly shutdown by its supervisor runs
        :meth:`terminate`, which delivers what is committed and closes the sink.
        """
        tl.trap_exit(True)
        sink = None
        if self.sink_path is not None:
            self.sink_path.parent.mkdir(parents=True, exist_ok=True)
            cursor = recover_sink(self.sink_path)
            sink = self.sink_path.open("ab")
        else:
            try:
                cursor = (await vault.head()).seq
            except tl.CallError:
                cursor = 0
        tl.send(tl.current_pid(), _CatchUp())
        return tl.Ok(_State(sink, cursor, catching_up=True))

    async def handle_call(
        self, request: Any, from_: tl.From, state: _State
    ) -> tl.Reply[_State] | tl.NoReply[_State]:
        """``_Emit``: answer (subscriber count) once record ``seq`` was delivered."""
        if not isinstance(request, _Emit):
            return tl.Reply(Failure(ValueError(f"link: unknown request {request!r}")), state)
        if request.seq <= state.cursor:
            return tl.Reply(len(SUBSCRIBERS.lookup("events")), state)
        state.waiting.append((request.seq, from_))
        if not state.catching_up:
            state.catching_up = True
            tl.send(tl.current_pid(), _CatchUp())
        return tl.NoReply(state)

    async def handle_info(
        self, message: Any, state: _State
    ) -> tl.NoReply[_State] | tl.Hibernate[_State] | tl.Stop[_State]:
        """Vault's committed records, and catch-up rounds."""
        if isinstance(message, vault.RecordsCommitted):
            records = [r for r in message.records if r.seq > state.cursor]
            if records and records[0].seq == state.cursor + 1:
                self._deliver(state, records, message.events)
            elif records and not state.catching_up:
                state.catching_up = True
                tl.send(tl.current_pid(), _CatchUp())
        elif isinstance(message, _CatchUp):
            await self._catch_up(state)
        elif isinstance(message, tl.Exit):
            pass  # a linked process ended; Link's parent's exit is handled by the runtime
        else:
            return await super().handle_info(message, state)
        return tl.NoReply(state)

    async def _catch_up(self, state: _State) -> None:
        """Read and deliver the ledger after the cursor, in chunks, until the head."""
        while True:
            try:
                records = await vault.read(state.cursor + 1, _CHUNK)
            except (tl.CallError, LedgerError) as exc:
                logger.info("link: catching up after seq %d waits for vault: %s", state.cursor, exc)
                tl.send_after(_RETRY, tl.current_pid(), _CatchUp())
                return
            if records:
                self._deliver(state, records, None)
            if len(records) < _CHUNK:
                state.catching_up = False
                return

    def _deliver(
        self, state: _State, records: list[LedgerRecord], events: dict[str, Event] | None
    ) -> None:
        """Write the records' lines in one write, move the cursor, notify subscribers."""
        if state.sink is not None:
            state.sink.write(b"".join(_line(record) for record in records))
            state.sink.flush()
        state.cursor = records[-1].seq
        state.emitted += len(records)
        subscribers = SUBSCRIBERS.lookup("events")
        for record in records:
            # Events come with Vault's message; after a restart only subscribers
            # make it worth parsing them back from the ledger.
            event = events.get(record.event_id) if events is not None else None
            if event is None and subscribers:
                event = record.event()
            if event is not None:
                self._notify(event, record.seq, subscribers)
        if state.waiting:
            ready = [(seq, from_) for seq, from_ in state.waiting if seq <= state.cursor]
            if ready:
                state.waiting = [(s, f) for s, f in state.waiting if s > state.cursor]
                for _seq, from_ in ready:
                    tl.reply(from_, len(subscribers))

    @staticmethod
    def _notify(event: Event, seq: int, subscribers: list[tuple[tl.Pid, Any]]) -> None:
        with (
            telemetry.continue_from(event.trace_meta),  # a batch mixes events of many traces
            telemetry.span(
                "link.transport_emit",
                attributes={
                    **LINK_SPAN,
                    "transport.event": event.name,
                    "event.id": str(event.id),
                    "ledger.seq": seq,
                },
            ),
        ):
            for pid, _ in subscribers:
                tl.send(pid, Emitted(event, seq))
            telemetry.add_event(
                "link.telemetry_emitted",
                {"subscribers": len(subscribers), "event.id": str(event.id)},
            )

    async def terminate(self, reason: Any, state: _State) -> None:
        """Deliver everything committed (Vault stops after Link), then close the sink."""
        try:
            await self._catch_up(state)
        finally:
            if state.sink is not None:
                os.fsync(state.sink.fileno())
                state.sink.close()


def link_spec(sink_path: str | Path | None = None, *, shutdown: float = 30.0) -> tl.ChildSpec:
    """The Link child spec (registered as ``thunderline.link``)."""

    async def start() -> tl.Pid | None:
        return await tl.start_link(Link(sink_path), name=LINK)

    return tl.ChildSpec(id="link", start=start, shutdown=shutdown)


async def emit(event: Event, seq: int, *, link: Address = LINK) -> int:
    """Wait until Link delivered ledger record ``seq`` (``event``); returns the subscriber count."""
    delivered: int = await request(link, _Emit(event, seq), timeout=None)
    return delivered


def subscribe() -> None:
    """Subscribe the calling process: it receives an :class:`Emitted` for every emitted event."""
    SUBSCRIBERS.register("events")


def unsubscribe() -> None:
    """Stop receiving :class:`Emitted` messages."""
    SUBSCRIBERS.unregister("events")
