"""``thunderline sagas --journal PATH|URL``: what a saga journal holds, for operators.

Examples::

    thunderline sagas --journal data/sagas.db                 # every run, oldest first
    thunderline sagas --journal data/sagas.db --unfinished    # runs a start-up will recover
    thunderline sagas --journal data/sagas.db --run order-17  # one run's history
    thunderline sagas --journal postgresql://app@db/app --schema thunderline_sagas --json

The journal is opened read-only (never created, never changed). Exit status 0,
or 2 with one line on stderr when there is no journal, it has another format
version, or the run is unknown.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import attrs

from thunderline.cli._main import CommandError
from thunderline.sagas import JournaledRun, JournalRecord, SagaJournalError, open_journal

__all__ = ["add_journal_arguments", "journal_command"]


def add_journal_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--journal``, ``--schema``, ``--unfinished`` and ``--run`` to the ``sagas`` parser."""
    parser.add_argument(
        "--journal",
        metavar="PATH_OR_URL",
        help="show a saga journal instead of a daemon: SQLite file (or its directory) "
        "or postgresql:// URL",
    )
    parser.add_argument(
        "--schema", default="thunderline_sagas", help="PostgreSQL schema of the journal"
    )
    parser.add_argument(
        "--unfinished", action="store_true", help="only runs without an outcome (to be recovered)"
    )
    parser.add_argument("--run", metavar="CORRELATION_ID", help="show one run's records")


def journal_command(args: argparse.Namespace) -> int:
    """``thunderline sagas --journal ...``: print the journal's runs (or one run's records)."""
    try:
        with open_journal(args.journal, schema=args.schema, read_only=True) as journal:
            if args.run is not None:
                run = journal.run(args.run)
                if run is None:
                    raise CommandError(f"{journal.location}: no run {args.run!r}")
                _print_run(run, args.json)
                for record in journal.records(args.run):
                    _print_record(record, args.json)
                return 0
            runs = journal.runs(unfinished_only=args.unfinished)
            if not args.json:
                print(f"{journal.location}: {len(runs)} run(s)")
            for run in runs:
                _print_run(run, args.json)
    except SagaJournalError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _print_run(run: JournaledRun, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"type": "run", **_fields(run)}, sort_keys=True))
        return
    state = run.outcome or "UNFINISHED"
    if run.rollback is not None:
        state += f" ({run.rollback})"
    line = f"{run.correlation_id}  {run.saga} v{run.version}  {run.policy}  {state}"
    if run.recoveries:
        line += f"  recovered {run.recoveries}x"
    if run.detail:
        line += f"  {run.detail}"
    print(line)


def _print_record(record: JournalRecord, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"type": "record", **_fields(record)}, sort_keys=True))
        return
    line = f"  {record.seq:>6}  {record.kind:<16} {record.path or '-'}"
    if record.attempt:
        line += f" #{record.attempt}"
    if record.status is not None:
        line += f"  {record.status}"
    if record.kind in ("attempt_finished", "completed") and record.status == "ok":
        line += f"  = {record.value}" if record.has_value else "  (result not journaled)"
    if record.detail:
        line += f"  {record.detail}"
    print(line)


def _fields(obj: JournaledRun | JournalRecord) -> dict[str, Any]:
    return attrs.asdict(obj)
