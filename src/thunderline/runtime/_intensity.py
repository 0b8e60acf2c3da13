"""Restart intensity: OTP's ``add_restart`` as a pure function.

A supervisor remembers when it restarted children. Each restart is stamped
with the event loop's clock in **whole seconds** (OTP uses
``erlang:monotonic_time(second)``); stamps older than ``now - period`` are
forgotten (the boundary is inclusive); if more than ``intensity`` remain, the
supervisor gives up. So with the defaults (intensity 1, period 5 s) a second
restart within about five seconds shuts the supervisor down, and intensity 0
means the first restart already does.

We keep Erlang's defaults (1 restart in 5 s) rather than Elixir's (3 in 5 s):
a supervisor that gives up early escalates to its parent, which is OTP's
design, and the conformance corpus was recorded with Erlang's defaults.
"""

from __future__ import annotations

import math
from collections import deque

import attrs

__all__ = ["RestartDecision", "RestartWindow", "add_restart", "restart_stamp"]


@attrs.frozen
class RestartDecision:
    """The outcome of :func:`add_restart`.

    Attributes:
        restarts: the stamps to keep, newest first (the new one included).
        give_up: True when the restart exceeds the intensity.
    """

    restarts: tuple[int, ...]
    give_up: bool


def restart_stamp(now: float) -> int:
    """The whole-second stamp of a restart happening at loop time ``now``."""
    return math.floor(now)


def add_restart(
    restarts: tuple[int, ...], now: int, *, intensity: int, period: float
) -> RestartDecision:
    """Record a restart at second ``now`` and decide whether the supervisor gives up.

    Args:
        restarts: earlier stamps, newest first.
        now: the current whole-second stamp.
        intensity: restarts allowed within the window (>= 0).
        period: the window in seconds (> 0).

    Returns:
        The stamps to keep (newest first) and whether to give up.
    """
    threshold = now - period
    kept = (now, *(stamp for stamp in restarts if stamp >= threshold))
    return RestartDecision(restarts=kept, give_up=len(kept) > intensity)


class RestartWindow:
    """:func:`add_restart` in O(1) amortised per restart, for the supervisor's own use.

    The stamps come from a monotonic clock, so they are non-decreasing: the
    ones older than the window are always at the old end of a deque, and
    dropping them from there keeps exactly what :func:`add_restart`'s filter
    keeps (``tests/runtime/test_intensity.py`` checks the two agree).
    """

    __slots__ = ("_stamps", "intensity", "period")

    def __init__(self, intensity: int, period: float) -> None:
        self.intensity = intensity
        self.period = period
        self._stamps: deque[int] = deque()

    def __len__(self) -> int:
        """Restarts in the window as of the last :meth:`add`."""
        return len(self._stamps)

    def add(self, now: int) -> bool:
        """Record a restart at second ``now``; True when the supervisor gives up."""
        stamps = self._stamps
        stamps.append(now)
        threshold = now - self.period
        while stamps[0] < threshold:
            stamps.popleft()
        return len(stamps) > self.intensity

    def newest_first(self) -> tuple[int, ...]:
        """The stamps kept, newest first (as :func:`add_restart` returns them)."""
        return tuple(reversed(self._stamps))
