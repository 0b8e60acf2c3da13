"""Interrupting ``thunderline demo`` (one node) mid-run: one line with what was acknowledged.

Found by a fault campaign: SIGTERM killed the one-node demo silently (status
143, nothing said, no orderly stop) and Ctrl-C said only "interrupted", so a
user could not tell how many events had been acknowledged. Now both stop the
demo the same way, exit 130, and the one line says how many events were
acknowledged; every one of them is in the ledger and in Link's sink.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import thunderline.domains as domains_module

SRC = str(Path(domains_module.__file__).resolve().parents[2])
BOUND = 120.0
DEMO = [sys.executable, "-m", "thunderline.cli", "demo"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "THUNDERLINE_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    env["OTEL_TRACES_EXPORTER"] = "none"
    return env


def _sink_ids(data: Path) -> list[str]:
    sink = data / "link.jsonl"
    if not sink.exists():
        return []
    lines = sink.read_text().splitlines()
    return [json.loads(line)["event"]["id"] for line in lines if line.endswith("}")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_demo_says_what_was_acknowledged(
    signum: signal.Signals, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    demo = subprocess.Popen(
        [*DEMO, "--events", "100000", "--progress", "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.append(demo.stderr.read()), daemon=True)  # type: ignore[union-attr]
    try:
        deadline = time.monotonic() + BOUND
        while len(_sink_ids(data)) < 50 and time.monotonic() < deadline:
            assert demo.poll() is None, "the demo ended before it was interrupted"
            time.sleep(0.05)
        assert len(_sink_ids(data)) >= 50, "no events reached Link's sink"
        reader.start()
        demo.send_signal(signum)
        status = demo.wait(BOUND)
        reader.join(BOUND)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for stream in (demo.stdout, demo.stderr):
            if stream is not None:
                stream.close()
    err = stderr[0] if stderr else ""
    assert status == 130, err
    assert "Traceback" not in err, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if "thunderline demo" in line]
    assert len(lines) == 1, err
    match = re.search(r"interrupted: (\d+) events acknowledged", lines[0])
    assert match is not None, lines
    acknowledged = int(match.group(1))
    assert acknowledged >= 50
    sink = _sink_ids(data)
    assert len(sink) == len(set(sink))
    verified = _verify(data)
    records = re.search(r"ok: (\d+) records", verified)
    assert records is not None, verified
    in_ledger = int(records.group(1)) - 1
    assert in_ledger >= acknowledged  # every acknowledged event is in the ledger
    assert len(sink) == in_ledger  # an orderly stop: Link delivered every committed record
    # Link relays what it had not delivered when the demo runs again (the sink is its cursor)
    again = subprocess.run(
        [*DEMO, "--events", "1", "--data", str(data)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=BOUND,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    sink = _sink_ids(data)
    assert len(sink) == len(set(sink)) == in_ledger + 1


def _verify(data: Path) -> str:
    verified = subprocess.run(
        [sys.executable, "-m", "thunderline.cli", "ledger", "verify", str(data / "ledger.db")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=BOUND,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    return verified.stdout
