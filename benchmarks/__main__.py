"""``python -m benchmarks``: run the workloads and print one table.

Options:
    --smoke            tiny N, one run: checks that every benchmark still works.
    --only A,B         only these workloads (names as in the table).
    --json FILE        also write every sample, median and ratio as JSON.
    --runs N           runs per workload (default 5; memory workloads use 3).
    --backends A,B     asyncio and/or trio (default both).
    --setup-peers      install the benchmark-only peers first (pykka into this
                       interpreter, triotp into its own venv), then run.
    --list             list the workloads and exit.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import discover
from benchmarks._core import BACKENDS, render_legend, render_table, run_workloads
from benchmarks._runners import TRIOTP_PYTHON


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _triotp_version() -> str:
    if not TRIOTP_PYTHON.exists():
        return "not installed"
    proc = subprocess.run(
        [
            str(TRIOTP_PYTHON),
            "-c",
            "from importlib.metadata import version as v; print(v('triotp'), v('trio'))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return "broken environment"
    triotp, trio = proc.stdout.split()
    return f"{triotp} (with trio {trio}, separate venv)"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "anyio": _version("anyio"),
        "trio": _version("trio"),
        "thunderline": _version("thunderline"),
        "pykka": _version("pykka"),
        "triotp": _triotp_version(),
    }


def setup_peers() -> None:
    """Install the benchmark-only peer libraries (never project dependencies)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "pykka"], check=True)
    if not TRIOTP_PYTHON.exists():
        venv = TRIOTP_PYTHON.parent.parent
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(TRIOTP_PYTHON), "-m", "pip", "install", "--quiet", "triotp"],
        check=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny N, one run")
    parser.add_argument("--only", default="", help="comma-separated workload names")
    parser.add_argument("--json", type=Path, default=None, help="write results as JSON")
    parser.add_argument("--runs", type=int, default=5, help="runs per workload (default 5)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--setup-peers", action="store_true", help="install pykka and triotp")
    parser.add_argument("--list", action="store_true", help="list workloads and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)

    workloads = discover()
    if args.list:
        for workload in workloads:
            print(f"{workload.name}: {workload.title}")
        return 0
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        known = {w.name for w in workloads}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            parser.error(f"unknown workload(s) {unknown}; known: {sorted(known)}")
        workloads = [w for w in workloads if w.name in wanted]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not set(backends) <= set(BACKENDS):
        parser.error(f"--backends must be among {BACKENDS}")
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if args.setup_peers:
        setup_peers()

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"  {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    rows = run_workloads(
        workloads, runs=args.runs, smoke=args.smoke, backends=backends, progress=progress
    )
    elapsed = time.perf_counter() - started
    info = machine()
    runs = "1 (smoke)" if args.smoke else f"{args.runs} (memory workloads: their own count)"
    print()
    print(render_table(rows))
    print()
    print("Per op medians over runs; x COLUMN = thunderline median / COLUMN median (<1: faster).")
    print(f"Runs: {runs}. Wall time: {elapsed:.1f} s.")
    print(render_legend(rows))
    print(
        "Machine: "
        + ", ".join(f"{key}={value}" for key, value in info.items() if key != "platform")
    )
    if args.json is not None:
        payload = {
            "machine": info,
            "smoke": args.smoke,
            "runs": args.runs,
            "wall_seconds": elapsed,
            "workloads": [w.name for w in workloads],
            "backends": backends,
            "rows": [row.to_json() for row in rows],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
