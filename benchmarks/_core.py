"""The harness: workloads, contenders, runs, medians, ratios, targets and the table.

A :class:`Workload` is one row family (one line of the table per backend). It
has :class:`Contender` s: thunderline itself, the raw floor of each backend, and
optional other baselines and peer libraries. Each contender is a function
``fn(backend, n) -> float`` that measures one sample in a fresh event loop (or
a fresh subprocess) and returns the cost *per operation* (seconds, or bytes for
memory workloads). The harness interleaves the contenders inside every run so
all of them see the same machine noise, repeats the runs, and reports medians,
ratios to the medians of the same run, and the min-max spread.
"""

from __future__ import annotations

import gc
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

BACKENDS: tuple[str, ...] = ("asyncio", "trio")

#: Column order of the table; a contender's ``column`` must be one of these.
COLUMNS: tuple[str, ...] = ("thunderline", "raw", "anyio", "default_loop", "pykka", "triotp")

#: True while ``run_workloads`` runs in smoke mode (contenders may take cheaper paths).
SMOKE = False

#: Columns that are peer libraries: thunderline should be faster than each.
PEERS: tuple[str, ...] = ("pykka", "triotp")


class Unavailable(Exception):
    """A contender cannot run here (a peer library is not installed ...); the reason is shown."""


@dataclass(frozen=True)
class Contender:
    """One implementation of a workload.

    Attributes:
        column: which table column it fills (see :data:`COLUMNS`).
        label: what it is, e.g. ``asyncio.Queue`` (shown in the legend).
        fn: ``fn(backend, n) -> per-op cost``; raise :class:`Unavailable` to skip.
        backends: the backends it runs on; ``None`` means it does not depend on
            the backend (e.g. pykka threads): measured once per run, shown on every row.
        scale: fraction of ``n`` it runs (slow peers); the result is still per op.
    """

    column: str
    label: str
    fn: Callable[[str, int], float]
    backends: tuple[str, ...] | None = BACKENDS
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.column not in COLUMNS:
            raise ValueError(f"unknown column {self.column!r}; expected one of {COLUMNS}")


@dataclass(frozen=True)
class Target:
    """Pass/miss rule: ``thunderline <= max_ratio * raw`` and/or ``thunderline <= max_value``.

    ``beat_peers`` also requires thunderline to be cheaper than every peer measured.
    """

    max_ratio: float | None = None
    max_value: float | None = None
    beat_peers: bool = True

    def describe(self, unit: str) -> str:
        parts = []
        if self.max_ratio is not None:
            parts.append(f"<={self.max_ratio:g}x raw")
        if self.max_value is not None:
            parts.append(f"<={format_value(self.max_value, unit)}")
        if self.beat_peers:
            parts.append("<1x peers")
        return "; ".join(parts)


@dataclass(frozen=True)
class Workload:
    """A benchmark: one table row per backend.

    Attributes:
        name: short id used by ``--only`` and in JSON.
        title: what one operation is.
        n: operations per sample in a full run.
        smoke_n: operations per sample in ``--smoke``.
        contenders: thunderline, the raw floor(s) and optional baselines/peers.
        target: the pass/miss rule.
        unit: ``"s"`` (seconds per op) or ``"B"`` (bytes per op).
        runs: overrides the number of runs (e.g. slow subprocess workloads).
        note: shown under the table.
    """

    name: str
    title: str
    n: int
    smoke_n: int
    contenders: Sequence[Contender]
    target: Target
    unit: str = "s"
    runs: int | None = None
    note: str = ""


@dataclass
class Cell:
    """The samples of one contender on one row."""

    label: str
    samples: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def spread(self) -> tuple[float, float]:
        return (min(self.samples), max(self.samples)) if self.samples else (math.nan, math.nan)


@dataclass
class Row:
    """One workload on one backend: a cell per column, ratios and the verdict."""

    workload: Workload
    backend: str
    n: int
    cells: dict[str, Cell] = field(default_factory=dict)

    def ratio(self, column: str) -> float:
        """thunderline's median over ``column``'s median (< 1: thunderline is cheaper)."""
        mine, other = self.cells.get("thunderline"), self.cells.get(column)
        if mine is None or other is None or not mine.samples or not other.samples:
            return math.nan
        return mine.median / other.median

    def ratio_spread(self) -> tuple[float, float]:
        """Min and max of the per-run ratio thunderline / raw (each run against itself)."""
        mine, raw = self.cells.get("thunderline"), self.cells.get("raw")
        if mine is None or raw is None or not mine.samples or not raw.samples:
            return (math.nan, math.nan)
        pairs = [a / b for a, b in zip(mine.samples, raw.samples, strict=False) if b > 0]
        return (min(pairs), max(pairs)) if pairs else (math.nan, math.nan)

    def verdict(self) -> tuple[bool, list[str]]:
        """(passed, the reasons it missed)."""
        target = self.workload.target
        misses: list[str] = []
        mine = self.cells.get("thunderline")
        if mine is None or not mine.samples:
            return False, ["no thunderline result"]
        ratio = self.ratio("raw")
        if target.max_ratio is not None and not ratio <= target.max_ratio:
            misses.append(f"{ratio:.2f}x raw")
        if target.max_value is not None and not mine.median <= target.max_value:
            misses.append(format_value(mine.median, self.workload.unit))
        if target.beat_peers:
            for peer in PEERS:
                peer_ratio = self.ratio(peer)
                if not math.isnan(peer_ratio) and peer_ratio >= 1.0:
                    misses.append(f"{peer_ratio:.2f}x {peer}")
        return not misses, misses

    def to_json(self) -> dict[str, Any]:
        passed, misses = self.verdict()
        return {
            "workload": self.workload.name,
            "title": self.workload.title,
            "backend": self.backend,
            "n": self.n,
            "unit": self.workload.unit,
            "target": self.workload.target.describe(self.workload.unit),
            "passed": passed,
            "misses": misses,
            "ratios": {c: self.ratio(c) for c in COLUMNS[1:] if c in self.cells},
            "ratio_spread": self.ratio_spread(),
            "cells": {
                column: {
                    "label": cell.label,
                    "samples": cell.samples,
                    "median": cell.median,
                    "min": cell.spread[0],
                    "max": cell.spread[1],
                    "error": cell.error,
                }
                for column, cell in self.cells.items()
            },
        }


