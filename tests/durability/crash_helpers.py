"""Crash-testing the reference application for real: ``thunderline run`` in a subprocess.

A :class:`Trial` is one data directory (and, for PostgreSQL, one schema) that
several daemon runs share, one after the other: runs under load that end with
``kill -9`` or SIGTERM, then a quiet run (no load) stopped with SIGTERM. The
load (``durable_load_app``) appends each acknowledged event id to a file the
moment its publish returned; :meth:`Trial.check` compares that record, kept
outside the process under test, with the ledger and Link's sink.

Nothing here sleeps to let time pass except the chosen kill moment; waits poll
a file with generous bounds.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

from thunderline.domains import open_ledger

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
#: Bounds for a loaded 2-core machine; waits return as soon as the condition holds.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THUNDERLINE_", "OTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(SRC), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _wait(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@attrs.frozen
class Report:
    """What :meth:`Trial.check` found."""

    acknowledged: int
    lost: int  # acknowledged but not in the ledger: must be 0
    records: int  # events in the ledger
    sink_lines: int
    undelivered: int  # ledger records missing from the sink: must be 0
    duplicated_in_sink: int  # must be 0
    ledger_ok: bool
    shutting_down_errors: int
    other_errors: dict[str, int]


@attrs.define
class Trial:
    """One data directory shared by successive daemon runs."""

    backend: str = "asyncio"
    ledger_url: str | None = None
    schema: str | None = None
    dir: Path = attrs.field(factory=lambda: Path(tempfile.mkdtemp(prefix="tl-crash-", dir="/tmp")))
    runs: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def acks(self) -> Path:
        return self.dir / "acks.txt"

    @property
    def errors(self) -> Path:
        return self.dir / "errors.txt"

    @property
    def kills_path(self) -> Path:
        return self.dir / "kills.txt"

    def kills(self) -> int:
        """How many domain kills the load's killer did so far."""
        try:
            return self.kills_path.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    def wait_kills(self, count: int) -> None:
        _wait(lambda: self.kills() >= count, f"{count} domain kills", 60.0)

    @property
    def kill_stop(self) -> Path:
        return self.dir / "stop-killing"

    def stop_killing(self) -> None:
        """Make the load's killer stop, and wait until the domains served new acks."""
        self.kill_stop.touch()
        self.wait_acks(32)

    @property
    def log(self) -> Path:
        return self.dir / f"daemon-{self.runs}.log"

    def start(self, *, load: bool, kill: str = "", extra: dict[str, str] | None = None) -> None:
        """Start a daemon run (with the load or quiet) and wait for its startup line."""
        self.runs += 1
        env = {"THUNDERLINE_SHUTDOWN_TIMEOUT": "30"}
        if self.ledger_url is not None:
            env["THUNDERLINE_LEDGER"] = self.ledger_url
            env["THUNDERLINE_LEDGER_SCHEMA"] = self.schema or "thunderline_ledger"
        if load:
            env.update(
                LOAD_ACKS=str(self.acks),
                LOAD_ERRORS=str(self.errors),
                LOAD_KILL=kill,
                LOAD_KILL_STOP=str(self.kill_stop),
                LOAD_KILLS=str(self.kills_path),
            )
        env.update(extra or {})
        control = self.dir / f"control-{self.runs}.sock"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "thunderline.cli",
                    "run",
                    "durable_load_app:application",
                    "--control",
                    str(control),
                    "--data",
                    str(self.data),
                    "--backend",
                    self.backend,
                ],
                env=_env(env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait(self._started, "the daemon's startup line", START_TIMEOUT)

    def _started(self) -> bool:
        assert self.proc is not None
        text = self.log.read_text(errors="replace")
        if "control socket" in text:
            return True
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited ({self.proc.returncode}):\n{text}")
        return False

    def acknowledged(self) -> int:
        try:
            return self.acks.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    def wait_acks(self, more: int) -> None:
        """Wait until ``more`` further events were acknowledged."""
        target = self.acknowledged() + more
        _wait(lambda: self.acknowledged() >= target, f"{target} acknowledged events", 60.0)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> str:
        """Stop gracefully; returns the run's log (fails unless the exit status is 0)."""
        assert self.proc is not None
        self.proc.send_signal(signum)
        status = self.proc.wait(STOP_TIMEOUT)
        text = self.log.read_text(errors="replace")
        assert status == 0, f"exit status {status}:\n{text}"
        return text

    def quiet_restart(self) -> str:
        """A run without load, stopped at once: Link delivers whatever the ledger holds."""
        self.start(load=False)
        return self.stop()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    def check(self) -> Report:
        """Compare the acknowledged ids with the ledger, and the ledger with the sink."""
        acked = self.acks.read_text().split() if self.acks.exists() else []
        errors = collections.Counter(
            self.errors.read_text().split() if self.errors.exists() else []
        )
        if self.ledger_url is not None:
            ledger = open_ledger(self.ledger_url, read_only=True, schema=self.schema or "")
        else:
            ledger = open_ledger(self.data / "ledger.db", read_only=True)
        with ledger:
            records = [r for r in ledger.read() if not r.is_genesis]
            report = ledger.verify()
        ids = {r.event_id for r in records}
        sink = self.data / "link.jsonl"
        lines = sink.read_bytes().splitlines() if sink.exists() else []
        seqs = [json.loads(line)["seq"] for line in lines]
        counts = collections.Counter(seqs)
        return Report(
            acknowledged=len(acked),
            lost=len(set(acked) - ids),
            records=len(records),
            sink_lines=len(lines),
            undelivered=len({r.seq for r in records} - set(counts)),
            duplicated_in_sink=sum(c - 1 for c in counts.values()),
            ledger_ok=report.ok and len(ids) == len(records),
            shutting_down_errors=errors.pop("shutting_down", 0),
            other_errors=dict(errors),
        )
