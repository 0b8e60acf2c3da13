"""Shared pytest configuration: every async test runs on asyncio and on trio."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

# No per-example deadlines: the suite runs on loaded 2-core machines, and a
# slow example is not a failure (tests assert no timing).
settings.register_profile(
    "thunderline", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("thunderline")


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
