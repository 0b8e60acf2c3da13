"""The command line imports only the module of the command it runs."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

from thunderline.cli._main import COMMAND_MODULES, SUBCOMMANDS, build_parser


def test_every_command_is_mapped_to_the_module_that_registers_it() -> None:
    registered: dict[str, str] = {}
    for module_name in SUBCOMMANDS:
        subparsers = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module_name).register(subparsers)
        registered.update(dict.fromkeys(subparsers.choices, module_name))
    assert registered == COMMAND_MODULES


def test_the_parser_of_one_command_has_that_command_and_help_has_all() -> None:
    def commands(parser: argparse.ArgumentParser) -> set[str]:
        (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return set(action.choices)

    assert commands(build_parser("ps")) >= {"ps", "tree", "stop"}
    assert "demo" not in commands(build_parser("ps"))
    assert commands(build_parser(None)) == set(COMMAND_MODULES)
    assert commands(build_parser("no-such-command")) == set(COMMAND_MODULES)


def test_a_control_client_does_not_load_the_server_side() -> None:
    """``thunderline stop`` (a client of the control socket) loads neither the reference
    application, distribution, OpenTelemetry nor the daemon's server side."""
    script = (
        "import sys\n"
        "from thunderline.cli._main import main\n"
        "status = main(['stop', '--control', '/nonexistent/thunderline.sock'])\n"
        "heavy = ('thunderline.domains', 'thunderline.dist', 'thunderline.telemetry',\n"
        "         'thunderline._daemon._run', 'opentelemetry', 'nats')\n"
        "print(status, sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    status, loaded = done.stdout.split(" ", 1)
    assert status != "0"  # no daemon there: a clear error, not a success
    assert loaded.strip() == "[]", loaded
