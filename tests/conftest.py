"""Shared pytest configuration: every async test runs on asyncio and on trio."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings

# No per-example deadlines: the suite runs on loaded 2-core machines, and a
# slow example is not a failure (tests assert no timing).
settings.register_profile(
    "thunderline", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("thunderline")


def _bytecode_cache_for_subprocesses() -> str | None:
    """With ``PYTHONDONTWRITEBYTECODE`` set, let the tests' subprocesses share one bytecode cache.

    The suite starts a few hundred Python subprocesses (``thunderline run``,
    the CLI, crash workers). With no ``__pycache__`` to read, each of them
    compiles every module it imports again (about 0.1 s of CPU apiece). Instead
    of writing into the source tree, which the variable asks not to do, they
    share a private cache directory (``PYTHONPYCACHEPREFIX``) that lives as
    long as the test run. Returns that directory when this process made it.
    """
    if not os.environ.get("PYTHONDONTWRITEBYTECODE") or os.environ.get("PYTHONPYCACHEPREFIX"):
        return None
    prefix = tempfile.mkdtemp(prefix="tl-pycache-")
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    return prefix


# At import, before pytest-xdist starts its workers: they inherit the setting.
_PYCACHE_PREFIX = _bytecode_cache_for_subprocesses()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _PYCACHE_PREFIX is not None:
        shutil.rmtree(_PYCACHE_PREFIX, ignore_errors=True)


#: Test modules that start subprocesses or run for seconds (measured with
#: ``--durations``). They are collected first, so that under pytest-xdist
#: (``make test``) the long tests start early and the workers finish together.
#: The order changes nothing else: tests share no state across modules.
SLOW_FIRST = (
    "tests/durability/test_crash_recovery.py",
    "tests/daemon/test_daemon_operator.py",
    "tests/test_benchmarks_smoke.py",
    "tests/daemon/test_daemon_hardening.py",
    "tests/daemon/test_daemon_process.py",
    "tests/conformance/test_distribution_conformance.py",
    "tests/test_readme.py",
    "tests/daemon/test_daemon_telemetry.py",
    "tests/sagas/test_saga_crash_recovery.py",
    "tests/conformance/test_process_conformance.py",
    "tests/domains/test_cli_ledger.py",
    "tests/daemon/test_cli_errors.py",
    "tests/domains/test_demo_cli.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(SLOW_FIRST)}

    def key(item: pytest.Item) -> int:
        return rank.get(item.nodeid.split("::", 1)[0], len(SLOW_FIRST))

    items.sort(key=key)  # stable: each module's tests keep their order


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
