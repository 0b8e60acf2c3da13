"""Bad input to the CLI: one line on stderr, a non-zero exit, every file left as it was."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_helpers import cli_env, run_cli

from thunderline.domains import Event, open_ledger


def _snapshot(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` with its content hash and mode."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        + f" {path.stat().st_mode:o}"
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def _ledger_with_events(data: Path, count: int = 3) -> Path:
    data.mkdir(mode=0o700)
    path = data / "ledger.db"
    with open_ledger(path) as ledger:
        ledger.append_batch(
            [
                Event.new("system.heartbeat", type="heartbeat", source="gate", payload={"i": i})
                for i in range(count)
            ]
        )
    return path


def _tamper(path: Path, seq: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER ledger_records_no_update")
    conn.execute(
        "UPDATE ledger_records SET canonical = CAST(replace(CAST(canonical AS TEXT), "
        "'heartbeat', 'heartbeaT') AS BLOB) WHERE seq = ?",
        (seq,),
    )
    conn.commit()
    conn.close()


def test_demo_data_that_is_a_file_or_cannot_be_made(tmp_path: Path) -> None:
    regular = tmp_path / "FILE"
    regular.write_text("keep me\n")
    _one_line_error(
        run_cli("demo", "--data", str(regular)), "exists and is not a directory", str(regular)
    )
    assert regular.read_text() == "keep me\n"
    _one_line_error(run_cli("demo", "--data", "/proc/nope"), "/proc/nope", "cannot create")
    _one_line_error(
        run_cli("demo", "--data", "postgresql://u@h/db"), "--data takes a directory", "--ledger"
    )


@pytest.mark.parametrize("damage", ["garbage", "key", "tampered_middle", "tampered_head"])
def test_demo_refuses_a_bad_ledger_and_writes_nothing(tmp_path: Path, damage: str) -> None:
    data = tmp_path / "data"
    if damage == "garbage":
        data.mkdir()
        (data / "ledger.db").write_bytes(b"\x00garbage\xff" * 500)
        expected = "not a thunderline ledger"
    else:
        path = _ledger_with_events(data)
        if damage == "key":
            other = tmp_path / "other"
            _ledger_with_events(other, 0)
            (data / "ledger_signing_key.pem").write_bytes(
                (other / "ledger_signing_key.pem").read_bytes()
            )
            expected = "is signed by key"
        elif damage == "tampered_middle":
            _tamper(path, 2)
            expected = "fails verification"
        else:
            _tamper(path, 3)
            expected = "is damaged, refusing to append"
    before = _snapshot(data)
    _one_line_error(run_cli("demo", "--data", str(data)), expected)
    assert _snapshot(data) == before


def test_run_data_that_is_a_file_or_forbidden(tmp_path: Path) -> None:
    regular = tmp_path / "FILE"
    regular.write_text("keep me\n")
    control = str(tmp_path / "run" / "c.sock")
    for data, fragment in ((str(regular), "exists and is not a directory"), ("/sys/x", "/sys/x")):
        result = run_cli(
            "run", "daemon_example_app:application", "--control", control, "--data", data
        )
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "cannot start: data directory" in result.stderr
        assert fragment in result.stderr
    assert regular.read_text() == "keep me\n"
    bad_url = run_cli("run", "--control", control, "--data", "postgresql://u@h/db")
    _one_line_error(bad_url, "--data: data accepts a directory path")


def test_usage_errors_name_their_subcommand() -> None:
    bogus = run_cli("--bogus")
    assert bogus.returncode == 2
    assert "unrecognized arguments: --bogus" in bogus.stderr
    assert "required: COMMAND" not in bogus.stderr
    typo = run_cli("demo", "--evnets", "3")
    assert typo.returncode == 2
    assert typo.stderr.startswith("usage: thunderline demo ")
    assert "thunderline demo: error: unrecognized arguments: --evnets" in typo.stderr
    nested = run_cli("ledger", "verify", "x.db", "--hed", "h")
    assert nested.stderr.startswith("usage: thunderline ledger verify ")
    none = run_cli()
    assert none.returncode == 2
    assert "choose a command: demo" in none.stderr


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    path = _ledger_with_events(tmp_path / "data", 2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "thunderline.cli", "ledger", "verify", str(path)],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()  # like `| head` that already exited
    with proc.stderr:
        stderr = proc.stderr.read().decode()
    assert proc.wait(60) == 141
    assert stderr == ""
