"""The saga journal: what the executor writes while a journaled run goes on."""

from __future__ import annotations

from typing import Any, Protocol


class RunJournal(Protocol):
    """The journal of one top-level run (nested runs write to their root's).

    ``path`` is the step's path from the root run (``"step"`` or ``"nested/step"``).
    Each call returns once the record is durable.
    """

    def attempt_started(self, path: str, attempt: int) -> None:
        """Before an attempt of ``run`` (or of a nested saga) begins."""

    def attempt_finished(
        self, path: str, attempt: int, outcome: str, error: BaseException | None, value: Any
    ) -> None:
        """After it ended; ``value`` is the result when ``outcome`` is ``"ok"``."""

    def completed(self, path: str, value: Any) -> None:
        """The step completed through ``compensate`` returning ``Continue(value)``."""

    def undo_started(self, path: str, attempt: int) -> None:
        """Before an undo call."""

    def undo_finished(
        self, path: str, attempt: int, outcome: str, error: BaseException | None
    ) -> None:
        """After it ended."""

    def finished(self, outcome: Any, error: BaseException | None, report: Any) -> None:
        """The run's outcome (or the error that escaped it, with its rollback report)."""
