"""Fixtures for the daemon tests: subprocess daemons that are always killed."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from daemon_helpers import Daemon


@pytest.fixture
def daemon_factory() -> Iterator[Callable[..., Daemon]]:
    """Make daemons (not started); every one is killed at teardown if still running."""
    made: list[Daemon] = []

    def make(*args: str, **kwargs: object) -> Daemon:
        daemon = Daemon(*args, **kwargs)  # type: ignore[arg-type]
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.close()
