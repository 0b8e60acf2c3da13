"""open_application / resolve_application on both backends, in process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import anyio
import daemon_example_app as example
import pytest

import thunderline.runtime as tl
from thunderline._daemon import (
    ApplicationExitedError,
    ApplicationSpecError,
    ApplicationStartError,
    TreeNode,
    open_application,
)
from thunderline.runtime._introspect import node_statistics, process_table, supervision_tree

pytestmark = pytest.mark.anyio


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def lines() -> Iterator[list[str]]:
    handler = _Lines()
    for name in ("example", "thunderline.supervisor"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)
    yield handler.lines
    for name in ("example", "thunderline.supervisor"):
        logging.getLogger(name).removeHandler(handler)
        logging.getLogger(name).setLevel(logging.NOTSET)


async def _in_process(fn: Any) -> Any:
    box: dict[str, Any] = {}
    done = anyio.Event()

    async def runner() -> None:
        try:
            box["value"] = await fn()
        finally:
            done.set()

    tl.spawn(runner)
    with anyio.fail_after(10):
        await done.wait()
    return box["value"]


async def test_starts_tree_and_stops_newest_first(anyio_backend: str, lines: list[str]) -> None:
    async with open_application(example.application) as app:
        assert tl.whereis("example") == app.pid
        tree: TreeNode = await _in_process(lambda: supervision_tree(app.pid, top_spec=app.spec))
        assert [c.id for c in tree.children] == ["alpha", "inner", "beta"]
        assert [c.id for c in tree.children[1].children] == ["gamma", "delta"]
        stats = node_statistics(process_table(), tree)
        assert (stats.supervisors, stats.workers) == (2, 4)
    stopped = [line.split()[2] for line in lines if line.endswith("terminating: SHUTDOWN")]
    assert stopped == ["beta", "delta", "gamma", "alpha"]
    assert app.exit_reason == tl.SHUTDOWN


async def test_counts_restarts_of_crashed_child(anyio_backend: str, lines: list[str]) -> None:
    async with open_application(example.application) as app:
        before = tl.whereis("beta")
        assert before is not None
        tl.cast("beta", "crash")

        async def restarted() -> tl.Pid:
            while (pid := tl.whereis("beta")) in (None, before):
                await anyio.sleep(0.01)
            assert pid is not None
            return pid

        with anyio.fail_after(10):
            await restarted()
        assert app.restart_counts() == {(app.pid, "beta"): 1}
        tree = await _in_process(
            lambda: supervision_tree(app.pid, restart_counts=app.restart_counts())
        )
        assert [c.restarts for c in tree.children] == [0, 0, 1]
        assert tree.window_restarts == 1


async def test_joins_a_running_node(anyio_backend: str) -> None:
    async with tl.open_node():
        async with open_application(example.supervisor_instance()) as app:
            assert app.id == "pair"
            assert tl.is_alive(app.pid)
        assert not tl.is_alive(app.pid)
        assert tl.whereis("one") is None


async def test_async_factory(anyio_backend: str) -> None:
    async def factory() -> tl.ChildSpec:
        await anyio.lowlevel.checkpoint()
        return tl.supervisor_spec("made", [example.worker_spec("solo")])

    async with open_application(factory) as app:
        assert app.id == "made"
        assert tl.whereis("solo") is not None


async def test_top_supervisor_giving_up_cancels_body(anyio_backend: str) -> None:
    spec = tl.supervisor_spec("fragile", [example.worker_spec("victim")], intensity=0)
    seen: list[tl.Pid] = []

    async def body() -> None:
        async with open_application(spec) as app:
            seen.append(app.pid)
            tl.cast("victim", "crash")
            await anyio.sleep_forever()
            seen.append(app.pid)  # never reached: the body is cancelled

    with pytest.raises(ApplicationExitedError) as caught:
        await body()
    assert caught.value.pid == seen[0]
    assert len(seen) == 1
    assert caught.value.reason == tl.SHUTDOWN
    assert "fragile" in str(caught.value)


async def test_stop_inside_the_block(anyio_backend: str) -> None:
    async with open_application(example.supervisor_instance()) as app:
        assert await app.stop() == tl.SHUTDOWN
        assert app.stopping
        assert not tl.is_alive(app.pid)


@pytest.mark.parametrize(
    "spec",
    [42, "module:attr", lambda required: None, lambda: 42],
    ids=["int", "str", "args", "ret"],
)
async def test_bad_specs_name_what_was_received(anyio_backend: str, spec: Any) -> None:
    async def body() -> None:
        async with open_application(spec):
            pytest.fail("the body must not run")

    with pytest.raises(ApplicationSpecError) as caught:
        await body()
    assert "a ChildSpec, a Supervisor instance" in str(caught.value)
    assert "received" in str(caught.value)


async def test_failed_start(anyio_backend: str) -> None:
    async def broken() -> tl.Pid | None:
        raise OSError("port in use")

    spec = tl.supervisor_spec("app", [tl.ChildSpec(id="net", start=broken)])

    async def body() -> None:
        async with open_application(spec):
            pytest.fail("the body must not run")

    with pytest.raises(ApplicationStartError) as caught:
        await body()
    assert caught.value.id == "app"
    assert "port in use" in str(caught.value)
