"""``thunderline demo`` and ``thunderline ledger verify`` run as subprocesses (L1, L2, T1)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import thunderline.domains as domains_module

SRC = str(Path(domains_module.__file__).resolve().parents[2])


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    for name in [name for name in env if name.startswith("OTEL_")]:
        del env[name]
    env["OTEL_TRACES_EXPORTER"] = "none"  # the tree is printed; nothing goes to localhost:4318
    return subprocess.run(
        [sys.executable, "-m", "thunderline.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_demo_json_then_ledger_verify(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = cli("demo", "--events", "3", "--json", "--data", str(data))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["events"] == summary["reached_link"] == 3
    assert summary["ledger_ok"] is True
    assert summary["data_dir"] == str(data)
    assert len(summary["trace_ids"]) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in summary["trace_ids"])
    assert summary["first_trace_id"] == summary["trace_ids"][0]
    assert summary["first_trace_spans"] >= 9

    verify = cli("ledger", "verify", str(data / "ledger.db"))
    assert verify.returncode == 0, verify.stderr
    assert "ok" in verify.stdout

    # tamper with one record: verify names the first bad seq and exits 1 (L2)
    conn = sqlite3.connect(data / "ledger.db")
    triggers = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
    for trigger in triggers:
        conn.execute(f'DROP TRIGGER "{trigger}"')
    (table,) = {
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        if "record" in r[0]
    }
    conn.execute(
        f"UPDATE {table} SET canonical = replace(canonical, 'heartbeat', 'heartbeaT') WHERE seq = 2"
    )
    conn.commit()
    conn.close()
    tampered = cli("ledger", "verify", str(data / "ledger.db"))
    assert tampered.returncode == 1, (tampered.stdout, tampered.stderr)
    assert "seq 2" in tampered.stdout + tampered.stderr
    assert "Traceback" not in tampered.stderr


def test_demo_gives_each_event_its_own_trace_t1(tmp_path: Path) -> None:
    proc = cli("demo", "--events", "3", "--json", "--data", str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert len(set(summary["trace_ids"])) == 3, summary["trace_ids"]


def test_demo_prints_the_first_events_span_tree(tmp_path: Path) -> None:
    proc = cli("demo", "--data", str(tmp_path / "data"), "--backend", "trio")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    match = re.search(r"trace id of the first event: ([0-9a-f]{32})", out)
    assert match is not None, out
    tree = [line for line in out.splitlines() if line.startswith("  ")]
    assert tree[0].strip().startswith("[gate] gate.publish"), out
    for domain, name in [
        ("flow", "flow.publish_event"),
        ("bolt", "bolt.run_saga"),
        ("bolt", "bolt.saga_execution"),
        ("bolt", "saga.step persist"),
        ("vault", "vault.append"),
        ("bolt", "saga.step notify"),
        ("link", "link.transport_emit"),
    ]:
        assert any(f"[{domain}] {name}" in line for line in tree), (name, out)
    # Flow's commit (vault.append) is drawn directly below gate.publish, the saga deeper
    persist = next(line for line in tree if "saga.step persist" in line)
    append = next(line for line in tree if "vault.append" in line)
    assert append.index("[vault]") < persist.index("[bolt]")
    assert "1/1 events reached Link" in out
    assert "ledger: ok" in out


def test_demo_bad_option_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    proc = cli("demo", "--events", "0", "--data", str(tmp_path / "data"))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "--events" in proc.stderr
