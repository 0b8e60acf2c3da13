"""get_state (OTP sys:get_state with format_status) and tracebacks in crash reports."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

import thunderline.runtime as tl
from process_helpers import in_process
from thunderline._daemon._logging import JsonFormatter

pytestmark = pytest.mark.anyio


class Vaultish(tl.Server[dict[str, Any]]):
    async def init(self, secret: str) -> tl.Ok[dict[str, Any]]:
        return tl.Ok({"count": 0, "secret": secret})

    async def handle_call(self, request: Any, from_: tl.From, state: dict[str, Any]) -> Any:
        if request == "crash":
            raise ValueError("asked to crash")
        state["count"] += 1
        return tl.Reply(state["count"], state)

    def format_status(self, state: dict[str, Any]) -> Any:
        return {**state, "secret": "***"}


class BadStatus(tl.Server[int]):
    async def init(self) -> tl.Ok[int]:
        return tl.Ok(7)

    def format_status(self, state: int) -> Any:
        raise RuntimeError("no status for you")


async def test_get_state_is_format_status_and_touches_no_callback(anyio_backend: str) -> None:
    async def main() -> Any:
        pid = await tl.start(Vaultish, "hunter2", name="vaultish")
        assert pid is not None
        await tl.call(pid, "bump")
        by_pid = await tl.get_state(pid)
        by_name = await tl.get_state("vaultish")
        after = await tl.call(pid, "bump")  # the server kept running, state unchanged by it
        bad = await tl.start(BadStatus)
        assert bad is not None
        broken = await tl.get_state(bad)
        plain = tl.spawn(tl.receive)
        with pytest.raises(tl.NotAServerError):
            await tl.get_state(plain)
        with pytest.raises(tl.CallNoProcError):
            await tl.get_state("nobody")
        tl.exit(plain, tl.KILL)
        return by_pid, by_name, after, broken

    async with tl.open_node():
        by_pid, by_name, after, broken = await in_process(main)
    assert by_pid == by_name == {"count": 1, "secret": "***"}
    assert after == 2
    assert broken.startswith("<format_status raised RuntimeError('no status for you')")


async def test_crash_reports_carry_the_traceback(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def start_child() -> tl.Pid | None:
        return await tl.start_link(Vaultish, "s", name="crashy")

    async def main() -> None:
        sup = await tl.start_supervisor(
            [tl.supervisor_spec("inner", [tl.ChildSpec(id="crashy", start=start_child)])]
        )
        assert sup is not None
        with pytest.raises(tl.CallExitError):
            await tl.call("crashy", "crash")
        tl.exit(sup, tl.SHUTDOWN)

    async with tl.open_node():
        await in_process(main, trap_exit=True)
    terminate = [
        r for r in caplog.records if getattr(r, "thunderline_report", None) == "server_terminate"
    ]
    supervisor = [
        r
        for r in caplog.records
        if getattr(r, "thunderline_report", None) == "supervisor_report"
        and r.levelno == logging.ERROR
    ]
    assert terminate
    assert supervisor
    for record in (terminate[0], supervisor[0]):
        assert record.exc_info is not None
        text = logging.Formatter().format(record)
        assert "Traceback (most recent call last)" in text
        assert "ValueError: asked to crash" in text
        assert "in handle_call" in text
        as_json = json.loads(JsonFormatter().format(record))  # the daemon's JSON log line
        assert "ValueError: asked to crash" in as_json["exception"]
    # the supervisor is named by its child id, not by its class
    assert supervisor[0].supervisor == "inner"
    assert supervisor[0].getMessage().startswith("supervisor inner: child_terminated")
