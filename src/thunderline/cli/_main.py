"""Argument parsing and dispatch for the ``thunderline`` command.

Every subcommand is a module exposing ``register(subparsers)``; it adds its
parser and sets ``handler`` (a callable taking the parsed namespace and
returning the exit status) with ``set_defaults``.

Usage errors are reported by the parser of the (sub)command they belong to
(``thunderline demo --evnets`` prints the demo's usage), with status 2. A
command's own errors (:class:`CommandError`) are one line on stderr. Output
into a closed pipe (``thunderline ps | head``) ends the command quietly with
status 141, as a process killed by SIGPIPE would.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
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
#: The module that registers each command (a test checks it against the modules), so
#: a command imports only its own module: ``thunderline ps`` never loads the demo,
#: the ledger or OpenTelemetry.
COMMAND_MODULES: dict[str, str] = {
    "demo": "thunderline.cli._demo",
    "ledger": "thunderline.cli._ledger",
    "run": "thunderline.cli._run",
    **dict.fromkeys(
        ("ps", "tree", "state", "kill", "publish", "sagas", "stop", "top"),
        "thunderline.cli._control",
    ),
}


class CommandError(Exception):
    """A user-facing command-line error: printed as one line, exit status 2 by default."""

    def __init__(self, message: str, *, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser: with only ``command``'s module if it is a known
    command (see :data:`COMMAND_MODULES`), else with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="thunderline",
        description="thunderline: an OTP-style actor runtime for async Python.",
    )
    parser.add_argument("--version", action="version", version=f"thunderline {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    only = COMMAND_MODULES.get(command or "")
    for module_name in SUBCOMMANDS if only is None else (only,):
        module = importlib.import_module(module_name)
        module.register(subparsers)
    _remember_parsers(parser)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (its first argument that is not an option)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Set ``_parser`` in every (sub)parser's defaults, so the deepest one parsed is known."""
    parser.set_defaults(_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _remember_parsers(child)


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns (and, as a script, exits with) the status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(arguments))
    args, extra = parser.parse_known_args(arguments)
    deepest: argparse.ArgumentParser = args._parser
    if extra:
        deepest.error(f"unrecognized arguments: {' '.join(extra)}")
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        choices = ", ".join(_subcommands(deepest))
        deepest.error(f"choose a command: {choices}")
    assert handler is not None
    name = deepest.prog
    try:
        status = handler(args)
        sys.stdout.flush()
        return status
    except CommandError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return exc.status
    except BrokenPipeError:
        # the reader went away (`thunderline ps | head`): stop quietly; point
        # stdout at /dev/null so the interpreter's final flush does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
