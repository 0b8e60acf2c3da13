"""SagaRegistry, the data structure inside the saga supervisor: uniqueness and the bounded cache."""

from __future__ import annotations

from typing import Any

import pytest

from thunderline.sagas import SagaAlreadyRunningError, UnknownSagaError
from thunderline.sagas._registry import Ended, Entry, SagaRegistry


def entry(cid: str, pid: Any = None, ref: Any = None) -> Entry:
    # Pids, refs and runs are opaque to the registry; stand-ins keep this test synchronous.
    return Entry(
        correlation_id=cid,
        pid=pid or f"pid-{cid}",
        monitor=ref or f"ref-{cid}",
        run=None,  # type: ignore[arg-type]
        started_at=0.0,
    )


def test_a_correlation_id_is_registered_at_most_once() -> None:
    registry = SagaRegistry()
    registry.register(entry("a"))
    with pytest.raises(SagaAlreadyRunningError) as caught:
        registry.register(entry("a", pid="other"))
    assert (caught.value.correlation_id, caught.value.pid) == ("a", "pid-a")
    assert registry.lookup("a") is not None
    assert registry.by_monitor("ref-a") is registry.lookup("a")
    assert "a" in registry
    assert len(registry) == 1


def test_unregister_moves_the_end_to_the_recent_cache() -> None:
    registry = SagaRegistry()
    registry.register(entry("a"))
    ended = Ended(None, "boom")
    removed = registry.unregister("a", ended)
    assert removed.correlation_id == "a"
    assert registry.lookup("a") is None
    assert registry.by_monitor("ref-a") is None
    assert registry.recent("a") is ended
    with pytest.raises(UnknownSagaError) as caught:
        registry.unregister("a", ended)
    assert caught.value.correlation_id == "a"
    registry.register(entry("a"))  # the id is free again


def test_recent_cache_evicts_the_oldest_end() -> None:
    registry = SagaRegistry(max_recent=2)
    for cid in ("a", "b", "c", "a", "d"):
        registry.register(entry(cid))
        registry.unregister(cid, Ended(None, cid))
    assert registry.recent("b") is None
    assert registry.recent("c") is None  # "a" ended again after "c": "c" was the oldest
    assert [registry.recent(cid) is not None for cid in ("a", "d")] == [True, True]
    stats = registry.statistics()
    assert (stats.running, stats.peak_running, stats.recent, stats.max_recent) == (0, 1, 2, 2)


def test_cache_can_be_disabled_and_bound_is_checked() -> None:
    registry = SagaRegistry(max_recent=0)
    registry.register(entry("a"))
    registry.unregister("a", Ended(None, "x"))
    assert registry.recent("a") is None
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="max_recent"):
            SagaRegistry(max_recent=bad)  # type: ignore[arg-type]


def test_iteration_is_in_registration_order_and_counts_waiters() -> None:
    registry = SagaRegistry()
    for cid in ("b", "a", "c"):
        registry.register(entry(cid))
    assert [e.correlation_id for e in registry] == ["b", "a", "c"]
    registry.lookup("a").waiters.append(object())  # type: ignore[union-attr, arg-type]
    assert registry.statistics().awaiting == 1
    assert registry.statistics().peak_running == 3
