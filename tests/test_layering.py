"""One-way layering, checked on every import of every module (docs/design.md, "Packages").

Each module under ``src/thunderline`` belongs to a layer: its package
(``runtime``, ``sagas``, ...) or, for a module at the top, its own name
(``lowlevel``, and ``thunderline`` itself for ``__init__.py``). An import is
allowed when it stays inside the importer's package, or goes to a layer the
importer may use (``ALLOWED``) through that layer's public path: no part after
the package name may start with ``_``. ``_exports`` and ``_version`` are shared
helpers any layer may use. ``_daemon`` is a private package that only the CLI
uses, through its ``__init__``.

The walk is over the AST, so imports inside functions and ``TYPE_CHECKING``
blocks count, and relative imports are resolved. OpenTelemetry may be imported
only under ``telemetry``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import thunderline

SRC = Path(thunderline.__file__).resolve().parent

#: Which layers each layer may import (besides itself and the shared helpers).
ALLOWED: dict[str, frozenset[str]] = {
    "runtime": frozenset(),
    "sagas": frozenset({"runtime"}),
    "telemetry": frozenset({"runtime", "sagas"}),
    "testing": frozenset({"runtime", "sagas", "telemetry"}),
    "domains": frozenset({"runtime", "sagas", "telemetry"}),
    "lowlevel": frozenset({"runtime"}),
    # The distribution layer (nodes over NATS) and the top-level run() that joins a cluster.
    "dist": frozenset({"runtime", "lowlevel"}),
    "_run": frozenset({"runtime", "lowlevel", "dist"}),
    "thunderline": frozenset({"runtime", "_run"}),
    "_daemon": frozenset({"runtime", "sagas", "telemetry", "domains", "lowlevel", "dist"}),
    "cli": frozenset({"runtime", "sagas", "telemetry", "domains", "lowlevel", "dist", "_daemon"}),
}
SHARED = frozenset({"_exports", "_version"})


def _module_name(path: Path) -> str:
    parts = ["thunderline", *path.relative_to(SRC).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "thunderline"


def _exists(module: str) -> bool:
    base = SRC.joinpath(*module.split(".")[1:])
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, absolute module)`` for every import in ``source`` (``module`` is its name).

    ``from X import name`` yields ``X.name`` instead of ``X`` when that is a
    module of thunderline, so ``from thunderline.domains import _ledger`` is
    caught and ``from thunderline import sagas`` counts as importing ``sagas``.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            children = [f"{target}.{alias.name}" for alias in node.names]
            modules = [c for c in children if c.startswith("thunderline.") and _exists(c)]
            if len(modules) < len(children):  # some names are not modules: X itself is used
                found.append((node.lineno, target))
            found.extend((node.lineno, child) for child in modules)
    return found


def violation(importer: str, target: str) -> str | None:
    """Why ``importer`` may not import ``target`` (both absolute module names), or None."""
    if target != "thunderline" and not target.startswith("thunderline."):
        return None
    own, layer = _layer(importer), _layer(target)
    if layer == own:
        return None
    if layer in SHARED:
        return None
    allowed = ALLOWED.get(own)
    if allowed is None:
        return f"{own} is not in the layering table of tests/test_layering.py (ALLOWED)"
    if layer not in allowed:
        may = ", ".join(sorted(allowed)) or "nothing of thunderline"
        return f"{own} may import {may}; {layer} is not below it"
    private = [p for p in target.split(".")[2:] if p.startswith("_")]
    if private:
        return f"{target} is a private module of {layer}; use `thunderline.{layer}`'s public names"
    return None


def _problems(paths: list[Path]) -> list[str]:
    problems = []
    for path in paths:
        module = _module_name(path)
        source = path.read_text(encoding="utf-8")
        for line, target in imports_of(source, module, path.name == "__init__.py"):
            why = violation(module, target)
            if why is not None:
                rel = path.relative_to(SRC.parent)
                problems.append(f"{rel}:{line} imports {target}: {why}")
    return problems


def _layers() -> list[str]:
    return sorted({_layer(_module_name(p)) for p in SRC.rglob("*.py")} - SHARED)


@pytest.mark.parametrize("layer", _layers())
def test_layer_imports_only_public_paths_of_lower_layers(layer: str) -> None:
    paths = [p for p in sorted(SRC.rglob("*.py")) if _layer(_module_name(p)) == layer]
    problems = _problems(paths)
    assert not problems, "layering violations:\n" + "\n".join(problems)


def test_every_layer_is_in_the_table() -> None:
    assert set(_layers()) <= set(ALLOWED), set(_layers()) - set(ALLOWED)


def test_opentelemetry_only_under_telemetry() -> None:
    for path in SRC.rglob("*.py"):
        if _layer(_module_name(path)) == "telemetry":
            continue
        module = _module_name(path)
        for line, name in imports_of(path.read_text(), module, path.name == "__init__.py"):
            assert not name.startswith("opentelemetry"), f"{path}:{line} imports {name}"


@pytest.mark.parametrize(
    ("importer", "source", "complaint"),
    [
        ("thunderline.runtime._api", "import thunderline.sagas", "runtime may import nothing"),
        ("thunderline.sagas._saga", "from thunderline import telemetry", "sagas may import"),
        (
            "thunderline.cli._ledger",
            "from thunderline.domains._ledger import open_ledger",
            "private module of domains",
        ),
        (
            "thunderline.cli._ledger",
            "from thunderline.domains import _ledger",
            "private module of domains",
        ),
        (
            "thunderline.telemetry._x",
            "def f():\n    from thunderline.runtime._process import Process",
            "private module of runtime",
        ),
        ("thunderline.domains.gate", "import thunderline._daemon", "_daemon is not below"),
        ("thunderline.newpkg._x", "import thunderline.runtime", "not in the layering table"),
    ],
)
def test_the_check_catches(importer: str, source: str, complaint: str) -> None:
    found = [violation(importer, t) for _, t in imports_of(source, importer, False)]
    assert any(why and complaint in why for why in found), found


@pytest.mark.parametrize(
    ("importer", "source"),
    [
        ("thunderline.domains.gate", "import thunderline.runtime as tl"),
        ("thunderline.domains.gate", "from thunderline import sagas, telemetry"),
        ("thunderline.testing._invariants", "from ._recorder import SagaRecorder"),
        ("thunderline.runtime._api", "from thunderline.runtime._node import Node"),
        ("thunderline.cli._run", "from thunderline._daemon import run_daemon"),
        ("thunderline.sagas._saga", "from thunderline._exports import publish"),
    ],
)
def test_the_check_allows(importer: str, source: str) -> None:
    found = [violation(importer, t) for _, t in imports_of(source, importer, False)]
    assert found
    assert not any(found), found
