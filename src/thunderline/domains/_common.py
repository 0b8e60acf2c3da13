"""What the five domain actors share: registered names, replies that carry errors, tracing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Final

import attrs

import thunderline.runtime as tl
from thunderline import telemetry
from thunderline.domains._event import Event

GATE: Final = "thunderline.gate"
FLOW: Final = "thunderline.flow"
BOLT: Final = "thunderline.bolt"
VAULT: Final = "thunderline.vault"
LINK: Final = "thunderline.link"
SAGAS: Final = "thunderline.sagas"
APP: Final = "thunderline.app"

#: Where a domain server is: a pid, a registered name, or ``(name, node)`` on another node.
Address = tl.Pid | str | tuple[str, str]


@attrs.frozen
class Failure:
    """A server's answer that is an error: the client function raises ``error``."""

    error: Exception


async def request(server: Address, message: Any, timeout: float | None = None) -> Any:
    """Call a domain server and raise the error it answered with, if any."""
    result = await tl.call(server, message, timeout=timeout)
    if isinstance(result, Failure):
        raise result.error
    return result


#: The seed's ``thunderline.domain`` and ``thunderline.component`` of each domain's spans.
GATE_SPAN: Final = {"thunderline.domain": "gate", "thunderline.component": "thunder_bridge"}
FLOW_SPAN: Final = {"thunderline.domain": "flow", "thunderline.component": "event_bus"}
BOLT_SPAN: Final = {"thunderline.domain": "bolt", "thunderline.component": "sagas_supervisor"}
VAULT_SPAN: Final = {"thunderline.domain": "vault"}
LINK_SPAN: Final = {"thunderline.domain": "link", "thunderline.component": "transport_telemetry"}
#: The span event recorded wherever an event is refused (Gate's validation, Flow, the ledger).
DROPPED: Final = "flow.event_dropped"


@contextlib.contextmanager
def event_context(event: Event) -> Iterator[None]:
    """Continue ``event``'s trace unless a span is already current.

    With the runtime's ``RuntimeInstrument`` installed, the message that
    brought the event already carries the trace; without it, the event's own
    trace (:attr:`Event.trace_meta`: the context Gate injected into its
    ``meta``, or the one Flow gave a trace-less event in memory) keeps every
    domain in one trace.
    """
    if telemetry.current_span_id() is not None:
        yield
        return
    with telemetry.continue_from(event.trace_meta):
        yield
