"""The delivery contract in-process (see docs/durability.md), on both backends.

* Link resumes from its cursor (the sink's last complete line) after a restart,
  truncating a torn last line: every ledger record is in the sink exactly once.
* A shutdown drains: publishers meet ``ShuttingDownError``, everything
  acknowledged is committed and delivered before the application exits.
* A drain that cannot finish within the shutdown timeout reports what was
  left in one log line, and the application still stops.

The crash tests with a real ``kill -9`` are in ``tests/durability``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
from app_helpers import EVENT_TIMEOUT, app_config, ledger_event_ids, publish_fresh, run_app
from hypothesis import given
from hypothesis import strategies as st

import thunderline.runtime as tl
from thunderline.domains import Event, PipelineSpec, ShuttingDownError, flow
from thunderline.domains.link import recover_sink

pytestmark = pytest.mark.anyio


def _sink_seqs(data_dir: Path) -> list[int]:
    return [json.loads(line)["seq"] for line in (data_dir / "link.jsonl").read_bytes().splitlines()]


async def _publish(count: int) -> list[str]:
    return [str((await publish_fresh(payload={"n": n})).id) for n in range(count)]


async def test_link_resumes_from_its_cursor_and_truncates_a_torn_line(
    anyio_backend: str, tmp_path: Path
) -> None:
    published: list[str] = []

    async def first() -> None:
        published.extend(await _publish(5))

    await run_app(app_config(tmp_path), first, traced=False)
    sink = tmp_path / "link.jsonl"
    assert _sink_seqs(tmp_path) == [1, 2, 3, 4, 5]
    # A crash after records 4 and 5 were committed, in the middle of writing 4.
    lines = sink.read_bytes().splitlines(keepends=True)
    sink.write_bytes(b"".join(lines[:3]) + lines[3][:17])

    async def second() -> None:
        published.extend(await _publish(1))

    await run_app(app_config(tmp_path), second, traced=False)
    assert _sink_seqs(tmp_path) == [1, 2, 3, 4, 5, 6]
    assert ledger_event_ids(tmp_path) == published
    events = [json.loads(line)["event"]["id"] for line in sink.read_bytes().splitlines()]
    assert events == published


@given(
    st.integers(min_value=0, max_value=40),
    st.binary(max_size=30).filter(lambda b: b"\n" not in b),
)
def test_recover_sink_keeps_complete_lines_only(
    tmp_path_factory: pytest.TempPathFactory, lines: int, torn: bytes
) -> None:
    path = tmp_path_factory.mktemp("sink") / "link.jsonl"
    body = b"".join(b'{"event":{},"seq":%d}\n' % seq for seq in range(1, lines + 1))
    path.write_bytes(body + torn)
    assert recover_sink(path) == lines
    assert path.read_bytes() == body


async def test_shutdown_under_load_refuses_new_events_and_drains(
    anyio_backend: str, tmp_path: Path
) -> None:
    acked: list[str] = []
    refused: list[str] = []

    async def publisher(index: int) -> None:
        while True:
            event = Event.new(
                "system.heartbeat", type="heartbeat", source="gate", payload={"p": index}
            )
            try:
                await flow.publish(event)
            except ShuttingDownError as error:
                refused.append(error.event_id)
                return
            except tl.CallNoProcError:
                return  # Flow already gone
            acked.append(str(event.id))

    async def body() -> None:
        for index in range(16):
            tl.spawn(publisher, index)
        with anyio.fail_after(EVENT_TIMEOUT):
            while len(acked) < 50:
                await anyio.sleep(0.01)
        # run_app now shuts the application down with the publishers still publishing

    await run_app(app_config(tmp_path), body, traced=False)
    recorded = ledger_event_ids(tmp_path)
    assert set(acked) <= set(recorded)
    assert not set(refused) & set(recorded), "a refused event was recorded"
    assert _sink_seqs(tmp_path) == list(range(1, len(recorded) + 1))


async def test_drain_past_the_shutdown_timeout_is_reported_in_one_line(
    anyio_backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def stuck(batch: Sequence[Event]) -> None:
        await anyio.sleep_forever()

    routes = (
        *flow.default_routes(),
        flow.Route("audit.*", PipelineSpec(name="test.stuck", handler=stuck, batch_size=1)),
    )

    async def body() -> None:
        await publish_fresh("audit.login")
        await publish_fresh("audit.login")

    with caplog.at_level(logging.INFO, logger="thunderline.domains.flow"):
        await run_app(app_config(tmp_path, routes=routes, shutdown_timeout=0.5), body, traced=False)
    reports = [r.getMessage() for r in caplog.records if "shutdown timeout" in r.getMessage()]
    assert len(reports) == 1, reports
    assert "test.stuck: 2" in reports[0]
    assert len(ledger_event_ids(tmp_path)) == 2
