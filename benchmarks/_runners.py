"""How a contender runs one sample: a fresh event loop per sample, timed inside.

Every body is an async function ``body(n) -> float`` that returns the elapsed
seconds of the timed part only (setup and teardown excluded); the helpers here
run it on the right loop and divide by ``n``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks._core import Unavailable

Body = Callable[[int], Awaitable[float]]

#: The interpreter of the separate environment that holds triotp (it pins trio < 0.20).
TRIOTP_PYTHON = Path(
    os.environ.get("THUNDERLINE_BENCH_TRIOTP_PYTHON", "/tmp/triotp-venv/bin/python")
)
TRIOTP_PROBE = Path(__file__).with_name("_triotp_probe.py")


def thunderline(body: Body) -> Callable[[str, int], float]:
    """Run ``body`` as the main process of a fresh thunderline node on the given backend."""
    from thunderline.runtime import run

    def sample(backend: str, n: int) -> float:
        elapsed: float = run(body, n, backend=backend)
        return elapsed / n

    return sample


def raw_asyncio(body: Body) -> Callable[[str, int], float]:
    """Run ``body`` with ``asyncio.run`` (no anyio, no thunderline)."""

    def sample(backend: str, n: int) -> float:
        return asyncio.run(body(n)) / n

    return sample


def raw_trio(body: Body) -> Callable[[str, int], float]:
    """Run ``body`` with ``trio.run`` (no anyio, no thunderline)."""

    def sample(backend: str, n: int) -> float:
        import trio

        elapsed: float = trio.run(body, n)
        return elapsed / n

    return sample


def on_anyio(body: Body) -> Callable[[str, int], float]:
    """Run ``body`` with ``anyio.run`` on the given backend."""

    def sample(backend: str, n: int) -> float:
        import anyio

        elapsed: float = anyio.run(body, n, backend=backend)
        return elapsed / n

    return sample


def in_thread_world(body: Callable[[int], float]) -> Callable[[str, int], float]:
    """A synchronous body (pykka threads); the backend does not matter."""

    def sample(backend: str, n: int) -> float:
        return body(n) / n

    return sample


def pykka_available() -> None:
    try:
        import pykka  # noqa: F401
    except ImportError:
        raise Unavailable(
            "pykka is not installed (benchmark-only tool: "
            "`python -m benchmarks --setup-peers` or `pip install pykka`)"
        ) from None


def triotp(workload: str) -> Callable[[str, int], float]:
    """Run ``_triotp_probe.py workload n`` in the triotp environment; it prints seconds."""

    def sample(backend: str, n: int) -> float:
        if not TRIOTP_PYTHON.exists():
            raise Unavailable(
                f"no triotp environment at {TRIOTP_PYTHON} "
                "(`python -m benchmarks --setup-peers` creates it; "
                "THUNDERLINE_BENCH_TRIOTP_PYTHON points elsewhere)"
            )
        proc = subprocess.run(
            [str(TRIOTP_PYTHON), str(TRIOTP_PROBE), workload, str(n)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise Unavailable(f"triotp probe failed: {last}")
        elapsed = float(json.loads(proc.stdout)["seconds"])
        return elapsed / n

    return sample


def subprocess_json(module: str, *args: str) -> dict[str, float]:
    """Run ``python -m module args...`` with this interpreter and parse its JSON stdout."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=root,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{proc.stderr}")
    result: dict[str, float] = json.loads(proc.stdout)
    return result


def forked_json(fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Run ``fn`` in a forked child (POSIX) and return its result; for cheap smoke runs."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            os.close(read_fd)
            with os.fdopen(write_fd, "w") as out:
                json.dump(fn(), out)
        except BaseException:  # noqa: BLE001 - report anything, then leave without cleanup
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as source:
        data = source.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not data:
        raise RuntimeError("forked benchmark child failed (traceback above)")
    result: dict[str, float] = json.loads(data)
    return result
