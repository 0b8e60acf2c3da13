"""Ledger essential work alone: canonical JSON + SHA-256 + signature + batched insert.

Run: ``python benchmarks/bench_ledger_essential.py [N_EVENTS] [BATCH_SIZE]``
(``--smoke`` runs 500 events). Prints one line with events/s and the per-step
breakdown; the demo benchmark compares its end-to-end cost per event to this.
"""

from __future__ import annotations

import platform
import sys

from thunderline.domains._ledger_bench import measure_essential


def main(argv: list[str]) -> int:
    """Run the benchmark with the sizes given on the command line."""
    args = [a for a in argv if a != "--smoke"]
    n_events = 500 if "--smoke" in argv else int(args[0]) if args else 20_000
    batch_size = int(args[1]) if len(args) > 1 else 500
    result = measure_essential(n_events, batch_size=batch_size)
    print(f"{platform.python_implementation()} {platform.python_version()} {platform.machine()}")
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
