"""Nothing on the control socket stops the daemon (issue 12), on both backends.

One real daemon per backend, started under ``ulimit -n 256``, survives in
sequence: a plain-text line, 50,000 ``[``, a 5,000-digit id, a NaN id, a
``1e999`` id, a 16 MiB line and 300 idle connections (more than it has file
descriptors), answering a ``processes`` request on a new connection after
each, and ``thunderline ps`` before the first and after the last; SIGTERM then
exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import WAIT_TIMEOUT, Daemon, poll, run_cli_in_process

MakeDaemon = Callable[..., Daemon]
BACKENDS = ["asyncio", "trio"]
REFERENCE_APP = "thunderline.domains:application"


def _ps_answers(daemon: Daemon) -> None:
    """``thunderline ps`` (its ``main``, in this process) lists the application."""
    ps = run_cli_in_process("ps", "--control", daemon.control)
    assert ps.returncode == 0, ps.stderr
    assert "thunderline.vault" in ps.stdout
    assert "Traceback" not in ps.stderr


def _still_serving(daemon: Daemon) -> None:
    """A new connection is accepted and answered (what ``thunderline ps`` asks, without the CLI)."""
    names = {row["name"] for row in daemon.request("processes")}
    assert "thunderline.vault" in names, names


def _error_code(daemon: Daemon, payload: bytes) -> dict[str, Any]:
    (reply,) = daemon.raw(payload)
    assert reply["ok"] is False, reply
    assert "id" not in reply, reply
    return dict(reply["error"])


def _read_line(conn: socket.socket) -> Any:
    buffer = b""
    while b"\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    return json.loads(buffer.split(b"\n", 1)[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_nothing_on_the_socket_stops_the_daemon(daemon_factory: MakeDaemon, backend: str) -> None:
    daemon = daemon_factory(
        "--backend",
        backend,
        "--control-max-connections",
        "1000",  # above the fd limit: 300 idle connections run it out of descriptors
        app=REFERENCE_APP,
        max_open_files=256,
    ).start()
    _ps_answers(daemon)

    plain = _error_code(daemon, b"hello daemon, please stop\n")
    assert plain["code"] == "malformed_json"
    _still_serving(daemon)

    nested = _error_code(daemon, b"[" * 50_000 + b"\n")
    assert nested["code"] == "malformed_json"
    _still_serving(daemon)

    long_id = b'{"command": "status", "id": ' + b"7" * 5000 + b"}\n"
    digits = _error_code(daemon, long_id)
    assert digits["code"] == "malformed_json"
    assert "digits" in digits["message"]
    _still_serving(daemon)

    nan = _error_code(daemon, b'{"command": "status", "id": NaN}\n')
    assert nan["code"] == "malformed_json"
    assert "NaN" in nan["message"]
    _still_serving(daemon)

    huge = _error_code(daemon, b'{"command": "nope", "id": 1e999}\n')
    assert huge["code"] == "malformed_json"
    assert "out of range" in huge["message"]
    _still_serving(daemon)

    conn = daemon.connect()
    conn.sendall(b"x" * (16 * 1024 * 1024) + b"\n")
    too_large = _read_line(conn)
    assert too_large["error"]["code"] == "request_too_large"
    # the connection stays usable after the oversized line
    (after,) = daemon.raw(b'{"command": "status", "id": 1}\n', sock=conn)
    assert (after["ok"], after["id"]) == (True, 1)
    conn.close()
    _still_serving(daemon)

    idle: list[socket.socket] = []
    try:
        for _ in range(300):
            idle.append(daemon.connect())
        daemon.wait_for_log("accept failed (EMFILE")
    finally:
        for conn in idle:
            conn.close()
    daemon.wait_for_log("accepting connections again")
    _ps_answers(daemon)
    log = daemon.log()
    assert log.count("accept failed") == 1, log
    assert "Traceback" not in log

    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    assert not Path(daemon.control).exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_ids_are_str_or_int_in_range(daemon_factory: MakeDaemon, backend: str) -> None:
    daemon = daemon_factory("--backend", backend).start()
    conn = daemon.connect()
    try:
        for good in ("abc", 0, -(2**53) + 1, 2**53 - 1):
            line = json.dumps({"command": "status", "id": good}).encode() + b"\n"
            (reply,) = daemon.raw(line, sock=conn)
            assert (reply["ok"], reply["id"]) == (True, good)
        for bad in (2**53, 1.5, True, [1], {"a": 1}, "x" * 257):
            line = json.dumps({"command": "status", "id": bad}).encode() + b"\n"
            (reply,) = daemon.raw(line, sock=conn)
            assert reply["ok"] is False, bad
            assert reply["error"]["code"] == "invalid_request"
            assert "id" not in reply
        # deep nesting inside a field, NaN / Infinity anywhere
        for payload in (
            b'{"command": "info", "pid": ' + b"[" * 3000 + b"\n",
            b'{"command": "status", "x": Infinity}\n',
            b'{"command": "status", "x": -1e400}\n',
        ):
            (reply,) = daemon.raw(payload, sock=conn)
            assert reply["error"]["code"] == "malformed_json", payload[:40]
        (ok,) = daemon.raw(b'{"command": "status"}\n', sock=conn)
        assert ok["ok"] is True
    finally:
        conn.close()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_connection_cap_refuses_clearly(daemon_factory: MakeDaemon, backend: str) -> None:
    daemon = daemon_factory("--backend", backend, "--control-max-connections", "3").start()
    held = [daemon.connect() for _ in range(3)]
    try:
        for conn in held:  # each is being served
            (reply,) = daemon.raw(b'{"command": "status"}\n', sock=conn)
            assert reply["ok"] is True
        extra = daemon.connect()
        refusal = _read_line(extra)
        extra.close()
        assert refusal["ok"] is False
        assert refusal["error"]["code"] == "too_many_connections"
        assert "at most 3" in refusal["error"]["message"]
        cli = run_cli_in_process("ps", "--control", daemon.control)
        assert cli.returncode == 1
        assert cli.stderr.count("\n") == 1, cli.stderr
        assert "too_many_connections" in cli.stderr
    finally:
        for conn in held:
            conn.close()
    poll(
        lambda: run_cli_in_process("ps", "--control", daemon.control).returncode == 0, "ps answered"
    )
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_silent_connections_are_closed(daemon_factory: MakeDaemon, backend: str) -> None:
    daemon = daemon_factory("--backend", backend, "--control-idle-timeout", "0.5").start()
    silent = daemon.connect()
    half = daemon.connect()
    try:
        half.sendall(b'{"command": "sta')  # half a line, then nothing
        for conn in (silent, half):
            conn.settimeout(WAIT_TIMEOUT)
            assert conn.recv(1) == b""  # closed by the daemon
    finally:
        silent.close()
        half.close()
    assert daemon.request("status")["backend"] == backend
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o755 | 0o020])
def test_socket_directory_open_to_others_is_refused(
    daemon_factory: MakeDaemon, tmp_path: Path, mode: int
) -> None:
    open_dir = tmp_path / "open-dir"
    open_dir.mkdir()
    open_dir.chmod(mode)
    daemon = daemon_factory(control=str(open_dir / "control.sock")).start(wait=False)
    assert daemon.wait_exit() == 2
    log = daemon.log()
    assert "writable by group or others" in log
    assert f"{mode:04o}" in log
    assert "Traceback" not in log
    assert not (open_dir / "control.sock").exists()


def test_data_files_are_private(daemon_factory: MakeDaemon) -> None:
    daemon = daemon_factory(app=REFERENCE_APP)
    data = daemon.dir / "data"
    daemon.args += ["--data", str(data)]
    daemon.start()
    published = run_cli_in_process("publish", "system.heartbeat", "--control", daemon.control)
    assert published.returncode == 0, published.stderr
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    created = sorted(p.name for p in data.iterdir())
    assert {"ledger.db", "link.jsonl"} <= set(created)
    for path in data.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (path, oct(path.stat().st_mode))
    assert os.stat(data).st_mode & 0o077 == 0
