"""``thunderline ledger verify`` and ``ledger head`` run as subprocesses."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import thunderline.domains._ledger._core as ledger_module
from thunderline.domains._event import Event
from thunderline.domains._ledger._core import open_ledger

SRC = str(Path(ledger_module.__file__).resolve().parents[3])


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", "from thunderline.cli import main; raise SystemExit(main())", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    with open_ledger(path) as ledger:
        ledger.append_batch(
            [
                Event.new("system.heartbeat", type="heartbeat", source="gate", payload={"i": i})
                for i in range(5)
            ]
        )
    return path


def _tamper(path: Path, seq: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER ledger_records_no_update")
    conn.execute("DROP TRIGGER ledger_records_no_delete")
    conn.execute(
        "UPDATE ledger_records SET canonical = CAST(replace(CAST(canonical AS TEXT), "
        "'heartbeat', 'heartbeaT') AS BLOB) WHERE seq = ?",
        (seq,),
    )
    conn.commit()
    conn.close()


def test_verify_ok(ledger_path: Path) -> None:
    result = run("ledger", "verify", str(ledger_path))
    assert result.returncode == 0, result.stderr
    assert "ok: 6 records verified" in result.stdout
    assert result.stderr == ""


def test_verify_tampered_names_the_seq(ledger_path: Path) -> None:
    _tamper(ledger_path, 3)
    result = run("ledger", "verify", str(ledger_path))
    assert result.returncode == 1
    assert "seq 3: hash_mismatch" in result.stderr
    assert "Traceback" not in result.stderr
    as_json = run("ledger", "verify", str(ledger_path), "--json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert (report["ok"], report["first_bad_seq"], report["problem"]) == (
        False,
        3,
        "hash_mismatch",
    )


def test_head_then_truncation_detected(ledger_path: Path, tmp_path: Path) -> None:
    head_file = tmp_path / "head.json"
    result = run("ledger", "head", str(ledger_path), "--out", str(head_file))
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert set(printed) == {"seq", "hash", "signature", "key_id", "ledger_version"}
    assert printed["seq"] == 5
    assert json.loads(head_file.read_text()) == printed
    assert run("ledger", "verify", str(ledger_path), "--head", str(head_file)).returncode == 0
    conn = sqlite3.connect(ledger_path)
    conn.execute("DROP TRIGGER ledger_records_no_delete")
    conn.execute("DELETE FROM ledger_records WHERE seq >= 4")
    conn.commit()
    conn.close()
    assert run("ledger", "verify", str(ledger_path)).returncode == 0  # undetectable alone
    result = run("ledger", "verify", str(ledger_path), "--head", str(head_file))
    assert result.returncode == 1
    assert "seq 4: truncated" in result.stderr


def test_verify_with_trusted_public_key(ledger_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with open_ledger(other, data_dir=tmp_path / "otherkey"):
        pass
    pub = ledger_path.parent / "ledger_public_key.pem"
    assert run("ledger", "verify", str(ledger_path), "--public-key", str(pub)).returncode == 0
    result = run("ledger", "verify", str(other), "--public-key", str(pub))
    assert result.returncode == 1
    assert "seq 0: key_mismatch" in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["ledger", "verify", "/nonexistent/ledger.db"], "no ledger at /nonexistent/ledger.db"),
        (["ledger", "verify", "mysql://x/y"], "ledger option path_or_url"),
        (["ledger", "head", "/nonexistent/ledger.db"], "no such file"),
    ],
)
def test_errors_are_one_line(args: list[str], fragment: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"thunderline ledger {args[1]}: error: ")
    assert "Traceback" not in result.stderr


def test_bad_head_file_and_missing_key(ledger_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = run("ledger", "verify", str(ledger_path), "--head", str(bad))
    assert result.returncode == 2
    assert "signed head" in result.stderr
    assert "Traceback" not in result.stderr
    result = run("ledger", "head", str(ledger_path), "--data", str(tmp_path / "nokey"))
    assert result.returncode == 2
    assert "ledger_signing_key.pem: no such file" in result.stderr
    assert not (tmp_path / "nokey").exists()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"garbage" * 200)
    result = run("ledger", "verify", str(junk))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1


def test_head_of_garbage_is_not_a_ledger(tmp_path: Path) -> None:
    garbage = tmp_path / "GARBAGE"
    garbage.write_bytes(b"hello, not a database\n" * 200)
    before = sorted(p.name for p in tmp_path.iterdir())
    for action in ("head", "verify"):
        result = run("ledger", action, str(garbage))
        assert result.returncode == 2, result
        assert "not a thunderline ledger" in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no key created


def _overwrite_index_pages(path: Path) -> None:
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    (root,) = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'ledger_records_event_hash'"
    ).fetchone()
    conn.close()
    with open(path, "r+b") as file:  # keep the page header, scramble the cells
        file.seek((root - 1) * page_size + 12)
        file.write(b"\xa5" * (page_size - 12))


def test_verify_reports_overwritten_index_pages(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with open_ledger(path) as ledger:
        ledger.append_batch(
            [
                Event.new("system.heartbeat", type="heartbeat", source="gate", payload={"i": i})
                for i in range(300)
            ]
        )
    _overwrite_index_pages(path)
    result = run("ledger", "verify", str(path))
    assert result.returncode == 1, result
    assert "database_corrupt" in result.stderr
    assert "Traceback" not in result.stderr
    # and nothing is appended to it: opening it for writing refuses in one line
    size = path.stat().st_size
    with pytest.raises(ledger_module.LedgerCorruptError, match="integrity check failed"):
        open_ledger(path)
    assert path.stat().st_size == size


def test_damaged_head_refuses_appends(ledger_path: Path) -> None:
    _tamper(ledger_path, 5)  # the last record
    with pytest.raises(ledger_module.LedgerCorruptError, match="seq 5"):
        open_ledger(ledger_path)
    result = run("ledger", "head", str(ledger_path))
    assert result.returncode == 2
    assert "is damaged, refusing to append" in result.stderr
    assert result.stderr.count("\n") == 1
