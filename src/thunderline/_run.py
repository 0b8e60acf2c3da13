"""``thunderline.run``: the runtime's ``run``, optionally joined to a cluster."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from thunderline.runtime import Instrument
from thunderline.runtime import run as _runtime_run

__all__ = ["run"]

T = TypeVar("T")

#: The NATS URL used when ``node`` is given without ``cluster``.
DEFAULT_CLUSTER = "nats://127.0.0.1:4222"


def run(
    main: Callable[..., Awaitable[T]],
    *args: Any,
    backend: str = "asyncio",
    instrument: Instrument | None = None,
    backend_options: dict[str, Any] | None = None,
    node: str | None = None,
    cluster: str | None = None,
    **cluster_options: Any,
) -> T:
    """Run ``main(*args)`` as the first process of a new node and return its result.

    As :func:`thunderline.runtime.run`; with ``node`` (and ``cluster``, a NATS
    URL ``nats://[user:password@]host:port[/cluster]``, default
    ``nats://127.0.0.1:4222``) the node first joins the cluster under that name
    (``thunderline.dist``) and leaves it after ``main`` ended. ``cluster_options``
    go to :func:`thunderline.dist.open_distribution` (``tick``, ``heartbeat``,
    ``cluster_name``, ``connect_options``).
    """
    setup = None
    if node is not None or cluster is not None:
        from thunderline.dist import distribution

        setup = distribution(
            "main" if node is None else node,
            DEFAULT_CLUSTER if cluster is None else cluster,
            **cluster_options,
        )
    elif cluster_options:
        raise TypeError(
            f"run: {sorted(cluster_options)} only apply with node=... (joining a cluster)"
        )
    return _runtime_run(
        main,
        *args,
        backend=backend,
        instrument=instrument,
        backend_options=backend_options,
        setup=setup,
    )
