"""The NATS connection of one node, on asyncio or bridged into trio.

nats-py is asyncio-only. On asyncio the client runs on the node's own loop.
On trio it runs on an asyncio loop in a helper thread, and the two sides meet
through two queues:

* outbound: on asyncio, :meth:`Transport.publish` runs nats-py's ``publish``
  coroutine to its end at once (it only appends to the client's buffer and
  kicks its flusher, so it does not suspend unless that buffer is full); on
  trio it appends to a deque and, when the pump was idle, schedules one
  ``call_soon_threadsafe`` that publishes everything queued the same way.
  A publish that does suspend is finished by the writer task
  (:func:`_resume`) before anything queued after it: per-node FIFO, and no
  event-loop hop of our own per message;
* inbound: the subscription callback (one task per subscription, so in
  arrival order) appends to a deque and asks trio, once per batch, to drain
  it (``TrioToken.run_sync_soon``); connection events travel in the same
  queue, so they stay ordered with the messages around them.

:meth:`Transport.run` runs any NATS coroutine on the client's loop and
returns its result to the calling backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, TypeVar

import anyio
import nats
import nats.errors
import sniffio
from nats.aio.client import Client
from nats.aio.msg import Msg

from thunderline.dist._errors import ClusterConnectError

__all__ = ["Transport", "open_transport"]

logger: Final = logging.getLogger("thunderline.dist")

T = TypeVar("T")

#: ("msg", subject, data, headers, reply) or ("disconnected",) / ("reconnected",)
Event = tuple[Any, ...]


class Transport:
    """One NATS client; see the module docstring."""

    def __init__(self, handler: Callable[[Event], None]) -> None:
        self._handler = handler
        self.nc: Client = Client()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._trio_token: Any = None
        self._outbox: deque[tuple[str, bytes, dict[str, str] | None]] = deque()
        self._writer_woken = False
        self._wake: asyncio.Event | None = None
        self._inbox: deque[Event] = deque()
        self._drain_scheduled = False
        self.bridged = False
        self._writer_task: asyncio.Task[None] | None = None
        # A direct publish that suspended (asyncio): (coroutine, what it yielded).
        self._stalled: tuple[Any, Any] | None = None
        # The node's context: bridged events are handled in it (current node,
        # inherited by the processes the handler starts).
        self._context = contextvars.copy_context()

    # --------------------------------------------------------------- calls

    async def run(self, coro_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``coro_fn(*args)`` on the client's loop and return its result here."""
        if not self.bridged:
            return await coro_fn(*args)
        assert self.loop is not None
        if self.loop.is_closed():
            raise nats.errors.ConnectionClosedError
        future = asyncio.run_coroutine_threadsafe(_call(coro_fn, *args), self.loop)
        done = anyio.Event()
        token = self._trio_token

        def wake(_future: Any) -> None:
            with contextlib.suppress(RuntimeError):  # trio.RunFinishedError: nobody waits
                token.run_sync_soon(done.set)

        future.add_done_callback(wake)
        try:
            await done.wait()
        except BaseException:
            future.cancel()
            raise
        return future.result()

    # ------------------------------------------------------------ outbound

    def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        """Publish one message now, or queue it behind what is queued (in order)."""
        if not self.bridged:
            if not self._outbox and self._stalled is None and self._writer_task is not None:
                if self._publish_now(subject, data, headers):
                    return
            else:
                self._outbox.append((subject, data, headers))
            if self._wake is not None:
                self._wake.set()
            return
        self._outbox.append((subject, data, headers))
        if not self._writer_woken:
            self._writer_woken = True
            loop = self.loop
            if loop is not None and self._writer_task is not None:
                loop.call_soon_threadsafe(self._pump)

    def _publish_now(self, subject: str, data: bytes, headers: dict[str, str] | None) -> bool:
        """Run nats-py's publish to its end here (on the client's loop).

        It appends to the client's buffer and kicks its flusher, so it does
        not suspend unless the buffer is full: then it is kept for the writer,
        which finishes it before anything else (returns False).
        """
        coro = self.nc.publish(subject, data, headers=headers)
        try:
            yielded = coro.send(None)
        except StopIteration:
            return True
        except (nats.errors.Error, OSError) as exc:
            logger.debug("publish to %s failed: %r", subject, exc)
            return True
        self._stalled = (coro, yielded)
        return False

    def _pump(self) -> None:
        """Publish what is queued (on the client's loop), in order."""
        self._writer_woken = False
        outbox = self._outbox
        while outbox and self._stalled is None:
            self._publish_now(*outbox.popleft())
        if self._stalled is not None and self._wake is not None:
            self._wake.set()

    async def _writer(self) -> None:
        """Finishes a publish that suspended, then publishes what queued meanwhile."""
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._stalled is not None:
                try:
                    await _resume(*self._stalled)
                except (nats.errors.Error, OSError) as exc:
                    logger.debug("publish failed: %r", exc)
                finally:
                    self._stalled = None
            self._pump()

    def discard_outbox(self) -> None:
        """Drop what is queued (the connection it was meant for is gone)."""
        self._outbox.clear()

    # ------------------------------------------------------------- inbound

    def _push(self, event: Event) -> None:
        if not self.bridged:
            self._handler(event)
            return
        self._inbox.append(event)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._trio_token.run_sync_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        self._context.run(self._drain_in_context)

    def _drain_in_context(self) -> None:
        inbox = self._inbox
        while inbox:
            self._handler(inbox.popleft())

    async def _on_msg(self, msg: Msg) -> None:
        self._push(("msg", msg.subject, msg.data, msg.headers, msg.reply))

    async def _on_disconnected(self) -> None:
        self._push(("disconnected",))

    async def _on_reconnected(self) -> None:
        self._push(("reconnected",))

    async def _on_error(self, exc: Exception) -> None:
        logger.debug("NATS error: %r", exc)

    # ----------------------------------------------------------- lifecycle

    async def _connect(self, servers: list[str], options: dict[str, Any]) -> None:
        self.loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        # With unlimited reconnects nats-py retries the first connection forever too:
        # the whole first connection is bounded by connect_timeout instead.
        bound = float(options.get("connect_timeout", 10))
        try:
            await asyncio.wait_for(
                self.nc.connect(
                    servers=servers,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error,
                    **options,
                ),
                bound,
            )
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            with contextlib.suppress(Exception):
                await self.nc.close()
            reason = (
                f"nothing answered within {bound:g} s"
                if isinstance(exc, TimeoutError)
                else repr(exc)
            )
            raise ClusterConnectError(f"cannot connect to NATS at {servers}: {reason}") from None
        self._writer_task = asyncio.get_running_loop().create_task(self._writer())
        self._wake.set()  # publish what was queued before the connection

    async def subscribe(self, subject: str) -> None:
        """Subscribe ``subject``; its messages reach the handler in arrival order."""
        await self.run(self._subscribe, subject)

    async def _subscribe(self, subject: str) -> None:
        await self.nc.subscribe(
            subject, cb=self._on_msg, pending_msgs_limit=0, pending_bytes_limit=0
        )

    async def flush(self) -> None:
        """Wait until the server has processed everything published so far."""
        await self.run(self._flush)

    async def _flush(self) -> None:
        while self._outbox or self._stalled is not None:
            await asyncio.sleep(0)
        await self.nc.flush(timeout=5)

    async def _close(self, abrupt: bool) -> None:
        if self._writer_task is not None:
            if not abrupt:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._flush(), 2)
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer_task
        if abrupt:
            transport = getattr(self.nc, "_transport", None)
            if transport is not None:
                with contextlib.suppress(Exception):
                    transport.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.close(), 3)
        if self.bridged:
            # The helper loop ends with this client: stop what nats-py left running.
            current = asyncio.current_task()
            leftovers = [t for t in asyncio.all_tasks() if t is not current]
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)


