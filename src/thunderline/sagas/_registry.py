"""The saga registry: correlation id to running saga, plus a bounded cache of recent outcomes.

::

    registry = SagaRegistry(max_recent=256)
    registry.register(entry)                    # the saga is running
    ended = registry.unregister(cid, Ended(outcome=outcome, reason=None))
    registry.lookup(cid)                        # None: no longer running
    registry.recent(cid)                        # the Ended record, while it is cached

A :class:`SagaRegistry` is a plain synchronous data structure. It is owned by
one saga supervisor process (see :mod:`thunderline.sagas._supervisor`), which
is the only code that reads or changes it; every change and every lookup is
therefore serialised by that process's mailbox, which is what makes the view
linearizable (invariant S22). This module also holds the registry's errors and
the records the supervisor API returns.

Invariant S21, kept by the supervisor: a correlation id is present here
exactly while its saga is running. An entry is added before the saga's process
is allowed to execute and removed when the supervisor learns that the run
ended, whichever way (succeeded, failed, halted, cancelled, crashed, killed).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs

from thunderline.runtime import From, Pid, Ref

from ._errors import SagaError
from ._executor import SagaPhase, SagaRun, SagaRunStatistics, StepStatus
from ._result import SagaOutcome

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "SagaAlreadyRunningError",
    "SagaInfo",
    "SagaRegistry",
    "SagaRegistryStatistics",
    "UnknownSagaError",
]

DEFAULT_MAX_RECENT = 256
"""How many ended sagas a supervisor remembers for :func:`await_saga` by default."""


class SagaAlreadyRunningError(SagaError, ValueError):
    """A saga with this correlation id is already running under the supervisor.

    Attributes:
        correlation_id: The id that is taken.
        pid: The process running the saga that holds it.
    """

    def __init__(self, correlation_id: str, pid: Pid) -> None:
        self.correlation_id = correlation_id
        self.pid = pid
        super().__init__(
            f"a saga with correlation id {correlation_id!r} is already running: {pid!r}"
        )


class UnknownSagaError(SagaError, LookupError):
    """No running saga has this correlation id (and, where it applies, no recent outcome).

    Attributes:
        correlation_id: The id asked for.
    """

    def __init__(self, correlation_id: str) -> None:
        self.correlation_id = correlation_id
        super().__init__(f"no saga with correlation id {correlation_id!r} is running")


@attrs.frozen
class SagaInfo:
    """A running saga as seen by the registry, from :func:`lookup` and :func:`list_sagas`.

    Attributes:
        correlation_id: The id it is registered under.
        pid: The process running it.
        saga: The saga's name.
        run_id: The execution's ``run_id`` (as in :class:`SagaRunInfo`).
        started_at: ``anyio.current_time()`` when it was registered.
        statistics: Snapshot of the run taken when the request was served
            (step statuses in ``statistics.steps``); its phase is never
            ``FINISHED`` (S22).
    """

    correlation_id: str
    pid: Pid
    saga: str
    run_id: int
    started_at: float
    statistics: SagaRunStatistics

    @property
    def phase(self) -> SagaPhase:
        """The run's phase in :attr:`statistics`."""
        return self.statistics.phase

    @property
    def steps(self) -> Mapping[str, StepStatus]:
        """Step name to status in :attr:`statistics`."""
        return self.statistics.steps


@attrs.frozen
class SagaRegistryStatistics:
    """A snapshot of a :class:`SagaRegistry`.

    Attributes:
        running: Sagas registered now.
        peak_running: Most sagas registered at once.
        awaiting: Callers waiting for an outcome (``await_saga``/``cancel_saga``).
        recent: Ended sagas whose outcome is cached.
        max_recent: Bound of that cache.
    """

    running: int
    peak_running: int
    awaiting: int
    recent: int
    max_recent: int


@attrs.frozen
class Ended:
    """How a registered saga ended: an ``outcome``, or no outcome and the process's exit ``reason``.

    Attributes:
        outcome: The run's result, or None when its process ended without one.
        reason: The exit reason of the process when ``outcome`` is None.
        cancelled: Whether ``cancel_saga`` had been requested.
    """

    outcome: SagaOutcome | None
    reason: Any = None
    cancelled: bool = False


