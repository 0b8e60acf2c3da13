"""The public face of every package and the one-way layering (STYLE points 1 and 2)."""

from __future__ import annotations

import ast
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


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def _files(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


def test_runtime_imports_no_upper_layer_and_no_opentelemetry() -> None:
    for path in _files("runtime"):
        for name in _imports(path):
            assert not name.startswith(
                ("thunderline.sagas", "thunderline.telemetry", "thunderline.domains")
            ), f"{path.name} imports {name}"
            assert not name.startswith("opentelemetry"), f"{path.name} imports {name}"


def test_opentelemetry_only_under_telemetry() -> None:
    for path in SRC.rglob("*.py"):
        if "telemetry" in path.relative_to(SRC).parts:
            continue
        for name in _imports(path):
            assert not name.startswith("opentelemetry"), f"{path} imports {name}"


@pytest.mark.parametrize("package", ["sagas", "domains", "telemetry", "testing", "cli"])
def test_upper_layers_use_only_the_public_runtime(package: str) -> None:
    for path in _files(package):
        for name in _imports(path):
            assert not name.startswith("thunderline.runtime._"), (
                f"{path.relative_to(SRC)} imports private {name}"
            )
