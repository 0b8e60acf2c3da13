"""Layering: the runtime never imports thunderline.dist; dist uses the seam in lowlevel."""

from __future__ import annotations

import ast
from pathlib import Path

import thunderline

SRC = Path(thunderline.__file__).resolve().parent


def _imports(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def test_runtime_does_not_import_dist() -> None:
    for path in (SRC / "runtime").rglob("*.py"):
        for name in _imports(path):
            assert not name.startswith("thunderline.dist"), f"{path.name} imports {name}"


def test_dist_uses_only_public_runtime_paths() -> None:
    for path in (SRC / "dist").rglob("*.py"):
        for name in _imports(path):
            assert not name.startswith("thunderline.runtime._"), f"{path.name} imports {name}"
            assert not name.startswith(("thunderline.sagas", "thunderline.domains")), name
            assert not name.startswith("opentelemetry"), name
