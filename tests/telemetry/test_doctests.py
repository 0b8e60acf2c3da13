"""The examples in every telemetry module's docstrings run (so they cannot rot)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import thunderline.telemetry
from thunderline import telemetry

MODULES = sorted(
    [thunderline.telemetry.__name__]
    + [
        info.name
        for info in pkgutil.iter_modules(
            thunderline.telemetry.__path__, prefix=thunderline.telemetry.__name__ + "."
        )
    ]
)


def test_every_module_is_collected() -> None:
    assert "thunderline.telemetry._sagas" in MODULES
    assert "thunderline.telemetry._metrics" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name: str) -> None:
    module = importlib.import_module(name)
    try:
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    finally:
        telemetry.shutdown()
        telemetry.shutdown_metrics()
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"
    if ">>>" in (module.__doc__ or ""):
        assert result.attempted > 0, name
