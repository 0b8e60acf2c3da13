"""The daemon's control socket: a Unix socket only its owner can use, serving JSON lines.

The socket is created with mode 0600 (under umask 0177, so it is never more
open); a directory created for it gets 0700. A path already holding a live
socket is refused; a stale one is replaced. Each connection is served in its
own task; a request that fails in any way gets an error reply and the daemon
carries on.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc

from thunderline._daemon._errors import ControlSocketError
from thunderline._daemon._protocol import (
    MAX_REQUEST,
    AfterReply,
    RequestError,
    encode,
    error_reply,
)

__all__ = ["ControlServer", "Dispatch"]

logger: Final = logging.getLogger("thunderline.daemon")

#: Answers one decoded request (a dict with a str ``command``) with a JSON-safe result.
Dispatch = Callable[[dict[str, Any]], Awaitable[Any]]


def _prepare_directory(directory: Path) -> None:
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        return
    info = directory.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise ControlSocketError(str(directory), "parent is not a directory")


def _clear_stale(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlSocketError(str(path), "exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink()  # stale: left by a daemon that died without cleaning up
        return
    except OSError as exc:
        raise ControlSocketError(str(path), f"cannot probe existing socket: {exc}") from None
    finally:
        probe.close()
    raise ControlSocketError(str(path), "another daemon is listening on it")


class ControlServer:
    """Bind the control socket on entry, remove it on exit; :meth:`serve` answers requests.

    Args:
        path: the socket's path.
        dispatch: answers a request; raise :class:`RequestError` to refuse it.
    """

    def __init__(self, path: str, dispatch: Dispatch) -> None:
        self.path = Path(path)
        self.dispatch = dispatch
        self._listener: anyio.abc.SocketListener | None = None
        self._inode: int | None = None

    async def __aenter__(self) -> ControlServer:
        _prepare_directory(self.path.parent)
        _clear_stale(self.path)
        old_umask = os.umask(0o177)
        try:
            self._listener = await anyio.create_unix_listener(self.path, mode=0o600)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ControlSocketError(str(self.path), "address in use") from None
            raise ControlSocketError(str(self.path), exc.strerror or str(exc)) from None
        finally:
            os.umask(old_umask)
        self._inode = self.path.stat().st_ino
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            if self._listener is not None:
                await self._listener.aclose()
        self.remove_path()

    def remove_path(self) -> None:
        """Remove the socket file if it is still ours (safe to call more than once)."""
        with contextlib.suppress(OSError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()
        self._inode = None

    async def serve(self) -> None:
        """Accept connections until cancelled."""
        assert self._listener is not None
        async with anyio.create_task_group() as task_group:
            await self._listener.serve(self._connection, task_group=task_group)

    async def _connection(self, stream: anyio.abc.ByteStream) -> None:
        async with stream:
            buffer = bytearray()
            discarding = False  # inside an oversized line: drop bytes up to its newline
            while True:
                try:
                    chunk = await stream.receive(65536)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
                buffer += chunk
                while True:
                    newline = buffer.find(b"\n")
                    if newline < 0:
                        break
                    line = bytes(buffer[:newline])
                    del buffer[: newline + 1]
                    if discarding:
                        discarding = False
                        continue
                    reply, action = await self._answer(line)
                    if reply is not None and not await self._send(stream, reply):
                        return
                    if action is not None:
                        action()
                if len(buffer) > MAX_REQUEST:
                    buffer.clear()
                    if not discarding:
                        discarding = True
                        too_long = error_reply(
                            "request_too_large", f"request lines are limited to {MAX_REQUEST} bytes"
                        )
                        if not await self._send(stream, too_long):
                            return

    @staticmethod
    async def _send(stream: anyio.abc.ByteStream, reply: dict[str, Any]) -> bool:
        try:
            await stream.send(encode(reply))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return True

    async def _answer(self, line: bytes) -> tuple[dict[str, Any] | None, Callable[[], None] | None]:
        """The reply to one line, and what to do once it is sent."""
        if not line.strip():
            return None, None
        action: Callable[[], None] | None = None
        try:
            request_id, result = await self._result(line)
        except RequestError as exc:
            return error_reply(exc.code, exc.message, exc.request_id), None
        if isinstance(result, AfterReply):
            result, action = result.result, result.action
        reply: dict[str, Any] = {"ok": True, "result": result}
        if request_id is not None:
            reply["id"] = request_id
        return reply, action

    async def _result(self, line: bytes) -> tuple[Any, Any]:
        """``(request id, result)`` of one request line; raises RequestError to refuse it."""
        if len(line) > MAX_REQUEST:
            raise RequestError(
                "request_too_large", f"request lines are limited to {MAX_REQUEST} bytes"
            )
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError("malformed_json", f"the request is not JSON: {exc}") from None
        if not isinstance(request, dict):
            raise RequestError(
                "invalid_request", f"a request is a JSON object; received {type(request).__name__}"
            )
        request_id = request.get("id")
        command = request.get("command")
        if not isinstance(command, str):
            raise RequestError("invalid_request", 'a request needs a "command" string', request_id)
        try:
            return request_id, await self.dispatch(request)
        except RequestError as exc:
            exc.request_id = request_id
            raise
        except Exception as exc:  # a failed request must not take the daemon down
            logger.exception("control command %r failed", command)
            raise RequestError(
                "internal_error", f"{type(exc).__name__}: {exc}", request_id
            ) from exc
