"""Loading the application spec named by ``package.module:attribute``."""

from __future__ import annotations

import importlib

from thunderline._daemon._errors import AppLoadError

__all__ = ["load_app"]


def load_app(target: str) -> object:
    """Import ``package.module`` and return its (possibly dotted) ``attribute``.

    The value is checked later, when the application starts (a factory may be async).

    Raises:
        AppLoadError: malformed string, module not importable, or no such attribute.
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise AppLoadError(target, "expected the form package.module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(target, f"importing {module_name!r} failed: {exc}") from exc
    value: object = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise AppLoadError(
                target, f"module {module_name!r} has no attribute {attribute!r}"
            ) from None
    return value
