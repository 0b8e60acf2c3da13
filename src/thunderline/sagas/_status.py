"""Where a run and each of its steps stand (reported by ``SagaRun.statistics``)."""

from __future__ import annotations

import enum

__all__ = ["SagaPhase", "StepStatus"]


class StepStatus(enum.Enum):
    """Where one step of a run stands."""

    PENDING = "pending"
    """Not started (or given up before an attempt because the run is stopping)."""
    WAITING = "waiting"
    """Started, waiting for a concurrency slot or a backoff delay."""
    RUNNING = "running"
    """Inside an attempt (or, for a nested saga, its child run is executing)."""
    COMPLETED = "completed"
    """Has a result."""
    FAILED = "failed"
    """Failed for good."""
    UNDONE = "undone"
    """Completed, then rolled back."""
    UNDO_FAILED = "undo_failed"
    """Completed; rolling it back failed or was never reached."""


class SagaPhase(enum.Enum):
    """Where a run stands."""

    CREATED = "created"
    RUNNING = "running"
    ROLLING_BACK = "rolling_back"
    FINISHED = "finished"
