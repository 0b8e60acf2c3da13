"""Stopping a daemon under ``thunderline publish`` load: the publisher learns what was acknowledged.

Found by a fault campaign: SIGTERM, SIGINT or ``thunderline stop`` while a
``publish --count N`` was running cut its connection, so the publisher got
"the daemon closed the connection before answering" and no count of what had
been acknowledged. Now the daemon stops publishing, answers the request (the
acknowledged events are committed; the rest are reported failed with
``ShuttingDownError``), then stops; every acknowledged event is in the ledger
and in Link's sink exactly once.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_helpers import WAIT_TIMEOUT, Daemon, cli_env, poll, run_cli

COUNT = 100_000


def _sink_events(data: Path) -> list[str]:
    sink = data / "link.jsonl"
    if not sink.exists():
        return []
    lines = sink.read_text().splitlines()
    return [json.loads(line)["event"]["id"] for line in lines if line.endswith("}")]


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "stop"])
def test_stopping_under_publish_load_answers_the_publisher_with_its_counts(
    how: str, daemon_factory: Callable[..., Daemon], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    app = "thunderline.domains:application"
    daemon = daemon_factory("--data", str(data), app=app, env={"OTEL_SDK_DISABLED": "true"})
    daemon.start()
    command = [sys.executable, "-m", "thunderline.cli", "publish", "system.heartbeat"]
    publisher = subprocess.Popen(
        [*command, "--count", str(COUNT), "--control", daemon.control],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        poll(lambda: len(_sink_events(data)) >= 20, "events reaching Link's sink", timeout=60)
        if how == "stop":
            assert run_cli("stop", "--control", daemon.control).returncode == 0
        else:
            daemon.signal(getattr(signal, how))
        out, err = publisher.communicate(timeout=120)
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.wait()
    assert daemon.wait_exit(timeout=120) == 0, daemon.log()
    assert publisher.returncode == 1, (out, err)
    assert "Traceback" not in err + daemon.log()
    match = re.search(r"(\d+) acknowledged, (\d+) failed", out)
    assert match is not None, (out, err)
    acknowledged, failed = int(match.group(1)), int(match.group(2))
    assert acknowledged >= 20
    assert acknowledged + failed == COUNT
    assert "ShuttingDownError" in out + err
    sink = _sink_events(data)
    assert len(sink) == len(set(sink))  # exactly once
    # every acknowledged event was committed and relayed; nothing else was published
    assert len(sink) == acknowledged
    verified = run_cli("ledger", "verify", str(data / "ledger.db"), timeout=WAIT_TIMEOUT * 3)
    assert verified.returncode == 0, verified.stderr
    assert f"ok: {acknowledged + 1} records" in verified.stdout