async def _resume(coro: Any, yielded: Any) -> None:
    """Run a coroutine that suspended (yielding ``yielded``) to its end, as a task would."""
    try:
        while True:
            if isinstance(yielded, asyncio.Future):
                await asyncio.wait((yielded,))
            else:
                await asyncio.sleep(0)
            try:
                yielded = coro.send(None)
            except StopIteration:
                return
    finally:
        coro.close()


async def _call(coro_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await coro_fn(*args)


@contextlib.asynccontextmanager
async def open_transport(
    servers: list[str],
    options: dict[str, Any],
    handler: Callable[[Event], None],
    *,
    abrupt: Callable[[], bool] = lambda: False,
) -> AsyncIterator[Transport]:
    """A connected :class:`Transport` for the block (asyncio: this loop; trio: a helper thread)."""
    transport = Transport(handler)
    if sniffio.current_async_library() == "asyncio":
        await transport._connect(servers, options)
        try:
            yield transport
        finally:
            with anyio.CancelScope(shield=True):
                await transport._close(abrupt())
        return
    # trio: an asyncio loop in a helper thread
    import trio

    transport.bridged = True
    transport._trio_token = trio.lowlevel.current_trio_token()
    ready = threading.Event()
    loop_box: list[asyncio.AbstractEventLoop] = []

    def thread_main() -> None:
        loop = asyncio.new_event_loop()
        loop_box.append(loop)
        asyncio.set_event_loop(loop)
        ready.set()
        try:
            loop.run_forever()
            # Calls submitted while the client closed: end them before the loop.
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        finally:
            loop.close()

    thread = threading.Thread(target=thread_main, name="thunderline-nats", daemon=True)
    thread.start()
    await anyio.to_thread.run_sync(ready.wait)
    transport.loop = loop_box[0]
    try:
        await transport.run(transport._connect, servers, options)
        try:
            yield transport
        finally:
            with anyio.CancelScope(shield=True):
                await transport.run(transport._close, abrupt())
    finally:
        loop = loop_box[0]
        loop.call_soon_threadsafe(loop.stop)
        await anyio.to_thread.run_sync(thread.join)
