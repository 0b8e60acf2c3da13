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

import attrs

__all__ = ["RestartDecision", "add_restart", "restart_stamp"]


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
