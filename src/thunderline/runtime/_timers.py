"""One timer facility per node: a heap of deadlines behind a single native timer.

Every timeout of the runtime (a ``receive`` or ``call`` with a timeout, a
``send_after`` timer, hibernation's idle timer) is an entry here instead of a
native timer or a task of its own. The algorithm:

* :meth:`Timers.schedule` pushes ``[deadline, seq, callback, arg]`` on a binary
  heap (``seq`` breaks ties in scheduling order). Only when the new deadline is
  earlier than the one the native timer is armed for does it re-arm the
  native timer (``arm(deadline)``, given by the backend): a steady stream of
  calls with the same 5 s timeout arms it once, not once per call.
* :meth:`Timers.cancel` marks the entry dead (``callback = None``) and then pops
  dead entries off the top of the heap. A request/reply exchange cancels its
  timeout before the next one is scheduled, so the heap stays at one entry.
  When dead entries buried under live ones outnumber the live ones, the heap
  is rebuilt without them (amortised O(1) per cancel, bounded memory).
* :meth:`Timers.fire` (the native timer went off, at loop time ``now``) pops and
  runs every entry whose deadline has passed, then re-arms for the new top.
  A native timer that goes off early or for a dead entry just re-arms.

Callbacks run synchronously on the event loop (in the node's timer task on
trio); they must not block or raise. A raising callback is logged.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable
from typing import Any, Final

__all__ = ["EXPIRED", "Timers"]

logger: Final = logging.getLogger("thunderline.runtime")

#: What a parked wait resumes with when its deadline passed (see the backends' ``park``).
EXPIRED: Final[Any] = object()

#: A heap entry: [deadline, seq, callback or None when cancelled, arg].
Entry = list[Any]


class Timers:
    """Deadlines of one node, multiplexed onto one native timer armed through ``arm``."""

    __slots__ = ("_arm", "_armed", "_dead", "_heap", "_seq")

    def __init__(self, arm: Callable[[float], None]) -> None:
        self._arm = arm
        self._heap: list[Entry] = []
        self._seq = 0
        self._dead = 0
        self._armed = math.inf

    def __len__(self) -> int:
        """Live entries."""
        return len(self._heap) - self._dead

    @property
    def armed(self) -> float:
        """The deadline the native timer is armed for (``inf``: not armed)."""
        return self._armed

    def schedule(self, deadline: float, callback: Callable[[Any], None], arg: Any) -> Entry:
        """Run ``callback(arg)`` once the loop clock reaches ``deadline``; returns the entry."""
        self._seq += 1
        entry = [deadline, self._seq, callback, arg]
        heapq.heappush(self._heap, entry)
        if deadline < self._armed:
            self._armed = deadline
            self._arm(deadline)
        return entry

    def cancel(self, entry: Entry) -> None:
        """Cancel ``entry`` (idempotent; a fired entry is already dead)."""
        if entry[2] is None:
            return
        entry[2] = None
        entry[3] = None
        heap = self._heap
        if heap[0] is entry:
            heapq.heappop(heap)
            while heap and heap[0][2] is None:
                heapq.heappop(heap)
                self._dead -= 1
            return
        self._dead += 1
        if self._dead > 32 and self._dead * 2 > len(heap):
            self._heap = [item for item in heap if item[2] is not None]
            heapq.heapify(self._heap)
            self._dead = 0

    def fire(self, now: float) -> None:
        """Run every entry due at ``now``, then re-arm for the earliest one left."""
        heap = self._heap
        self._armed = math.inf
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            callback = entry[2]
            if callback is None:
                self._dead -= 1
                continue
            arg = entry[3]
            entry[2] = None
            entry[3] = None
            try:
                callback(arg)
            except Exception:
                logger.exception("timer callback %r failed", callback)
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
            self._dead -= 1
        if heap:
            self._armed = heap[0][0]
            self._arm(self._armed)

    def clear(self) -> None:
        """Drop every entry (the node is closing)."""
        for entry in self._heap:
            entry[2] = None
            entry[3] = None
        self._heap.clear()
        self._dead = 0
