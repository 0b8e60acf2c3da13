"""Talking to a running daemon over its control socket."""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.abc
import anyio.streams.buffered

from thunderline._daemon._errors import ControlReplyError, ControlSocketError, DaemonNotRunningError
from thunderline._daemon._protocol import MAX_REPLY

__all__ = ["ControlClient", "query"]


class ControlClient:
    """One connection to the daemon; send requests with :meth:`request`.

    Use as ``async with ControlClient(path) as client:``.

    Raises (on entry):
        DaemonNotRunningError: nothing listens on ``path``.
        ControlSocketError: the socket exists but cannot be used (permissions).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._stream: anyio.abc.ByteStream | None = None
        self._reader: anyio.streams.buffered.BufferedByteReceiveStream | None = None

    async def __aenter__(self) -> ControlClient:
        try:
            stream = await anyio.connect_unix(self.path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunningError(self.path, exc.strerror or str(exc)) from None
        except OSError as exc:
            raise ControlSocketError(self.path, exc.strerror or str(exc)) from None
        self._stream = stream
        self._reader = anyio.streams.buffered.BufferedByteReceiveStream(stream)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._stream is not None:
            await self._stream.aclose()

    async def request(self, command: str, **args: Any) -> Any:
        """Send one request and return its result.

        Raises:
            ControlReplyError: the daemon answered with an error.
            ControlSocketError: the connection broke before the reply.
        """
        assert self._stream is not None
        assert self._reader is not None
        line = json.dumps({"command": command, **args}).encode() + b"\n"
        try:
            await self._stream.send(line)
        except anyio.BrokenResourceError:
            # the daemon may have refused the connection (too_many_connections)
            # and closed it before our request: its refusal is still readable
            pass
        try:
            raw = await self._reader.receive_until(b"\n", MAX_REPLY)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError) as exc:
            raise ControlSocketError(
                self.path, f"the daemon closed the connection before answering ({exc!r})"
            ) from None
        try:
            reply = json.loads(raw)
        except ValueError:
            raise ControlSocketError(self.path, "the daemon's reply is not JSON") from None
        if not isinstance(reply, dict):
            raise ControlSocketError(self.path, "the daemon's reply is not a JSON object")
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise ControlReplyError(command, str(error.get("code")), str(error.get("message")))
        return reply.get("result")


async def query(path: str, command: str, **args: Any) -> Any:
    """Connect, send one request, return its result (see :meth:`ControlClient.request`)."""
    async with ControlClient(path) as client:
        return await client.request(command, **args)
