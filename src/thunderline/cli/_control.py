"""Clients of a running daemon: ``ps``, ``tree``, ``state``, ``kill``, ``publish``, ``sagas``,
``stop`` and ``top``.

Each talks to the control socket (``--control``, ``$THUNDERLINE_CONTROL`` or
the default path) and prints a table, or the raw JSON result with ``--json``.
Tables are aligned and, on a terminal, coloured (see :mod:`._style`).
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
from thunderline.cli._style import Style, colour_enabled, table


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--control", metavar="PATH", help="control socket path (default: $THUNDERLINE_CONTROL)"
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON result")


def register(subparsers: Any) -> None:
    """Add ``ps``, ``tree``, ``state``, ``kill``, ``publish``, ``sagas``, ``stop`` and ``top``."""
    ps = subparsers.add_parser("ps", help="list the processes of a running daemon")
    ps.add_argument("pid", nargs="?", help="show one process (pid like '<1.5>' or a name)")
    _common(ps)
    ps.set_defaults(handler=ps_command)
    tree = subparsers.add_parser("tree", help="draw the supervision tree of a running daemon")
    _common(tree)
    tree.set_defaults(handler=tree_command)
    state = subparsers.add_parser(
        "state",
        help="show a server's or state machine's state (as its format_status shows it)",
        description="Show the state of a running Server, or the (state, data) pair of a "
        "running StateMachine (OTP sys:get_state), as its format_status() hook shows it "
        "(override it to redact secrets). Long states are cut at --limit characters.",
    )
    state.add_argument("pid", metavar="PID|NAME", help="a pid like '<1.5>' or a registered name")
    state.add_argument(
        "--limit", type=int, default=65536, help="characters shown at most (default 65536)"
    )
    _common(state)
    state.set_defaults(handler=state_command)
    kill = subparsers.add_parser(
        "kill",
        help="send an exit signal to a process",
        description="Send an exit signal to a process of a running daemon, as erlang:exit/2 "
        "does: 'kill' (default) cannot be trapped; 'shutdown', 'normal' or any other text "
        "is delivered as that reason (a process trapping exits receives it as a message).",
    )
    kill.add_argument("pid", metavar="PID|NAME", help="a pid like '<1.5>' or a registered name")
    kill.add_argument(
        "--reason", default="kill", help="kill (default), shutdown, normal, or any text"
    )
    _common(kill)
    kill.set_defaults(handler=kill_command)
    publish = subparsers.add_parser(
        "publish",
        help="publish events through the Gate of a running daemon",
        description="Publish events through Gate, the ingress of the reference application "
        "(thunderline run with the default APP), and report how many Gate acknowledged. "
        "Exit status 0 when all were acknowledged, 1 otherwise.",
    )
    publish.add_argument("name", metavar="NAME", help="event name, e.g. system.heartbeat")
    publish.add_argument(
        "--payload", metavar="JSON", default="{}", help="the event payload, a JSON object"
    )
    publish.add_argument(
        "--count", type=int, default=1, help="how many events to publish (default 1)"
    )
    _common(publish)
    publish.set_defaults(handler=publish_command)
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


def _show(
    args: argparse.Namespace,
    command: str,
    lines: Callable[[Any, Style], list[str]],
    **request: Any,
) -> Any:
    """Ask the daemon ``command`` and print the result: the raw JSON with ``--json``,
    else the lines ``lines(result, style)`` makes of it. Returns the result."""
    result = _query(args, command, **request)
    if args.json:
        _print_json(result)
    else:
        print("\n".join(lines(result, _style())))
    return result


def _style() -> Style:
    return Style(colour_enabled(sys.stdout))


_STATUS_COLOURS: dict[str, tuple[str, ...]] = {
    "running": ("green",),
    "waiting": (),
    "exiting": ("red",),
}


def _process_colours(headers: list[str]) -> Any:
    """Cell styles of process tables: pids dim, names cyan, status, non-empty mailboxes yellow."""

    def colour(column: int, cell: str) -> tuple[str, ...]:
        header = headers[column]
        if header == "PID":
            return ("dim",)
        if header == "NAME" and cell != "-":
            return ("cyan",)
        if header == "STATUS":
            return _STATUS_COLOURS.get(cell, ())
        if header == "MBOX" and cell != "0":
            return ("yellow", "bold")
        return ()

    return colour


def _joined(items: list[str]) -> str:
    return ",".join(items) if items else "-"


def format_processes(rows: list[dict[str, Any]], style: Style | None = None) -> list[str]:
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
    return table(headers, body, style or Style(False), _process_colours(headers))


def format_info(row: dict[str, Any]) -> list[str]:
    """``ps PID``: one process, one field per line."""
    return [f"{key:13} {_joined(v) if isinstance(v, list) else v}" for key, v in row.items()]


def _describe(node: dict[str, Any], style: Style) -> str:
    kind = node["type"]
    parts = [
        style(str(node["id"]), "bold" if kind == "supervisor" else "cyan"),
        style(node["pid"], "dim") if node["pid"] else style("(not running)", "red"),
    ]
    if node["name"] and node["name"] != node["id"]:
        parts.append(f"name={node['name']}")
    parts.append(kind)
    if kind == "saga":
        parts.append(f"saga={node.get('saga')} phase={node.get('phase')}")
    elif node["restart"]:
        parts.append(node["restart"])
    if kind != "saga":
        restarts = f"restarts={node['restarts']}"
        parts.append(style(restarts, "yellow") if node["restarts"] else restarts)
    if node["window_restarts"] is not None:
        parts.append(f"in-window={node['window_restarts']}")
    if node["restarting"]:
        parts.append(style("RESTARTING", "red", "bold"))
    if node["error"]:
        parts.append(style(f"error: {node['error']}", "red"))
    return " ".join(parts)


def format_tree(root: dict[str, Any], style: Style | None = None) -> list[str]:
    """The supervision tree drawn with box characters, children in start order."""
    style = style or Style(False)
    lines = [_describe(root, style)]

    def walk(node: dict[str, Any], prefix: str) -> None:
        children = node["children"]
        for index, child in enumerate(children):
            last = index == len(children) - 1
            branch = style(f"{prefix}{'└── ' if last else '├── '}", "dim")
            lines.append(f"{branch}{_describe(child, style)}")
            walk(child, prefix + ("    " if last else "│   "))

    walk(root, "")
    return lines


def format_sagas(result: dict[str, Any], style: Style | None = None) -> list[str]:
    """The ``sagas`` listing."""
    sagas = result["sagas"]
    if not sagas:
        note = result.get("note")
        return ["no sagas running" + (f" ({note})" if note else "")]
    rows = [
        [s["correlation_id"], s["pid"], s["saga"], str(s["phase"]), f"{s['age']:.1f}s"]
        for s in sagas
    ]
    return table(["CORRELATION ID", "PID", "SAGA", "PHASE", "AGE"], rows, style or Style(False))


def ps_command(args: argparse.Namespace) -> int:
    """``thunderline ps [PID]``."""
    if args.pid is not None:
        _show(args, "info", lambda row, _: format_info(row), pid=args.pid)
    else:
        _show(args, "processes", format_processes)
    return 0


def tree_command(args: argparse.Namespace) -> int:
    """``thunderline tree``."""
    _show(args, "tree", format_tree)
    return 0


def sagas_command(args: argparse.Namespace) -> int:
    """``thunderline sagas`` (with ``--journal``: a saga journal, see ``_sagas``)."""
    if args.journal is not None:
        return journal_command(args)
    _show(args, "sagas", format_sagas)
    return 0


def state_command(args: argparse.Namespace) -> int:
    """``thunderline state PID|NAME``."""
    if not 1 <= args.limit <= 1024 * 1024:
        raise CommandError(f"--limit must be from 1 to 1048576, got {args.limit}")
    _show(args, "state", format_state, pid=args.pid, limit=args.limit)
    return 0


def format_state(result: dict[str, Any], style: Style | None = None) -> list[str]:
    """``state``: who, then the state as shown (and a note when it was cut)."""
    style = style or Style(False)
    who = " ".join(part for part in (result["pid"], result["name"], f"({result['label']})") if part)
    lines = [style(who, "bold"), result["state"]]
    if result["truncated"]:
        limit = len(result["state"])
        lines.append(style(f"... (cut at {limit} characters; see --limit)", "yellow"))
    return lines


def kill_command(args: argparse.Namespace) -> int:
    """``thunderline kill PID|NAME [--reason R]``."""

    def sent(result: dict[str, Any], _: Style) -> list[str]:
        target = result["pid"] if result["pid"] == args.pid else f"{args.pid} ({result['pid']})"
        return [f"sent exit signal {result['reason']} to {target}"]

    _show(args, "exit", sent, pid=args.pid, reason=args.reason)
    return 0


def publish_command(args: argparse.Namespace) -> int:
    """``thunderline publish NAME [--payload JSON] [--count N]``."""
    if not 1 <= args.count <= 100_000:
        raise CommandError(f"--count must be from 1 to 100000, got {args.count}")
    try:
        payload = json.loads(args.payload)
    except (ValueError, RecursionError) as exc:
        raise CommandError(f"--payload is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise CommandError(f"--payload must be a JSON object, got {type(payload).__name__}")
    result = _show(
        args, "publish", format_published, name=args.name, payload=payload, count=args.count
    )
    if not args.json:
        style = _style()
        for error in result["errors"]:
            print(style(f"error: {error}", "red"), file=sys.stderr)
    return 0 if result["acknowledged"] == result["requested"] else 1


def format_published(result: dict[str, Any], style: Style | None = None) -> list[str]:
    """``publish``: how many were acknowledged, and the first and last event ids."""
    style = style or Style(False)
    ok = result["acknowledged"] == result["requested"]
    summary = (
        f"published {result['requested']} {result['name']} event(s) through Gate: "
        f"{result['acknowledged']} acknowledged, {result['failed']} failed"
    )
    lines = [style(summary, "green" if ok else "red")]
    if result["first_event"]:
        last = result["last_event"]
        suffix = f", last {last}" if last != result["first_event"] else ""
        lines.append(f"first event {result['first_event']}{suffix}")
    return lines


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
    frame: dict[str, Any],
    rates: dict[str, float],
    *,
    sort: str,
    limit: int,
    style: Style | None = None,
) -> list[str]:
    """One ``top`` frame: a summary, then the busiest processes."""
    style = style or Style(False)
    status, stats, rows = frame["status"], frame["stats"], frame["processes"]
    key = (
        (lambda r: (r["mailbox"], rates.get(r["pid"], 0.0)))
        if sort == "mailbox"
        else (lambda r: (rates.get(r["pid"], 0.0), r["mailbox"]))
    )
    ordered = sorted(rows, key=key, reverse=True)[:limit]
    restarts = f"restarts {stats['restarts']}"
    header = [
        style(
            f"thunderline {status['version']}  app {status['app']}  backend {status['backend']}  "
            f"up {status['uptime']:.0f}s",
            "bold",
        ),
        f"processes {stats['processes']}  supervisors {stats['supervisors']}  "
        f"workers {stats['workers']}  mailbox total {stats['mailbox_total']} "
        f"(max {stats['mailbox_max']})  "
        + (style(restarts, "yellow") if stats["restarts"] else restarts)
        + f"  restarting {stats['restarting']}  sagas in flight {frame['sagas_in_flight']}",
        "",
    ]
    headers = ["PID", "NAME", "STATUS", "MBOX", "MSG/S", "HANDLED", "LABEL"]
    body = table(
        headers,
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
        style,
        _process_colours(headers),
    )
    return header + body


def rates_between(previous: dict[str, Any] | None, frame: dict[str, Any]) -> dict[str, float]:
    """Messages per second each process handled between two ``top`` frames.

    Counted from the end of the previous frame's queries (``processes``, read
    after them) to the start of this frame's (``handled_before``), so the
    messages ``top``'s own queries cause (supervisors answering
    ``which_children``, the saga supervisor answering ``list_sagas``) are not
    counted.
    """
    if previous is None:
        return {}
    elapsed = frame["time_before"] - previous["time_after"]
    if elapsed <= 0:
        return {}
    before = {row["pid"]: row["handled"] for row in previous["processes"]}
    rates: dict[str, float] = {}
    for pid, handled in frame["handled_before"].items():
        earlier = before.get(pid)
        if earlier is not None:
            rates[pid] = max(0, handled - earlier) / elapsed
    return rates


def top_command(args: argparse.Namespace) -> int:
    """``thunderline top``: refresh until interrupted, ``--once`` or ``--iterations N``."""
    if args.interval <= 0:
        raise CommandError(f"--interval must be > 0, got {args.interval}")
    iterations = 1 if args.once else args.iterations
    if iterations is not None and iterations < 1:
        raise CommandError(f"--iterations must be >= 1, got {iterations}")
    path = _path(args)
    clear = sys.stdout.isatty()
    style = _style()

    async def loop() -> None:
        previous: dict[str, Any] | None = None
        count = 0
        while iterations is None or count < iterations:
            # one connection per frame: an interval longer than the daemon's
            # idle timeout must not lose the connection
            frame = await query(path, "top")
            rates = rates_between(previous, frame)
            previous = frame
            count += 1
            if args.json:
                print(
                    json.dumps(
                        {"stats": frame["stats"], "processes": frame["processes"], "rates": rates}
                    ),
                    flush=True,
                )
            else:
                view = top_view(frame, rates, sort=args.sort, limit=args.limit, style=style)
                prefix = "\x1b[H\x1b[2J" if clear else ("" if count == 1 else "\n")
                print(prefix + "\n".join(view), flush=True)
            if iterations is None or count < iterations:
                await anyio.sleep(args.interval)

    _run(loop)
    return 0
