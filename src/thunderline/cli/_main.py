"""Argument parsing and dispatch for the ``thunderline`` command.

Every subcommand is a module exposing ``register(subparsers)``; it adds its
parser and sets ``handler`` (a callable taking the parsed namespace and
returning the exit status) with ``set_defaults``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from thunderline._version import __version__

#: Subcommand modules, each with ``register(subparsers)``.
SUBCOMMANDS: tuple[str, ...] = (
    "thunderline.cli._demo",
    "thunderline.cli._ledger",
    "thunderline.cli._run",
    "thunderline.cli._control",
)


class CommandError(Exception):
    """A user-facing command-line error: printed as one line, exit status 2 by default."""

    def __init__(self, message: str, *, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="thunderline",
        description="thunderline: an OTP-style actor runtime for async Python.",
    )
    parser.add_argument("--version", action="version", version=f"thunderline {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in SUBCOMMANDS:
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns (and, as a script, exits with) the status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CommandError as exc:
        print(f"thunderline {args.command}: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print(f"thunderline {args.command}: interrupted", file=sys.stderr)
        return 130
