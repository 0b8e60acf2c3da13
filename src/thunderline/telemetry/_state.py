"""Which tracer the span helpers use: thunderline's own provider once configured.

The OpenTelemetry global tracer provider can be set only once per process, so
:func:`thunderline.telemetry.configure` keeps its provider here as well and
the helpers in :mod:`thunderline.telemetry` always use the latest one. Until
``configure()`` is called they use the global provider (a no-op unless the
application installed one).
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from thunderline._version import __version__

TRACER_NAME = "thunderline"


class _State:
    __slots__ = ("processors", "provider", "tracer")

    def __init__(self) -> None:
        self.provider: TracerProvider | None = None
        self.processors: tuple[object, ...] = ()
        self.tracer: trace.Tracer = trace.get_tracer(TRACER_NAME, __version__)

    def reset(self) -> None:
        self.provider = None
        self.processors = ()
        self.tracer = trace.get_tracer(TRACER_NAME, __version__)


STATE = _State()
