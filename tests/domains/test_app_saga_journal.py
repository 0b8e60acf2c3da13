"""The reference application journals Bolt's sagas in its data dir (issue 14, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_helpers import app_config, await_emitted, publish_fresh, run_app

import thunderline.runtime as tl
from thunderline import sagas
from thunderline.domains import Event, bolt
from thunderline.domains._common import SAGAS
from thunderline.domains.bolt import HEARTBEAT, EventJournalCodec, SagaAlreadyEnded
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


async def test_an_event_whose_saga_ended_is_answered_from_the_journal(
    anyio_backend: str, tmp_path: Path
) -> None:
    """Flow asks Bolt again when Bolt died before answering: a saga that already ended is
    not started twice; Bolt answers with the journaled outcome, which ``succeeded`` reads."""
    answers: list[object] = []
    ids: list[str] = []

    async def body() -> None:
        event = await publish_fresh()
        ids.append(str(event.id))
        # Flow's pipeline and this call race to start the saga: either joins the other's
        # run or finds it ended; both succeed.
        first = await bolt.run(event)
        assert bolt.succeeded(first), first
        running = await sagas.lookup(SAGAS, str(event.id))
        if running is not None:  # wait for the run's process to end (and leave the registry)
            ref = tl.monitor(running.pid)
            await tl.receive(lambda m: isinstance(m, tl.Down) and m.ref == ref, timeout=30)
        answers.append(await bolt.run(event))
        answers.extend(await bolt.run_batch([event, event]))

    await run_app(app_config(tmp_path), body, traced=False)
    expected = SagaAlreadyEnded(ids[0], "succeeded")
    assert answers == [expected, expected, expected]
    assert all(bolt.succeeded(answer) for answer in answers)  # type: ignore[arg-type]
    assert not bolt.succeeded(SagaAlreadyEnded(ids[0], "failed"))
    with open_journal(tmp_path / "sagas.db", read_only=True, codec=EventJournalCodec()) as journal:
        assert [run.correlation_id for run in journal.runs()] == ids
        assert journal.runs()[0].recoveries == 0


def test_events_round_trip_through_the_journal_codec() -> None:
    event = Event.new(name="system.heartbeat", type="heartbeat", source="gate", payload={"n": 1})
    codec = EventJournalCodec()
    back = codec.decode(codec.encode({"event": event, "other": [1, {"a": None}]}))
    assert back["event"] == event
    assert back["other"] == [1, {"a": None}]
    assert HEARTBEAT.recovery == "resume"
