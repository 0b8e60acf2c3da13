"""Colour for terminals, plain text for pipes and files.

Colour is on when the stream is a terminal, ``NO_COLOR`` is unset or empty
(https://no-color.org) and ``TERM`` is not ``dumb``; ``FORCE_COLOR`` (non-empty)
turns it on regardless. Tables are aligned on the plain text first and
coloured afterwards, so escape codes never shift a column.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Final, TextIO

__all__ = ["Style", "colour_enabled", "table"]

_CODES: Final = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}


def colour_enabled(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """Whether to colour what is written to ``stream`` (see the module docstring)."""
    env = os.environ if env is None else env
    if env.get("FORCE_COLOR"):
        return True
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


class Style:
    """Wraps text in ANSI SGR codes when enabled, returns it unchanged otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles or not text.strip():
            return text
        codes = ";".join(_CODES[name] for name in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    style: Style,
    colour: Callable[[int, str], tuple[str, ...]] | None = None,
) -> list[str]:
    """Columns two spaces apart, bold headers; ``colour(column, cell)`` gives a cell's styles."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    last = len(headers) - 1

    def line(cells: Sequence[str], styles: Callable[[int, str], tuple[str, ...]]) -> str:
        parts = []
        for index, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            padded = cell if index == last else cell.ljust(width)
            text = cell.rstrip()  # trailing blanks stay outside the codes (and get stripped)
            parts.append(style(text, *styles(index, cell)) + padded[len(text) :])
        return "  ".join(parts).rstrip()

    lines = [line(headers, lambda _i, _c: ("bold",))]
    for row in rows:
        lines.append(line(row, colour or (lambda _i, _c: ())))
    return lines
