"""``thunderline run`` as a subprocess: control commands, restarts, signals, exit statuses."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon_helpers import WAIT_TIMEOUT, Daemon, cli_env, poll, run_cli, run_cli_in_process

MakeDaemon = Callable[..., Daemon]


def _child(tree: dict[str, Any], *path: str) -> dict[str, Any]:
    node = tree
    for child_id in path:
        (node,) = [c for c in node["children"] if c["id"] == child_id]
    return node


def test_control_commands_restart_and_stop(daemon_factory: MakeDaemon) -> None:
    daemon = daemon_factory()
    data = daemon.dir / "state"
    daemon.args += ["--data", str(data)]
    daemon.start()

    status = daemon.request("status")
    assert status["data"] == str(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert status["app"] == "daemon_example_app:application"
    assert status["backend"] == "asyncio"
    assert status["control"] == daemon.control
    assert status["os_pid"] == daemon.proc.pid  # type: ignore[union-attr]

    processes = daemon.request("processes")
    by_name = {p["name"]: p for p in processes if p["name"]}
    assert set(by_name) >= {"example", "inner", "alpha", "beta"}
    example = by_name["example"]
    assert example["label"] == "Supervisor"
    assert example["trap_exit"] is True
    assert by_name["alpha"]["pid"] in example["links"]
    assert {"pid", "status", "mailbox", "handled", "links", "monitors"} <= set(example)

    info = daemon.request("info", pid=by_name["beta"]["pid"])
    assert info["name"] == "beta"
    assert info["parent"] == example["pid"]
    assert daemon.request("info", pid="beta")["pid"] == info["pid"]

    tree = daemon.request("tree")
    assert tree["id"] == "example"
    assert tree["pid"] == example["pid"]
    assert [c["id"] for c in tree["children"]] == ["alpha", "inner", "beta"]
    inner = _child(tree, "inner")
    assert inner["type"] == "supervisor"
    assert inner["shutdown"] == "infinity"
    assert [c["id"] for c in inner["children"]] == ["gamma", "delta"]
    beta = _child(tree, "beta")
    assert (beta["type"], beta["restart"], beta["restarts"]) == ("worker", "permanent", 0)

    sagas = daemon.request("sagas")
    assert sagas["sagas"] == []
    assert "thunderline.sagas" in sagas["note"]

    stats = daemon.request("stats")
    assert stats["supervisors"] == 2
    assert stats["workers"] == 4
    assert stats["restarts"] == 0

    # kill a worker through the runtime; its supervisor restarts it
    killed = daemon.request("exit", pid=beta["pid"], reason="kill")
    assert killed == {"pid": beta["pid"], "reason": "KILL"}

    def restarted() -> dict[str, Any] | None:
        node = _child(daemon.request("tree"), "beta")
        return node if node["pid"] not in (None, beta["pid"]) else None

    new_beta = poll(restarted, "beta restarted with a new pid")
    assert new_beta["restarts"] == 1
    assert daemon.request("tree")["window_restarts"] == 1
    assert daemon.request("stats")["restarts"] == 1

    # the CLI clients against the same daemon (in this process; `stop` as a real command)
    ps = run_cli_in_process("ps", "--control", daemon.control)
    assert ps.returncode == 0, ps.stderr
    assert "alpha" in ps.stdout
    assert ps.stdout.splitlines()[0].split()[:4] == ["PID", "NAME", "STATUS", "MBOX"]
    drawn = run_cli_in_process("tree", "--control", daemon.control)
    assert drawn.returncode == 0, drawn.stderr
    lines = drawn.stdout.splitlines()
    assert lines[0].startswith(f"example {tree['pid']} supervisor")
    assert lines[1].startswith("├── alpha")
    assert lines[3].startswith("│   ├── gamma")
    assert lines[5].startswith(f"└── beta {new_beta['pid']} worker permanent restarts=1")
    as_json = run_cli_in_process("sagas", "--json", "--control", daemon.control)
    assert json.loads(as_json.stdout)["sagas"] == []
    top = run_cli_in_process(
        "top", "--iterations", "2", "--interval", "0.05", "--control", daemon.control
    )
    assert top.returncode == 0, top.stderr
    assert top.stdout.count("restarts 1") == 2
    assert "sagas in flight 0" in top.stdout

    stop = run_cli("stop", "--control", daemon.control)
    assert stop.returncode == 0, stop.stderr
    assert daemon.wait_exit() == 0
    assert not Path(daemon.control).exists()


def test_socket_owner_only_and_garbage_answered(daemon_factory: MakeDaemon) -> None:
    daemon = daemon_factory().start()
    socket_mode = stat.S_IMODE(os.stat(daemon.control).st_mode)
    dir_mode = stat.S_IMODE(os.stat(Path(daemon.control).parent).st_mode)
    assert socket_mode == 0o600
    assert dir_mode == 0o700

    conn = daemon.connect()
    garbage = [
        (b"{not json\n", "malformed_json"),
        (b"\xff\xfe\n", "malformed_json"),
        (b"[1, 2]\n", "invalid_request"),
        (b'{"cmd": "tree"}\n', "invalid_request"),
        (b'{"command": "reboot", "id": 3}\n', "unknown_command"),
        (b'{"command": "info", "pid": "<9.999>"}\n', "no_such_process"),
        (b'{"command": "exit", "pid": 12}\n', "bad_request"),
        (b"x" * (200 * 1024) + b"\n", "request_too_large"),
    ]
    for payload, code in garbage:
        (reply,) = daemon.raw(payload, sock=conn)
        assert reply["ok"] is False, (payload[:40], reply)
        assert reply["error"]["code"] == code, (payload[:40], reply)
    (unknown,) = daemon.raw(b'{"command": "reboot", "id": 3}\n', sock=conn)
    assert unknown["id"] == 3
    assert "processes" in unknown["error"]["message"]
    # the same connection still works, and so does a new one
    (ok,) = daemon.raw(b'{"command": "status", "id": "after"}\n', sock=conn)
    assert ok["ok"] is True
    assert ok["id"] == "after"
    conn.close()
    # a client that disconnects mid-line does not disturb the daemon
    half = daemon.connect()
    half.sendall(b'{"command": "sta')
    half.close()
    assert daemon.request("status")["backend"] == "asyncio"

    daemon.signal(signal.SIGINT)
    assert daemon.wait_exit() == 0


def test_sigterm_stops_newest_first_with_json_logs(daemon_factory: MakeDaemon) -> None:
    daemon = daemon_factory("--log-format", "json", "--backend", "trio").start()
    assert daemon.request("status")["backend"] == "trio"
    beta = _child(daemon.request("tree"), "beta")
    daemon.request("exit", pid=beta["pid"], reason="kill")
    poll(lambda: _child(daemon.request("tree"), "beta")["restarts"] == 1, "beta restarted")

    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    records = [json.loads(line) for line in daemon.log().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    terminating = [
        r["message"].split()[2] for r in records if r["message"].endswith("terminating: SHUTDOWN")
    ]
    assert terminating == ["beta", "delta", "gamma", "alpha"]
    (report,) = [r for r in records if r.get("context") == "child_terminated"]
    assert report["logger"] == "thunderline.supervisor"
    assert report["supervisor"] == "example"
    assert report["reason"] == "KILLED"
    assert report["offender"]["id"] == "beta"
    assert report["offender"]["pid"] == beta["pid"]
    assert report["offender"]["restart"] == "permanent"
    messages = [r["message"] for r in records]
    startup = [m for m in messages if "control socket" in m]
    assert len(startup) == 1
    assert "on trio" in startup[0]
    # Tracing follows the OpenTelemetry defaults (no OTEL_* set): OTLP to localhost:4318.
    assert startup[0].endswith(
        "; tracing on (OTLP/HTTP http://localhost:4318/v1/traces, "
        "sampler parentbased_always_on); metrics off"
    )
    assert "SIGTERM received: shutting down" in messages
    assert messages.index("SIGTERM received: shutting down") < messages.index(
        "application 'example' stopped"
    )


def test_top_supervisor_giving_up_exits_non_zero(daemon_factory: MakeDaemon) -> None:
    daemon = daemon_factory(env={"EXAMPLE_INTENSITY": "0"}).start()
    alpha = _child(daemon.request("tree"), "alpha")
    daemon.request("exit", pid=alpha["pid"])
    assert daemon.wait_exit() == 1
    log = daemon.log()
    assert "reached_max_restart_intensity" in log
    assert "application 'example' died: top supervisor" in log
    assert not Path(daemon.control).exists()


def test_second_sigint_during_shutdown_exits_at_once(daemon_factory: MakeDaemon) -> None:
    daemon = daemon_factory(env={"EXAMPLE_SLOW_STOP": "60"}).start()
    daemon.signal(signal.SIGINT)
    daemon.wait_for_log("example worker beta terminating")
    daemon.signal(signal.SIGINT)
    assert daemon.wait_exit() == 130
    log = daemon.log()
    assert "second SIGINT during shutdown: exiting at once" in log
    assert "example worker alpha terminating" not in log
    assert not Path(daemon.control).exists()


def test_socket_in_use_is_refused(daemon_factory: MakeDaemon) -> None:
    first = daemon_factory().start()
    second = daemon_factory(control=first.control).start(wait=False)
    assert second.wait_exit() == 2
    assert "another daemon is listening" in second.log()
    assert "example worker" not in second.log()  # refused before the application started
    assert first.request("status")["os_pid"] == first.proc.pid  # type: ignore[union-attr]
    first.signal(signal.SIGTERM)
    assert first.wait_exit() == 0


def test_clients_without_daemon_and_bad_app(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing.sock")
    for command in ("ps", "tree", "sagas", "stop", "top"):
        result = run_cli(command, "--control", missing, "--once" if command == "top" else "--json")
        assert result.returncode == 1, (command, result)
        assert result.stderr.count("\n") == 1, result.stderr
        assert "no thunderline daemon listens here" in result.stderr
        assert missing in result.stderr

    bad = run_cli("run", "no_such_module_xyz:app", "--control", missing)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1, bad.stderr
    assert "no_such_module_xyz" in bad.stderr

    absent = run_cli("run", "daemon_example_app:no_such_attribute", "--control", missing)
    assert absent.returncode == 2
    assert absent.stderr.count("\n") == 1, absent.stderr
    assert "daemon_example_app:no_such_attribute" in absent.stderr

    wrong_shape = run_cli("run", "daemon_example_app:not_a_spec", "--control", missing)
    assert wrong_shape.returncode == 2
    assert "received 42" in wrong_shape.stderr


def test_run_application_blocks_until_sigterm(tmp_path: Path) -> None:
    script = (
        "import daemon_example_app as ex, logging, sys\n"
        "from thunderline._daemon import run_application\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
        "run_application(ex.application, backend=sys.argv[1])\n"
        "print('returned', flush=True)\n"
    )
    for backend in ("asyncio", "trio"):
        log = tmp_path / f"{backend}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", script, backend], env=cli_env(), stdout=out, stderr=out
            )
        try:
            poll(lambda log=log: "application 'example' started" in log.read_text(), "startup")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(WAIT_TIMEOUT) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = log.read_text()
        assert text.index("worker beta terminating") < text.index("worker alpha terminating")
        assert text.rstrip().endswith("returned")
