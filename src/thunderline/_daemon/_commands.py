"""The control commands, answered from the running node and application."""

from __future__ import annotations

import os
import re
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
        return await self._tree()

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
