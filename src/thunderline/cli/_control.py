"""Clients of a running daemon: ``ps``, ``tree``, ``sagas``, ``stop`` and ``top``.

Each talks to the control socket (``--control``, ``$THUNDERLINE_CONTROL`` or
the default path) and prints a table, or the raw JSON result with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from thunderline._daemon import (
    ControlClient,
    ControlReplyError,
    ControlSocketError,
    default_control_path,
    query,
)
from thunderline.cli._main import CommandError
from thunderline.cli._sagas import add_journal_arguments, journal_command


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--control", metavar="PATH", help="control socket path (default: $THUNDERLINE_CONTROL)"
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON result")


def register(subparsers: Any) -> None:
    """Add ``ps``, ``tree``, ``sagas``, ``stop`` and ``top``."""
    ps = subparsers.add_parser("ps", help="list the processes of a running daemon")
    ps.add_argument("pid", nargs="?", help="show one process (pid like '<1.5>' or a name)")
    _common(ps)
    ps.set_defaults(handler=ps_command)
    tree = subparsers.add_parser("tree", help="draw the supervision tree of a running daemon")
    _common(tree)
    tree.set_defaults(handler=tree_command)
    sagas = subparsers.add_parser("sagas", help="list the sagas running in a daemon")
    _common(sagas)
    add_journal_arguments(sagas)  # thunderline sagas --journal PATH|URL: a journal instead
    sagas.set_defaults(handler=sagas_command)
    stop = subparsers.add_parser("stop", help="stop a running daemon in order")
    _common(stop)
    stop.set_defaults(handler=stop_command)
    top = subparsers.add_parser("top", help="a live view of a running daemon")
    _common(top)
    top.add_argument(
        "--sort", choices=("mailbox", "rate"), default="mailbox", help="order of the processes"
    )
    top.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    top.add_argument("--limit", type=int, default=20, help="processes shown (default 20)")
    top.add_argument("--once", action="store_true", help="print one view and exit")
    top.add_argument("--iterations", type=int, default=None, help="refresh N times, then exit")
    top.set_defaults(handler=top_command)


def _path(args: argparse.Namespace) -> str:
    return str(args.control or default_control_path())


def _run(fn: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return anyio.run(fn)
    except (ControlSocketError, ControlReplyError) as exc:
        raise CommandError(str(exc), status=1) from None


def _query(args: argparse.Namespace, command: str, **request: Any) -> Any:
    path = _path(args)
    return _run(lambda: query(path, command, **request))


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return lines


def _joined(items: list[str]) -> str:
    return ",".join(items) if items else "-"


def format_processes(rows: list[dict[str, Any]]) -> list[str]:
    """The ``ps`` table."""
    headers = ["PID", "NAME", "STATUS", "MBOX", "HANDLED", "LINKS", "MONITORS", "LABEL"]
    body = [
        [
            r["pid"],
            r["name"] or "-",
            r["status"],
            str(r["mailbox"]),
            str(r["handled"]),
            _joined(r["links"]),
            _joined(r["monitors"]),
            r["label"],
        ]
        for r in rows
    ]
    return _table(headers, body)


def format_info(row: dict[str, Any]) -> list[str]:
    """``ps PID``: one process, one field per line."""
    return [f"{key:13} {_joined(v) if isinstance(v, list) else v}" for key, v in row.items()]


def _describe(node: dict[str, Any]) -> str:
    parts = [str(node["id"]), node["pid"] or "(not running)"]
    if node["name"] and node["name"] != node["id"]:
        parts.append(f"name={node['name']}")
    parts.append(node["type"])
    if node["restart"]:
        parts.append(node["restart"])
    parts.append(f"restarts={node['restarts']}")
    if node["window_restarts"] is not None:
        parts.append(f"in-window={node['window_restarts']}")
    if node["restarting"]:
        parts.append("RESTARTING")
    if node["error"]:
        parts.append(f"error: {node['error']}")
    return " ".join(parts)


def format_tree(root: dict[str, Any]) -> list[str]:
    """The supervision tree drawn with box characters, children in start order."""
    lines = [_describe(root)]

    def walk(node: dict[str, Any], prefix: str) -> None:
        children = node["children"]
        for index, child in enumerate(children):
            last = index == len(children) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{_describe(child)}")
            walk(child, prefix + ("    " if last else "│   "))

    walk(root, "")
    return lines


def format_sagas(result: dict[str, Any]) -> list[str]:
    """The ``sagas`` listing."""
    sagas = result["sagas"]
    if not sagas:
        note = result.get("note")
        return ["no sagas running" + (f" ({note})" if note else "")]
    rows = [
        [s["correlation_id"], s["pid"], s["saga"], str(s["phase"]), f"{s['age']:.1f}s"]
        for s in sagas
    ]
    return _table(["CORRELATION ID", "PID", "SAGA", "PHASE", "AGE"], rows)


def ps_command(args: argparse.Namespace) -> int:
    """``thunderline ps [PID]``."""
    if args.pid is not None:
        result = _query(args, "info", pid=args.pid)
        lines = [] if args.json else format_info(result)
    else:
        result = _query(args, "processes")
        lines = [] if args.json else format_processes(result)
    if args.json:
        _print_json(result)
    else:
        print("\n".join(lines))
    return 0


def tree_command(args: argparse.Namespace) -> int:
    """``thunderline tree``."""
    result = _query(args, "tree")
    if args.json:
        _print_json(result)
    else:
        print("\n".join(format_tree(result)))
    return 0


def sagas_command(args: argparse.Namespace) -> int:
    """``thunderline sagas`` (with ``--journal``: a saga journal, see ``_sagas``)."""
    if args.journal is not None:
        return journal_command(args)
    result = _query(args, "sagas")
    if args.json:
        _print_json(result)
    else:
        print("\n".join(format_sagas(result)))
    return 0


def stop_command(args: argparse.Namespace) -> int:
    """``thunderline stop``: ask the daemon to stop in order (it exits once stopped)."""
    path = _path(args)

    async def stop() -> Any:
        async with ControlClient(path) as client:
            status = await client.request("status")
            await client.request("stop")
            return status

    status = _run(stop)
    if args.json:
        _print_json({"stopping": True, "os_pid": status["os_pid"]})
    else:
        print(f"stopping thunderline daemon (pid {status['os_pid']}) at {path}")
    return 0


def top_view(
    status: dict[str, Any],
    rows: list[dict[str, Any]],
    stats: dict[str, Any],
    sagas: dict[str, Any],
    rates: dict[str, float],
    *,
    sort: str,
    limit: int,
) -> list[str]:
    """One ``top`` frame: a summary, then the busiest processes."""
    key = (
        (lambda r: (r["mailbox"], rates.get(r["pid"], 0.0)))
        if sort == "mailbox"
        else (lambda r: (rates.get(r["pid"], 0.0), r["mailbox"]))
    )
    ordered = sorted(rows, key=key, reverse=True)[:limit]
    header = [
        f"thunderline {status['version']}  app {status['app']}  backend {status['backend']}  "
        f"up {status['uptime']:.0f}s",
        f"processes {stats['processes']}  supervisors {stats['supervisors']}  "
        f"workers {stats['workers']}  mailbox total {stats['mailbox_total']} "
        f"(max {stats['mailbox_max']})  restarts {stats['restarts']}  "
        f"restarting {stats['restarting']}  sagas in flight {len(sagas['sagas'])}",
        "",
    ]
    table = _table(
        ["PID", "NAME", "STATUS", "MBOX", "MSG/S", "HANDLED", "LABEL"],
        [
            [
                r["pid"],
                r["name"] or "-",
                r["status"],
                str(r["mailbox"]),
                f"{rates.get(r['pid'], 0.0):.1f}",
                str(r["handled"]),
                r["label"],
            ]
            for r in ordered
        ],
    )
    return header + table


def top_command(args: argparse.Namespace) -> int:
    """``thunderline top``: refresh until interrupted, ``--once`` or ``--iterations N``."""
    if args.interval <= 0:
        raise CommandError(f"--interval must be > 0, got {args.interval}")
    iterations = 1 if args.once else args.iterations
    if iterations is not None and iterations < 1:
        raise CommandError(f"--iterations must be >= 1, got {iterations}")
    path = _path(args)
    clear = sys.stdout.isatty()

    async def loop() -> None:
        previous: dict[str, int] = {}
        previous_time: float | None = None
        count = 0
        async with ControlClient(path) as client:
            while iterations is None or count < iterations:
                status = await client.request("status")
                rows = await client.request("processes")
                stats = await client.request("stats")
                sagas = await client.request("sagas")
                now = anyio.current_time()
                rates: dict[str, float] = {}
                if previous_time is not None and now > previous_time:
                    for row in rows:
                        before = previous.get(row["pid"])
                        if before is not None:
                            rates[row["pid"]] = (row["handled"] - before) / (now - previous_time)
                previous = {row["pid"]: row["handled"] for row in rows}
                previous_time = now
                count += 1
                if args.json:
                    print(json.dumps({"stats": stats, "processes": rows, "rates": rates}))
                else:
                    view = top_view(
                        status, rows, stats, sagas, rates, sort=args.sort, limit=args.limit
                    )
                    prefix = "\x1b[H\x1b[2J" if clear else ("" if count == 1 else "\n")
                    print(prefix + "\n".join(view), flush=True)
                if iterations is None or count < iterations:
                    await anyio.sleep(args.interval)

    _run(loop)
    return 0
