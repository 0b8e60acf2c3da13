"""The daemon's control socket: a Unix socket only its owner can use, serving JSON lines.

Nothing a client sends can stop the daemon:

* The socket is created with mode 0600 (under umask 0177, so it is never more
  open); a directory created for it gets 0700. An existing directory must be
  owned by the daemon's user and not writable by group or others (the rule
  ssh-agent and tmux apply): otherwise another local user could replace the
  socket, and the daemon refuses to start. A path already holding a live
  socket is refused; a stale one is replaced.
* Each connection is served in its own task. Every line gets a reply (an
  error reply for anything malformed, see :mod:`._protocol`) or, when the
  connection itself fails, a clean close; no failure in a connection's task
  reaches the accept loop.
* At most ``max_connections`` connections are served at once; one more is
  sent a ``too_many_connections`` error line and closed. A connection that
  sends nothing for ``idle_timeout`` seconds is closed.
* ``accept`` failing (EMFILE/ENFILE when file descriptors run out, or any
  other error) does not end the accept loop: it logs one warning, backs off
  (0.05 s doubling to 1 s) and retries, and logs once more when accepting
  works again.
"""

from __future__ import annotations

import contextlib
import errno
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
    decode_request,
    encode,
    error_reply,
)

__all__ = ["DEFAULT_IDLE_TIMEOUT", "DEFAULT_MAX_CONNECTIONS", "ControlServer", "Dispatch"]

#: Connections served at once unless configured otherwise.
DEFAULT_MAX_CONNECTIONS: Final = 64
#: Seconds a connection may stay silent before it is closed, unless configured otherwise.
DEFAULT_IDLE_TIMEOUT: Final = 60.0
#: Bound on sending one reply to a client that does not read.
SEND_TIMEOUT: Final = 10.0
_BACKOFF_MIN: Final = 0.05
_BACKOFF_MAX: Final = 1.0

logger: Final = logging.getLogger("thunderline.daemon")

#: Answers one decoded request (a dict with a str ``command``) with a JSON-safe result.
Dispatch = Callable[[dict[str, Any]], Awaitable[Any]]


def _prepare_directory(directory: Path) -> None:
    """Create the socket's directory (0700), or check that an existing one is private."""
    try:
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True)
            return
        info = directory.stat()
    except OSError as exc:
        raise ControlSocketError(str(directory), exc.strerror or str(exc)) from None
    if not stat.S_ISDIR(info.st_mode):
        raise ControlSocketError(str(directory), "parent is not a directory")
    uid = os.getuid()
    if info.st_uid != uid:
        raise ControlSocketError(
            str(directory),
            f"the socket's directory is owned by uid {info.st_uid}, not by you (uid {uid}); "
            "choose a --control path in a directory of your own",
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise ControlSocketError(
            str(directory),
            f"the socket's directory is writable by group or others (mode {mode:04o}); "
            f"run 'chmod go-w {directory}' or choose another --control path",
        )


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
        max_connections: connections served at once; more are refused.
        idle_timeout: seconds of silence after which a connection is closed.
    """

    def __init__(
        self,
        path: str,
        dispatch: Dispatch,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self.path = Path(path)
        self.dispatch = dispatch
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.active = 0
        self.refused = 0
        self.accept_failures = 0
        self.answering = 0  # requests being answered now
        self._answered = anyio.Event()  # set when ``answering`` drops to 0
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
        """Accept connections until cancelled; see the module docstring for the limits."""
        listener = self._listener
        assert listener is not None
        backoff = _BACKOFF_MIN
        failing = False
        async with anyio.create_task_group() as task_group:
            while True:
                try:
                    stream = await listener.accept()
                except anyio.ClosedResourceError:
                    return
                except (anyio.BrokenResourceError, OSError) as exc:
                    self.accept_failures += 1
                    if not failing:
                        failing = True
                        logger.warning(
                            "control socket: accept failed (%s); retrying with back-off "
                            "(logged once until accepting works again)",
                            _describe_accept_error(exc),
                        )
                    await anyio.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX)
                    continue
                if failing:
                    failing = False
                    logger.info(
                        "control socket: accepting connections again after %d failed accepts",
                        self.accept_failures,
                    )
                backoff = _BACKOFF_MIN
                if self.active >= self.max_connections:
                    self.refused += 1
                    task_group.start_soon(self._refuse, stream)
                else:
                    self.active += 1
                    task_group.start_soon(self._guarded, stream)

    async def settle(self, timeout: float) -> bool:
        """Wait until no request is being answered, at most ``timeout`` seconds.

        Used when the daemon stops, so that a request in progress (a ``publish``
        that has stopped publishing) gets its answer before connections close.
        Returns False when requests were still being answered after ``timeout``.
        """
        with anyio.move_on_after(timeout):
            while self.answering > 0:
                await self._answered.wait()
        return self.answering == 0

    async def _refuse(self, stream: anyio.abc.ByteStream) -> None:
        refusal = error_reply(
            "too_many_connections",
            f"the daemon serves at most {self.max_connections} control connections at once "
            "(--control-max-connections); try again later",
        )
        async with stream:
            with anyio.move_on_after(1.0):
                await self._send(stream, refusal)
                # Half-close, then read what the client sent until it closes: closing
                # a socket with unread input sends a reset, and a reset can discard
                # the refusal before the client has read it.
                with contextlib.suppress(Exception):
                    await stream.send_eof()
                    while len(await stream.receive(65536)) > 0:
                        pass

    async def _guarded(self, stream: anyio.abc.ByteStream) -> None:
        try:
            await self._connection(stream)
        except Exception:  # one connection's failure never reaches the accept loop
            logger.exception("control connection failed; closing it")
            with contextlib.suppress(Exception):
                await anyio.aclose_forcefully(stream)
        finally:
            self.active -= 1

    async def _connection(self, stream: anyio.abc.ByteStream) -> None:
        async with stream:
            buffer = bytearray()
            discarding = False  # inside an oversized line: drop bytes up to its newline
            while True:
                chunk = b""
                with anyio.move_on_after(self.idle_timeout):
                    try:
                        chunk = await stream.receive(65536)
                    except (
                        anyio.EndOfStream,
                        anyio.BrokenResourceError,
                        anyio.ClosedResourceError,
                    ):
                        return
                if not chunk:  # idle for idle_timeout seconds
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
                    self.answering += 1
                    try:  # until the reply is sent: see settle()
                        reply, action = await self._answer(line)
                        if reply is not None and not await self._send(stream, reply):
                            return
                    finally:
                        self.answering -= 1
                        if self.answering == 0:
                            self._answered.set()
                            self._answered = anyio.Event()
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
        """Send one reply line; False when the client is gone or does not read."""
        with anyio.move_on_after(SEND_TIMEOUT):
            try:
                await stream.send(encode(reply))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return False
            return True
        return False

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
        request_id, request = decode_request(line)
        command = request["command"]
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


def _describe_accept_error(exc: BaseException) -> str:
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    if isinstance(cause, OSError) and cause.errno is not None:
        name = errno.errorcode.get(cause.errno, str(cause.errno))
        return f"{name}: {cause.strerror or cause}"
    return f"{type(exc).__name__}: {exc}"
