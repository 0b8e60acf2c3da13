"""Hypothesis: random graphs of linked / monitoring / trapping processes and one crash.

A small pure model applies OTP's rules (docs/guarantees.md: exit-signal rows 2-7, monitors) to
predict who dies with which reason, which ``Exit`` messages each trapping
survivor holds and which ``Down`` each surviving monitor owner holds; the real
runtime must produce exactly that.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thunderline.runtime as tl
from process_helpers import BOUND, agent, do, drain, in_process

pytestmark = pytest.mark.anyio

REASONS: dict[str, Any] = {
    "normal": tl.NORMAL,
    "kill": tl.KILL,
    "boom": "boom",
    "shutdown": tl.Shutdown("x"),
}


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(2, 6))
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    links = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=len(pairs)))
    monitors = draw(
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=2 * n)
    )
    return {
        "n": n,
        "trap": draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        "links": links,
        "monitors": [(o, t) for o, t in monitors if o != t],
        "victim": draw(st.integers(0, n - 1)),
        "how": draw(st.sampled_from(["own_exit", "exit_signal"])),
        "reason": draw(st.sampled_from(sorted(REASONS))),
    }


def model(g: dict[str, Any]) -> tuple[dict[int, Any], dict[int, Counter[Any]]]:
    """Expected deaths {index: reason} and survivors' messages {index: Counter}."""
    trap, victim, reason = g["trap"], g["victim"], REASONS[g["reason"]]
    links = {frozenset(pair) for pair in g["links"]}
    inbox: dict[int, Counter[Any]] = {i: Counter() for i in range(g["n"])}
    dead: dict[int, Any] = {}
    if g["how"] == "own_exit":
        dead[victim] = reason  # raise ProcessExit(reason): even KILL stays KILL
    elif isinstance(reason, tl.Kill):
        dead[victim] = tl.KILLED  # row 3
    elif trap[victim]:
        inbox[victim][("exit", "tester", reason)] += 1  # row 6
    elif not isinstance(reason, tl.Normal):
        dead[victim] = reason  # row 4 (row 2: normal is ignored)
    queue = deque(dead)
    while queue:
        gone = queue.popleft()
        why = dead[gone]
        for pair in [p for p in links if gone in p]:
            links.discard(pair)
            (other,) = pair - {gone}
            if other in dead:
                continue
            if trap[other]:
                inbox[other][("exit", gone, why)] += 1  # row 7
            elif not isinstance(why, tl.Normal):
                dead[other] = why  # row 4: KILL via a link stays KILL
                queue.append(other)
        for owner, target in g["monitors"]:
            if target == gone:
                inbox[owner][("down", gone, why)] += 1
    return dead, {i: box for i, box in inbox.items() if i not in dead}


async def _run(g: dict[str, Any]) -> tuple[dict[int, Any], dict[int, Counter[Any]]]:
    pids = [tl.spawn(agent, trap_exit=g["trap"][i]) for i in range(g["n"])]
    index = {pid: i for i, pid in enumerate(pids)}
    me = tl.current_pid()
    for a, b in g["links"]:
        await do(pids[a], lambda b=b: tl.link(pids[b]))
    for owner, target in g["monitors"]:
        await do(pids[owner], lambda t=target: tl.monitor(pids[t]))
    watch = {tl.monitor(pid): i for i, pid in enumerate(pids)}
    victim, reason = pids[g["victim"]], REASONS[g["reason"]]
    if g["how"] == "own_exit":

        def die() -> None:
            raise tl.ProcessExit(reason)

        await do(victim, die)
    else:
        tl.exit(victim, reason)
    await anyio.wait_all_tasks_blocked()
    dead: dict[int, Any] = {}
    while True:
        try:
            down = tl.receive_nowait(tl.Down)
        except tl.WouldBlock:
            break
        dead[watch[down.ref]] = down.reason
    inboxes: dict[int, Counter[Any]] = {}
    for i, pid in enumerate(pids):
        if i in dead:
            assert not tl.is_alive(pid)
            continue
        box: Counter[Any] = Counter()
        for message in await do(pid, drain):
            if isinstance(message, tl.Exit):
                box[
                    ("exit", "tester" if message.pid == me else index[message.pid], message.reason)
                ] += 1
            else:
                assert isinstance(message, tl.Down)
                box[("down", index[message.pid], message.reason)] += 1
        inboxes[i] = box
    for pid in pids:
        if tl.is_alive(pid):
            tl.exit(pid, tl.KILL)
    return dead, inboxes


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(g=graphs())
async def test_random_link_graph_crash_follows_otp_rules(
    anyio_backend: str, g: dict[str, Any]
) -> None:
    expected_dead, expected_inbox = model(g)
    with anyio.fail_after(BOUND):
        async with tl.open_node():
            dead, inboxes = await in_process(_run, g)
    assert dead == expected_dead
    assert inboxes == expected_inbox
