"""The control commands, answered from the running node and application."""

from __future__ import annotations

import os
import re
import reprlib
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import anyio

import thunderline.runtime as tl
import thunderline.sagas as sagas
from thunderline._daemon._protocol import COMMANDS, AfterReply, RequestError
from thunderline._version import __version__
from thunderline.runtime import (
    Application,
    node_statistics,
    process_row,
    process_table,
    supervision_tree,
    to_jsonable,
)

__all__ = ["SAGA_SUPERVISOR", "Commands"]

#: The registered name under which the saga supervisor is looked for.
SAGA_SUPERVISOR: Final = "thunderline.sagas"
#: Bound on any one command that calls into processes.
QUERY_TIMEOUT: Final = 10.0
#: ``state``: characters shown by default, and at most.
STATE_LIMIT: Final = 64 * 1024
STATE_LIMIT_MAX: Final = 1024 * 1024
#: ``publish``: events per request at most, and the bound on publishing them all.
PUBLISH_MAX: Final = 100_000
PUBLISH_TIMEOUT: Final = 300.0
#: ``publish``: error messages reported at most.
PUBLISH_ERRORS_SHOWN: Final = 5
#: Where the reference application's Gate is registered.
FLOW: Final = "thunderline.flow"  # the reference application's Flow (Gate publishes through it)
_PID: Final = re.compile(r"<\d+\.\d+>")
_REASONS: Final[dict[str, Any]] = {"kill": tl.KILL, "shutdown": tl.SHUTDOWN, "normal": tl.NORMAL}

T = TypeVar("T")


async def in_process(fn: Callable[[], Awaitable[T]], timeout: float = QUERY_TIMEOUT) -> T:
    """Run ``fn`` in a short-lived process of the current node (needed for calls).

    Raises:
        RequestError: ``fn`` raised, or took longer than ``timeout``.
    """
    outcome: dict[str, Any] = {}
    done = anyio.Event()

    async def runner() -> None:
        try:
            outcome["value"] = await fn()
        except Exception as exc:  # noqa: BLE001 - handed to the requester as an error reply
            outcome["error"] = exc
        finally:
            done.set()

    tl.spawn(runner)
    with anyio.move_on_after(timeout):
        await done.wait()
    if not done.is_set():
        raise RequestError("timeout", f"no answer within {timeout} s")
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, RequestError):
            raise error
        raise RequestError("failed", f"{type(error).__name__}: {error}")
    if "value" not in outcome:
        raise RequestError("failed", "the query process was stopped")
    value: T = outcome["value"]
    return value


def find_pid(text: object) -> tl.Pid:
    """The live pid printed as ``text`` (``"<1.5>"``) or registered under it.

    Raises:
        RequestError: ``text`` is not a string, or names no live process.
    """
    if not isinstance(text, str) or not text:
        raise RequestError(
            "bad_request", f'"pid" must be a pid like "<1.5>" or a name; got {text!r}'
        )
    if _PID.fullmatch(text):
        for pid in tl.processes():
            if repr(pid) == text:
                return pid
    else:
        found = tl.whereis(text)
        if found is not None:
            return found
    raise RequestError("no_such_process", f"no live process {text}")


