"""Sagas survive ``kill -9``: real crashes at random points, recovery, invariants (S1, S17, S21).

Each trial runs ``crash_worker.py`` (a saga supervisor with a SQLite or
PostgreSQL journal
running 12 sagas of three shapes: a chain and a nested saga that compensate on
recovery, a DAG that resumes; half of each fail on purpose) and kills it with
SIGKILL once its steps have written a randomly chosen number of effect lines,
two or three times, then lets a last start-up recover and finish. The kill
points are seeded (reproducible choice; the timing of the crash itself is the
machine's). Then, against the effects the steps wrote outside the journal:

* every saga ended exactly once, as completed or fully compensated (journal
  outcome ``succeeded``, or ``failed`` with rollback ``rolled_back``; at most
  one ``outcome`` line per saga);
* no undo ran twice (its effect, idempotent by ``StepContext.idempotency_key``,
  is there once per key; the undo was called at most once per key per
  process lifetime, so only a crash makes it run again);
* every step whose completion was journaled in a compensated saga was undone;
  a completed saga was not undone at all and every step of it ran;
* nothing ran after its saga's outcome: no effect line of a saga after its
  ``outcome`` line, nor in a process started after its outcome was journaled;
* the last (uninterrupted) process ran no attempt whose end it did not journal.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from thunderline.sagas import SagaJournal, open_journal

WORKER = Path(__file__).with_name("crash_worker.py")
SAGAS = 12
STEPS = {
    "chain": ("a", "b", "c", "d"),
    "dag": ("a", "b", "c", "d"),
    "nested": ("o1", "inner/c1", "inner/c2", "o2"),
}
SHAPES = ("chain", "dag", "nested")
NESTED_STEPS = {"inner"}  # a nested saga's own path: undone through its steps
BOUND = 120.0  # seconds; generous for a loaded machine, never reached when things work


def _lines(directory: Path) -> list[list[str]]:
    path = directory / "effects"
    if not path.exists():
        return []
    return [line.split(" ") for line in path.read_text().splitlines()]


URL = os.environ.get("THUNDERLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRED = os.environ.get("THUNDERLINE_REQUIRE_SERVICES") == "1"


def _phase(
    directory: Path,
    phase: int,
    backend: str,
    seed: int,
    kill_after: int | None,
    journal: list[str],
) -> bool:
    """Run one worker lifetime; kill it once ``kill_after`` more effect lines exist.

    Returns True if it was killed before finishing.
    """
    before = len(_lines(directory))
    proc = subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            str(directory),
            str(phase),
            backend,
            str(SAGAS),
            str(seed),
            *journal,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if kill_after is None:
            out, err = proc.communicate(timeout=BOUND)
            assert proc.returncode == 0, err
            assert out.split() == ["READY", "DONE"], (out, err)
            return False
        deadline = time.monotonic() + BOUND
        while len(_lines(directory)) < before + kill_after and proc.poll() is None:
            assert time.monotonic() < deadline, "the worker made no progress"
            time.sleep(0.002)
        killed = proc.poll() is None
        proc.kill()  # SIGKILL: no cleanup, no rollback, no journal write
        _, err = proc.communicate(timeout=BOUND)
        assert not killed or proc.returncode == -9
        assert killed or proc.returncode == 0, err
        return killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _open(directory: Path, journal: list[str]) -> SagaJournal:
    if journal:
        return open_journal(journal[0], schema=journal[1])
    return open_journal(directory / "sagas.db")


def _finished(directory: Path, journal: list[str]) -> set[str]:
    with _open(directory, journal) as opened:
        return {run.correlation_id for run in opened.runs() if run.outcome is not None}


@pytest.fixture
def sqlite_journal() -> list[str]:
    """Worker arguments for SQLite in the trial directory: none."""
    return []


@pytest.fixture
def postgres_journal() -> Iterator[list[str]]:
    """Worker arguments for PostgreSQL: the URL and a schema of its own."""
    try:
        import psycopg

        with psycopg.connect(URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any reason to skip
        if REQUIRED:
            pytest.fail(f"PostgreSQL unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    schema = f"sagas_crash_{uuid.uuid4().hex[:12]}"
    yield [URL, schema]
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.parametrize(
    ("seed", "backend", "where"),
    [
        (1, "asyncio", "sqlite"),
        (2, "trio", "sqlite"),
        (3, "asyncio", "sqlite"),
        (4, "trio", "sqlite"),
        (5, "asyncio", "postgres"),
        (6, "trio", "postgres"),
    ],
)
def test_sagas_end_exactly_once_across_kill_9(
    tmp_path: Path, seed: int, backend: str, where: str, request: pytest.FixtureRequest
) -> None:
    journal: list[str] = request.getfixturevalue(f"{where}_journal")
    rng = random.Random(seed)
    kills = rng.choice((2, 3))
    finished_before: dict[int, set[str]] = {}  # phase -> sagas with an outcome before it
    interrupted = 0
    for phase in range(kills + 1):
        finished_before[phase] = _finished(tmp_path, journal) if phase else set()
        kill_after = None if phase == kills else rng.randint(1, 60 if phase == 0 else 20)
        interrupted += _phase(tmp_path, phase, backend, seed, kill_after, journal)
    assert interrupted >= 1, "no kill landed while sagas ran"
    lines = _lines(tmp_path)

    with _open(tmp_path, journal) as opened:
        runs = {run.correlation_id: run for run in opened.runs()}
        records = {cid: opened.records(cid) for cid in runs}

    # Every saga ended, exactly once, completed or fully compensated.
    assert set(runs) == {f"s{i}" for i in range(SAGAS)}
    for cid, run in runs.items():
        assert run.outcome in ("succeeded", "failed"), (cid, run)
        if run.outcome == "failed":
            assert run.rollback == "rolled_back", (cid, run)
    outcome_lines = Counter(fields[2] for fields in lines if fields[0] == "outcome")
    assert all(n == 1 for n in outcome_lines.values()), outcome_lines
    for fields in lines:
        if fields[0] == "outcome":
            assert fields[3].split("/")[0] == runs[fields[2]].outcome

    # Recovery happened whenever a kill left a saga unfinished.
    if any(len(finished_before[p]) < SAGAS for p in range(1, kills + 1)):
        assert sum(run.recoveries for run in runs.values()) >= 1

    # No undo ran twice.
    undo_effects = Counter(fields[3] for fields in lines if fields[0] == "undo")
    assert all(n == 1 for n in undo_effects.values()), undo_effects
    calls = Counter((fields[1], fields[3]) for fields in lines if fields[0] == "undo-call")
    assert all(n == 1 for n in calls.values()), calls
    # ... and the journal holds at most one successful undo per step: a recovery
    # calls an undo again only when the crash came before its end was journaled.
    for cid in runs:
        done = Counter(
            r.path for r in records[cid] if r.kind == "undo_finished" and r.status == "ok"
        )
        assert all(n == 1 for n in done.values()), (cid, done)

    for cid, run in runs.items():
        shape = SHAPES[int(cid[1:]) % len(SHAPES)]
        completed = {
            r.path
            for r in records[cid]
            if r.path not in NESTED_STEPS
            and ((r.kind == "attempt_finished" and r.status == "ok") or r.kind == "completed")
        }
        undone = {key.split(":", 1)[1] for key in undo_effects if key.startswith(f"{cid}:")}
        ran = {f[3].split(":", 1)[1] for f in lines if f[0] == "run" and f[2] == cid}
        if run.outcome == "succeeded":
            assert undone == set(), (cid, undone)
            assert ran >= set(STEPS[shape]), (cid, ran)
        else:
            # Every journaled completion was undone, and nothing else.
            assert completed == {p.removesuffix(":undo") for p in undone}, (cid, completed, undone)

    # Nothing ran after its saga's outcome.
    seen_outcome: set[str] = set()
    for fields in lines:
        kind, phase, cid = fields[0], int(fields[1]), fields[2]
        assert cid not in finished_before[phase], f"{fields} after the outcome was journaled"
        if kind == "outcome":
            seen_outcome.add(cid)
        else:
            assert cid not in seen_outcome, f"{fields} after the saga's outcome"

    # The last lifetime journaled the end of every attempt it ran.
    last_ends = Counter(
        (cid, r.path)
        for cid in runs
        for r in records[cid]
        if r.kind == "attempt_finished" and r.status in ("ok", "error")
    )
    for fields in lines:
        if fields[0] == "run" and int(fields[1]) == kills:
            cid, path = fields[3].split(":", 1)
            assert last_ends[cid, path] >= 1, fields
