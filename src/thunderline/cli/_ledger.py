"""``thunderline ledger``: verify a ledger and print its signed head.

Examples::

    thunderline ledger verify data/ledger.db
    thunderline ledger head data/ledger.db --out head.json
    thunderline ledger verify data/ledger.db --head head.json --json
    thunderline ledger verify postgresql://app@db/app --schema thunderline_ledger

``verify`` exits 0 when the chain, every signature and (with ``--head``) the
saved head verify, 1 naming the first bad seq and the problem otherwise, and 2
for usage errors (no such ledger, unreadable head file ...). It opens the
ledger read-only and needs no private key: signatures are checked with the
public key stored in the ledger, or with ``--public-key FILE`` (a PEM key kept
elsewhere, which also catches a ledger rewritten with another key).

``head`` needs the signing key (``--data DIR``; default: the SQLite file's
directory) because it signs (seq, hash). Keep its output where the writer cannot
change it: without a saved head, removing records from the tail is undetectable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from thunderline.cli._main import CommandError
from thunderline.domains import (
    LedgerError,
    SignedHead,
    SigningKeyError,
    load_public_key_pem,
    open_ledger,
)

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``ledger`` subcommand (with ``verify`` and ``head``) to ``subparsers``.

    .. versionadded:: 0.1
    """
    parser = subparsers.add_parser(
        "ledger",
        help="verify the event ledger or print its signed head",
        description="Verify the append-only, hash-chained, signed event ledger.",
    )
    actions = parser.add_subparsers(dest="ledger_command", metavar="ACTION")
    actions.required = True

    verify = actions.add_parser(
        "verify",
        help="check the hash chain and every signature",
        description="Exit 0 when the chain and every signature verify, 1 otherwise.",
    )
    verify.add_argument("target", metavar="PATH_OR_URL", help="SQLite file or postgresql:// URL")
    verify.add_argument(
        "--head", metavar="FILE", type=Path, help="a head saved by 'ledger head' to check against"
    )
    verify.add_argument(
        "--public-key",
        metavar="FILE",
        type=Path,
        help="trusted PEM public key (default: the key stored in the ledger)",
    )
    verify.add_argument("--schema", default="thunderline_ledger", help="PostgreSQL schema")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(handler=_verify)

    head = actions.add_parser(
        "head",
        help="print the signed head (seq, hash, signature, key_id)",
        description="Print the ledger's signed head, to detect truncation later.",
    )
    head.add_argument("target", metavar="PATH_OR_URL", help="SQLite file or postgresql:// URL")
    head.add_argument("--out", metavar="FILE", type=Path, help="also write the head to FILE")
    head.add_argument(
        "--data",
        metavar="DIR",
        type=Path,
        help="directory of the signing key (default: the SQLite file's directory)",
    )
    head.add_argument("--schema", default="thunderline_ledger", help="PostgreSQL schema")
    head.set_defaults(handler=_head)


def _verify(args: argparse.Namespace) -> int:
    saved = None
    try:
        if args.head is not None:
            saved = SignedHead.read(args.head)
        public_key = None
        if args.public_key is not None:
            try:
                public_key = load_public_key_pem(args.public_key.read_bytes())
            except (OSError, ValueError) as exc:
                raise CommandError(f"public key {args.public_key}: {_reason(exc)}") from None
        with open_ledger(args.target, read_only=True, schema=args.schema) as ledger:
            report = ledger.verify(saved, public_key=public_key)
    except LedgerError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps(report.to_dict(), sort_keys=True))
    elif report.ok:
        print(f"{args.target}: {report}")
    else:
        print(f"{args.target}: FAILED at {report}", file=sys.stderr)
    return 0 if report.ok else 1


def _head(args: argparse.Namespace) -> int:
    data_dir = args.data
    if data_dir is None and not args.target.startswith(("postgresql://", "postgres://")):
        data_dir = Path(args.target).parent
    if data_dir is None:
        raise CommandError("--data DIR (the signing key's directory) is required for PostgreSQL")
    try:
        with open_ledger(
            args.target, data_dir=data_dir, create=False, schema=args.schema
        ) as ledger:
            signed = ledger.signed_head()
        if args.out is not None:
            try:
                signed.write(args.out)
            except OSError as exc:
                raise CommandError(f"cannot write {args.out}: {_reason(exc)}") from None
    except (LedgerError, SigningKeyError) as exc:
        raise CommandError(str(exc)) from None
    print(signed.to_json())
    return 0


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
