"""The control protocol: JSON lines over a Unix socket.

A request is one line holding a JSON object::

    {"command": "tree"}
    {"command": "info", "pid": "<1.5>", "id": 7}

and gets one line back: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {"code": ..., "message": ...}}``; an ``id`` in the
request is echoed; it must be a string of at most :data:`MAX_ID_LENGTH`
characters or an integer of magnitude below 2**53 (what every JSON reader
keeps exact). Lines longer than :data:`MAX_REQUEST` bytes, malformed JSON
(including nesting too deep to decode, integers of more than
:data:`MAX_INT_DIGITS` digits and the non-standard ``NaN``/``Infinity``
constants or floats that overflow), non-object requests, bad ids and unknown
commands get an error reply; the connection stays usable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Final

import attrs

__all__ = [
    "COMMANDS",
    "MAX_ID_LENGTH",
    "MAX_INT_DIGITS",
    "MAX_REPLY",
    "MAX_REQUEST",
    "AfterReply",
    "RequestError",
    "decode_request",
    "encode",
    "error_reply",
]

#: Largest request line accepted, newline excluded.
MAX_REQUEST: Final = 64 * 1024
#: Longest string accepted as a request id.
MAX_ID_LENGTH: Final = 256
#: Most digits an integer anywhere in a request may have.
MAX_INT_DIGITS: Final = 64
#: Request ids that are integers stay strictly within this magnitude.
_MAX_INT_ID: Final = 2**53
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
    "state": "a Server's state as its format_status shows it; args: pid, limit (characters)",
    "exit": "send an exit signal; args: pid, reason (kill (default) / shutdown / normal / text)",
    "publish": "publish events through Gate (reference application); args: name, payload, count",
    "top": "status, statistics and the process table with handled counts before and after "
    "the command's own queries (for rates that leave them out)",
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


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise RequestError(
            "malformed_json", f"integers are limited to {MAX_INT_DIGITS} digits; got {len(text)}"
        )
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise RequestError("malformed_json", f"number {text[:40]!r} is out of range")
    return value


def _parse_constant(text: str) -> Any:
    raise RequestError("malformed_json", f"{text} is not JSON (RFC 8259 has no {text})")


def decode_request(line: bytes) -> tuple[Any, dict[str, Any]]:
    """Decode one request line into ``(id, request)``; the request has a str ``command``.

    Raises:
        RequestError: malformed JSON (also: too deeply nested, an integer of more
            than :data:`MAX_INT_DIGITS` digits, ``NaN``/``Infinity``, a float
            that overflows), not an object, a bad id (the error then carries no
            id), or no ``command`` string.
    """
    try:
        request = json.loads(
            line,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except RecursionError:
        raise RequestError("malformed_json", "the request is nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError among them
        raise RequestError("malformed_json", f"the request is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise RequestError(
            "invalid_request", f"a request is a JSON object; received {type(request).__name__}"
        )
    request_id = request.get("id")
    if request_id is not None and not _valid_id(request_id):
        shown = repr(request_id)
        raise RequestError(
            "invalid_request",
            f'"id" must be a string of at most {MAX_ID_LENGTH} characters or an integer '
            f"of magnitude below 2**53; received {shown[:60]}{'...' if len(shown) > 60 else ''}",
        )
    if not isinstance(request.get("command"), str):
        raise RequestError("invalid_request", 'a request needs a "command" string', request_id)
    return request_id, request


def _valid_id(value: object) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_ID_LENGTH
    if isinstance(value, int) and not isinstance(value, bool):
        return -_MAX_INT_ID < value < _MAX_INT_ID
    return False


def encode(reply: dict[str, Any]) -> bytes:
    """One reply line; a reply that cannot be encoded becomes an ``internal_error`` reply."""
    try:
        text = json.dumps(reply, ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError, RecursionError) as exc:
        fallback = error_reply("internal_error", f"the reply could not be encoded: {exc}")
        if _valid_id(reply.get("id")):
            fallback["id"] = reply["id"]
        text = json.dumps(fallback, ensure_ascii=False)
    return text.encode() + b"\n"


def error_reply(code: str, message: str, request_id: Any = None) -> dict[str, Any]:
    """An error reply, echoing ``request_id`` when there was one."""
    reply: dict[str, Any] = {"ok": False, "error": {"code": code, "message": message}}
    if request_id is not None:
        reply["id"] = request_id
    return reply
