"""Errors of the node itself: spawning on a closed node, an unsupported event loop."""

from __future__ import annotations

import pytest

import thunderline.runtime as tl

pytestmark = pytest.mark.anyio


async def _idle() -> None:
    await tl.receive("never")


async def test_spawn_on_a_closed_node_names_the_node(anyio_backend: str) -> None:
    async with tl.open_node() as node:
        pid = node.spawn(_idle, (), parent=None, link=False, monitor=False, trap_exit=False)[0]
        assert tl.is_alive(pid)
    with pytest.raises(tl.NodeClosingError) as info:
        node.spawn(_idle, (), parent=None, link=False, monitor=False, trap_exit=False)
    assert info.value.node_id == node.id
    assert info.value.operation == "spawn"
    assert f"node {node.id} is shutting down" in str(info.value)


def test_unsupported_backend_error_names_the_library() -> None:
    error = tl.UnsupportedBackendError("curio")
    assert error.library == "curio"
    assert "asyncio or trio, not 'curio'" in str(error)
    assert isinstance(error, tl.ThunderlineError)
