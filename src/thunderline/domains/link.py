"""Link: outbound notifications (not to be confused with process links).

Link emits every event that completed its saga to the processes subscribed
with :func:`subscribe` (an :class:`Emitted` message each) and appends one
JSON object per line to an optional sink file. Each emit is traced as
``link.transport_emit`` (``transport.event``) with the span event
``link.telemetry_emitted``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, Final

import attrs

import thunderline.runtime as tl
from thunderline import telemetry
from thunderline.domains._common import LINK, event_context, request
from thunderline.domains._event import Event

__all__ = ["Emitted", "Link", "emit", "link_spec", "subscribe", "unsubscribe"]

#: Subscribers of every emitted event (key ``"events"``), cleaned up when they exit.
SUBSCRIBERS: Final = tl.Registry(keys="duplicate", name="thunderline.link.subscribers")


@attrs.frozen
class Emitted:
    """Sent to each subscriber: ``event`` was persisted as ledger record ``seq``."""

    event: Event
    seq: int


@attrs.frozen
class _Emit:
    event: Event
    seq: int


@attrs.define
class _State:
    sink: IO[str] | None
    emitted: int = 0


class Link(tl.Server[_State]):
    """The outbound transport actor. Start with :func:`link_spec`."""

    def __init__(self, sink_path: str | Path | None) -> None:
        self.sink_path = Path(sink_path) if sink_path is not None else None

    async def init(self) -> tl.Ok[_State]:
        """Open the JSON-lines sink (appending) if one is configured.

        Link traps exits so that an orderly shutdown by its supervisor runs
        :meth:`terminate`, which closes the sink file.
        """
        tl.trap_exit(True)
        sink = None
        if self.sink_path is not None:
            self.sink_path.parent.mkdir(parents=True, exist_ok=True)
            sink = self.sink_path.open("a", encoding="utf-8")
        return tl.Ok(_State(sink))

    async def handle_call(self, request: Any, from_: tl.From, state: _State) -> tl.Reply[_State]:
        """Emit one event to the sink and the subscribers; answers the number of deliveries."""
        if not isinstance(request, _Emit):
            return tl.Reply(ValueError(f"link: unknown request {request!r}"), state)
        event = request.event
        with (
            event_context(event),
            telemetry.span(
                "link.transport_emit",
                attributes={
                    "thunderline.domain": "link",
                    "transport.event": event.name,
                    "event.id": str(event.id),
                    "ledger.seq": request.seq,
                },
            ),
        ):
            if state.sink is not None:
                line = {"seq": request.seq, "event": event.to_dict()}
                state.sink.write(json.dumps(line, sort_keys=True, separators=(",", ":")) + "\n")
                state.sink.flush()
            subscribers = SUBSCRIBERS.lookup("events")
            for pid, _ in subscribers:
                tl.send(pid, Emitted(event, request.seq))
            state.emitted += 1
            telemetry.add_event(
                "link.telemetry_emitted",
                {"subscribers": len(subscribers), "event.id": str(event.id)},
            )
        return tl.Reply(len(subscribers), state)

    async def terminate(self, reason: Any, state: _State) -> None:
        """Close the sink."""
        if state.sink is not None:
            state.sink.close()


def link_spec(sink_path: str | Path | None = None) -> tl.ChildSpec:
    """The Link child spec (registered as ``thunderline.link``)."""

    async def start() -> tl.Pid | None:
        return await tl.start_link(Link(sink_path), name=LINK)

    return tl.ChildSpec(id="link", start=start)


async def emit(event: Event, seq: int, *, link: tl.Pid | str = LINK) -> int:
    """Emit ``event`` (ledger record ``seq``); returns how many subscribers were notified."""
    delivered: int = await request(link, _Emit(event, seq))
    return delivered


def subscribe() -> None:
    """Subscribe the calling process: it receives an :class:`Emitted` for every emitted event."""
    SUBSCRIBERS.register("events")


def unsubscribe() -> None:
    """Stop receiving :class:`Emitted` messages."""
    SUBSCRIBERS.unregister("events")
