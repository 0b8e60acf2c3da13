"""thunderline: Erlang/OTP's processes, links, monitors and supervisors for async Python.

The everyday API is re-exported here from :mod:`thunderline.runtime`; ``run``
also joins a cluster (``node=...``, ``cluster=...``, see :mod:`thunderline.dist`).
"""

from __future__ import annotations

from thunderline._exports import publish as _publish
from thunderline._run import run as _run_in_cluster
from thunderline._version import __version__
from thunderline.runtime import *  # noqa: F403
from thunderline.runtime import __all__ as _runtime_all

run = _run_in_cluster  # the runtime's run, plus node/cluster

__all__ = ["__version__", *_runtime_all]

_publish(globals(), __name__, ["run"])
