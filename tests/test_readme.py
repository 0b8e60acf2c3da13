"""The README, executed: every Python block runs as written and prints what the README shows.

A Python block is run as a script in a fresh interpreter (``python block.py``);
a block that defines ``test_*`` functions is run as a test module under pytest,
on asyncio and on trio. When a ``text`` block follows a Python block, it is the
output the example prints, and the run must print exactly that. The tracing
example exports to an OTLP/HTTP receiver started by the test, which must
receive its spans. The reference application's shell block (demo, then the
ledger commands) runs as written in a scratch directory. The "Where things
happen" table is checked against the source tree.
"""

from __future__ import annotations

import ast
import http.server
import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```python\n(?P<code>.*?)```(?:\s*```text\n(?P<output>.*?)```)?", re.S)
# Both backends for a test-module block, as the project's own conftest does.
CONFTEST = """
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""


def _blocks() -> list[tuple[str, str | None]]:
    return [(m["code"], m["output"]) for m in BLOCK.finditer(README.read_text())]


EXAMPLES = {
    "class Counter": "counter",
    "async def echo": "echo",
    "SagaBuilder(": "saga",
    "start_saga_supervisor(journal=": "durable-saga",
    "def test_": "property-test",
    "telemetry.span": "tracing",
    "resolve_config(": "telemetry-config",
    "class Door(": "state-machine",
    "task_async_stream(": "tasks",
    "pg_monitor(": "process-groups",
    "dist.NatsServer": "cluster",
}


def _block_id(code: str) -> str:
    if "start_saga_supervisor(journal=" in code:  # also a saga example: the specific one wins
        return "durable-saga"
    return next((eid for marker, eid in EXAMPLES.items() if marker in code), "unknown")


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_readme_has_the_examples() -> None:
    ids = [_block_id(code) for code, _ in _blocks()]
    assert ids == list(EXAMPLES.values()), "a README example was added, removed or moved"


@pytest.mark.parametrize(
    ("code", "output"),
    [b for b in _blocks() if "telemetry.configure" not in b[0]],
    ids=[_block_id(c) for c, _ in _blocks() if "telemetry.configure" not in c],
)
def test_readme_example_runs_as_written(code: str, output: str | None, tmp_path: Path) -> None:
    if "def test_" in code:
        (tmp_path / "test_example.py").write_text(code)
        (tmp_path / "conftest.py").write_text(CONFTEST)
        out = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"], tmp_path)
        assert re.search(r"\b2 passed\b", out), out
    else:
        (tmp_path / "example.py").write_text(code)
        out = _run(["example.py"], tmp_path)
    if output is not None:
        assert out == output


class _Receiver:
    """An OTLP/HTTP traces endpoint on loopback that keeps (trace id, span name) pairs."""

    def __init__(self) -> None:
        self.spans: list[tuple[bytes, str]] = []
        spans = self.spans

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        spans.extend((s.trace_id, s.name) for s in scope_spans.spans)
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_readme_tracing_example_exports_one_trace(tmp_path: Path) -> None:
    code, output = next(b for b in _blocks() if "telemetry.configure" in b[0])
    (tmp_path / "example.py").write_text(code)
    receiver = _Receiver()
    try:
        out = _run(
            ["example.py"],
            tmp_path,
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "readme"},
        )
    finally:
        receiver.close()
    assert out == output
    names = [name for _, name in receiver.spans]
    assert "order received" in names
    assert "reserve stock" in names
    assert len({trace for trace, _ in receiver.spans}) == 1, receiver.spans


def test_readme_ledger_commands_run_as_written(tmp_path: Path) -> None:
    """The reference application's shell block: demo, verify, head, verify against the head."""
    text = README.read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "ledger verify" in b)
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    commands = [c for c in commands if c]
    assert [c.split()[:2] for c in commands] == [
        ["thunderline", "demo"],
        ["thunderline", "ledger"],
        ["thunderline", "ledger"],
        ["thunderline", "ledger"],
    ]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    outputs = []
    for command in commands:
        done = subprocess.run(
            shlex.split(command),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stderr}"
        outputs.append(done.stdout)
    assert "matches the saved head" in outputs[-1]


SRC = Path(__file__).resolve().parents[1] / "src" / "thunderline"


def _where_rows() -> list[tuple[str, str]]:
    """The (what, where) rows of the README's "Where things happen" table."""
    text = README.read_text()
    section = text.split("## Where things happen", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("what", "---"):
            rows.append((cells[0], cells[1]))
    return rows


def _defined_names(path: Path) -> set[str]:
    """Top-level functions, classes and assignments of a module, and ``Class.method``."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(f"{node.name}.{item.name}")
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_where_things_happen_table_cites_what_exists() -> None:
    """Every file of the table exists, and every name after a file is defined in it."""
    rows = _where_rows()
    assert len(rows) >= 8
    for what, where in rows:
        cited = re.findall(r"`([^`]+)`", where)
        assert cited, f"row {what!r} cites nothing"
        current: Path | None = None
        for token in cited:
            if token.endswith(".py") or "/" in token:
                current = SRC / token
                assert current.is_file(), f"row {what!r}: {token} does not exist"
                continue
            assert current is not None, f"row {what!r}: {token!r} comes before any file"
            assert token in _defined_names(current), (
                f"row {what!r}: {token!r} is not defined in {current.relative_to(SRC)}"
            )
