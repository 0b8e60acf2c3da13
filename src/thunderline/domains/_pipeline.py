"""Bounded pipelines with concurrency, batching and backpressure, built from processes.

Erlang mailboxes are unbounded, so a pipeline bounds itself: it is a
:class:`~thunderline.runtime.Server` that holds at most ``max_buffer`` items,
hands batches to ``concurrency`` worker processes, and answers publishers:

* :func:`enqueue` is a call. With room in the buffer it is answered at once;
  when the buffer is full the answer is *deferred* until a worker frees room,
  so the publisher waits (backpressure) instead of memory growing.
* :func:`try_enqueue` never waits: a full buffer answers :class:`PipelineOverloaded`.
* :func:`enqueue_many` adds a whole batch with one call, answered once every
  item is in the buffer (items beyond the room wait, in order, as above).
* :func:`drain` is answered once the buffer is empty and no batch is in a worker.

A batch goes to an idle worker as soon as ``batch_size`` items are buffered,
or when ``batch_timeout`` seconds passed since the oldest buffered item
arrived. The handler runs in the worker process; an exception is logged and
counted (the batch is lost, the worker keeps going); a worker that dies is
replaced. Memory is bounded by ``max_buffer + concurrency * batch_size``
items plus the waiting publishers (each blocked on its own call).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Generic, TypeVar

import attrs

import thunderline.runtime as tl
from thunderline.runtime import ThunderlineError

__all__ = [
    "Pipeline",
    "PipelineOverloaded",
    "PipelineSpec",
    "PipelineStatistics",
    "drain",
    "enqueue",
    "enqueue_many",
    "pipeline_statistics",
    "try_enqueue",
]

logger: Final = logging.getLogger("thunderline.domains.pipeline")

T = TypeVar("T")


class PipelineOverloaded(ThunderlineError):
    """:func:`try_enqueue` found the pipeline's buffer full."""

    def __init__(self, pipeline: str, max_buffer: int) -> None:
        self.pipeline = pipeline
        self.max_buffer = max_buffer
        super().__init__(f"pipeline {pipeline!r} is full ({max_buffer} items buffered)")


def _positive_int(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"PipelineSpec.{attribute.name} must be an int >= 1, got {value!r}")


