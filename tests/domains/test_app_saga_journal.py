"""The reference application journals Bolt's sagas in its data dir (issue 14, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_helpers import app_config, await_emitted, publish_fresh, run_app

from thunderline.domains import Event
from thunderline.domains.bolt import HEARTBEAT, EventJournalCodec
from thunderline.sagas import open_journal

pytestmark = pytest.mark.anyio


async def test_heartbeat_sagas_are_journaled_in_the_data_dir(
    anyio_backend: str, tmp_path: Path
) -> None:
    ids: list[str] = []

    async def body() -> None:
        event = await publish_fresh()
        ids.append(str(event.id))
        await await_emitted({str(event.id)})

    await run_app(app_config(tmp_path), body, traced=False)
    with open_journal(tmp_path / "sagas.db", read_only=True, codec=EventJournalCodec()) as journal:
        run = journal.run(ids[0])
        assert run is not None
        assert (run.saga, run.policy, run.outcome) == ("heartbeat", "resume", "succeeded")
        inputs = journal.codec.decode(run.inputs)
        assert isinstance(inputs["event"], Event)
        assert str(inputs["event"].id) == ids[0]
        assert journal.runs(unfinished_only=True) == []


def test_events_round_trip_through_the_journal_codec() -> None:
    event = Event.new(name="system.heartbeat", type="heartbeat", source="gate", payload={"n": 1})
    codec = EventJournalCodec()
    back = codec.decode(codec.encode({"event": event, "other": [1, {"a": None}]}))
    assert back["event"] == event
    assert back["other"] == [1, {"a": None}]
    assert HEARTBEAT.recovery == "resume"
