"""The public face of every package: complete ``__all__``, public ``__module__``.

The layering between packages is checked in ``test_layering.py``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import thunderline

SRC = Path(thunderline.__file__).resolve().parent


def _public_modules() -> list[str]:
    names = ["thunderline"]
    for info in pkgutil.walk_packages([str(SRC)], prefix="thunderline."):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts[1:]):
            continue
        names.append(info.name)
    return names


@pytest.mark.parametrize("module_name", _public_modules())
def test_public_module_has_complete_all(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert hasattr(module, "__all__"), f"{module_name} has no __all__"
    exported = set(module.__all__)
    for name in exported:
        assert hasattr(module, name), f"{module_name}.__all__ names missing {name!r}"
    for name, obj in vars(module).items():
        if name.startswith("_") or inspect.ismodule(obj):
            continue
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(
            obj, "__module__", ""
        ).startswith(module_name + "._"):
            assert name in exported, f"{module_name}.{name} is public but not in __all__"


@pytest.mark.parametrize("module_name", _public_modules())
def test_public_objects_report_public_module(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert "._" not in obj.__module__, (
                f"{module_name}.{name} reports __module__ {obj.__module__!r}"
            )


def test_root_and_lowlevel_split_the_runtime() -> None:
    """Each runtime name is at the top (the user's API) or in ``lowlevel``, never both."""
    import thunderline.lowlevel
    import thunderline.runtime

    top = set(thunderline.__all__) - {"__version__"}
    low = set(thunderline.lowlevel.__all__)
    assert not top & low, top & low
    assert top | low == set(thunderline.runtime.__all__)
    for hook in ("Instrument", "exit_action", "add_restart", "RECEIVE_BUDGET"):
        assert hook in low, hook
    for name in ("spawn", "send", "receive", "Server", "Supervisor", "run", "Pid"):
        assert name in top, name