def _positive_number(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"PipelineSpec.{attribute.name} must be a number > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class PipelineSpec(Generic[T]):
    """A pipeline's handler and bounds.

    Attributes:
        name: registered name of the pipeline process.
        handler: ``async handler(batch)`` run in a worker process.
        max_buffer: items buffered before publishers wait.
        concurrency: worker processes.
        batch_size: items per batch at most.
        batch_timeout: seconds a partial batch waits for more items.
    """

    name: str
    handler: Callable[[Sequence[T]], Awaitable[None]]
    max_buffer: int = attrs.field(default=1000, validator=_positive_int)
    concurrency: int = attrs.field(default=2, validator=_positive_int)
    batch_size: int = attrs.field(default=50, validator=_positive_int)
    batch_timeout: float = attrs.field(default=0.02, validator=_positive_number)


@attrs.frozen
class PipelineStatistics:
    """A snapshot of a pipeline.

    Attributes:
        buffered: items waiting for a worker.
        waiting_publishers: publishers blocked in :func:`enqueue`.
        in_flight: items being handled by workers.
        processed: items handled successfully.
        failed: items in batches whose handler raised.
        peak_buffered: the largest ``buffered`` seen.
        workers: live worker processes.
    """

    buffered: int
    waiting_publishers: int
    in_flight: int
    processed: int
    failed: int
    peak_buffered: int
    workers: int


@attrs.frozen
class _Batch:
    items: tuple[Any, ...]


@attrs.frozen
class _BatchDone:
    worker: tl.Pid
    count: int
    ok: bool


@attrs.frozen
class _Flush:
    generation: int


async def _worker(pipeline: tl.Pid, handler: Callable[[Sequence[Any]], Awaitable[None]]) -> None:
    me = tl.current_pid()
    while True:
        batch = await tl.receive(_Batch)
        ok = True
        try:
            await handler(batch.items)
        except Exception:
            ok = False
            logger.exception("pipeline handler failed on a batch of %d", len(batch.items))
        tl.send(pipeline, _BatchDone(me, len(batch.items), ok))


@attrs.define
class _State:
    buffer: deque[Any] = attrs.field(factory=deque)
    waiting: deque[tuple[tl.From | None, Any]] = attrs.field(factory=deque)
    draining: list[tl.From] = attrs.field(factory=list)
    idle: list[tl.Pid] = attrs.field(factory=list)
    busy: dict[tl.Pid, int] = attrs.field(factory=dict)
    processed: int = 0
    failed: int = 0
    peak: int = 0
    timer: tl.Ref | None = None
    generation: int = 0


class Pipeline(tl.Server[_State]):
    """The pipeline server; start it with ``start_link(Pipeline(spec), name=spec.name)``."""

    def __init__(self, spec: PipelineSpec[Any]) -> None:
        self.spec = spec

    async def init(self) -> tl.Ok[_State]:
        """Trap exits (workers are linked) and start the workers."""
        tl.trap_exit(True)
        state = _State()
        for _ in range(self.spec.concurrency):
            state.idle.append(tl.spawn_link(_worker, tl.current_pid(), self.spec.handler))
        return tl.Ok(state)

    async def handle_call(
        self, request: Any, from_: tl.From, state: _State
    ) -> tl.Reply[_State] | tl.NoReply[_State]:
        """``("enqueue", item, wait)``, ``("enqueue_many", items)``, ``("drain",)``, statistics."""
        if request[0] == "statistics":
            return tl.Reply(self._statistics(state), state)
        if request[0] == "drain":
            if self._idle(state):
                return tl.Reply(None, state)
            state.draining.append(from_)
            return tl.NoReply(state)
        if request[0] == "enqueue_many":
            items = request[1]
            room = self.spec.max_buffer - len(state.buffer) if not state.waiting else 0
            for item in items[:room]:
                self._admit(state, item)
            if len(items) <= room:
                return tl.Reply(None, state)
            rest = items[max(room, 0) :]
            for item in rest[:-1]:
                state.waiting.append((None, item))
            state.waiting.append((from_, rest[-1]))
            return tl.NoReply(state)
        _, item, wait = request
        if len(state.buffer) < self.spec.max_buffer:
            self._admit(state, item)
            return tl.Reply(None, state)
        if not wait:
            return tl.Reply(PipelineOverloaded(self.spec.name, self.spec.max_buffer), state)
        state.waiting.append((from_, item))
        return tl.NoReply(state)

    async def handle_info(self, message: Any, state: _State) -> tl.NoReply[_State]:
        """Batch completions, flush timers and worker exits."""
        if isinstance(message, _BatchDone):
            count = state.busy.pop(message.worker, 0)
            if message.ok:
                state.processed += count
            else:
                state.failed += count
            state.idle.append(message.worker)
            self._dispatch(state, force=False)
        elif isinstance(message, _Flush):
            if message.generation == state.generation:
                state.timer = None
                self._dispatch(state, force=True)
        elif isinstance(message, tl.Exit):
            self._replace_worker(state, message)
        return tl.NoReply(state)

    def _admit(self, state: _State, item: Any) -> None:
        state.buffer.append(item)
        state.peak = max(state.peak, len(state.buffer))
        self._dispatch(state, force=False)

    def _dispatch(self, state: _State, *, force: bool) -> None:
        size = self.spec.batch_size
        while state.idle and state.buffer and (force or len(state.buffer) >= size):
            worker = state.idle.pop()
            batch = tuple(state.buffer.popleft() for _ in range(min(size, len(state.buffer))))
            state.busy[worker] = len(batch)
            tl.send(worker, _Batch(batch))
        while state.waiting and len(state.buffer) < self.spec.max_buffer:
            from_, item = state.waiting.popleft()
            state.buffer.append(item)
            state.peak = max(state.peak, len(state.buffer))
            if from_ is not None:
                tl.reply(from_, None)
        if state.draining and self._idle(state):
            for from_ in state.draining:
                tl.reply(from_, None)
            state.draining.clear()
        if not state.buffer and state.timer is not None:
            tl.cancel_timer(state.timer)
            state.timer = None
        elif state.buffer and state.timer is None:
            state.generation += 1
            state.timer = tl.send_after(
                self.spec.batch_timeout, tl.current_pid(), _Flush(state.generation)
            )

    @staticmethod
    def _idle(state: _State) -> bool:
        return not state.buffer and not state.busy and not state.waiting

    def _replace_worker(self, state: _State, message: tl.Exit) -> None:
        lost = state.busy.pop(message.pid, None)
        if lost is None and message.pid not in state.idle:
            return
        if message.pid in state.idle:
            state.idle.remove(message.pid)
        if lost:
            state.failed += lost
        logger.error(
            "pipeline %s: worker %r exited: %r", self.spec.name, message.pid, message.reason
        )
        state.idle.append(tl.spawn_link(_worker, tl.current_pid(), self.spec.handler))
        self._dispatch(state, force=False)

    def _statistics(self, state: _State) -> PipelineStatistics:
        return PipelineStatistics(
            buffered=len(state.buffer),
            waiting_publishers=len(state.waiting),
            in_flight=sum(state.busy.values()),
            processed=state.processed,
            failed=state.failed,
            peak_buffered=state.peak,
            workers=len(state.idle) + len(state.busy),
        )

    async def terminate(self, reason: Any, state: _State) -> None:
        """Stop the workers with the pipeline."""
        for worker in [*state.idle, *state.busy]:
            tl.exit(worker, tl.KILL)


async def enqueue(pipeline: tl.Pid | str, item: Any, *, timeout: float | None = None) -> None:
    """Add ``item``; waits while the pipeline is full (backpressure).

    Raises:
        CallTimeoutError: still full after ``timeout`` seconds.
        CallError: the pipeline is not running.
    """
    await tl.call(pipeline, ("enqueue", item, True), timeout=timeout)


async def enqueue_many(pipeline: tl.Pid | str, items: Sequence[Any]) -> None:
    """Add ``items`` in order with one call; waits until the last one is in the buffer.

    Raises:
        CallError: the pipeline is not running.
    """
    if items:
        await tl.call(pipeline, ("enqueue_many", tuple(items)), timeout=None)


async def drain(pipeline: tl.Pid | str) -> None:
    """Wait until ``pipeline`` has nothing buffered, waiting or in a worker."""
    await tl.call(pipeline, ("drain",), timeout=None)


async def try_enqueue(pipeline: tl.Pid | str, item: Any) -> None:
    """Add ``item`` without waiting.

    Raises:
        PipelineOverloaded: the buffer is full.
        CallError: the pipeline is not running.
    """
    result = await tl.call(pipeline, ("enqueue", item, False))
    if isinstance(result, PipelineOverloaded):
        raise result


async def pipeline_statistics(
    pipeline: tl.Pid | str, *, timeout: float | None = 5.0
) -> PipelineStatistics:
    """A :class:`PipelineStatistics` snapshot of a running pipeline."""
    result: PipelineStatistics = await tl.call(pipeline, ("statistics",), timeout=timeout)
    return result
