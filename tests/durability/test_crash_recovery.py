"""Nothing acknowledged is lost: ``thunderline run`` crashed and stopped for real, under load.

Each test runs the reference application as a subprocess (``durable_load_app``:
32 publishers appending each acknowledged event id to a file the moment its
publish returned), hurts it, restarts it quietly on the same data, and checks
against that record: every acknowledged event is in the ledger, every ledger
record reached Link's sink exactly once, the ledger verifies. The kill moments
are random (seeded; ``THUNDERLINE_CRASH_SEED`` replays a run).

Every fault kind runs on every backend it is listed for in each run of the
suite, with fewer repetitions per trial than the full campaign
(``THUNDERLINE_FULL_CAMPAIGN=1``: three ``kill -9`` per trial instead of two,
six domain kills instead of three).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from crash_helpers import Report, Trial
from psycopg import sql

PG_URL = os.environ.get(
    "THUNDERLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
SEED = int(os.environ.get("THUNDERLINE_CRASH_SEED", str(uuid.uuid4().int % 10_000)))
FULL_CAMPAIGN = os.environ.get("THUNDERLINE_FULL_CAMPAIGN") == "1"
#: ``kill -9`` moments per trial before the final SIGTERM.
KILL9_PER_TRIAL = 3 if FULL_CAMPAIGN else 2
#: Domain kills (one every 0.3 s) per trial before the killing stops.
DOMAIN_KILLS = 6 if FULL_CAMPAIGN else 3


@pytest.fixture
def rng() -> random.Random:
    print(f"THUNDERLINE_CRASH_SEED={SEED}")
    return random.Random(SEED)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        if os.environ.get("THUNDERLINE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"PostgreSQL unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    schema = f"tl_crash_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _assert_nothing_lost(report: Report) -> None:
    print(report)
    assert report.acknowledged > 0
    assert report.lost == 0, report
    assert report.ledger_ok, report
    assert report.undelivered == 0, report
    assert report.duplicated_in_sink == 0, report
    assert report.sink_lines == report.records, report


def _assert_graceful(log: str) -> None:
    """The stop itself (from the ``shutting down`` line on) logged no traceback, and drained."""
    assert ": shutting down" in log, log
    stopping = log.split(": shutting down", 1)[1]
    assert "Traceback" not in stopping, stopping
    assert "flow: drained" in log, log
    assert "shutdown timeout" not in log, log


def _kill9_repeatedly_then_sigterm(trial: Trial, rng: random.Random) -> None:
    try:
        for _ in range(KILL9_PER_TRIAL):
            trial.start(load=True)
            trial.wait_acks(1)
            time.sleep(rng.uniform(0.0, 1.5))
            trial.kill9()
        trial.start(load=True)
        trial.wait_acks(1 + rng.randrange(100))
        _assert_graceful(trial.stop())
        trial.quiet_restart()
        _assert_nothing_lost(trial.check())
    finally:
        trial.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_kill9_at_random_moments_then_sigterm_loses_nothing(
    backend: str, rng: random.Random
) -> None:
    _kill9_repeatedly_then_sigterm(Trial(backend=backend), rng)


def test_kill9_then_sigterm_with_the_postgres_ledger(pg_schema: str, rng: random.Random) -> None:
    _kill9_repeatedly_then_sigterm(Trial(ledger_url=PG_URL, schema=pg_schema), rng)


def _domain_killed_under_load(trial: Trial, domains: str) -> None:
    try:
        trial.start(load=True, kill=domains, extra={"LOAD_KILL_PERIOD": "0.3"})
        trial.wait_acks(1)
        # every 0.3 s; each listed domain at least once
        trial.wait_kills(max(DOMAIN_KILLS, len(domains.split(","))))
        trial.wait_acks(50)
        trial.stop_killing()
        _assert_graceful(trial.stop())
        trial.quiet_restart()
        _assert_nothing_lost(trial.check())
    finally:
        trial.close()


@pytest.mark.parametrize("domain", ["flow", "bolt", "vault", "link"])
def test_domain_killed_repeatedly_under_load_loses_nothing(domain: str) -> None:
    _domain_killed_under_load(Trial(), domain)


def test_every_domain_killed_in_turn_on_trio() -> None:
    _domain_killed_under_load(Trial(backend="trio"), "flow,bolt,vault,link")


def test_domains_killed_with_the_postgres_ledger(pg_schema: str) -> None:
    _domain_killed_under_load(Trial(ledger_url=PG_URL, schema=pg_schema), "vault,flow,link")


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "stop"])
def test_graceful_stop_under_load_drains_without_tracebacks(how: str) -> None:
    """SIGTERM, SIGINT and ``thunderline stop``: publishers meet ShuttingDownError, what was
    accepted is committed and delivered, and the log has no traceback."""
    trial = Trial()
    try:
        trial.start(load=True)
        trial.wait_acks(100)
        if how == "stop":
            control = trial.dir / f"control-{trial.runs}.sock"
            done = subprocess.run(
                [sys.executable, "-m", "thunderline.cli", "stop", "--control", str(control)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            assert trial.proc is not None
            assert trial.proc.wait(60) == 0
            log = trial.log.read_text()
        else:
            log = trial.stop(signal.Signals[how])
        _assert_graceful(log)
        report = trial.check()  # no restart: the stop itself delivered everything
        _assert_nothing_lost(report)
        assert not set(report.other_errors) - {"CallNoProcError"}, report
    finally:
        trial.close()
