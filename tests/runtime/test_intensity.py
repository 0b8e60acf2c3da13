"""Restart intensity: OTP's ``add_restart`` as a pure function, checked against a naive model."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from thunderline.runtime import RestartDecision, add_restart
from thunderline.runtime._intensity import RestartWindow


def naive(history: list[int], intensity: int, period: int) -> list[bool]:
    """For each restart of ``history``: did the supervisor give up there?

    The model remembers every restart and counts, at each one, those within
    ``period`` seconds before it, inclusive.
    """
    outcomes = []
    for index, now in enumerate(history):
        in_window = [t for t in history[: index + 1] if t >= now - period]
        outcomes.append(len(in_window) > intensity)
    return outcomes


@given(
    gaps=st.lists(st.integers(min_value=0, max_value=8), max_size=40),
    intensity=st.integers(min_value=0, max_value=6),
    period=st.integers(min_value=1, max_value=10),
)
def test_add_restart_agrees_with_the_naive_model(
    gaps: list[int], intensity: int, period: int
) -> None:
    history = list(itertools.accumulate(gaps))
    expected = naive(history, intensity, period)
    restarts: tuple[int, ...] = ()
    for now, give_up in zip(history, expected, strict=True):
        decision = add_restart(restarts, now, intensity=intensity, period=period)
        assert decision.give_up is give_up
        assert decision.restarts[0] == now
        assert all(now - period <= t <= now for t in decision.restarts)
        restarts = decision.restarts


@given(
    gaps=st.lists(st.integers(min_value=0, max_value=8), max_size=40),
    intensity=st.integers(min_value=0, max_value=6),
    period=st.integers(min_value=1, max_value=10),
)
def test_restart_window_agrees_with_add_restart(
    gaps: list[int], intensity: int, period: int
) -> None:
    """The supervisor's O(1) window keeps the same stamps and gives up at the same restart."""
    window = RestartWindow(intensity, period)
    restarts: tuple[int, ...] = ()
    for now in itertools.accumulate(gaps):
        decision = add_restart(restarts, now, intensity=intensity, period=period)
        assert window.add(now) is decision.give_up
        assert window.newest_first() == decision.restarts
        assert len(window) == len(decision.restarts)
        restarts = decision.restarts


def test_window_boundary_is_inclusive() -> None:
    assert add_restart((10,), 15, intensity=1, period=5) == RestartDecision((15, 10), True)
    assert add_restart((10,), 16, intensity=1, period=5) == RestartDecision((16,), False)


def test_intensity_zero_gives_up_at_the_first_restart() -> None:
    assert add_restart((), 0, intensity=0, period=5).give_up


def test_restarts_of_one_second_count_together() -> None:
    decision = add_restart((7, 7), 7, intensity=2, period=1)
    assert decision == RestartDecision((7, 7, 7), True)
