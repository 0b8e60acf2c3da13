"""thunderline: Erlang/OTP's processes, links, monitors and supervisors for async Python.

The everyday API is re-exported here from :mod:`thunderline.runtime`.
"""

from __future__ import annotations

from thunderline._version import __version__
from thunderline.runtime import *  # noqa: F403
from thunderline.runtime import __all__ as _runtime_all

__all__ = ["__version__", *_runtime_all]