class Commands:
    """Answers control requests for one daemon.

    Args:
        app: the running application.
        settings: what ``status`` reports besides the live data (backend, app string ...).
        request_stop: called by the ``stop`` command.
    """

    def __init__(
        self, app: Application, settings: dict[str, Any], request_stop: Callable[[str], None]
    ) -> None:
        self.app = app
        self.settings = settings
        self.request_stop = request_stop
        self.started = anyio.current_time()
        #: Set when the daemon is stopping: a running ``publish`` stops publishing and
        #: answers with what was acknowledged (see :meth:`stop_publishing`).
        self.stopping = False

    def stop_publishing(self) -> None:
        """The daemon is stopping: ``publish`` requests publish no further event."""
        self.stopping = True

    async def __call__(self, request: dict[str, Any]) -> Any:
        command = request["command"]
        handler = getattr(self, f"cmd_{command}", None) if command in COMMANDS else None
        if handler is None:
            known = ", ".join(COMMANDS)
            raise RequestError("unknown_command", f"unknown command {command!r}; known: {known}")
        result = await handler(request)
        if isinstance(result, AfterReply):
            return AfterReply(to_jsonable(result.result), result.action)
        return to_jsonable(result)

    async def cmd_status(self, request: dict[str, Any]) -> Any:
        return {
            "version": __version__,
            "os_pid": os.getpid(),
            "application": to_jsonable(self.app.id),
            "top": repr(self.app.pid),
            "uptime": round(anyio.current_time() - self.started, 3),
            **self.settings,
        }

    async def cmd_processes(self, request: dict[str, Any]) -> Any:
        return process_table()

    async def cmd_info(self, request: dict[str, Any]) -> Any:
        pid = find_pid(request.get("pid"))
        info = tl.process_info(pid)
        if info is None:
            raise RequestError("no_such_process", f"no live process {pid!r}")
        return process_row(info)

    async def _tree(self) -> Any:
        app = self.app
        return await in_process(
            lambda: supervision_tree(
                app.pid, top_spec=app.spec, restart_counts=app.restart_counts()
            )
        )

    async def cmd_tree(self, request: dict[str, Any]) -> Any:
        tree = to_jsonable(await self._tree())
        supervisor = tl.whereis(SAGA_SUPERVISOR)
        if supervisor is not None:
            sagas_running = await in_process(lambda: sagas.list_sagas(supervisor))
            _attach_sagas(tree, repr(supervisor), sagas_running)
        return tree

    async def cmd_stats(self, request: dict[str, Any]) -> Any:
        tree = await self._tree()
        return node_statistics(process_table(), tree)

    async def cmd_sagas(self, request: dict[str, Any]) -> Any:
        supervisor = tl.whereis(SAGA_SUPERVISOR)
        if supervisor is None:
            return {
                "sagas": [],
                "note": f"no saga supervisor is registered as {SAGA_SUPERVISOR!r}",
            }
        running = await in_process(lambda: sagas.list_sagas(supervisor))
        stats = await in_process(lambda: sagas.statistics(supervisor))
        now = anyio.current_time()
        return {
            "supervisor": supervisor,
            "sagas": [
                {
                    "correlation_id": info.correlation_id,
                    "pid": info.pid,
                    "saga": info.saga,
                    "run_id": info.run_id,
                    "phase": info.phase,
                    "age": round(now - info.started_at, 3),
                    "steps": dict(info.steps),
                }
                for info in running
            ],
            "statistics": stats,
        }

    async def cmd_state(self, request: dict[str, Any]) -> Any:
        pid = find_pid(request.get("pid"))
        limit = request.get("limit", STATE_LIMIT)
        if (
            not isinstance(limit, int)
            or isinstance(limit, bool)
            or not 1 <= limit <= STATE_LIMIT_MAX
        ):
            raise RequestError(
                "bad_request", f'"limit" must be an integer from 1 to {STATE_LIMIT_MAX}'
            )

        async def ask() -> Any:
            try:
                return await tl.get_state(pid)
            except tl.NotAServerError:
                raise RequestError(
                    "not_a_server",
                    f"{pid!r} runs no Server or StateMachine loop (a plain process, or one in "
                    "init): it has no state to show",
                ) from None

        value = await in_process(ask)
        text = _bounded_repr(value, limit)
        info = tl.process_info(pid)
        return {
            "pid": pid,
            "name": info.registered_name if info is not None else None,
            "label": info.label if info is not None else None,
            "state": text[:limit],
            "truncated": len(text) > limit,
        }

    async def cmd_publish(self, request: dict[str, Any]) -> Any:
        name = request.get("name")
        if not isinstance(name, str) or not name:
            raise RequestError("bad_request", '"name" must be a non-empty event name')
        payload = request.get("payload", {})
        if not isinstance(payload, dict):
            raise RequestError("bad_request", '"payload" must be a JSON object')
        count = request.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= PUBLISH_MAX:
            raise RequestError("bad_request", f'"count" must be an integer from 1 to {PUBLISH_MAX}')
        if tl.whereis(FLOW) is None:
            raise RequestError(
                "no_gate",
                f"no Flow is registered as {FLOW!r}: publish needs the reference application "
                "(thunderline.domains:application)",
            )

        async def publish_all() -> dict[str, Any]:
            # imported here: the daemon runs any application; only publish needs Gate
            from thunderline.domains import gate

            acknowledged: list[str] = []
            errors: list[str] = []
            failed = 0
            for index in range(count):
                if self.stopping:
                    failed += count - index
                    errors.append(
                        f"ShuttingDownError: the daemon is stopping; {count - index} event(s) "
                        "not published"
                    )
                    break
                try:
                    event = await gate.publish(name, payload=payload)
                except (tl.ThunderlineError, ValueError) as exc:
                    failed += 1
                    if len(errors) < PUBLISH_ERRORS_SHOWN:
                        errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    acknowledged.append(str(event.id))
            return {
                "name": name,
                "requested": count,
                "acknowledged": len(acknowledged),
                "failed": failed,
                "errors": errors,
                "first_event": acknowledged[0] if acknowledged else None,
                "last_event": acknowledged[-1] if acknowledged else None,
            }

        return await in_process(publish_all, timeout=PUBLISH_TIMEOUT)

    async def cmd_top(self, request: dict[str, Any]) -> Any:
        before_time = anyio.current_time()
        before = {repr(pid): info.messages_handled for pid, info in _handled_now()}
        status = await self.cmd_status(request)
        tree = await self._tree()
        supervisor = tl.whereis(SAGA_SUPERVISOR)
        in_flight = 0
        if supervisor is not None:
            in_flight = len(await in_process(lambda: sagas.list_sagas(supervisor)))
        rows = process_table()
        return {
            "status": status,
            "stats": node_statistics(rows, tree),
            "sagas_in_flight": in_flight,
            "processes": rows,
            "handled_before": before,
            "time_before": before_time,
            "time_after": anyio.current_time(),
        }

    async def cmd_exit(self, request: dict[str, Any]) -> Any:
        pid = find_pid(request.get("pid"))
        reason_text = request.get("reason", "kill")
        if not isinstance(reason_text, str) or not reason_text:
            raise RequestError("bad_request", f'"reason" must be a string; got {reason_text!r}')
        reason = _REASONS.get(reason_text, reason_text)
        tl.exit(pid, reason)
        return {"pid": pid, "reason": reason}

    async def cmd_stop(self, request: dict[str, Any]) -> Any:
        return AfterReply({"stopping": True}, lambda: self.request_stop("stop command"))