def format_value(value: float, unit: str) -> str:
    """A per-op value with a readable unit (ns/us/ms for seconds, B/KiB for bytes)."""
    if math.isnan(value):
        return "n/a"
    if unit == "B":
        return f"{value / 1024:.2f} KiB" if abs(value) >= 1024 else f"{value:.0f} B"
    if value < 1e-6:
        return f"{value * 1e9:.0f} ns"
    if value < 1e-3:
        return f"{value * 1e6:.2f} us"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def _contenders_for(workload: Workload, backend: str) -> list[Contender]:
    return [c for c in workload.contenders if c.backends is None or backend in c.backends]


def run_workloads(
    workloads: Sequence[Workload],
    *,
    runs: int,
    smoke: bool,
    backends: Sequence[str] = BACKENDS,
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """Measure every workload on every backend ``runs`` times; returns one row per pair.

    Inside a run every contender is sampled once, in an order rotated from run
    to run, so slow drifts of the machine hit every contender alike.
    Backend-independent contenders are sampled once per run and shared by the rows.
    """
    global SMOKE
    SMOKE = smoke
    rows: list[Row] = []
    for workload in workloads:
        n = workload.smoke_n if smoke else workload.n
        count = 1 if smoke else (workload.runs or runs)
        wl_rows = {b: Row(workload, b, n) for b in backends}
        shared: dict[str, Cell] = {}
        for row in wl_rows.values():
            for contender in _contenders_for(workload, row.backend):
                if contender.backends is None:
                    cell = shared.setdefault(contender.column, Cell(contender.label))
                else:
                    cell = Cell(contender.label)
                row.cells[contender.column] = cell
        for run in range(count):
            jobs: list[tuple[Contender, str, Cell]] = []
            done_shared: set[str] = set()
            for backend in backends:
                row = wl_rows[backend]
                for contender in _contenders_for(workload, backend):
                    if contender.backends is None:
                        if contender.column in done_shared:
                            continue
                        done_shared.add(contender.column)
                    jobs.append((contender, backend, row.cells[contender.column]))
            shift = run % len(jobs) if jobs else 0
            for contender, backend, cell in jobs[shift:] + jobs[:shift]:
                if cell.error is not None:
                    continue
                if progress is not None:
                    progress(f"{workload.name} {backend} {contender.column} run {run + 1}/{count}")
                size = max(1, int(n * contender.scale))
                gc.collect()
                try:
                    value = contender.fn(backend, size)
                except Unavailable as exc:
                    cell.error = str(exc)
                    continue
                if not value > 0 or math.isinf(value):
                    raise RuntimeError(
                        f"{workload.name}/{backend}/{contender.column}: bad sample {value!r}"
                    )
                cell.samples.append(value)
        rows.extend(wl_rows.values())
    return rows


def render_table(rows: Sequence[Row]) -> str:
    """The one table, as a Markdown pipe table with aligned columns."""
    present = [c for c in COLUMNS[1:] if any(c in r.cells and r.cells[c].samples for r in rows)]
    header = ["workload", "backend", "thunderline/op", "spread (min-max)"]
    for column in present:
        header += [f"{column}/op", f"x {column}"]
    header += ["x raw per run (min-max)", "target", "result"]
    lines = [header]
    for row in rows:
        unit = row.workload.unit
        mine = row.cells.get("thunderline", Cell("thunderline"))
        low, high = mine.spread
        line = [
            row.workload.name,
            row.backend,
            format_value(mine.median, unit),
            f"{format_value(low, unit)} - {format_value(high, unit)}",
        ]
        for column in present:
            cell = row.cells.get(column)
            if cell is None:
                line += ["-", "-"]
            elif not cell.samples:
                line += ["n/a", "-"]
            else:
                line += [format_value(cell.median, unit), f"{row.ratio(column):.2f}x"]
        rlow, rhigh = row.ratio_spread()
        passed, misses = row.verdict()
        line += [
            "-" if math.isnan(rlow) else f"{rlow:.2f}-{rhigh:.2f}x",
            row.workload.target.describe(unit),
            "pass" if passed else "MISS: " + ", ".join(misses),
        ]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        out.append("| " + " | ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) + " |")
        if index == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def render_legend(rows: Sequence[Row]) -> str:
    """What each column is on each row, notes, and why a contender is missing."""
    lines: list[str] = []
    seen: set[str] = set()
    for row in rows:
        wl = row.workload
        if wl.name not in seen:
            seen.add(wl.name)
            lines.append(
                f"- {wl.name}: {wl.title} (n={row.n})" + (f". {wl.note}" if wl.note else "")
            )
        labels = ", ".join(
            f"{column}={cell.label}"
            for column, cell in row.cells.items()
            if column != "thunderline"
        )
        lines.append(f"  - {row.backend}: {labels}")
        for column, cell in row.cells.items():
            if cell.error is not None:
                lines.append(f"  - {row.backend} {column} not measured: {cell.error}")
    return "\n".join(lines)
