"""Bad input: each misuse raises its specific, documented exception naming the culprit."""

from __future__ import annotations

import math

import pytest

import thunderline.runtime as tl
from process_helpers import in_process

pytestmark = pytest.mark.anyio


async def test_send_to_a_non_pid_non_name(anyio_backend: str) -> None:
    async with tl.open_node():
        for bad in (42, None, ("alpha", "node"), b"alpha"):
            with pytest.raises(tl.InvalidDestinationError) as info:
                tl.send(bad, "hello")  # type: ignore[arg-type]
            assert info.value.target == bad
            assert info.value.operation == "send"
            assert type(bad).__name__ in str(info.value)
            assert isinstance(info.value, TypeError)


async def test_register_a_non_string_name(anyio_backend: str) -> None:
    async def main() -> None:
        for bad in (42, None, "", ("a",)):
            with pytest.raises(tl.InvalidNameError) as info:
                tl.register(bad)  # type: ignore[arg-type]
            assert info.value.name == bad
            assert isinstance(info.value, tl.RegistrationError)

    async with tl.open_node():
        await in_process(main)


@pytest.mark.parametrize("timeout", [-1, -0.001, math.nan, "soon", True])
async def test_bad_receive_timeouts(anyio_backend: str, timeout: object) -> None:
    async def main() -> None:
        with pytest.raises(tl.InvalidTimeoutError) as info:
            await tl.receive(timeout=timeout)  # type: ignore[arg-type]
        assert info.value.operation == "receive"
        assert repr(timeout) in str(info.value)

    async with tl.open_node():
        await in_process(main)


@pytest.mark.parametrize("delay", [-1, math.nan, math.inf])
async def test_bad_send_after_delays(anyio_backend: str, delay: float) -> None:
    async with tl.open_node():
        with pytest.raises(tl.InvalidTimeoutError) as info:
            tl.send_after(delay, "anyone", "x")
        assert info.value.operation == "send_after"


async def test_bad_call_timeout(anyio_backend: str) -> None:
    async def main() -> None:
        with pytest.raises(tl.InvalidTimeoutError):
            await tl.call("anyone", "req", timeout=-5)

    async with tl.open_node():
        await in_process(main)


@pytest.mark.parametrize("operation", ["link", "unlink", "exit"])
async def test_link_unlink_exit_to_garbage(anyio_backend: str, operation: str) -> None:
    async def main() -> None:
        for bad in ("alpha", 3, None):
            args = (bad, "boom") if operation == "exit" else (bad,)
            with pytest.raises(tl.InvalidDestinationError) as info:
                getattr(tl, operation)(*args)
            assert info.value.operation == operation
            assert info.value.target == bad

    async with tl.open_node():
        await in_process(main)


async def test_monitor_and_demonitor_garbage(anyio_backend: str) -> None:
    async def main() -> None:
        with pytest.raises(tl.InvalidDestinationError):
            tl.monitor(12)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            tl.demonitor("not a ref")  # type: ignore[arg-type]

    async with tl.open_node():
        await in_process(main)


async def test_process_operations_outside_a_process(anyio_backend: str) -> None:
    async with tl.open_node():
        with pytest.raises(tl.NotInProcessError) as info:
            await tl.receive()
        assert info.value.operation == "receive"
        with pytest.raises(tl.NotInProcessError):
            tl.trap_exit(True)
        with pytest.raises(tl.NotInProcessError):
            tl.current_pid()


async def test_no_node(anyio_backend: str) -> None:
    with pytest.raises(tl.NoNodeError) as info:
        tl.whereis("alpha")
    assert info.value.operation == "whereis"


async def test_trap_exit_needs_a_bool(anyio_backend: str) -> None:
    async def main() -> None:
        with pytest.raises(TypeError):
            tl.trap_exit(1)  # type: ignore[arg-type]

    async with tl.open_node():
        await in_process(main)


async def test_spawn_needs_a_callable(anyio_backend: str) -> None:
    async with tl.open_node():
        with pytest.raises(TypeError):
            tl.spawn("not callable")  # type: ignore[arg-type]
