"""The control protocol: JSON lines over a Unix socket.

A request is one line holding a JSON object::

    {"command": "tree"}
    {"command": "info", "pid": "<1.5>", "id": 7}

and gets one line back: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {"code": ..., "message": ...}}``; an ``id`` in the
request is echoed. Lines longer than :data:`MAX_REQUEST` bytes, malformed JSON,
non-object requests and unknown commands get an error reply; the connection
stays usable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

import attrs

__all__ = [
    "COMMANDS",
    "MAX_REPLY",
    "MAX_REQUEST",
    "AfterReply",
    "RequestError",
    "encode",
    "error_reply",
]

#: Largest request line accepted, newline excluded.
MAX_REQUEST: Final = 64 * 1024
#: Largest reply line a client accepts.
MAX_REPLY: Final = 64 * 1024 * 1024
#: Every command and its arguments.
COMMANDS: Final = {
    "status": "daemon version, backend, application, uptime",
    "processes": "every process: pid, name, status, mailbox, handled, links, monitors",
    "info": "one process; args: pid ('<1.5>' or a registered name)",
    "tree": "the supervision tree: ids, pids, restart types, restart counts",
    "stats": "process count, mailbox depth, messages handled, restarts",
    "sagas": "running sagas (children of the supervisor registered as thunderline.sagas)",
    "exit": "send an exit signal; args: pid, reason (kill (default) / shutdown / normal / text)",
    "stop": "stop the daemon in order",
}


class RequestError(Exception):
    """A request the daemon refuses; becomes an error reply (never a daemon failure)."""

    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@attrs.frozen
class AfterReply:
    """A result whose ``action`` runs once the reply has been sent (used by ``stop``)."""

    result: Any
    action: Callable[[], None]


def encode(reply: dict[str, Any]) -> bytes:
    """One reply line."""
    return json.dumps(reply, ensure_ascii=False, allow_nan=False).encode() + b"\n"


def error_reply(code: str, message: str, request_id: Any = None) -> dict[str, Any]:
    """An error reply, echoing ``request_id`` when there was one."""
    reply: dict[str, Any] = {"ok": False, "error": {"code": code, "message": message}}
    if request_id is not None:
        reply["id"] = request_id
    return reply
