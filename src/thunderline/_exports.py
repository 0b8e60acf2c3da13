"""One helper for every package's ``__init__``: public objects report the public module."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any


def publish(namespace: MutableMapping[str, Any], package: str, names: Iterable[str]) -> None:
    """Set ``__module__`` to ``package`` on the ``names`` defined in its underscore modules.

    So ``repr``, pickling by reference and documentation show ``thunderline.runtime.Pid``
    rather than ``thunderline.runtime._pid.Pid``. Objects that refuse the
    attribute (builtins, constants) are left alone.
    """
    private_prefix = package + "._"
    for name in names:
        obj = namespace[name]
        if getattr(obj, "__module__", "").startswith(private_prefix):
            try:
                obj.__module__ = package
            except (AttributeError, TypeError):
                pass
