"""The saga journal and recovery at start-up, on SQLite and PostgreSQL (issue 14, item 4).

Crashes are simulated here by writing a run's journal as a killed process
leaves it; ``test_crash_recovery.py`` kills real processes.
PostgreSQL: ``THUNDERLINE_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``), one schema per test; skipped
when unreachable unless ``THUNDERLINE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import thunderline.runtime as tl
from thunderline.sagas import (
    JOURNAL_VERSION,
    UNJOURNALED,
    Input,
    JournalCodec,
    JournalNotFoundError,
    JournalVersionError,
    RollbackStatus,
    Saga,
    SagaAlreadyRanError,
    SagaAlreadyRunningError,
    SagaArgumentError,
    SagaBuilder,
    SagaFailed,
    SagaInterruptedError,
    SagaJournal,
    SagaSucceeded,
    StepContext,
    StepResult,
    UnjournalableInputError,
    UnknownSagaDefinitionError,
    await_saga,
    open_journal,
    saga_supervisor_spec,
    start_saga,
    start_saga_supervisor,
    statistics,
)

pytestmark = pytest.mark.anyio

URL = os.environ.get("THUNDERLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRED = os.environ.get("THUNDERLINE_REQUIRE_SERVICES") == "1"


def _postgres_problem() -> str | None:
    try:
        import psycopg

        with psycopg.connect(URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any reason to skip
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Where the journal lives: ``{"target": path or URL, "schema": ...}``."""
    if request.param == "sqlite":
        yield {"target": str(tmp_path / "sagas.db"), "schema": "thunderline_sagas"}
        return
    problem = _postgres_problem()
    if problem is not None:
        if REQUIRED:
            pytest.fail(f"PostgreSQL unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    import psycopg

    schema = f"sagas_test_{uuid.uuid4().hex[:12]}"
    yield {"target": URL, "schema": schema}
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _open(where: dict[str, Any]) -> SagaJournal:
    return open_journal(where["target"], schema=where["schema"])


class Effects:
    """What the steps did: ("run", step, key) and ("undo", step, key)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, object]] = []


def shop(effects: Effects, *, recovery: str = "compensate", fail: bool = False) -> Saga:
    from thunderline.sagas import Step

    class Effect(Step):
        def __init__(self, name: str, fails: bool = False) -> None:
            self.name = name
            self.fails = fails

        async def run(self, args: Any, ctx: StepContext) -> object:
            effects.log.append(("run", self.name, ctx.idempotency_key))
            if self.fails:
                raise ValueError(f"{self.name} failed")
            return {"step": self.name, "n": args.get("n")}

        async def undo(self, value: Any, args: Any, ctx: StepContext) -> None:
            effects.log.append(("undo", self.name, value))

    b = SagaBuilder("shop", inputs=["n"], version=2, recovery=recovery)
    b.step("reserve", Effect("reserve"), args={"n": Input("n")})
    b.step("charge", Effect("charge"), args={"n": StepResult("reserve", "n")})
    b.step("ship", Effect("ship", fails=fail), args={"n": StepResult("charge", "n")})
    return b.build(returns="ship")


async def test_a_supervised_run_is_journaled_start_attempts_and_outcome(
    target: dict[str, Any],
) -> None:
    effects = Effects()
    with _open(target) as journal:
        async with tl.open_node():
            sup = await start_saga_supervisor(journal=journal)
            await start_saga(sup, shop(effects), {"n": 7}, correlation_id="order-1")
            with anyio.fail_after(20):
                outcome = await await_saga(sup, "order-1")
            assert isinstance(outcome, SagaSucceeded)
        run = journal.run("order-1")
        assert run is not None
        assert (run.saga, run.version, run.policy, run.outcome) == (
            "shop",
            2,
            "compensate",
            "succeeded",
        )
        assert journal.codec.decode(run.inputs) == {"n": 7}
        kinds = [(r.kind, r.path, r.status) for r in journal.records("order-1")]
        assert kinds == [
            ("attempt_started", "reserve", None),
            ("attempt_finished", "reserve", "ok"),
            ("attempt_started", "charge", None),
            ("attempt_finished", "charge", "ok"),
            ("attempt_started", "ship", None),
            ("attempt_finished", "ship", "ok"),
        ]
        finished = journal.records("order-1")[1]
        assert journal.codec.decode(finished.value or "") == {"step": "reserve", "n": 7}


async def test_a_failed_run_journals_its_undos_and_rollback(target: dict[str, Any]) -> None:
    effects = Effects()
    with _open(target) as journal:
        async with tl.open_node():
            sup = await start_saga_supervisor(journal=journal)
            await start_saga(sup, shop(effects, fail=True), {"n": 1}, correlation_id="o")
            with anyio.fail_after(20):
                outcome = await await_saga(sup, "o")
        assert isinstance(outcome, SagaFailed)
        run = journal.run("o")
        assert run is not None
        assert (run.outcome, run.rollback) == ("failed", "rolled_back")
        undos = [(r.path, r.status) for r in journal.records("o") if r.kind == "undo_finished"]
        assert undos == [("charge", "ok"), ("reserve", "ok")]


async def test_inputs_that_cannot_be_journaled_are_refused_at_start(
    target: dict[str, Any],
) -> None:
    with _open(target) as journal:
        async with tl.open_node():
            sup = await start_saga_supervisor(journal=journal)
            with pytest.raises(UnjournalableInputError, match="'n'") as info:
                await start_saga(sup, shop(Effects()), {"n": object()}, correlation_id="x")
            assert info.value.input == "n"
            assert (await statistics(sup)).running == 0
        assert journal.run("x") is None


async def test_one_run_per_correlation_id_even_after_it_ended(target: dict[str, Any]) -> None:
    with _open(target) as journal:
        async with tl.open_node():
            sup = await start_saga_supervisor(journal=journal)
            await start_saga(sup, shop(Effects()), {"n": 1}, correlation_id="once")
            with anyio.fail_after(20):
                await await_saga(sup, "once")
            with pytest.raises(SagaAlreadyRanError, match="succeeded"):
                await start_saga(sup, shop(Effects()), {"n": 1}, correlation_id="once")


def _crashed_run(journal: SagaJournal, saga: Saga, *, undone: tuple[str, ...] = ()) -> None:
    """Journal what a process killed after 'charge' completed (and ``undone`` undone) leaves."""
    run = journal.begin(saga, {"n": 3}, "crashed")
    for i, step in enumerate(("reserve", "charge")):
        run.attempt_started(step, 1)
        run.attempt_finished(step, 1, "ok", None, {"step": step, "n": 3, "i": i})
    run.attempt_started("ship", 1)  # in flight when the process died
    if undone:
        run.failure("ship", ValueError("ship failed"))
    for step in undone:
        run.undo_started(step, 1)
        run.undo_finished(step, 1, "ok", None)


async def test_recovery_compensates_completed_steps_newest_first_exactly_once(
    target: dict[str, Any],
) -> None:
    effects = Effects()
    saga = shop(effects)
    with _open(target) as journal:
        _crashed_run(journal, saga)
    with _open(target) as journal:
        async with tl.open_node():
            sup = await start_saga_supervisor(journal=journal, definitions=[saga])
            with anyio.fail_after(20):
                outcome = await await_saga(sup, "crashed")
            assert (await statistics(sup)).recovered == 1
        assert isinstance(outcome, SagaFailed)
        assert isinstance(outcome.error, SagaInterruptedError)
        assert outcome.rollback.status is RollbackStatus.ROLLED_BACK
        assert outcome.rollback.undone == ("charge", "reserve")
        assert effects.log == [
            ("undo", "charge", {"step": "charge", "n": 3, "i": 1}),
            ("undo", "reserve", {"step": "reserve", "n": 3, "i": 0}),
        ]
        run = journal.run("crashed")
        assert run is not None
        assert (run.outcome, run.rollback, run.recoveries) == ("failed", "rolled_back", 1)
    # A second start-up finds nothing to recover.
    with _open(target) as journal:
        async with tl.open_node():
            sup = await start_saga_supervisor(journal=journal, definitions=[saga])
            assert (await statistics(sup)).recovered == 0
    assert len(effects.log) == 2


async def test_recovery_does_not_undo_again_what_was_undone(target: dict[str, Any]) -> None:
    effects = Effects()
    saga = shop(effects, recovery="resume")  # rolling back: compensated whatever the policy
    with _open(target) as journal:
        _crashed_run(journal, saga, undone=("charge",))
    with _open(target) as journal:
        async with tl.open_node():
            sup = await start_saga_supervisor(journal=journal, definitions=[saga])
            with anyio.fail_after(20):
                outcome = await await_saga(sup, "crashed")
    assert isinstance(outcome, SagaFailed)
    assert outcome.rollback.undone == ("reserve",)
    assert [e[:2] for e in effects.log] == [("undo", "reserve")]


async def test_recovery_resumes_with_the_same_idempotency_key(target: dict[str, Any]) -> None:
    effects = Effects()
    saga = shop(effects, recovery="resume")
    with _open(target) as journal:
        _crashed_run(journal, saga)
    with _open(target) as journal:
        async with tl.open_node():
            sup = await start_saga_supervisor(journal=journal, definitions=[saga])
            with anyio.fail_after(20):
                outcome = await await_saga(sup, "crashed")
        assert isinstance(outcome, SagaSucceeded)
        assert outcome.value == {"step": "ship", "n": 3}
        # Only the step in flight ran again, under the key its first attempt had.
        assert effects.log == [("run", "ship", "crashed:ship")]
        run = journal.run("crashed")
        assert run is not None
        assert run.outcome == "succeeded"


async def test_a_recovering_run_holds_its_correlation_id(target: dict[str, Any]) -> None:
    release = anyio.Event()

    async def slow_undo(value: object) -> None:
        await release.wait()

    async def step() -> str:
        return "done"

    b = SagaBuilder("slow")
    b.step("a", step, undo=slow_undo)
    b.step("b", step, wait_for=["a"])
    saga = b.build(returns="b")
    with _open(target) as journal:
        run = journal.begin(saga, {}, "busy")
        run.attempt_started("a", 1)
        run.attempt_finished("a", 1, "ok", None, "done")
    with _open(target) as journal:
        async with tl.open_node():
            sup = await start_saga_supervisor(journal=journal, definitions=[saga])
            with pytest.raises(SagaAlreadyRunningError):
                await start_saga(sup, saga, {}, correlation_id="busy")
            release.set()
            with anyio.fail_after(20):
                outcome = await await_saga(sup, "busy")
            assert isinstance(outcome, SagaFailed)


async def test_unjournaled_results_reach_undo_as_unjournaled(target: dict[str, Any]) -> None:
    seen: list[object] = []

    async def undo(value: object) -> None:
        seen.append(value)

    async def step() -> object:
        return object()

    b = SagaBuilder("opaque")
    b.step("a", step, undo=undo)
    b.step("b", step, wait_for=["a"])
    saga = b.build(returns="b")
    with _open(target) as journal:
        run = journal.begin(saga, {}, "opaque-1")
        run.attempt_started("a", 1)
        run.attempt_finished("a", 1, "ok", None, object())
        assert journal.records("opaque-1")[-1].has_value is False
    with _open(target) as journal:
        async with tl.open_node():
            sup = await start_saga_supervisor(journal=journal, definitions=[saga])
            with anyio.fail_after(20):
                await await_saga(sup, "opaque-1")
    assert seen == [UNJOURNALED]


async def test_unknown_definitions_stop_the_supervisor_clearly(target: dict[str, Any]) -> None:
    saga = shop(Effects())
    with _open(target) as journal:
        _crashed_run(journal, saga)
    with _open(target) as journal:
        async with tl.open_node():
            with pytest.raises(tl.InitFailedError) as info:
                await start_saga_supervisor(journal=journal, definitions=[])
            reason = info.value.reason
            error = getattr(reason, "exception", reason)
            assert isinstance(error, UnknownSagaDefinitionError)
            assert error.missing == [("shop", 2)]


def test_the_journal_version_is_checked_at_open(tmp_path: Path) -> None:
    path = tmp_path / "sagas.db"
    open_journal(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE journal_meta SET value = '99' WHERE key = 'version'")
    with pytest.raises(JournalVersionError, match="version 99") as info:
        open_journal(path)
    assert (info.value.found, info.value.expected) == (99, JOURNAL_VERSION)


def test_a_missing_journal_is_not_created_read_only(tmp_path: Path) -> None:
    with pytest.raises(JournalNotFoundError):
        open_journal(tmp_path / "none.db", read_only=True)
    assert not (tmp_path / "none.db").exists()


async def test_recovery_reuses_the_runs_journaled_options(target: dict[str, Any]) -> None:
    calls: list[int] = []

    async def undo(value: object) -> None:
        calls.append(1)
        raise OSError("undo keeps failing")

    async def step() -> str:
        return "done"

    b = SagaBuilder("opts")
    b.step("a", step, undo=undo)
    b.step("b", step, wait_for=["a"])
    saga = b.build(returns="b")
    with _open(target) as journal:
        run = journal.begin(saga, {}, "opts-1", {"max_undo_attempts": 2, "in_flight": "await"})
        run.attempt_started("a", 1)
        run.attempt_finished("a", 1, "ok", None, "done")
    with _open(target) as journal:
        async with tl.open_node():
            sup = await start_saga_supervisor(journal=journal, definitions=[saga])
            with anyio.fail_after(20):
                outcome = await await_saga(sup, "opts-1")
        assert isinstance(outcome, SagaFailed)
        assert outcome.rollback.status is RollbackStatus.INCOMPLETE
        assert len(calls) == 2
        row = journal.run("opts-1")
        assert row is not None
        assert (row.outcome, row.rollback) == ("failed", "incomplete")


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


class MoneyCodec(JournalCodec):
    def default(self, value: Any) -> Any:
        if isinstance(value, Money):
            return {"__money__": value.cents}
        return super().default(value)

    def decode(self, text: str) -> Any:
        return json.loads(
            text, object_hook=lambda d: Money(d["__money__"]) if "__money__" in d else d
        )


async def test_a_codec_journals_the_applications_own_types(tmp_path: Path) -> None:
    seen: list[object] = []

    async def charge(amount: Money) -> Money:
        return Money(amount.cents)

    async def refund(value: Money, amount: Money) -> None:
        seen.append((value.cents, amount.cents))

    async def fails(paid: Money) -> None:
        raise ValueError("no")

    b = SagaBuilder("pay", inputs=["amount"])
    b.step("charge", charge, args={"amount": Input("amount")}, undo=refund)
    b.step("ship", fails, args={"paid": StepResult("charge")})
    saga = b.build(returns="ship")
    path = tmp_path / "sagas.db"
    with open_journal(path, codec=MoneyCodec()) as journal:
        run = journal.begin(saga, {"amount": Money(250)}, "p1")
        run.attempt_started("charge", 1)
        run.attempt_finished("charge", 1, "ok", None, Money(250))
    async with tl.open_node():
        sup = await start_saga_supervisor(
            journal=path, definitions=[saga], journal_codec=MoneyCodec()
        )
        with anyio.fail_after(20):
            outcome = await await_saga(sup, "p1")
    assert isinstance(outcome, SagaFailed)
    assert seen == [(250, 250)]


async def test_a_stopped_supervisor_journals_its_rolled_back_runs(tmp_path: Path) -> None:
    entered = anyio.Event()
    undone: list[str] = []

    async def first() -> str:
        return "a"

    async def undo(value: object) -> None:
        undone.append("a")

    async def forever() -> None:
        entered.set()
        await anyio.sleep_forever()

    b = SagaBuilder("stuck")
    b.step("a", first, undo=undo)
    b.step("b", forever, wait_for=["a"])
    saga = b.build(returns="b")
    done = anyio.Event()

    async def operator() -> None:
        tl.trap_exit(True)
        sup = await start_saga_supervisor(journal=tmp_path)
        await start_saga(sup, saga, {}, correlation_id="stuck-1")
        await entered.wait()
        await tl.stop(sup, tl.SHUTDOWN)
        done.set()

    async with tl.open_node():
        tl.spawn(operator)
        with anyio.fail_after(20):
            await done.wait()
    assert undone == ["a"]
    with open_journal(tmp_path) as journal:
        run = journal.run("stuck-1")
        assert run is not None
        assert (run.outcome, run.rollback) == ("failed", "rolled_back")
        assert journal.runs(unfinished_only=True) == []


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("journal", 42),
        ("journal", ""),
        ("definitions", "shop"),
        ("journal_codec", json),
    ],
)
async def test_supervisor_journal_arguments_are_checked(argument: str, value: object) -> None:
    async with tl.open_node():
        with pytest.raises(SagaArgumentError, match=argument):
            await start_saga_supervisor(**{argument: value})  # type: ignore[arg-type]


async def test_two_definitions_of_one_name_and_version_are_refused() -> None:
    with pytest.raises(SagaArgumentError, match="one definition per"):
        saga_supervisor_spec(definitions=[shop(Effects()), shop(Effects())])


async def test_a_nested_sagas_own_rollback_does_not_turn_resume_into_compensate(
    target: dict[str, Any],
) -> None:
    effects = Effects()

    async def run_step(name: str) -> str:
        effects.log.append(("run", name, None))
        return name

    async def c1() -> str:
        return await run_step("c1")

    async def c2(x: str) -> str:
        return await run_step("c2")

    async def o1() -> str:
        return await run_step("o1")

    async def undo(value: object) -> None:
        effects.log.append(("undo", str(value), None))

    child = SagaBuilder("child")
    child.step("c1", c1, undo=undo)
    child.step("c2", c2, args={"x": StepResult("c1")})
    parent = SagaBuilder("parent", recovery="resume")
    parent.step("o1", o1, undo=undo)
    parent.step("inner", child.build(returns="c2"), wait_for=["o1"])
    saga = parent.build(returns="inner")
    with _open(target) as journal:
        run = journal.begin(saga, {}, "n-1")
        run.attempt_started("o1", 1)
        run.attempt_finished("o1", 1, "ok", None, "o1")
        run.attempt_started("inner", 1)
        run.attempt_started("inner/c1", 1)
        run.attempt_finished("inner/c1", 1, "ok", None, "c1")
        run.attempt_started("inner/c2", 1)
        run.attempt_finished("inner/c2", 1, "error", ValueError("flaky"), None)
        run.undo_started("inner/c1", 1)  # the child rolled back; the parent retries it
        run.undo_finished("inner/c1", 1, "ok", None)
        run.attempt_finished("inner", 1, "error", ValueError("child failed"), None)
        run.attempt_started("inner", 2)  # the process dies here
    with _open(target) as journal:
        async with tl.open_node():
            sup = await start_saga_supervisor(journal=journal, definitions=[saga])
            with anyio.fail_after(20):
                outcome = await await_saga(sup, "n-1")
    assert isinstance(outcome, SagaSucceeded)
    assert [e[:2] for e in effects.log] == [("run", "c1"), ("run", "c2")]


async def test_a_journal_that_cannot_be_written_stops_the_run(tmp_path: Path) -> None:
    from thunderline.sagas import JournalBackendError, SagaRun

    ran: list[str] = []

    async def step() -> str:
        ran.append("a")
        return "a"

    async def after(x: str) -> str:
        ran.append("b")
        return "b"

    b = SagaBuilder("fragile")
    b.step("a", step)
    b.step("b", after, args={"x": StepResult("a")})
    saga = b.build(returns="b")
    journal = open_journal(tmp_path)
    run = SagaRun(saga, {}, correlation_id="f-1")
    run._journal = journal.begin(saga, {}, "f-1")
    journal._conn.close()  # the database goes away under the run
    with pytest.raises(JournalBackendError, match="commit records"):
        await run.execute()
    assert ran == ["a"]  # nothing went on past the first record that could not be committed
    with open_journal(tmp_path) as again:
        row = again.run("f-1")
        assert row is not None
        assert row.outcome is None  # left for the next start-up to recover
