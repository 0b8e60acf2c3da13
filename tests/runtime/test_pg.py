"""Process groups as OTP's pg: joins, leaves, deaths, monitors, scopes, the distribution seam."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thunderline.runtime as tl
from process_helpers import BOUND, agent, do, drain, in_process, wait_down

pytestmark = pytest.mark.anyio


async def test_join_leave_members_and_several_joins(anyio_backend: str) -> None:
    async def main() -> Any:
        me = tl.current_pid()
        other = tl.spawn(agent)
        tl.pg_join("g")
        tl.pg_join("g", [me, other])
        tl.pg_join("h", other)
        before = (sorted(tl.pg_members("g")), tl.pg_local_members("h"), tl.pg_which_groups())
        left = [tl.pg_leave("g"), tl.pg_leave("g"), tl.pg_leave("g")]
        return me, other, before, left, tl.pg_members("g")

    async with tl.open_node():
        me, other, before, left, after = await in_process(main)
    assert before == (sorted([me, me, other]), [other], ["g", "h"])
    assert left == [True, True, False]
    assert after == [other]


async def test_dead_members_are_gone_before_down_arrives(anyio_backend: str) -> None:
    async def main() -> Any:
        pid, ref = tl.spawn_monitor(agent)
        tl.pg_join("g", [pid, pid])
        tl.pg_join("g", pid, scope="other")
        mon, members = tl.pg_monitor("g")
        tl.exit(pid, tl.KILL)
        await wait_down(ref)
        in_default, in_other = tl.pg_members("g"), tl.pg_members("g", scope="other")
        notes = drain()
        return pid, mon, members, in_default, in_other, notes

    async with tl.open_node():
        pid, mon, members, in_default, in_other, notes = await in_process(main)
    assert members == [pid, pid]
    assert in_default == []
    assert in_other == []
    assert notes == [tl.GroupLeave(mon, "g", (pid, pid))]


async def test_scope_monitor_sees_joins_and_leaves_until_demonitor(anyio_backend: str) -> None:
    async def main() -> Any:
        worker = tl.spawn(agent)
        tl.pg_join("a", worker, scope="s")
        ref, snapshot = tl.pg_monitor_scope(scope="s")
        tl.pg_join("b", worker, scope="s")
        tl.pg_leave("a", worker, scope="s")
        tl.pg_join("c", worker)  # another scope: not seen
        first = drain()
        assert tl.pg_demonitor(ref, scope="s")
        tl.pg_join("d", worker, scope="s")
        return worker, ref, snapshot, first, drain(), tl.pg_demonitor(ref, scope="s")

    async with tl.open_node():
        worker, ref, snapshot, first, later, again = await in_process(main)
    assert snapshot == {"a": [worker]}
    assert first == [tl.GroupJoin(ref, "b", (worker,)), tl.GroupLeave(ref, "a", (worker,))]
    assert later == []
    assert again is False


async def test_a_monitor_ends_with_its_owner(anyio_backend: str) -> None:
    async def main() -> Any:
        watcher, ref = tl.spawn_monitor(agent)
        await do(watcher, lambda: tl.pg_monitor_scope())
        tl.exit(watcher, tl.KILL)
        await wait_down(ref)
        tl.pg_join("g")
        scope = tl.pg_scope()
        return len(scope._scope_monitors)

    async with tl.open_node():
        assert await in_process(main) == 0


async def test_bad_input(anyio_backend: str) -> None:
    async def main() -> None:
        dead, ref = tl.spawn_monitor(agent)
        tl.exit(dead, tl.KILL)
        await wait_down(ref)
        with pytest.raises(tl.NoProcessError):
            tl.pg_join("g", [tl.current_pid(), dead])
        assert tl.pg_members("g") == []  # nothing joined
        with pytest.raises(tl.InvalidDestinationError):
            tl.pg_join("g", ["not a pid"])  # type: ignore[list-item]

    async with tl.open_node():
        await in_process(main)
    async with tl.open_node():
        with pytest.raises(tl.NotInProcessError, match="pg_join"):
            tl.pg_join("g")


async def test_distribution_seam_deltas_sync_and_purge(anyio_backend: str) -> None:
    sent: list[Any] = []

    class Recorder:
        def local_changed(self, scope: Any, group: Any, joined: Any, left: Any) -> None:
            sent.append((scope.name, group, joined, left))

    async def main() -> Any:
        me = tl.current_pid()
        tl.pg_set_sync(Recorder())
        ref, _ = tl.pg_monitor("g")
        tl.pg_join("g")
        tl.pg_leave("g")
        scope = tl.pg_scope()
        # Pids of another node stand in as opaque values here: nothing is sent anywhere.
        a, b = tl.spawn(agent), tl.spawn(agent)
        scope.remote_join("n2", "g", [a])
        members_after_join = tl.pg_members("g")
        scope.remote_sync("n2", {"g": [b], "h": [a]})
        scope.remote_leave("n2", "g", [b])
        scope.remote_purge("n2")
        tl.pg_set_sync(None)
        return me, ref, a, b, members_after_join, tl.pg_local_members("g"), drain()

    async with tl.open_node():
        me, ref, a, b, after_join, local, notes = await in_process(main)
    assert sent == [("pg", "g", (me,), ()), ("pg", "g", (), (me,))]
    assert after_join == [a]
    assert local == []
    assert notes == [
        tl.GroupJoin(ref, "g", (me,)),
        tl.GroupLeave(ref, "g", (me,)),
        tl.GroupJoin(ref, "g", (a,)),
        tl.GroupJoin(ref, "g", (b,)),  # sync: b joined, a left
        tl.GroupLeave(ref, "g", (a,)),
        tl.GroupLeave(ref, "g", (b,)),
    ]


OPS = st.lists(
    st.tuples(
        st.sampled_from(["join", "leave", "kill"]),
        st.integers(0, 3),
        st.sampled_from(["g", "h"]),
    ),
    max_size=25,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=OPS)
async def test_no_member_after_it_exited(anyio_backend: str, ops: list[Any]) -> None:
    """Random joins, leaves and kills: membership always equals a simple model,
    no dead process is ever listed, and a scope monitor's deltas add up."""

    async def main() -> None:
        pids = [tl.spawn(agent) for _ in range(4)]
        ref, _ = tl.pg_monitor_scope()
        model: dict[str, Counter[tl.Pid]] = {"g": Counter(), "h": Counter()}
        dead: set[tl.Pid] = set()
        seen: dict[str, Counter[tl.Pid]] = {"g": Counter(), "h": Counter()}
        for op, index, group in ops:
            pid = pids[index]
            if pid in dead:
                continue
            if op == "join":
                tl.pg_join(group, pid)
                model[group][pid] += 1
            elif op == "leave":
                tl.pg_leave(group, pid)
                if model[group][pid]:
                    model[group][pid] -= 1
            else:
                mref = tl.monitor(pid)
                tl.exit(pid, tl.KILL)
                await wait_down(mref)
                dead.add(pid)
                for counts in model.values():
                    counts.pop(pid, None)
            for name in ("g", "h"):
                members = tl.pg_members(name)
                assert Counter(members) == +model[name]
                assert not dead.intersection(members)
                assert all(tl.is_alive(p) for p in members)
        for message in drain():
            if isinstance(message, tl.GroupJoin):
                seen[message.group].update(message.pids)
            elif isinstance(message, tl.GroupLeave):
                seen[message.group].subtract(message.pids)
        for name in ("g", "h"):
            assert +seen[name] == +model[name]
        assert ref is not None

    with anyio.fail_after(BOUND):
        async with tl.open_node():
            await in_process(main)
