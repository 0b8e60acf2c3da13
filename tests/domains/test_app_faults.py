"""Faults and overload through the whole application (L1, L2, L7, backpressure).

* Vault killed (untrappable ``KILL``) in the middle of a stream: it restarts,
  the ledger verifies, and every acknowledged event is in it exactly once.
* A flood of publishers against a tiny pipeline: the buffer never exceeds its
  bound and every event still arrives.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
from app_helpers import (
    EVENT_TIMEOUT,
    app_config,
    await_emitted,
    ledger_event_ids,
    publish_fresh,
    run_app,
)

import thunderline.runtime as tl
from thunderline.domains import Event, flow, link, vault
from thunderline.domains._common import VAULT

pytestmark = pytest.mark.anyio


async def _publish_all(count: int, publishers: int, events: list[Event]) -> None:
    """``publishers`` concurrent processes publish ``count`` events in all; waits for them."""

    async def publisher(index: int) -> None:
        for n in range(index, count, publishers):
            events.append(await publish_fresh(payload={"n": n}))

    refs = {tl.spawn_monitor(publisher, i)[1] for i in range(publishers)}
    while refs:
        down = await tl.receive(tl.Down, timeout=EVENT_TIMEOUT)
        assert down.reason == tl.NORMAL, down.reason
        refs.discard(down.ref)


async def test_vault_killed_mid_stream_restarts_and_loses_nothing_l7(
    anyio_backend: str, tmp_path: Path
) -> None:
    """L1/L2/L7: after an untrappable kill of Vault mid-stream the ledger verifies and
    every acknowledged event (its Emitted reached us) is recorded exactly once."""
    total = 60
    events: list[Event] = []
    acknowledged: dict[str, int] = {}
    reports: list[vault.VerifyReport] = []
    vault_pids: list[tl.Pid | None] = []

    async def body() -> None:
        vault_pids.append(tl.whereis(VAULT))
        stream = tl.spawn_monitor(_publish_all, total, 4, events)[1]
        # Let part of the stream through, then kill Vault with work in flight.
        while len(acknowledged) < total // 4:
            emitted = await tl.receive(link.Emitted, timeout=EVENT_TIMEOUT)
            acknowledged[str(emitted.event.id)] = emitted.seq
        old = tl.whereis(VAULT)
        assert old is not None
        tl.exit(old, tl.KILL)
        down = await tl.receive(
            lambda m: isinstance(m, tl.Down) and m.ref == stream, timeout=EVENT_TIMEOUT * 2
        )
        assert down.reason == tl.NORMAL, down.reason
        rest = {str(e.id) for e in events} - acknowledged.keys()
        acknowledged.update(await await_emitted(rest, timeout=EVENT_TIMEOUT))
        vault_pids.append(tl.whereis(VAULT))
        reports.append(await vault.verify())

    await run_app(app_config(tmp_path), body, traced=False)

    assert len(events) == total
    assert vault_pids[0] is not None
    assert vault_pids[1] is not None
    assert vault_pids[0] != vault_pids[1], "Vault was restarted"
    assert reports[0].ok, str(reports[0])
    assert acknowledged.keys() == {str(e.id) for e in events}
    recorded = ledger_event_ids(tmp_path)
    counts = collections.Counter(recorded)
    assert {eid for eid, c in counts.items() if c > 1} == set(), "no event twice"
    assert acknowledged.keys() <= counts.keys(), "every acknowledged event is in the ledger"
    assert len(recorded) == total
    # the seq Link reported for each event is the seq it has in the ledger
    seq_of = {eid: seq for seq, eid in enumerate(recorded, start=1)}
    assert {eid: seq_of[eid] for eid in acknowledged} == acknowledged


async def test_backpressure_bounds_the_buffer_and_delivers_everything(
    anyio_backend: str, tmp_path: Path
) -> None:
    """A flood of publishers on a tiny pipeline: peak buffered never exceeds max_buffer
    (and reaches it: the bound was exercised), publishers wait, every event arrives."""
    max_buffer = 4
    routes = flow.default_routes(concurrency=1, batch_size=2, max_buffer=max_buffer)
    total, publishers = 60, 15
    events: list[Event] = []
    stats: list[flow.FlowStatistics] = []

    async def body() -> None:
        await _publish_all(total, publishers, events)
        await await_emitted({str(e.id) for e in events})
        stats.append(await flow.statistics())

    await run_app(app_config(tmp_path, routes=routes), body, traced=False)

    (pipeline,) = stats[0].pipelines.values()
    assert pipeline.peak_buffered == max_buffer
    assert stats[0].published == total
    assert stats[0].dropped == 0
    assert pipeline.failed == 0
    assert len(set(ledger_event_ids(tmp_path))) == total
