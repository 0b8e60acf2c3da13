"""Ledger essential work alone: canonical JSON + SHA-256 + signature + batched insert.

Run: ``python benchmarks/bench_ledger_essential.py [N_EVENTS] [BATCH_SIZE]``
(``--smoke`` runs 500 events). Prints one line with events/s and the per-step
breakdown. It is the reference for the end-to-end demo benchmark
(``benchmarks/e2e.py`` compares its cost per event to this): the ledger's work
with no actors, tracing or queues::

    >>> result = measure_essential(n_events=200, batch_size=100)
    >>> result.events
    200
    >>> result.events_per_second > 0
    True

Events are built before the clock starts (building them is not ledger work);
the timed section is exactly :meth:`LedgerBackend.append_batch` per batch, which
canonicalizes, hashes, signs and inserts each event, one transaction per batch
(committed with ``synchronous=FULL``). A breakdown times each step separately
on the same events, so the share of each step is visible.
"""

from __future__ import annotations

import hashlib
import platform
import sys
import tempfile
import time
from pathlib import Path

import attrs

from thunderline.domains import Event, LedgerSigningKey, open_ledger

__all__ = ["EssentialBenchmark", "measure_essential"]


@attrs.frozen
class EssentialBenchmark:
    """The result of :func:`measure_essential`.

    Attributes:
        events: Events appended.
        batch_size: Events per transaction.
        seconds: Wall time of all ``append_batch`` calls.
        events_per_second: ``events / seconds``.
        canonical_us: Mean microseconds per event for canonical JSON alone.
        sha256_us: Mean microseconds per event for the chained SHA-256 alone.
        sign_us: Mean microseconds per event for the ECDSA signature alone.
        backend: ``"sqlite"`` (the embedded default).

    .. versionadded:: 0.1
    """

    events: int
    batch_size: int
    seconds: float
    events_per_second: float
    canonical_us: float
    sha256_us: float
    sign_us: float
    backend: str = "sqlite"

    def __str__(self) -> str:
        return (
            f"ledger essential work ({self.backend}, batches of {self.batch_size}): "
            f"{self.events} events in {self.seconds:.3f} s = "
            f"{self.events_per_second:,.0f} events/s "
            f"(per event: canonical {self.canonical_us:.1f} us, sha256 {self.sha256_us:.1f} us, "
            f"sign {self.sign_us:.1f} us, rest is the insert)"
        )


def _events(count: int) -> list[Event]:
    return [
        Event.new(
            "system.heartbeat",
            type="heartbeat",
            source="gate",
            payload={"beat": i, "node": "bench"},
            meta={
                "trace_id": f"{i + 1:032x}",
                "span_id": f"{i + 1:016x}",
                "traceparent": f"00-{i + 1:032x}-{i + 1:016x}-01",
                "parent_domain": "gate",
            },
        )
        for i in range(count)
    ]


def measure_essential(
    n_events: int = 10_000, *, batch_size: int = 500, directory: str | Path | None = None
) -> EssentialBenchmark:
    """Append ``n_events`` events to a fresh SQLite ledger and time it.

    Args:
        n_events: How many events to append.
        batch_size: Events per ``append_batch`` (one transaction each).
        directory: Where to put the ledger and key; default a temporary
            directory removed afterwards.

    Returns:
        The measurement.

    .. versionadded:: 0.1
    """
    if n_events < 1 or batch_size < 1:
        raise ValueError(f"n_events and batch_size must be >= 1, got {n_events}, {batch_size}")
    events = _events(n_events)
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(directory) if directory is not None else Path(scratch)
        with open_ledger(base / "bench-ledger.db", data_dir=base / "bench-key") as ledger:
            start = time.perf_counter()
            for offset in range(0, n_events, batch_size):
                ledger.append_batch(events[offset : offset + batch_size])
            seconds = time.perf_counter() - start

        # Breakdown of the CPU steps on the same events.
        sample = events[: min(n_events, 2000)]
        t0 = time.perf_counter()
        canonical = [event.canonical_bytes() for event in sample]
        t1 = time.perf_counter()
        prev = bytes(32)
        digests = []
        for data in canonical:
            prev = hashlib.sha256(prev + data).digest()
            digests.append(prev)
        t2 = time.perf_counter()
        key = LedgerSigningKey.generate()
        for digest in digests:
            key.sign(digest)
        t3 = time.perf_counter()
    count = len(sample)
    return EssentialBenchmark(
        events=n_events,
        batch_size=batch_size,
        seconds=seconds,
        events_per_second=n_events / seconds if seconds > 0 else float("inf"),
        canonical_us=(t1 - t0) / count * 1e6,
        sha256_us=(t2 - t1) / count * 1e6,
        sign_us=(t3 - t2) / count * 1e6,
    )


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
