"""An application with one state machine, for ``thunderline state`` on a StateMachine.

Tree::

    lights (one_for_one)
    └── light   Light, registered "light": state "green", data {"cycles": 0, "code": ...}
"""

from __future__ import annotations

from typing import Any

import thunderline.runtime as tl


class Light(tl.StateMachine[str, dict[str, Any]]):
    """A traffic light that never changes on its own; its ``format_status`` hides the code."""

    callback_mode = "state_functions"

    async def init(self) -> Any:
        return tl.InitialState("green", {"cycles": 0, "code": "s3cret"})

    async def green(self, event_type: Any, content: Any, data: dict[str, Any]) -> Any:
        if event_type == "cast" and content == "next":
            return tl.NextState("red", {**data, "cycles": data["cycles"] + 1})
        return tl.KEEP_STATE_AND_DATA

    async def red(self, event_type: Any, content: Any, data: dict[str, Any]) -> Any:
        if event_type == "cast" and content == "next":
            return tl.NextState("green", data)
        return tl.KEEP_STATE_AND_DATA

    def format_status(self, state: str, data: dict[str, Any]) -> Any:
        return (state, {**data, "code": "***"})


async def start_light() -> tl.Pid | None:
    """Start the :class:`Light` linked to its supervisor."""
    return await tl.start_machine_link(Light, name="light")


def application() -> tl.ChildSpec:
    """The application spec (a zero-argument factory, as ``thunderline run`` accepts)."""
    return tl.supervisor_spec(
        "lights", [tl.ChildSpec(id="light", start=start_light)], name="lights"
    )
