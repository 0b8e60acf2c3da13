"""What the process, statem and supervisor conformance adapters and their tests share.

* :func:`load_module`: load an adapter script as a module under a given name
  (the adapters are scripts run by path too, so they are not a package).
* :class:`ExitLog` and :func:`run_driver`: run a scenario runner's driver on a
  fresh node whose instrument logs every process death where it happens.

The adapters import this module by its name: run as scripts, their folder is
``sys.path[0]``; under pytest the folder of the test modules is on the path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import anyio

from thunderline.runtime import BaseInstrument, Pid, open_node, spawn

__all__ = ["ExitLog", "ScenarioRunner", "load_module", "run_driver"]


def load_module(name: str, path: Path) -> ModuleType:
    """The module at ``path`` as ``sys.modules[name]`` (loaded once, then reused)."""
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class ScenarioRunner(Protocol):
    """What :func:`run_driver` needs of an adapter's runner."""

    lines: list[dict[str, Any]]

    async def driver_main(self) -> None: ...

    def on_exit(self, pid: Pid, reason: Any) -> None: ...


class ExitLog(BaseInstrument):
    """The instrument: tells the runner of the death of every process, where it happens."""

    def __init__(self, runner: ScenarioRunner) -> None:
        self.runner = runner

    def process_exited(self, pid: Pid, reason: Any) -> None:
        self.runner.on_exit(pid, reason)


async def run_driver(runner: ScenarioRunner) -> list[dict[str, Any]]:
    """Run ``runner.driver_main`` as a trapping process of a fresh node of the current
    backend; re-raise what it raised; return the runner's event log."""
    async with open_node(instrument=ExitLog(runner)):
        done = anyio.Event()
        failure: list[BaseException] = []

        async def driver() -> None:
            try:
                await runner.driver_main()
            except Exception as exc:
                failure.append(exc)
                raise
            finally:
                done.set()

        spawn(driver, trap_exit=True)
        await done.wait()
        if failure:
            raise failure[0]
    return runner.lines