@attrs.define(eq=False)
class Waiter:
    """A caller waiting for the outcome of a saga (served with ``reply``)."""

    from_: From
    token: int
    timer: Ref | None = None


@attrs.define(eq=False)
class Entry:
    """One running saga: owned by the supervisor, changed only in its process."""

    correlation_id: str
    pid: Pid
    monitor: Ref
    run: SagaRun
    started_at: float
    waiters: list[Waiter] = attrs.field(factory=list)
    cancelled: bool = False

    def info(self) -> SagaInfo:
        """A :class:`SagaInfo` snapshot of this entry."""
        return SagaInfo(
            correlation_id=self.correlation_id,
            pid=self.pid,
            saga=self.run.info.saga.name,
            run_id=self.run.info.run_id,
            started_at=self.started_at,
            statistics=self.run.statistics(),
        )


class SagaRegistry:
    """Correlation id to running saga, and a bounded cache of recent outcomes.

    The cache keeps the last ``max_recent`` ended sagas (by correlation id,
    most recently ended last); ending one more evicts the oldest. A correlation
    id that ends again replaces its cached record. ``max_recent=0`` disables
    the cache.

    Args:
        max_recent: Bound of the recent-outcome cache.

    Raises:
        ValueError: ``max_recent`` is not an int >= 0.
    """

    def __init__(self, max_recent: int = DEFAULT_MAX_RECENT) -> None:
        if isinstance(max_recent, bool) or not isinstance(max_recent, int) or max_recent < 0:
            raise ValueError(f"max_recent accepts an int >= 0; received {max_recent!r}")
        self.max_recent = max_recent
        self._running: dict[str, Entry] = {}
        self._recent: OrderedDict[str, Ended] = OrderedDict()
        self._by_monitor: dict[Ref, str] = {}
        self._peak = 0

    def register(self, entry: Entry) -> None:
        """Add a running saga.

        Raises:
            SagaAlreadyRunningError: its correlation id is already registered.
        """
        current = self._running.get(entry.correlation_id)
        if current is not None:
            raise SagaAlreadyRunningError(entry.correlation_id, current.pid)
        self._running[entry.correlation_id] = entry
        self._by_monitor[entry.monitor] = entry.correlation_id
        self._peak = max(self._peak, len(self._running))

    def unregister(self, correlation_id: str, ended: Ended) -> Entry:
        """Remove a running saga and remember how it ended; returns its entry.

        Raises:
            UnknownSagaError: no saga with that id is registered.
        """
        entry = self._running.pop(correlation_id, None)
        if entry is None:
            raise UnknownSagaError(correlation_id)
        del self._by_monitor[entry.monitor]
        if self.max_recent:
            self._recent.pop(correlation_id, None)
            self._recent[correlation_id] = ended
            while len(self._recent) > self.max_recent:
                self._recent.popitem(last=False)
        return entry

    def lookup(self, correlation_id: str) -> Entry | None:
        """The running saga registered under ``correlation_id``, or None."""
        return self._running.get(correlation_id)

    def by_monitor(self, ref: Ref) -> Entry | None:
        """The running saga whose process is watched by monitor ``ref``, or None."""
        correlation_id = self._by_monitor.get(ref)
        return None if correlation_id is None else self._running[correlation_id]

    def recent(self, correlation_id: str) -> Ended | None:
        """How the saga last registered under ``correlation_id`` ended, while cached."""
        return self._recent.get(correlation_id)

    def __iter__(self) -> Iterator[Entry]:
        """Running sagas, oldest registration first."""
        return iter(list(self._running.values()))

    def __len__(self) -> int:
        return len(self._running)

    def __contains__(self, correlation_id: object) -> bool:
        return correlation_id in self._running

    def statistics(self) -> SagaRegistryStatistics:
        """A :class:`SagaRegistryStatistics` snapshot."""
        return SagaRegistryStatistics(
            running=len(self._running),
            peak_running=self._peak,
            awaiting=sum(len(e.waiters) for e in self._running.values()),
            recent=len(self._recent),
            max_recent=self.max_recent,
        )

    def __repr__(self) -> str:
        return f"<SagaRegistry running={len(self._running)} recent={len(self._recent)}>"
