"""Elixir-style Registry: unique and duplicate keys, dispatch, cleanup when owners end."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import thunderline.runtime as tl

pytestmark = pytest.mark.anyio


async def _owner(registry: tl.Registry, keys: list[Any], ready: anyio.Event) -> None:
    for key in keys:
        registry.register(key, f"value-{key}")
    ready.set()
    await tl.receive("stop")


async def test_unique_key_taken_names_holder(anyio_backend: str) -> None:
    registry = tl.Registry(keys="unique", name="workers")
    async with tl.open_node():
        ready = anyio.Event()
        owner = tl.spawn(_owner, registry, ["a"], ready)
        await ready.wait()
        errors: list[BaseException] = []
        done = anyio.Event()

        async def contender() -> None:
            try:
                registry.register("a")
            except tl.KeyTakenError as exc:
                errors.append(exc)
            done.set()

        tl.spawn(contender)
        with anyio.fail_after(10):
            await done.wait()
        assert len(errors) == 1
        error = errors[0]
        assert isinstance(error, tl.KeyTakenError)
        assert error.holder == owner
        assert error.key == "a"
        assert "workers" in str(error)
        assert repr(owner) in str(error)
        assert registry.whereis("a") == owner
        tl.send(owner, "stop")


async def test_entries_removed_before_down_is_delivered(anyio_backend: str) -> None:
    """As for registered names (OTP "directly visible resources"), entries go before Down."""
    registry = tl.Registry(keys="duplicate")
    seen: list[Any] = []
    finished = anyio.Event()

    async def watcher(ready: anyio.Event) -> None:
        owner_ready = anyio.Event()
        owner = tl.spawn(_owner, registry, ["news", "news", "sport"], owner_ready)
        await owner_ready.wait()
        seen.append(registry.lookup("news"))
        seen.append(registry.keys(owner))
        ref = tl.monitor(owner)
        ready.set()
        tl.send(owner, "stop")
        await tl.receive(lambda m: isinstance(m, tl.Down) and m.ref == ref)
        seen.append(registry.lookup("news"))
        seen.append(registry.statistics())
        finished.set()

    async with tl.open_node():
        ready = anyio.Event()
        tl.spawn(watcher, ready)
        with anyio.fail_after(10):
            await finished.wait()
    news, keys, after, stats = seen
    assert [value for _, value in news] == ["value-news", "value-news"]
    assert keys == ["news", "sport"]
    assert after == []
    assert stats == tl.RegistryStatistics(keys=0, entries=0, owners=0)


async def test_dispatch_is_local_pubsub(anyio_backend: str) -> None:
    registry = tl.Registry(keys="duplicate", name="topics")
    got: list[Any] = []
    all_done = anyio.Event()

    async def subscriber(topic: str, ready: anyio.Event) -> None:
        registry.register(topic, tl.current_pid())
        ready.set()
        message = await tl.receive()
        got.append((topic, message))
        if len(got) == 2:
            all_done.set()

    async with tl.open_node():
        readies = [anyio.Event() for _ in range(3)]
        tl.spawn(subscriber, "news", readies[0])
        tl.spawn(subscriber, "news", readies[1])
        tl.spawn(subscriber, "sport", readies[2])
        for ready in readies:
            await ready.wait()
        assert registry.dispatch("weather", lambda entries: None) is False
        dispatched = registry.dispatch(
            "news", lambda entries: [tl.send(pid, "headline") for pid, _ in entries]
        )
        assert dispatched is True
        with anyio.fail_after(10):
            await all_done.wait()
        assert got == [("news", "headline"), ("news", "headline")]
        for pid in tl.processes():
            tl.exit(pid, tl.KILL)


async def test_update_value_and_unregister(anyio_backend: str) -> None:
    registry = tl.Registry()
    results: list[Any] = []
    done = anyio.Event()

    async def owner() -> None:
        registry.register("counter", 1)
        results.append(registry.update_value("counter", lambda old: old + 1))
        results.append(registry.values("counter", tl.current_pid()))
        registry.unregister("counter")
        results.append(registry.lookup("counter"))
        try:
            registry.update_value("counter", lambda old: old)
        except LookupError as exc:
            results.append(type(exc))
        done.set()

    async with tl.open_node():
        tl.spawn(owner)
        with anyio.fail_after(10):
            await done.wait()
    assert results == [(2, 1), [2], [], LookupError]


async def test_bad_inputs(anyio_backend: str) -> None:
    with pytest.raises(ValueError, match="unique' or 'duplicate"):
        tl.Registry(keys="many")  # type: ignore[arg-type]
    registry = tl.Registry()
    async with tl.open_node():
        with pytest.raises(tl.NotInProcessError, match=r"Registry.register"):
            registry.register("k")
        errors: list[type[BaseException]] = []
        done = anyio.Event()

        async def proc() -> None:
            try:
                registry.register(["unhashable"])
            except TypeError as exc:
                errors.append(type(exc))
            dup = tl.Registry(keys="duplicate")
            dup.register("k", 1)
            try:
                dup.update_value("k", lambda v: v)
            except TypeError as exc:
                errors.append(type(exc))
            done.set()

        tl.spawn(proc)
        with anyio.fail_after(10):
            await done.wait()
    assert errors == [TypeError, TypeError]
