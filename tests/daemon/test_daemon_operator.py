"""The operator's verbs end to end against a real daemon: ``--ledger`` (SQLite and
PostgreSQL), ``publish``, ``state``, ``kill``, ``tree`` with sagas, ``top`` rates.

The daemon is a real ``thunderline run`` subprocess. The first ``publish`` is a
real ``thunderline`` subprocess too; the other verbs run the same CLI ``main``
in the test process (``run_cli_in_process``), which spares an interpreter
start-up per verb and asserts the same status, stdout and stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from daemon_helpers import Daemon, poll, run_cli, run_cli_in_process
from psycopg import sql

from thunderline.domains import open_ledger

MakeDaemon = Callable[..., Daemon]
REFERENCE_APP = "thunderline.domains:application"
PG_URL = os.environ.get(
    "THUNDERLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRED = os.environ.get("THUNDERLINE_REQUIRE_SERVICES") == "1"


def _pg_problem() -> str | None:
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


@pytest.fixture
def pg_schema() -> Iterator[str]:
    problem = _pg_problem()
    if problem is not None:
        if REQUIRED:
            pytest.fail(f"PostgreSQL unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    name = f"tl_ops_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _ok(*args: str, cli: Callable[..., subprocess.CompletedProcess[str]] = run_cli) -> str:
    result = cli(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def _ledger_head(location: str, schema: str) -> int:
    with open_ledger(location, read_only=True, schema=schema) as ledger:
        return ledger.head().seq


def _here(*args: str) -> str:
    return _ok(*args, cli=run_cli_in_process)


def _operate(daemon: Daemon, location: str, schema: str, backend: str) -> None:
    control = ("--control", daemon.control)
    status = daemon.request("status")
    assert status["backend"] == backend
    assert status["ledger_schema"] in (None, schema)

    published = run_cli(  # a real `thunderline` process
        "publish", "system.heartbeat", "--payload", '{"n": 1}', "--count", "5", *control
    )
    assert published.returncode == 0, published.stderr
    assert "5 acknowledged, 0 failed" in published.stdout
    # acknowledged by Gate; committed by Vault shortly after
    poll(lambda: _ledger_head(location, schema) >= 5, "5 events in the ledger")
    assert "ok: 6 records verified" in _here("ledger", "verify", location, "--schema", schema)

    refused = run_cli_in_process("publish", "Not A Name", *control)
    assert refused.returncode == 1
    assert "0 acknowledged, 1 failed" in refused.stdout
    assert "EventValidationError" in refused.stderr
    bad_payload = run_cli_in_process("publish", "system.heartbeat", "--payload", "[1]", *control)
    assert bad_payload.returncode == 2
    assert bad_payload.stderr.count("\n") == 1

    state = _here("state", "thunderline.vault", *control)
    assert state.splitlines()[0].endswith("thunderline.vault (Vault)")
    as_json = json.loads(_here("state", "thunderline.vault", "--limit", "10", "--json", *control))
    assert len(as_json["state"]) <= 10
    assert as_json["truncated"] is True
    master = daemon.request("processes")[0]["pid"]  # the node's own process: no server loop
    not_server = run_cli_in_process("state", master, *control)
    assert not_server.returncode == 1
    assert "not_a_server" in not_server.stderr
    assert not_server.stderr.count("\n") == 1
    missing = run_cli_in_process("state", "nobody.here", *control)
    assert missing.returncode == 1
    assert "no_such_process" in missing.stderr

    tree = daemon.request("tree")
    (link,) = [c for c in tree["children"] if c["id"] == "link"]
    (sagas,) = [c for c in tree["children"] if c["id"] == "sagas"]
    assert sagas["error"] is None
    killed = _here("kill", "thunderline.link", *control)
    assert f"sent exit signal KILL to thunderline.link ({link['pid']})" in killed

    def restarted() -> dict[str, Any] | None:
        (node,) = [c for c in daemon.request("tree")["children"] if c["id"] == "link"]
        return node if node["pid"] not in (None, link["pid"]) and node["restarts"] == 1 else None

    poll(restarted, "link restarted")
    shutdown = _here("kill", "thunderline.bolt", "--reason", "shutdown", *control)
    assert "sent exit signal SHUTDOWN" in shutdown
    drawn = _here("tree", *control)
    assert "error" not in drawn

    # top's own polling is not counted: an idle daemon's supervisors handle 0 msg/s
    frames = _here("top", "--iterations", "3", "--interval", "0.3", "--json", *control)
    last = json.loads(frames.strip().splitlines()[-1])
    supervisors = [
        row["pid"]
        for row in last["processes"]
        if row["name"] in ("thunderline.app", "thunderline.sagas")
    ]
    assert len(supervisors) == 2
    for pid in supervisors:
        assert last["rates"][pid] == 0.0, last["rates"]

    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_operator_verbs_with_a_sqlite_ledger(daemon_factory: MakeDaemon, backend: str) -> None:
    daemon = daemon_factory("--backend", backend, app=REFERENCE_APP)
    location = str(daemon.dir / "elsewhere" / "events.db")
    (daemon.dir / "elsewhere").mkdir(mode=0o700)
    daemon.args += ["--data", str(daemon.dir / "data"), "--ledger", location]
    daemon.start()
    assert "ledger " + location in daemon.log()
    _operate(daemon, location, "thunderline_ledger", backend)
    assert not (daemon.dir / "data" / "ledger.db").exists()
    assert Path(location).exists()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_operator_verbs_with_a_postgres_ledger(
    daemon_factory: MakeDaemon, pg_schema: str, backend: str
) -> None:
    # the ledger comes from the environment here (THUNDERLINE_LEDGER), the schema from a flag
    daemon = daemon_factory(
        "--backend",
        backend,
        "--ledger-schema",
        pg_schema,
        app=REFERENCE_APP,
        env={"THUNDERLINE_LEDGER": PG_URL},
    )
    daemon.args += ["--data", str(daemon.dir / "data")]
    daemon.start()
    _operate(daemon, PG_URL, pg_schema, backend)
    assert not (daemon.dir / "data" / "ledger.db").exists()


def test_demo_on_a_postgres_ledger(tmp_path: Path, pg_schema: str) -> None:
    out = _ok(
        "demo",
        "--events",
        "3",
        "--data",
        str(tmp_path / "data"),
        "--ledger",
        PG_URL,
        "--ledger-schema",
        pg_schema,
    )
    assert "3/3 events reached Link" in out
    assert "ok: 4 records verified (the genesis record and 3 events)" in out
    assert not (tmp_path / "data" / "ledger.db").exists()
    assert "ok: 4 records" in _ok("ledger", "verify", PG_URL, "--schema", pg_schema)


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("state", "thunderline.vault", "--json"),
        ("publish", "system.heartbeat", "--payload", "[1]"),
        ("kill", "thunderline.link", "--reason", "nonsense"),
        ("top", "--bogus"),
    ],
    ids=["version", "state-no-daemon", "bad-payload", "kill-no-daemon", "usage-error"],
)
def test_in_process_cli_answers_as_the_command_does(tmp_path: Path, args: tuple[str, ...]) -> None:
    """``run_cli_in_process`` gives the status, stdout and stderr of a real ``thunderline``."""
    argv = [*args, "--control", str(tmp_path / "none.sock")] if args[0] != "--version" else args
    real = run_cli(*argv)
    here = run_cli_in_process(*argv)
    assert (here.returncode, here.stdout, here.stderr) == (
        real.returncode,
        real.stdout,
        real.stderr,
    )
    assert real.returncode == 0 if args[0] == "--version" else real.returncode != 0
