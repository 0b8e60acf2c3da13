"""Running ``thunderline run`` as a subprocess: start, poll its log and socket, always kill it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
#: Where daemons and demos started by the tests keep their default data ($XDG_STATE_HOME).
STATE_HOME = tempfile.mkdtemp(prefix="tl-state-", dir="/tmp")
#: Generous bounds for a loaded 2-core machine; every wait polls and returns early.
START_TIMEOUT = 30.0
WAIT_TIMEOUT = 20.0


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a thunderline subprocess that can import the example app.

    ``THUNDERLINE_*`` and ``OTEL_*`` variables of the test run are left out, so
    the daemon's options (tracing, metrics) come from the test alone.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THUNDERLINE_", "OTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(SRC), env.get("PYTHONPATH", "")])
    env["XDG_STATE_HOME"] = STATE_HOME
    env.update(extra or {})
    return env


def run_cli(*args: str, timeout: float = WAIT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``thunderline ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "thunderline.cli", *args],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_cli_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``thunderline ARGS`` as :func:`run_cli` does, but in this process.

    The same ``main`` with the same arguments and environment (:func:`cli_env`),
    stdout and stderr captured, the exit status returned or raised as
    ``SystemExit``; what is left out is the interpreter's start-up (about 0.3 s
    of CPU per call). For the control-socket clients, which configure nothing
    process-wide; the exit status and one-line errors of the real command are
    tested with :func:`run_cli` (``test_cli_errors.py``, ``test_daemon_process.py``).
    """
    from thunderline.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(cli_env())
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(list(args))
            except SystemExit as exc:  # argparse's usage errors
                status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(
        ["thunderline", *args], status, out.getvalue(), err.getvalue()
    )


def poll(check: Callable[[], Any], what: str, timeout: float = WAIT_TIMEOUT) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class Daemon:
    """One ``thunderline run`` subprocess with its own socket directory and log file."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        app: str = "daemon_example_app:application",
        control: str | None = None,
        max_open_files: int | None = None,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tl-", dir="/tmp"))
        # a directory the daemon must create itself (0700)
        self.control = control or str(self.dir / "run" / "control.sock")
        self.log_path = self.dir / "daemon.log"
        self.args = [app, "--control", self.control, *args]
        # the default data directory ($XDG_STATE_HOME/thunderline) stays inside the test's dir
        self.env = {"XDG_STATE_HOME": str(self.dir / "state-home"), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.max_open_files = max_open_files

    def _limit(self) -> None:  # runs in the child before exec (ulimit -n)
        if self.max_open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_open_files, self.max_open_files))

    def start(self, *, wait: bool = True) -> Daemon:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "thunderline.cli", "run", *self.args],
                env=cli_env(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._limit if self.max_open_files is not None else None,
            )
        if wait:
            self.wait_for_log("control socket", timeout=START_TIMEOUT)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = WAIT_TIMEOUT) -> str:
        def found() -> bool:
            if text in self.log():
                return True
            if self.proc is not None and self.proc.poll() is not None and text not in self.log():
                raise AssertionError(
                    f"daemon exited ({self.proc.returncode}) before logging {text!r}:\n{self.log()}"
                )
            return False

        poll(found, f"{text!r} in the daemon log", timeout)
        return self.log()

    def wait_exit(self, timeout: float = WAIT_TIMEOUT) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon still running after {timeout} s:\n{self.log()}") from None

    def signal(self, signum: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def raw(self, payload: bytes, replies: int = 1, sock: socket.socket | None = None) -> list[Any]:
        """Send raw bytes, read ``replies`` reply lines."""
        own = sock is None
        conn = sock or self.connect()
        try:
            conn.sendall(payload)
            buffer = b""
            answers: list[Any] = []
            while len(answers) < replies:
                chunk = conn.recv(65536)
                if not chunk:
                    raise AssertionError(f"connection closed after {answers}")
                buffer += chunk
                while b"\n" in buffer and len(answers) < replies:
                    line, buffer = buffer.split(b"\n", 1)
                    answers.append(json.loads(line))
            return answers
        finally:
            if own:
                conn.close()

    def connect(self) -> socket.socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(WAIT_TIMEOUT)
        conn.connect(self.control)
        return conn

    def request(self, command: str, **args: Any) -> Any:
        """One request; returns the result, fails the test on an error reply."""
        (reply,) = self.raw(json.dumps({"command": command, **args}).encode() + b"\n")
        assert reply["ok"], reply
        return reply["result"]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT_TIMEOUT)
