"""C-N* (registered names)."""

from __future__ import annotations

import anyio
import pytest

import thunderline.runtime as tl
from process_helpers import agent, do, in_process, wait_down

pytestmark = pytest.mark.anyio


async def test_c_n1_register_errors_for_taken_name_and_second_name(anyio_backend: str) -> None:
    async def main() -> None:
        a, b = tl.spawn(agent), tl.spawn(agent)
        tl.register("alpha", a)
        with pytest.raises(tl.NameTakenError) as taken:
            tl.register("alpha", b)
        assert taken.value.holder == a
        assert "alpha" in str(taken.value)
        with pytest.raises(tl.NameTakenError):
            tl.register("alpha", a)  # even the holder itself
        with pytest.raises(tl.AlreadyNamedError) as named:
            tl.register("beta", a)
        assert named.value.current_name == "alpha"
        assert named.value.requested == "beta"
        assert tl.whereis("alpha") == a
        assert tl.whereis("beta") is None
        assert "alpha" in tl.registered()

    async with tl.open_node():
        await in_process(main)


async def test_c_n2_dead_pid_unknown_name_and_whereis(anyio_backend: str) -> None:
    async def main() -> None:
        dead, ref = tl.spawn_monitor(agent)
        tl.exit(dead, tl.KILL)
        await wait_down(ref)
        with pytest.raises(tl.NoProcessError):
            tl.register("gamma", dead)
        with pytest.raises(tl.NameNotRegisteredError) as unknown:
            tl.unregister("gamma")
        assert unknown.value.name == "gamma"
        assert tl.whereis("gamma") is None
        with pytest.raises(tl.InvalidNameError):
            tl.register("undefined")

    async with tl.open_node():
        await in_process(main)


async def test_c_n3_death_unregisters_before_the_down(anyio_backend: str) -> None:
    async def main() -> tuple[object, object]:
        pid, ref = tl.spawn_monitor(agent)
        await do(pid, lambda: tl.register("delta"))
        tl.exit(pid, "boom")
        await wait_down(ref)
        seen = tl.whereis("delta")
        tl.register("delta")  # free again at once
        return seen, tl.whereis("delta") == tl.current_pid()

    async with tl.open_node():
        assert await in_process(main) == (None, True)


async def test_c_n4_send_to_unknown_name_raises_to_dead_pid_is_silent(anyio_backend: str) -> None:
    async def main() -> None:
        with pytest.raises(tl.NameNotRegisteredError) as info:
            tl.send("nobody", "hello")
        assert info.value.name == "nobody"
        assert "nobody" in str(info.value)
        dead, ref = tl.spawn_monitor(agent)
        tl.exit(dead, tl.KILL)
        await wait_down(ref)
        tl.send(dead, "hello")  # no error

    async with tl.open_node():
        await in_process(main)


async def test_c_n5_start_under_a_taken_name_reports_the_holder(anyio_backend: str) -> None:
    """The name-taken case of C-N5 (``via`` registries are the Registry's part)."""
    inits: list[str] = []

    class Named(tl.Server[None]):
        async def init(self, *args: object) -> tl.Ok[None]:
            inits.append("init")
            return tl.Ok(None)

    async def main() -> tuple[tl.Pid, tl.Pid | None]:
        first = await tl.start(Named, name="epsilon")
        assert first is not None
        with pytest.raises(tl.AlreadyStartedError) as info:
            await tl.start(Named, name="epsilon")
        return first, info.value.pid

    async with tl.open_node():
        first, holder = await in_process(main)
    assert holder == first
    assert inits == ["init"]  # the second start never ran init


async def test_any_process_may_unregister_any_name(anyio_backend: str) -> None:
    async def main() -> bool:
        pid = tl.spawn(agent)
        tl.register("zeta", pid)
        tl.unregister("zeta")
        await anyio.wait_all_tasks_blocked()
        info = tl.process_info(pid)
        assert info is not None
        return info.registered_name is None and tl.whereis("zeta") is None

    async with tl.open_node():
        assert await in_process(main)