def _handled_now() -> list[tuple[tl.Pid, tl.ProcessInfo]]:
    """``(pid, process_info)`` of every live process, read without sending any message."""
    infos = []
    for pid in tl.processes():
        info = tl.process_info(pid)
        if info is not None:
            infos.append((pid, info))
    return infos


def _bounded_repr(value: Any, limit: int) -> str:
    """``repr(value)`` built with bounded work (reprlib), then cut at ``limit`` characters + 1."""
    shortener = reprlib.Repr()
    shortener.maxlevel = 8
    shortener.maxdict = shortener.maxlist = shortener.maxtuple = 1000
    shortener.maxset = shortener.maxfrozenset = shortener.maxdeque = shortener.maxarray = 1000
    shortener.maxstring = shortener.maxlong = shortener.maxother = limit + 1
    return shortener.repr(value)[: limit + 1]


def _attach_sagas(node: dict[str, Any], supervisor: str, running: list[sagas.SagaInfo]) -> bool:
    """Show the running sagas as the children of the saga supervisor's node in ``node``."""
    if node.get("pid") == supervisor:
        node["error"] = None
        node["children"] = [
            {
                "id": info.correlation_id,
                "pid": repr(info.pid),
                "name": None,
                "type": "saga",
                "restart": "temporary",
                "shutdown": None,
                "restarting": False,
                "restarts": 0,
                "window_restarts": None,
                "error": None,
                "children": [],
                "saga": info.saga,
                "phase": to_jsonable(info.phase),
            }
            for info in running
        ]
        return True
    return any(_attach_sagas(child, supervisor, running) for child in node.get("children", []))
