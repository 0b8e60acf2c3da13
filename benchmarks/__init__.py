"""thunderline benchmarks: ``python -m benchmarks [--smoke] [--only A,B] [--json F] [--runs N]``.

Every public module of this package (a name without a leading underscore)
that defines ``WORKLOADS`` is a workload family; :func:`discover` imports them
in ``ORDER`` (a module-level int, default 100) and then name order. Adding a
workload is adding a module: see ``benchmarks/README.md``.
"""

from __future__ import annotations

import importlib
import pkgutil

from benchmarks._core import Workload

__all__ = ["discover"]


def discover() -> list[Workload]:
    """Every workload of every family module, in table order."""
    modules = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "WORKLOADS"):
            modules.append(module)
    modules.sort(key=lambda m: (getattr(m, "ORDER", 100), m.__name__))
    workloads: list[Workload] = []
    for module in modules:
        workloads.extend(module.WORKLOADS)
    names = [w.name for w in workloads]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise RuntimeError(f"duplicate workload names: {sorted(duplicates)}")
    return workloads
