"""Install several instruments where the runtime or a saga run takes one.

Example::

    >>> from thunderline import telemetry
    >>> runtime_hooks = telemetry.CompositeInstrument(
    ...     telemetry.RuntimeInstrument(), telemetry.MetricsInstrument()
    ... )
    >>> saga_hooks = telemetry.CompositeSagaInstrument(
    ...     telemetry.SagaTracer(), telemetry.SagaMetrics()
    ... )
    >>> len(runtime_hooks.instruments), len(saga_hooks.instruments)
    (2, 2)

Then ``thunderline.run(main, instrument=runtime_hooks)`` and
``run_saga(saga, instrument=saga_hooks)`` (or
``thunderline.sagas.set_default_instrument(saga_hooks)``).

Every hook is called on each instrument in order; hooks that end something
(``message_done``, ``saga_finished`` and the ``*_finished`` hooks) are called
in *reverse* order, so instruments that make contexts current restore them
in last-in-first-out order. An exception raised by one instrument is logged
on the ``thunderline.telemetry`` logger and does not stop the others (the
runtime and the saga executor would otherwise skip every later instrument,
leaving their contexts and spans open).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from thunderline.runtime import BaseInstrument, Instrument, Pid
from thunderline.sagas import (
    AttemptOutcome,
    SagaInstrument,
    SagaOutcome,
    SagaRunInfo,
    UndoOutcome,
)

__all__ = ["CompositeInstrument", "CompositeSagaInstrument"]

_logger = logging.getLogger("thunderline.telemetry")

_FAILED = object()


def _safely(hook: Callable[..., Any], *args: Any) -> Any:
    try:
        return hook(*args)
    except Exception:
        _logger.exception("instrument hook %s failed", getattr(hook, "__qualname__", hook))
        return _FAILED


class CompositeInstrument(BaseInstrument):
    """A runtime :class:`~thunderline.runtime.Instrument` fanning out to several.

    The carrier of a message is a tuple with one entry per instrument (each
    instrument gets back exactly what it captured), and so is the token of a
    received message.

    Args:
        *instruments: The instruments, in the order their hooks are called.

    .. versionadded:: 0.1
    """

    def __init__(self, *instruments: Instrument) -> None:
        self.instruments: tuple[Instrument, ...] = instruments

    def process_started(self, pid: Pid, parent: Pid | None, label: str) -> None:
        """Call ``process_started`` on every instrument."""
        for instrument in self.instruments:
            _safely(instrument.process_started, pid, parent, label)

    def capture(self, sender: Pid | None, dest: Pid, dest_label: str, operation: str) -> Any:
        """Return the tuple of every instrument's carrier (None if all are None)."""
        carriers = tuple(
            _safely(i.capture, sender, dest, dest_label, operation) for i in self.instruments
        )
        carriers = tuple(None if c is _FAILED else c for c in carriers)
        return carriers if any(c is not None for c in carriers) else None

    def message_received(self, pid: Pid, label: str, carrier: Any) -> Any:
        """Give each instrument its own carrier; return the tuple of their tokens."""
        carriers = (
            carrier
            if isinstance(carrier, tuple) and len(carrier) == len(self.instruments)
            else (None,) * len(self.instruments)
        )
        return tuple(
            _safely(i.message_received, pid, label, c)
            for i, c in zip(self.instruments, carriers, strict=True)
        )

    def message_done(self, pid: Pid, token: Any) -> None:
        """Give each instrument its own token back, last instrument first."""
        for instrument, own in reversed(list(zip(self.instruments, token, strict=True))):
            if own is not _FAILED:
                _safely(instrument.message_done, pid, own)

    def process_exited(self, pid: Pid, reason: Any) -> None:
        """Call ``process_exited`` on every instrument."""
        for instrument in self.instruments:
            _safely(instrument.process_exited, pid, reason)

    def child_restarted(
        self,
        supervisor: Pid,
        child_id: Hashable,
        old_pid: Pid | None,
        new_pid: Pid | None,
        reason: Any,
    ) -> None:
        """Call ``child_restarted`` on every instrument."""
        for instrument in self.instruments:
            _safely(instrument.child_restarted, supervisor, child_id, old_pid, new_pid, reason)


class CompositeSagaInstrument(SagaInstrument):
    """A :class:`~thunderline.sagas.SagaInstrument` fanning out to several.

    Args:
        *instruments: The instruments, in the order ``*_started`` hooks and
            events are delivered (``*_finished`` hooks go in reverse).

    .. versionadded:: 0.1
    """

    def __init__(self, *instruments: SagaInstrument) -> None:
        self.instruments: tuple[SagaInstrument, ...] = instruments

    def saga_started(self, run: SagaRunInfo) -> None:
        """Forward to every instrument."""
        for instrument in self.instruments:
            _safely(instrument.saga_started, run)

    def saga_finished(
        self, run: SagaRunInfo, outcome: SagaOutcome | None, error: BaseException | None
    ) -> None:
        """Forward to every instrument, last first."""
        for instrument in reversed(self.instruments):
            _safely(instrument.saga_finished, run, outcome, error)

    def step_attempt_started(self, run: SagaRunInfo, step: str, attempt: int) -> None:
        """Forward to every instrument."""
        for instrument in self.instruments:
            _safely(instrument.step_attempt_started, run, step, attempt)

    def step_attempt_finished(
        self,
        run: SagaRunInfo,
        step: str,
        attempt: int,
        outcome: AttemptOutcome,
        error: BaseException | None,
    ) -> None:
        """Forward to every instrument, last first."""
        for instrument in reversed(self.instruments):
            _safely(instrument.step_attempt_finished, run, step, attempt, outcome, error)

    def compensate_started(self, run: SagaRunInfo, step: str, attempt: int) -> None:
        """Forward to every instrument."""
        for instrument in self.instruments:
            _safely(instrument.compensate_started, run, step, attempt)

    def compensate_finished(
        self, run: SagaRunInfo, step: str, attempt: int, error: BaseException | None
    ) -> None:
        """Forward to every instrument, last first."""
        for instrument in reversed(self.instruments):
            _safely(instrument.compensate_finished, run, step, attempt, error)

    def undo_started(self, run: SagaRunInfo, step: str, attempt: int) -> None:
        """Forward to every instrument."""
        for instrument in self.instruments:
            _safely(instrument.undo_started, run, step, attempt)

    def undo_finished(
        self,
        run: SagaRunInfo,
        step: str,
        attempt: int,
        outcome: UndoOutcome,
        error: BaseException | None,
    ) -> None:
        """Forward to every instrument, last first."""
        for instrument in reversed(self.instruments):
            _safely(instrument.undo_finished, run, step, attempt, outcome, error)

    def event(self, run: SagaRunInfo, name: str, attributes: Mapping[str, object]) -> None:
        """Forward to every instrument."""
        for instrument in self.instruments:
            _safely(instrument.event, run, name, attributes)
